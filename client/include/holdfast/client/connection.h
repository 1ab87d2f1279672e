// A blocking WebSocket-over-TLS connection to the gateway, for short-lived
// clients such as the CLI. Every call blocks until done or its timeout.
//
// Each binary WebSocket message carries one serialised frame. The peer must
// present a certificate that chains to (or is) the pinned trust anchor and
// names the URL's host (DNS name, or IP address SAN for an IP literal);
// TLS 1.2 or newer.
//
// Not thread-safe. Move-only.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "holdfast/base/status.h"
#include "holdfast/protocol/envelope.h"

namespace holdfast::client {

namespace wire = ::holdfast::wire::v1;

struct ServerUrl {
  std::string host;  // without brackets for IPv6 literals
  std::string port;  // "443" if the URL names none
  std::string path;  // "/" if the URL names none
};

// Accepts only wss:// URLs.
Result<ServerUrl> ParseServerUrl(std::string_view url);

class Connection final {
 public:
  static Result<Connection> Connect(std::string_view url, const std::filesystem::path& ca_file,
                                    std::chrono::milliseconds timeout);

  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  // Drops the TCP connection without a closing handshake if Close() was not called.
  ~Connection();

  Status Send(const wire::ClientFrame& frame, std::chrono::milliseconds timeout);
  // The next frame, or nullopt if none arrived within `timeout`. A timed-out
  // read stays pending and is picked up by the next call, so no frame is lost.
  Result<std::optional<wire::ServerFrame>> Receive(std::chrono::milliseconds timeout);
  // WebSocket closing handshake.
  Status Close(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace holdfast::client
