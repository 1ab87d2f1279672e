// A one-connection wss server on 127.0.0.1, port 0, for transport and CLI
// tests. A handler, run on the server thread, turns each ClientFrame into
// the frames to send back.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/protocol/envelope.h"
#include "test_org.h"

namespace holdfast::client::testing {

// A self-signed P-256 certificate and its key, PEM.
struct TestCert {
  std::string cert_pem;
  std::string key_pem;
};
// `san` in OpenSSL config syntax, e.g. "IP:127.0.0.1,DNS:localhost".
TestCert MakeSelfSignedCert(const std::string& san);

using Handler = std::function<std::vector<::holdfast::wire::v1::ServerFrame>(const ::holdfast::wire::v1::ClientFrame&)>;

// Echoes the request id: register -> what OrgRoot::Register answers (the
// certificate countersigned, org "acme"); request id 99 -> silence;
// anything else -> challenge whose nonce is the request's serialisation.
// `org` must outlive the server.
Handler EchoHandler(const OrgRoot& org);

class TestServer {
 public:
  TestServer(TestCert cert, Handler handler);
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  unsigned short port() const { return port_; }
  std::string url() const { return "wss://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  // Waits for the connection to end; returns every frame received.
  std::vector<::holdfast::wire::v1::ClientFrame> Join();
  // The same once the client is done, also when no client ever connected.
  std::vector<::holdfast::wire::v1::ClientFrame> Stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
  unsigned short port_ = 0;
  std::thread thread_;
  std::vector<::holdfast::wire::v1::ClientFrame> seen_;
};

}  // namespace holdfast::client::testing
