// One client connection: TLS, WebSocket, then the Holdfast v1 frame
// protocol of docs/protocol.md. All methods run on the I/O thread; database
// work goes to the DbPool and the Ingester and comes back through
// boost::asio::post.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>

#include "hub.h"

namespace holdfast::gateway {

class Session : public std::enable_shared_from_this<Session> {
 public:
  static std::shared_ptr<Session> Create(boost::asio::ip::tcp::socket socket,
                                         boost::asio::ssl::context& tls, Hub& hub);
  virtual ~Session() = default;
  virtual void Start() = 0;
  // Queues a pushed Deliver for this device (serialised ServerFrame).
  virtual void Push(std::shared_ptr<const std::string> frame) = 0;
  // New resend requests for this device were created: send them.
  virtual void ResendRequestsCreated() = 0;
  // A history restore recorded notices for this device: send them.
  virtual void RestoreNoticesCreated() = 0;
  virtual void Close() = 0;
  // Reads again if it paused for ingest backpressure.
  virtual void Resume() = 0;
};

}  // namespace holdfast::gateway
