#include "holdfast/client/connection.h"

#include <fstream>

#include <gtest/gtest.h>

#include "test_org.h"
#include "test_server.h"

namespace holdfast::client {
namespace {

using namespace std::chrono_literals;
using testing::EchoHandler;
using testing::MakeSelfSignedCert;
using testing::TempDir;
using testing::TestCert;
using testing::TestServer;

std::filesystem::path WritePem(const TempDir& dir, const std::string& name,
                               const std::string& pem) {
  auto p = dir.path() / name;
  std::ofstream(p) << pem;
  return p;
}

// Connection tests never register; the handler needs an org all the same.
const testing::OrgRoot& Org() {
  static const testing::OrgRoot org;
  return org;
}

wire::ClientFrame Hello(uint64_t id) {
  wire::ClientFrame f;
  f.set_request_id(id);
  f.mutable_hello()->set_device_id(std::string(16, 'd'));
  return f;
}

TEST(ServerUrlTest, Parses) {
  auto u = ParseServerUrl("wss://127.0.0.1:8443/v1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, "8443");
  EXPECT_EQ(u->path, "/v1");

  u = ParseServerUrl("wss://gateway.example");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->path, "/");

  u = ParseServerUrl("wss://[::1]:9000/v1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "9000");

  for (const char* bad : {"ws://127.0.0.1:8443/v1", "https://x/v1", "wss://", "wss://:80/v1",
                          "wss://h:0/", "wss://h:65536/", "wss://h:8x/", "wss://u:p@h/v1",
                          "wss://[::1/v1"}) {
    EXPECT_FALSE(ParseServerUrl(bad).ok()) << bad;
  }
}

TEST(ConnectionTest, RoundTripAndTimeout) {
  TempDir tmp;
  TestCert cert = MakeSelfSignedCert("IP:127.0.0.1,DNS:localhost");
  auto ca = WritePem(tmp, "ca.pem", cert.cert_pem);
  TestServer server(cert, EchoHandler(Org()));
  {
    auto c = Connection::Connect(server.url(), ca, 5s);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(c->Send(Hello(1), 5s).ok());
    auto f = c->Receive(5s);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE(f->has_value());
    EXPECT_EQ((*f)->request_id(), 1u);

    // Unanswered: the read times out, stays pending and catches the next answer.
    ASSERT_TRUE(c->Send(Hello(99), 5s).ok());
    f = c->Receive(100ms);
    ASSERT_TRUE(f.ok());
    EXPECT_FALSE(f->has_value());
    ASSERT_TRUE(c->Send(Hello(2), 5s).ok());
    f = c->Receive(5s);
    ASSERT_TRUE(f.ok() && f->has_value());
    EXPECT_EQ((*f)->request_id(), 2u);

    EXPECT_TRUE(c->Close(2s).ok());
    EXPECT_FALSE(c->Send(Hello(3), 1s).ok());
  }
  std::vector<uint64_t> ids;
  for (const auto& f : server.Join()) ids.push_back(f.request_id());
  EXPECT_EQ(ids, (std::vector<uint64_t>{1, 99, 2}));
}

TEST(ConnectionTest, ByHostName) {
  TempDir tmp;
  TestCert cert = MakeSelfSignedCert("IP:127.0.0.1,DNS:localhost");
  auto ca = WritePem(tmp, "ca.pem", cert.cert_pem);
  TestServer server(cert, EchoHandler(Org()));
  auto c = Connection::Connect("wss://localhost:" + std::to_string(server.port()) + "/v1", ca, 5s);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
}

TEST(ConnectionTest, UntrustedCertificateRefused) {
  TempDir tmp;
  TestCert cert = MakeSelfSignedCert("IP:127.0.0.1,DNS:localhost");
  TestCert other = MakeSelfSignedCert("IP:127.0.0.1,DNS:localhost");
  auto wrong_ca = WritePem(tmp, "other.pem", other.cert_pem);
  TestServer server(cert, EchoHandler(Org()));
  auto c = Connection::Connect(server.url(), wrong_ca, 5s);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kUnavailable);
  EXPECT_NE(c.status().message().find("certificate verification failed"), std::string::npos)
      << c.status().message();
}

TEST(ConnectionTest, WrongHostRefused) {
  TempDir tmp;
  TestCert cert = MakeSelfSignedCert("DNS:gateway.example");
  auto ca = WritePem(tmp, "ca.pem", cert.cert_pem);
  TestServer server(cert, EchoHandler(Org()));
  auto c = Connection::Connect(server.url(), ca, 5s);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("certificate verification failed"), std::string::npos)
      << c.status().message();
}

TEST(ConnectionTest, NothingListening) {
  TempDir tmp;
  TestCert cert = MakeSelfSignedCert("IP:127.0.0.1");
  auto ca = WritePem(tmp, "ca.pem", cert.cert_pem);
  unsigned short port;
  {
    TestServer server(cert, EchoHandler(Org()));
    port = server.port();
  }
  auto c = Connection::Connect("wss://127.0.0.1:" + std::to_string(port) + "/v1", ca, 2s);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kUnavailable);
  EXPECT_FALSE(Connection::Connect("wss://127.0.0.1:1/v1", tmp.path() / "missing.pem", 1s).ok());
}

}  // namespace
}  // namespace holdfast::client
