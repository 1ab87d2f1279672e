// The gateway's side of the client protocol (docs/protocol.md sections 9 to
// 11), exercised end to end: a real Gateway in this process, on a fresh
// PostgreSQL database and a SoftHSM2 token, spoken to over wss:// by honest,
// careless and hostile clients. Every refusal is checked for its exact
// Error.code, for storing nothing, and for the reject metric it counts.
#include "holdfast/gateway/gateway.h"

#include <gtest/gtest.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "holdfast/archive/compliance.h"
#include "holdfast/archive/database.h"
#include "holdfast/archive/store.h"
#include "holdfast/client/connection.h"
#include "holdfast/client/device.h"
#include "holdfast/client/session.h"
#include "holdfast/gateway/ceremony.h"
#include "holdfast/gateway/config.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "holdfast/testing/pg_cluster.h"
#include "holdfast/testing/pg_fixture.h"
#include "holdfast/testing/softhsm.h"

namespace holdfast::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace wire = protocol::wire;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr int64_t kHourMs = 3600 * 1000;
constexpr int64_t kDayMs = 24 * kHourMs;
constexpr uint32_t kMaxFrameBytes = 64 * 1024;

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Bytes ToBytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

// Runs handlers of `ioc` until `done()` or the deadline.
void RunUntil(asio::io_context& ioc, const std::function<bool()>& done, Clock::time_point deadline) {
  while (!done()) {
    const auto now = Clock::now();
    if (now >= deadline) return;
    ioc.restart();
    ioc.run_one_for(deadline - now);
  }
}

// A TLS client context that trusts only `ca` (the gateway's self-signed
// certificate) and checks that the peer is 127.0.0.1.
Status TrustOnly(asio::ssl::context& tls, const fs::path& ca) {
  beast::error_code ec;
  tls.set_verify_mode(asio::ssl::verify_peer, ec);
  if (!ec) tls.load_verify_file(ca.string(), ec);
  if (ec) return Status::Internal("trust anchor " + ca.string() + ": " + ec.message());
  return Status::Ok();
}

// A bare WebSocket connection to the gateway that can send any bytes, as
// binary or text messages; for what holdfast::client::Connection refuses
// to produce.
class RawSocket {
 public:
  enum class Got { kFrame, kNotAFrame, kTimeout, kClosed };

  ~RawSocket() {
    if (!ws_) return;
    beast::error_code ec;
    beast::get_lowest_layer(*ws_).socket().close(ec);
    ioc_.restart();
    ioc_.run_for(1s);
  }

  Status Open(uint16_t port, const fs::path& ca) {
    HF_RETURN_IF_ERROR(TrustOnly(tls_, ca));
    ws_.emplace(ioc_, tls_);
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ws_->next_layer().native_handle()),
                                      "127.0.0.1") != 1) {
      return Status::Internal("cannot pin the peer address");
    }
    beast::error_code ec;
    beast::get_lowest_layer(*ws_).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (!ec) ws_->next_layer().handshake(asio::ssl::stream_base::client, ec);
    if (!ec) ws_->handshake("127.0.0.1:" + std::to_string(port), "/v1", ec);
    if (ec) return Status::Unavailable("raw WebSocket to the gateway: " + ec.message());
    return Status::Ok();
  }

  Status Send(const std::string& bytes, bool binary) {
    ws_->binary(binary);
    bool done = false;
    beast::error_code ec;
    ws_->async_write(asio::buffer(bytes), [&](beast::error_code e, size_t) {
      ec = e;
      done = true;
    });
    RunUntil(ioc_, [&] { return done; }, Clock::now() + 10s);
    if (!done) return Status::Unavailable("write timed out");
    if (ec) return Status::Unavailable("write: " + ec.message());
    return Status::Ok();
  }

  // The next message from the gateway. A read that timed out stays pending.
  Got Next(wire::ServerFrame* out, milliseconds timeout) {
    if (!reading_) {
      reading_ = true;
      read_done_ = false;
      ws_->async_read(buffer_, [this](beast::error_code ec, size_t) {
        read_ec_ = ec;
        read_done_ = true;
      });
    }
    RunUntil(ioc_, [this] { return read_done_; }, Clock::now() + timeout);
    if (!read_done_) return Got::kTimeout;
    reading_ = false;
    if (read_ec_) return Got::kClosed;
    const auto data = buffer_.cdata();
    const bool ok = ws_->got_binary() && out->ParseFromArray(data.data(), static_cast<int>(data.size()));
    buffer_.consume(buffer_.size());
    return ok ? Got::kFrame : Got::kNotAFrame;
  }

 private:
  asio::io_context ioc_;
  asio::ssl::context tls_{asio::ssl::context::tls_client};
  std::optional<websocket::stream<beast::ssl_stream<beast::tcp_stream>>> ws_;
  beast::flat_buffer buffer_;
  bool reading_ = false;
  bool read_done_ = false;
  beast::error_code read_ec_;
};

// GET https://127.0.0.1:<port><target>, trusting only `ca`.
Result<std::string> HttpsGet(uint16_t port, const fs::path& ca, const std::string& target) {
  asio::io_context ioc;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  HF_RETURN_IF_ERROR(TrustOnly(tls, ca));
  beast::ssl_stream<beast::tcp_stream> stream(ioc, tls);
  if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(stream.native_handle()), "127.0.0.1") != 1) {
    return Status::Internal("cannot pin the peer address");
  }
  beast::error_code ec;
  beast::get_lowest_layer(stream).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (!ec) stream.handshake(asio::ssl::stream_base::client, ec);
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  req.set(http::field::connection, "close");
  if (!ec) http::write(stream, req, ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  if (!ec) http::read(stream, buffer, res, ec);
  if (ec) return Status::Unavailable("GET " + target + ": " + ec.message());
  if (res.result() != http::status::ok) {
    return Status::Unavailable("GET " + target + ": HTTP " + std::to_string(res.result_int()));
  }
  beast::get_lowest_layer(stream).close();
  return res.body();
}

// The value of one series in Prometheus text format, or nullopt.
std::optional<double> SeriesValue(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

std::string RejectSeries(const std::string& reason) {
  return "holdfast_client_rejects_total{reason=\"" + reason + "\"}";
}

// "malformed_frame" for an Error answer, a description otherwise: so that a
// single EXPECT_EQ shows what came back instead.
std::string Outcome(const Result<wire::ServerFrame>& r) {
  if (!r.ok()) return "(no answer: " + r.status().ToString() + ")";
  if (r->has_error()) return r->error().code() + (r->error().code() == "internal" ? " (" + r->error().message() + ")" : "");
  return "(answered with ServerFrame kind " + std::to_string(static_cast<int>(r->kind_case())) + ")";
}

// One client connection driven frame by frame. Answers are matched by
// request id; pushed Deliver frames and anything unexpected are filed.
class Peer {
 public:
  explicit Peer(client::Connection conn) : conn_(std::move(conn)) {}

  // Sends the frame as is (request id included).
  Status SendAsIs(const wire::ClientFrame& frame) { return conn_.Send(frame, 10s); }

  // Sends the frame with a fresh request id and returns that id.
  Result<uint64_t> SendRequest(wire::ClientFrame frame) {
    const uint64_t id = next_id_++;
    frame.set_request_id(id);
    HF_RETURN_IF_ERROR(conn_.Send(frame, 10s));
    return id;
  }

  Result<wire::ServerFrame> Await(uint64_t id, milliseconds timeout = 10s) {
    for (auto it = answers_.begin(); it != answers_.end(); ++it) {
      if (it->request_id() == id) {
        wire::ServerFrame f = std::move(*it);
        answers_.erase(it);
        return f;
      }
    }
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      HF_ASSIGN_OR_RETURN(auto frame, conn_.Receive(Left(deadline)));
      if (!frame) return Status::Unavailable("no answer to request " + std::to_string(id) + " in time");
      if (frame->request_id() == id) return std::move(*frame);
      File(std::move(*frame));
    }
  }

  Result<wire::ServerFrame> Call(wire::ClientFrame frame, milliseconds timeout = 10s) {
    HF_ASSIGN_OR_RETURN(uint64_t id, SendRequest(std::move(frame)));
    return Await(id, timeout);
  }

  // The next pushed Deliver, or nullopt if none came within `timeout`.
  Result<std::optional<wire::Deliver>> NextDeliver(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (delivered_.empty()) {
      HF_ASSIGN_OR_RETURN(auto frame, conn_.Receive(Left(deadline)));
      if (!frame) return std::optional<wire::Deliver>();
      File(std::move(*frame));
    }
    wire::Deliver d = std::move(delivered_.front());
    delivered_.pop_front();
    return std::optional<wire::Deliver>(std::move(d));
  }

  // True if the gateway closes the connection within `timeout`; frames
  // arriving meanwhile are filed.
  bool ClosedWithin(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto frame = conn_.Receive(Left(deadline));
      if (!frame.ok()) return true;
      if (!frame->has_value()) return false;
      File(std::move(**frame));
    }
  }

  // Every answer (frames with a request id, and errors with request id 0)
  // received so far that no Await took.
  const std::vector<wire::ServerFrame>& answers() const { return answers_; }

 private:
  static milliseconds Left(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    return left.count() < 0 ? 0ms : left;
  }
  void File(wire::ServerFrame frame) {
    if (frame.request_id() == 0 && frame.has_deliver()) {
      delivered_.push_back(std::move(*frame.mutable_deliver()));
    } else {
      answers_.push_back(std::move(frame));
    }
  }

  client::Connection conn_;
  uint64_t next_id_ = 1;
  std::deque<wire::Deliver> delivered_;
  std::vector<wire::ServerFrame> answers_;
};

wire::ClientFrame SubmitFrame(const wire::Envelope& envelope) {
  wire::ClientFrame f;
  *f.mutable_submit()->mutable_envelope() = envelope;
  return f;
}

std::string MessageIdOf(const wire::Envelope& envelope) {
  auto parsed = protocol::ParseEnvelope(envelope);
  return parsed.ok() ? parsed->header.message_id() : std::string();
}

protocol::Recipient RecipientOf(const client::Device& d, std::string user = {}) {
  protocol::Recipient r;
  r.user = user.empty() ? d.profile().user : std::move(user);
  r.device_id = d.device_id();
  r.prekey_public = ToBytes(d.profile().prekey.public_key());
  return r;
}

class GatewaySessionTest : public holdfast::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;

    char dir_template[] = "/tmp/holdfast-gw-session-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    cert_ = dir_ / "gateway.pem";
    const fs::path key = dir_ / "gateway.key";
    auto made = holdfast::testing::RunCommand(
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key.string(), "-out", cert_.string()});
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    fs::copy_file(fs::path(HOLDFAST_SOURCE_DIR) / "deploy" / "policy.yaml", dir_ / "policy.yaml");

    auto hsm = holdfast::testing::TempSoftHsm::Create("gw-session-test");
    ASSERT_TRUE(hsm.ok()) << hsm.status().ToString();
    hsm_ = std::move(hsm).value();
    const fs::path pin = dir_ / "user.pin";
    std::ofstream(pin) << hsm_->user_pin() << "\n";
    fs::permissions(pin, fs::perms::owner_read | fs::perms::owner_write);
    const fs::path enrollment_pin = dir_ / "enrollment.pin";
    std::ofstream(enrollment_pin) << hsm_->enrollment_pin() << "\n";
    fs::permissions(enrollment_pin, fs::perms::owner_read | fs::perms::owner_write);

    config_.org = "Session Test Org";
    config_.state_dir = dir_.string();
    config_.database.conninfo = conninfo();
    config_.hsm.module = hsm_->module_path();
    config_.hsm.token_label = hsm_->token_label();
    config_.hsm.pin_file = pin.string();
    config_.hsm.enrollment_token_label = hsm_->enrollment_token_label();
    config_.hsm.enrollment_pin_file = enrollment_pin.string();
    config_.gateway.listen = Endpoint{"127.0.0.1", 0};
    config_.gateway.tls_cert = cert_.string();
    config_.gateway.tls_key = key.string();
    config_.gateway.max_frame_bytes = kMaxFrameBytes;
    config_.admin.listen = Endpoint{"127.0.0.1", 0};
    config_.admin.tls_cert = cert_.string();
    config_.admin.tls_key = key.string();
    config_.keys.rotate_ahead_days = 0;
    config_.policy_file = (dir_ / "policy.yaml").string();
    config_.export_dir = (dir_ / "exports").string();

    auto conn = archive::Connection::Open(conninfo());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    db_.emplace(std::move(conn).value());
    ASSERT_TRUE(archive::Migrate(*db_).ok());
    {
      auto token = OpenToken(config_);
      ASSERT_TRUE(token.ok()) << token.status().ToString();
      auto enrollment = OpenEnrollmentToken(config_);
      ASSERT_TRUE(enrollment.ok()) << enrollment.status().ToString();
      auto keys = InitializeKeys(**token, **enrollment, *db_, config_, "session-test", NowMs());
      ASSERT_TRUE(keys.ok()) << keys.status().ToString();
      root_public_ = keys->root_public;
      enrollment_public_ = keys->enrollment_public;
    }

    auto gateway = Gateway::Create(config_);
    ASSERT_TRUE(gateway.ok()) << gateway.status().ToString();
    gateway_ = std::move(gateway).value();
    Status started = gateway_->Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
  }

  void TearDown() override {
    peers_.clear();
    gateway_.reset();
    db_.reset();
    hsm_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  archive::Store store() { return archive::Store(*db_); }

  std::string Url() const { return "wss://127.0.0.1:" + std::to_string(gateway_->client_port()) + "/v1"; }

  Result<std::unique_ptr<Peer>> Connect() {
    HF_ASSIGN_OR_RETURN(auto conn, client::Connection::Connect(Url(), cert_, 10s));
    return std::make_unique<Peer>(std::move(conn));
  }

  // hello, challenge, authenticate.
  Result<wire::Authenticated> Login(Peer& peer, const client::Device& device) {
    wire::ClientFrame hello;
    *hello.mutable_hello() = device.MakeHello();
    auto challenge = peer.Call(hello);
    if (!challenge.ok() || !challenge->has_challenge()) {
      return Status::Internal("hello answered with " + Outcome(challenge));
    }
    HF_ASSIGN_OR_RETURN(auto answer, device.AnswerChallenge(challenge->challenge()));
    wire::ClientFrame auth;
    *auth.mutable_authenticate() = answer;
    auto done = peer.Call(auth);
    if (!done.ok() || !done->has_authenticated()) {
      return Status::Internal("authenticate answered with " + Outcome(done));
    }
    return done->authenticated();
  }

  // A new connection on which `device` is authenticated. The fixture owns it.
  Result<Peer*> Online(const client::Device& device) {
    HF_ASSIGN_OR_RETURN(auto peer, Connect());
    HF_RETURN_IF_ERROR(Login(*peer, device).status());
    peers_.push_back(std::move(peer));
    return peers_.back().get();
  }

  // A new, unregistered device of `user`: the user's first one holds the
  // master key; later ones carry a certificate from that first device.
  Result<client::Device> NewDevice(const std::string& user) {
    auto master = masters_.find(user);
    if (master == masters_.end()) return client::Device::Generate(user, NowMs());
    HF_ASSIGN_OR_RETURN(auto device, client::Device::Generate(user, NowMs(), /*with_master_key=*/false));
    HF_ASSIGN_OR_RETURN(auto certificate, master->second.CertifyNewDevice(device.identity_public(), NowMs()));
    HF_RETURN_IF_ERROR(device.UseCertificate(certificate));
    return device;
  }

  // Creates `user` if needed and registers a new device for it through the
  // gateway, as the reference client does.
  Result<client::Device> Enroll(const std::string& user) {
    archive::Store s = store();
    HF_ASSIGN_OR_RETURN(bool exists, s.UserExists(user));
    if (!exists) HF_RETURN_IF_ERROR(s.CreateUser(user, user));
    HF_ASSIGN_OR_RETURN(std::string code, s.IssueEnrollmentCode(user, kHourMs));
    HF_ASSIGN_OR_RETURN(auto device, NewDevice(user));
    HF_ASSIGN_OR_RETURN(auto conn, client::Connection::Connect(Url(), cert_, 10s));
    client::Session session(std::move(conn));
    HF_ASSIGN_OR_RETURN(auto request, device.MakeRegisterRequest(code, NowMs()));
    HF_ASSIGN_OR_RETURN(auto registered, session.Register(request));
    HF_RETURN_IF_ERROR(device.AcceptRegistration(registered, Url(), "ca.pem"));
    (void)session.Close();
    if (device.holds_master_key()) masters_.emplace(user, device);
    return device;
  }

  // `device`'s registration request with `code`, as its client makes it.
  static wire::ClientFrame RegisterFrame(const client::Device& device, const std::string& code) {
    auto request = device.MakeRegisterRequest(code, NowMs());
    EXPECT_TRUE(request.ok()) << request.status().ToString();
    wire::ClientFrame f;
    if (request.ok()) *f.mutable_register_() = std::move(request).value();
    return f;
  }
  static wire::ClientFrame RegisterFrame(wire::RegisterRequest request) {
    wire::ClientFrame f;
    *f.mutable_register_() = std::move(request);
    return f;
  }

  uint64_t DevicesOf(const std::string& user) {
    auto devices = store().DevicesOfUsers({user});
    EXPECT_TRUE(devices.ok()) << devices.status().ToString();
    return devices.ok() ? devices->size() : ~uint64_t{0};
  }

  // pkcs11-tool, logged in to the enrollment token as the gateway is.
  Result<std::string> EnrollmentTool(std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/pkcs11-tool", "--module", hsm_->module_path(),
                                     "--token-label", hsm_->enrollment_token_label(), "--login",
                                     "--pin", hsm_->enrollment_pin()};
    argv.insert(argv.end(), args.begin(), args.end());
    return holdfast::testing::RunCommand(argv);
  }

  std::string Metrics() {
    auto text = HttpsGet(gateway_->admin_port(), cert_, "/metrics");
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    return text.ok() ? *text : std::string();
  }

  // Polls /metrics until `series` equals `want` (a reject is counted just
  // before its answer is sent, a dropped connection just after); returns the
  // last value seen, -1 when the series is missing.
  double WaitForMetric(const std::string& series, double want, milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    double value = -1;
    for (;;) {
      value = SeriesValue(Metrics(), series).value_or(-1);
      if (value == want || Clock::now() >= deadline) return value;
      std::this_thread::sleep_for(50ms);
    }
  }

  uint64_t StoredEnvelopes() {
    auto n = store().CountEnvelopes();
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : ~uint64_t{0};
  }

  uint64_t Pending(const client::Device& d) {
    auto n = store().CountPendingDeliveries(d.device_id(), 30LL * 24 * 3600 * 1000);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : ~uint64_t{0};
  }

  // alice (one device, authenticated on alice_), bob (two devices), carol
  // (one device), and the conversation {alice, bob} opened by alice.
  void SetUpChat() {
    for (const char* user : {"alice", "bob", "bob", "carol"}) {
      auto d = Enroll(user);
      ASSERT_TRUE(d.ok()) << user << ": " << d.status().ToString();
      devices_.push_back(std::move(d).value());
    }
    auto peer = Online(alice());
    ASSERT_TRUE(peer.ok()) << peer.status().ToString();
    alice_ = *peer;
    auto conv = OpenConversation(*alice_, {"bob"});
    ASSERT_TRUE(conv.ok()) << conv.status().ToString();
    conv_ = *conv;
    ASSERT_EQ(conv_.devices_size(), 3);
    auto body = protocol::VerifyEpochCertificate(conv_.epoch(), root_public_, NowMs());
    ASSERT_TRUE(body.ok()) << body.status().ToString();
    epoch_id_ = body->epoch_id();
    epoch_public_ = ToBytes(body->public_key());
  }
  const client::Device& alice() const { return devices_[0]; }
  const client::Device& bob1() const { return devices_[1]; }
  const client::Device& bob2() const { return devices_[2]; }
  const client::Device& carol() const { return devices_[3]; }
  std::vector<protocol::Recipient> Bobs() const { return {RecipientOf(bob1()), RecipientOf(bob2())}; }

  Result<wire::ConversationInfo> OpenConversation(Peer& peer, const std::vector<std::string>& members) {
    wire::ClientFrame f;
    auto* oc = f.mutable_open_conversation();
    for (const auto& m : members) oc->add_members(m);
    auto answer = peer.Call(f);
    if (!answer.ok() || !answer->has_conversation()) {
      return Status::Internal("open_conversation answered with " + Outcome(answer));
    }
    return answer->conversation();
  }

  // An envelope from alice to conv_ for `recipients`; `tweak` may change
  // the request first; `signer` (default alice) signs it.
  wire::Envelope Seal(std::vector<protocol::Recipient> recipients,
                      const std::function<void(protocol::SealRequest&)>& tweak = {},
                      const client::Device* signer = nullptr, const std::string& text = "hello bob") {
    protocol::SealRequest req;
    req.conversation_id = conv_.conversation_id();
    req.sender_user = alice().profile().user;
    req.sender_device = alice().device_id();
    req.sent_at_ms = NowMs();
    req.epoch_id = epoch_id_;
    req.archive_public = epoch_public_;
    req.recipients = std::move(recipients);
    req.text = text;
    if (tweak) tweak(req);
    const client::Device& key = signer ? *signer : alice();
    auto sealed = protocol::SealMessage(req, key.profile().identity_private.view());
    EXPECT_TRUE(sealed.ok()) << sealed.status().ToString();
    return sealed.ok() ? *sealed : wire::Envelope();
  }

  // Submits on alice's connection and expects the refusal `code`, carrying
  // the envelope's message id when `names_message` is set, with nothing
  // stored.
  void ExpectRefused(const wire::Envelope& envelope, const std::string& code, bool names_message = true) {
    auto answer = alice_->Call(SubmitFrame(envelope));
    EXPECT_EQ(Outcome(answer), code);
    if (answer.ok() && answer->has_error()) {
      EXPECT_EQ(answer->error().message_id(), names_message ? MessageIdOf(envelope) : std::string());
    }
    EXPECT_EQ(StoredEnvelopes(), 0u);
  }

  fs::path dir_;
  fs::path cert_;
  Config config_;
  std::unique_ptr<holdfast::testing::TempSoftHsm> hsm_;
  std::optional<archive::Connection> db_;
  Bytes root_public_;
  Bytes enrollment_public_;
  std::unique_ptr<Gateway> gateway_;
  std::map<std::string, client::Device> masters_;  // each user's first device
  std::vector<std::unique_ptr<Peer>> peers_;

  std::vector<client::Device> devices_;
  Peer* alice_ = nullptr;
  wire::ConversationInfo conv_;
  uint32_t epoch_id_ = 0;
  Bytes epoch_public_;
};

// ----------------------------------------------------------------- framing

TEST_F(GatewaySessionTest, BytesThatAreNotAClientFrameAreMalformedAndTheThirdClosesTheConnection) {
  RawSocket raw;
  ASSERT_TRUE(raw.Open(gateway_->client_port(), cert_).ok());
  const std::string junk[] = {
      std::string("\x00\x01", 2),               // field number 0
      std::string("\x12\x10" "ab"),             // register: 16 bytes announced, 2 sent
      std::string(11, '\xff'),                  // a varint that never ends
  };
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(raw.Send(junk[i], /*binary=*/true).ok()) << i;
    wire::ServerFrame answer;
    ASSERT_EQ(raw.Next(&answer, 10s), RawSocket::Got::kFrame) << i;
    EXPECT_EQ(answer.request_id(), 0u) << i;
    ASSERT_TRUE(answer.has_error()) << i;
    EXPECT_EQ(answer.error().code(), "malformed_frame") << i;
  }
  wire::ServerFrame after;
  EXPECT_EQ(raw.Next(&after, 10s), RawSocket::Got::kClosed) << "the connection stayed open";
  EXPECT_EQ(WaitForMetric(RejectSeries("malformed_frame"), 3), 3);
  EXPECT_EQ(StoredEnvelopes(), 0u);
}

TEST_F(GatewaySessionTest, ATextMessageIsMalformedEvenIfItHoldsAFrame) {
  RawSocket raw;
  ASSERT_TRUE(raw.Open(gateway_->client_port(), cert_).ok());
  wire::ClientFrame hello;
  hello.set_request_id(7);
  hello.mutable_hello()->set_device_id("ABCDEFGHIJKLMNOP");
  const std::string bytes = hello.SerializeAsString();
  for (char c : bytes) ASSERT_LT(static_cast<unsigned char>(c), 0x80) << "must be valid UTF-8 text";

  ASSERT_TRUE(raw.Send(bytes, /*binary=*/false).ok());
  wire::ServerFrame answer;
  ASSERT_EQ(raw.Next(&answer, 10s), RawSocket::Got::kFrame);
  EXPECT_EQ(answer.request_id(), 0u);
  ASSERT_TRUE(answer.has_error());
  EXPECT_EQ(answer.error().code(), "malformed_frame");

  // The same bytes as a binary message are a well-formed hello.
  ASSERT_TRUE(raw.Send(bytes, /*binary=*/true).ok());
  ASSERT_EQ(raw.Next(&answer, 10s), RawSocket::Got::kFrame);
  EXPECT_EQ(answer.request_id(), 7u);
  ASSERT_TRUE(answer.has_error());
  EXPECT_EQ(answer.error().code(), "unknown_device");
  EXPECT_EQ(WaitForMetric(RejectSeries("malformed_frame"), 1), 1);
}

TEST_F(GatewaySessionTest, AFrameWithoutAKindIsMalformed) {
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  auto answer = (*peer)->Call(wire::ClientFrame());
  EXPECT_EQ(Outcome(answer), "malformed_frame");
  EXPECT_EQ(WaitForMetric(RejectSeries("malformed_frame"), 1), 1);
}

TEST_F(GatewaySessionTest, AFrameLargerThanTheLimitClosesTheConnection) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  wire::Envelope huge = Seal(Bobs());
  huge.mutable_content()->append(kMaxFrameBytes, 'x');
  (void)alice_->SendRequest(SubmitFrame(huge));  // the gateway may hang up while it is written
  EXPECT_TRUE(alice_->ClosedWithin(10s)) << "the connection stayed open";
  EXPECT_EQ(WaitForMetric(RejectSeries("frame_too_large"), 1), 1);
  EXPECT_EQ(StoredEnvelopes(), 0u);
  EXPECT_EQ(Pending(bob1()), 0u);
}

// --------------------------------------------------------- authentication

TEST_F(GatewaySessionTest, RequestsBeforeAuthenticationAreRefused) {
  auto device = Enroll("alice");
  ASSERT_TRUE(device.ok()) << device.status().ToString();
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  Peer& p = **peer;

  wire::ClientFrame open;
  open.mutable_open_conversation()->add_members("alice");
  EXPECT_EQ(Outcome(p.Call(open)), "unauthenticated");

  wire::Envelope envelope;
  envelope.set_content("not checked before authentication");
  envelope.set_signature(std::string(64, '\x01'));
  EXPECT_EQ(Outcome(p.Call(SubmitFrame(envelope))), "unauthenticated");

  wire::ClientFrame ack;
  ack.mutable_delivery_ack()->add_delivery_ids(1);
  EXPECT_EQ(Outcome(p.Call(ack)), "unauthenticated");

  // A hello answered with a challenge is not authentication yet.
  wire::ClientFrame hello;
  *hello.mutable_hello() = device->MakeHello();
  auto challenge = p.Call(hello);
  ASSERT_TRUE(challenge.ok() && challenge->has_challenge()) << Outcome(challenge);
  EXPECT_EQ(Outcome(p.Call(SubmitFrame(envelope))), "unauthenticated");

  EXPECT_EQ(WaitForMetric(RejectSeries("unauthenticated"), 4), 4);
  EXPECT_EQ(StoredEnvelopes(), 0u);
}

TEST_F(GatewaySessionTest, RegistrationIsRefusedForBadKeysAndCodes) {
  ASSERT_TRUE(store().CreateUser("alice", "Alice").ok());
  ASSERT_TRUE(store().CreateUser("bob", "Bob").ok());
  auto code = store().IssueEnrollmentCode("alice", kHourMs);
  auto bob_code = store().IssueEnrollmentCode("bob", kHourMs);
  ASSERT_TRUE(code.ok() && bob_code.ok());
  auto device = client::Device::Generate("alice", NowMs());
  auto stranger = client::Device::Generate("alice", NowMs());
  ASSERT_TRUE(device.ok() && stranger.ok());
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  Peer& p = **peer;
  auto reg = [](wire::RegisterRequest r) { return RegisterFrame(std::move(r)); };
  auto request = [&](const client::Device& d, const std::string& c) {
    auto r = d.MakeRegisterRequest(c, NowMs());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : wire::RegisterRequest();
  };

  wire::RegisterRequest short_key = request(*device, *code);
  short_key.mutable_identity_key()->resize(31);
  EXPECT_EQ(Outcome(p.Call(reg(short_key))), "enrollment_refused") << "31-byte identity key";

  wire::RegisterRequest bad_sig = request(*device, *code);
  (*bad_sig.mutable_prekey()->mutable_signature())[5] ^= 0x20;
  EXPECT_EQ(Outcome(p.Call(reg(bad_sig))), "enrollment_refused") << "bad prekey signature";

  wire::RegisterRequest foreign_prekey = request(*device, *code);
  *foreign_prekey.mutable_prekey() = stranger->profile().prekey;
  EXPECT_EQ(Outcome(p.Call(reg(foreign_prekey))), "enrollment_refused") << "prekey of another identity";

  EXPECT_EQ(Outcome(p.Call(reg(request(*device, "AAAA-BBBB-CCCC-DDDD")))),
            "enrollment_refused")
      << "wrong code";
  EXPECT_EQ(Outcome(p.Call(reg(request(*device, *bob_code)))), "enrollment_refused")
      << "code issued to another user";
  EXPECT_EQ(store().DevicesOfUsers({"alice"})->size(), 0u);

  // None of that consumed the code.
  auto ok = p.Call(reg(request(*device, *code)));
  ASSERT_TRUE(ok.ok() && ok->has_registered()) << Outcome(ok);
  EXPECT_EQ(ToBytes(ok->registered().device_id()), protocol::DeviceIdFor(device->identity_public()));
  auto root = store().GetSetting(std::string(archive::kOrgRootPublicKeySetting));
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(ToBytes(ok->registered().org_root_key()), *root);
  EXPECT_EQ(*root, root_public_);
  EXPECT_EQ(ok->registered().org(), config_.org);

  EXPECT_EQ(Outcome(p.Call(reg(request(*stranger, *code)))), "enrollment_refused")
      << "reused code";
  auto fresh = store().IssueEnrollmentCode("alice", kHourMs);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(Outcome(p.Call(reg(request(*device, *fresh)))), "enrollment_refused")
      << "identity key registered twice";

  auto devices = store().DevicesOfUsers({"alice"});
  ASSERT_TRUE(devices.ok());
  ASSERT_EQ(devices->size(), 1u);
  EXPECT_EQ((*devices)[0].device_id, protocol::DeviceIdFor(device->identity_public()));
  EXPECT_EQ(WaitForMetric(RejectSeries("enrollment_refused"), 7), 7);
}

// ------------------------------------------------------ device certificates

TEST_F(GatewaySessionTest, RegistrationWithoutACertificateIsRefused) {
  ASSERT_TRUE(store().CreateUser("alice", "Alice").ok());
  auto code = store().IssueEnrollmentCode("alice", kHourMs);
  ASSERT_TRUE(code.ok());
  auto device = client::Device::Generate("alice", NowMs());
  ASSERT_TRUE(device.ok());
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();

  wire::ClientFrame bare = RegisterFrame(*device, *code);
  bare.mutable_register_()->clear_certificate();
  EXPECT_EQ(Outcome((*peer)->Call(bare)), "enrollment_refused");
  EXPECT_EQ(DevicesOf("alice"), 0u);
  EXPECT_EQ(WaitForMetric(RejectSeries("enrollment_refused"), 1), 1);
  EXPECT_EQ(WaitForMetric("holdfast_hsm_operations_total{op=\"countersign\",result=\"ok\"}", 0), 0);

  // The code was not consumed.
  auto ok = (*peer)->Call(RegisterFrame(*device, *code));
  EXPECT_TRUE(ok.ok() && ok->has_registered()) << Outcome(ok);
}

TEST_F(GatewaySessionTest, ACertificateForAnotherUserIdentityOrTimeIsRefused) {
  ASSERT_TRUE(store().CreateUser("alice", "Alice").ok());
  ASSERT_TRUE(store().CreateUser("bob", "Bob").ok());
  auto code = store().IssueEnrollmentCode("alice", kHourMs);
  ASSERT_TRUE(code.ok());
  auto device = client::Device::Generate("alice", NowMs());
  auto other = client::Device::Generate("alice", NowMs());
  auto master = protocol::Ed25519Generate();
  ASSERT_TRUE(device.ok() && other.ok() && master.ok());
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  Peer& p = **peer;
  // The request of `device`, with the certificate replaced.
  auto with_certificate = [&](Result<wire::DeviceCertificate> cert) {
    EXPECT_TRUE(cert.ok()) << cert.status().ToString();
    wire::ClientFrame f = RegisterFrame(*device, *code);
    if (cert.ok()) *f.mutable_register_()->mutable_certificate() = *cert;
    return f;
  };
  const Bytes identity = device->identity_public();

  EXPECT_EQ(Outcome(p.Call(with_certificate(
                protocol::CertifyDevice(master->private_key.view(), "bob", identity, NowMs())))),
            "enrollment_refused")
      << "certificate naming another user";
  EXPECT_EQ(Outcome(p.Call(with_certificate(protocol::CertifyDevice(
                master->private_key.view(), "alice", other->identity_public(), NowMs())))),
            "enrollment_refused")
      << "certificate naming another identity key";
  auto forged = protocol::CertifyDevice(master->private_key.view(), "alice", identity, NowMs());
  ASSERT_TRUE(forged.ok());
  (*forged->mutable_master_signature())[3] ^= 0x10;
  EXPECT_EQ(Outcome(p.Call(with_certificate(*forged))), "enrollment_refused")
      << "master signature that does not verify";
  EXPECT_EQ(WaitForMetric(RejectSeries("enrollment_refused"), 3), 3);

  const int64_t skew_ms = int64_t{config_.gateway.max_clock_skew_seconds} * 1000;
  for (int64_t issued : {NowMs() - skew_ms - 60'000, NowMs() + skew_ms + 60'000}) {
    EXPECT_EQ(Outcome(p.Call(with_certificate(
                  protocol::CertifyDevice(master->private_key.view(), "alice", identity, issued)))),
              "clock_skew")
        << "issued at " << issued;
  }
  EXPECT_EQ(WaitForMetric(RejectSeries("clock_skew"), 2), 2);
  EXPECT_EQ(DevicesOf("alice"), 0u);

  // The code is still good; the org countersignature the client sends is ignored.
  wire::ClientFrame honest = RegisterFrame(*device, *code);
  honest.mutable_register_()->mutable_certificate()->set_org_signature(std::string(64, '\x01'));
  auto ok = p.Call(honest);
  ASSERT_TRUE(ok.ok() && ok->has_registered()) << Outcome(ok);
  EXPECT_TRUE(protocol::VerifyDeviceCertificate(ok->registered().certificate(), root_public_).ok());
}

TEST_F(GatewaySessionTest, ADeviceUnderAnotherMasterKeyIsRefusedAndTheCodeStaysUsable) {
  auto first = Enroll("alice");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto code = store().IssueEnrollmentCode("alice", kHourMs);
  ASSERT_TRUE(code.ok());
  // A fresh install that made a master key of its own.
  auto stray = client::Device::Generate("alice", NowMs());
  ASSERT_TRUE(stray.ok());
  ASSERT_NE(stray->master_public(), first->master_public());
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();

  auto refused = (*peer)->Call(RegisterFrame(*stray, *code));
  EXPECT_EQ(Outcome(refused), "master_key_mismatch");
  if (refused.ok() && refused->has_error()) {
    EXPECT_EQ(refused->error().message(),
              "user alice already has another master key: link this device from an existing one, "
              "or ask for an organisation-assisted restore");
  }
  EXPECT_EQ(DevicesOf("alice"), 1u);
  EXPECT_EQ(WaitForMetric(RejectSeries("master_key_mismatch"), 1), 1);
  // Only the first device was countersigned.
  EXPECT_EQ(WaitForMetric("holdfast_hsm_operations_total{op=\"countersign\",result=\"ok\"}", 1), 1);

  // The transaction rolled back: the same code registers a device that the
  // first one certified.
  auto linked = NewDevice("alice");
  ASSERT_TRUE(linked.ok()) << linked.status().ToString();
  auto ok = (*peer)->Call(RegisterFrame(*linked, *code));
  ASSERT_TRUE(ok.ok() && ok->has_registered()) << Outcome(ok);
  EXPECT_EQ(DevicesOf("alice"), 2u);
  auto certified = protocol::VerifyDeviceCertificate(ok->registered().certificate(), root_public_);
  ASSERT_TRUE(certified.ok()) << certified.status().ToString();
  EXPECT_EQ(certified->master_key, first->master_public());
}

TEST_F(GatewaySessionTest, DeviceCertificatesVerifyUnderTheOrgRootWhereverDevicesAreListed) {
  auto device = client::Device::Generate("alice", NowMs());
  ASSERT_TRUE(device.ok());
  ASSERT_TRUE(store().CreateUser("alice", "Alice").ok());
  auto code = store().IssueEnrollmentCode("alice", kHourMs);
  ASSERT_TRUE(code.ok());
  const wire::ClientFrame request = RegisterFrame(*device, *code);
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  auto answer = (*peer)->Call(request);
  ASSERT_TRUE(answer.ok() && answer->has_registered()) << Outcome(answer);
  const wire::DeviceCertificate& cert = answer->registered().certificate();

  // The client's body and master signature, countersigned by the enrollment
  // key that the stored certificate (from `holdfast-admin init`) vouches for.
  EXPECT_EQ(cert.body(), request.register_().certificate().body());
  EXPECT_EQ(cert.master_signature(), request.register_().certificate().master_signature());
  auto certified = protocol::VerifyDeviceCertificate(cert, root_public_);
  ASSERT_TRUE(certified.ok()) << certified.status().ToString();
  EXPECT_EQ(certified->user, "alice");
  EXPECT_EQ(certified->identity_key, device->identity_public());
  EXPECT_EQ(certified->master_key, device->master_public());
  auto stored_cert = store().GetSetting(std::string(archive::kEnrollmentKeyCertificateSetting));
  ASSERT_TRUE(stored_cert.ok());
  EXPECT_EQ(ToBytes(cert.enrollment_key().SerializeAsString()), *stored_cert);
  EXPECT_TRUE(protocol::EcdsaP256Verify(enrollment_public_,
                                        protocol::DeviceCertificateOrgInput(AsBytes(cert.body())),
                                        AsBytes(cert.org_signature()))
                  .ok());
  EXPECT_FALSE(protocol::VerifyDeviceCertificate(cert, enrollment_public_).ok())
      << "the enrollment key is not a root";
  EXPECT_EQ(WaitForMetric("holdfast_hsm_operations_total{op=\"countersign\",result=\"ok\"}", 1), 1);

  // Stored as returned, and handed to everyone who lists the device.
  auto stored = store().GetDevice(protocol::DeviceIdFor(device->identity_public()));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->certificate, ToBytes(cert.SerializeAsString()));
  ASSERT_TRUE(device->AcceptRegistration(answer->registered(), Url(), "ca.pem").ok());
  auto bob = Enroll("bob");
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  auto alice_peer = Online(*device);
  ASSERT_TRUE(alice_peer.ok()) << alice_peer.status().ToString();
  auto conv = OpenConversation(**alice_peer, {"bob"});
  ASSERT_TRUE(conv.ok()) << conv.status().ToString();
  ASSERT_EQ(conv->devices_size(), 2);
  for (const auto& info : conv->devices()) {
    auto verified = protocol::VerifyDevice(info, root_public_);
    EXPECT_TRUE(verified.ok()) << info.user() << ": " << verified.status().ToString();
  }
}

TEST_F(GatewaySessionTest, TheEnrollmentKeyStaysInItsTokenSensitiveAndSignOnly) {
  // Seen by another PKCS#11 client while the gateway is logged in.
  auto listed = EnrollmentTool({"--list-objects", "--type", "privkey"});
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  const size_t at = listed->find("label:      holdfast-enrollment\n");
  ASSERT_NE(at, std::string::npos) << *listed;
  const std::string block = listed->substr(at);
  EXPECT_NE(block.find("Usage:      sign\n"), std::string::npos) << block;
  EXPECT_NE(block.find("Access:     sensitive, always sensitive, never extractable"), std::string::npos)
      << block;
  // Neither the org root nor an epoch key is in the token the gateway logs in to.
  EXPECT_EQ(listed->find("holdfast-org-root"), std::string::npos) << *listed;
  EXPECT_EQ(listed->find("holdfast-epoch-"), std::string::npos) << *listed;
}

TEST_F(GatewaySessionTest, WithoutTheEnrollmentKeyEnrollmentFailsClosedAndMessagingGoesOn) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto deleted = EnrollmentTool({"--delete-object", "--type", "privkey", "--label", "holdfast-enrollment"});
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();

  ASSERT_TRUE(store().CreateUser("dave", "Dave").ok());
  auto code = store().IssueEnrollmentCode("dave", kHourMs);
  ASSERT_TRUE(code.ok());
  auto dave = client::Device::Generate("dave", NowMs());
  ASSERT_TRUE(dave.ok());
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  EXPECT_EQ(Outcome((*peer)->Call(RegisterFrame(*dave, *code))), "unavailable");
  EXPECT_EQ(WaitForMetric("holdfast_hsm_operations_total{op=\"countersign\",result=\"error\"}", 1), 1);
  EXPECT_EQ(WaitForMetric(RejectSeries("unavailable"), 1), 1);
  EXPECT_EQ(DevicesOf("dave"), 0u);
  EXPECT_EQ(WaitForMetric("holdfast_database_up", 1), 1) << "an HSM failure is not a database failure";

  // Ingest and delivery need no HSM.
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  auto ack = alice_->Call(SubmitFrame(Seal(Bobs())));
  ASSERT_TRUE(ack.ok() && ack->has_submit_ack()) << Outcome(ack);
  auto delivered = (*bob)->NextDeliver(10s);
  ASSERT_TRUE(delivered.ok() && delivered->has_value());
  EXPECT_TRUE(protocol::VerifyDevice((*delivered)->sender(), root_public_).ok());

  // The code was not consumed: once the key is back (here: a new key,
  // which the stored certificate does not vouch for), enrollment is still
  // refused rather than countersigned under an uncertified key.
  auto regenerated = EnrollmentTool({"--keypairgen", "--key-type", "EC:prime256v1", "--label",
                                     "holdfast-enrollment", "--usage-sign"});
  ASSERT_TRUE(regenerated.ok()) << regenerated.status().ToString();
  EXPECT_EQ(Outcome((*peer)->Call(RegisterFrame(*dave, *code))), "unavailable");
  EXPECT_EQ(DevicesOf("dave"), 0u);
}

TEST_F(GatewaySessionTest, TheGatewayDoesNotStartWithoutItsEnrollmentTokenOrCertificate) {
  Config no_token = config_;
  no_token.hsm.enrollment_token_label = "no-such-token";
  auto without_token = Gateway::Create(no_token);
  ASSERT_FALSE(without_token.ok());
  EXPECT_NE(without_token.status().message().find("holdfast-admin hsm init-token"), std::string::npos)
      << without_token.status().ToString();

  Config no_pin = config_;
  no_pin.hsm.enrollment_pin_file = (dir_ / "missing.pin").string();
  auto without_pin = Gateway::Create(no_pin);
  ASSERT_FALSE(without_pin.ok());
  EXPECT_NE(without_pin.status().message().find("missing.pin"), std::string::npos)
      << without_pin.status().ToString();

  ASSERT_TRUE(db_->Execute("DELETE FROM settings WHERE name = 'enrollment_key_certificate'").ok());
  auto without_certificate = Gateway::Create(config_);
  ASSERT_FALSE(without_certificate.ok());
  EXPECT_EQ(without_certificate.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(without_certificate.status().message().find("holdfast-admin init"), std::string::npos)
      << without_certificate.status().ToString();
}

// The attribute policy at start: an enrollment key that could leave its
// token (made outside Holdfast, extractable) keeps the gateway from starting.
TEST_F(GatewaySessionTest, TheGatewayDoesNotStartWithAnExtractableEnrollmentKey) {
  for (const char* type : {"privkey", "pubkey"}) {
    auto deleted = EnrollmentTool({"--delete-object", "--type", type, "--label", "holdfast-enrollment"});
    ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  }
  auto made = EnrollmentTool({"--keypairgen", "--key-type", "EC:prime256v1", "--label", "holdfast-enrollment",
                              "--usage-sign", "--extractable"});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  auto refused = Gateway::Create(config_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("key holdfast-enrollment in token \"" +
                                            config_.hsm.enrollment_token_label +
                                            "\": CKA_EXTRACTABLE is true (must be false)"),
            std::string::npos)
      << refused.status().ToString();
}

TEST_F(GatewaySessionTest, HelloForAnUnknownDeviceIsRefused) {
  auto device = Enroll("alice");
  ASSERT_TRUE(device.ok()) << device.status().ToString();
  auto peer = Connect();
  ASSERT_TRUE(peer.ok());
  wire::ClientFrame hello;
  hello.mutable_hello()->set_device_id(AsString(protocol::RandomBytes(16)));
  EXPECT_EQ(Outcome((*peer)->Call(hello)), "unknown_device");
  // One hello per connection, even after unknown_device.
  *hello.mutable_hello() = device->MakeHello();
  EXPECT_EQ(Outcome((*peer)->Call(hello)), "auth_failed");

  auto other = Connect();
  ASSERT_TRUE(other.ok());
  hello.mutable_hello()->set_device_id(std::string(15, '\x07'));
  EXPECT_EQ(Outcome((*other)->Call(hello)), "unknown_device") << "15-byte device id";

  EXPECT_EQ(WaitForMetric(RejectSeries("unknown_device"), 2), 2);
  EXPECT_EQ(WaitForMetric(RejectSeries("auth_failed"), 1), 1);
}

TEST_F(GatewaySessionTest, AWrongChallengeSignatureFailsAndClosesTheConnection) {
  auto alice = Enroll("alice");
  auto mallory = Enroll("mallory");
  ASSERT_TRUE(alice.ok() && mallory.ok());

  // (signature answering a challenge) for: garbage, and a valid signature
  // of the right transcript by another device's key.
  const std::vector<std::function<Bytes(const wire::Challenge&)>> forgeries = {
      [](const wire::Challenge&) { return Bytes(64, 0x42); },
      [&](const wire::Challenge& c) {
        return protocol::Ed25519Sign(mallory->profile().identity_private.view(),
                                     protocol::AuthTranscript(ToBytes(c.nonce()), alice->device_id()))
            .value();
      },
  };
  for (size_t i = 0; i < forgeries.size(); ++i) {
    auto peer = Connect();
    ASSERT_TRUE(peer.ok());
    Peer& p = **peer;
    wire::ClientFrame hello;
    *hello.mutable_hello() = alice->MakeHello();
    auto challenge = p.Call(hello);
    ASSERT_TRUE(challenge.ok() && challenge->has_challenge()) << Outcome(challenge);
    EXPECT_EQ(challenge->challenge().nonce().size(), 32u);
    wire::ClientFrame auth;
    auth.mutable_authenticate()->set_signature(AsString(forgeries[i](challenge->challenge())));
    EXPECT_EQ(Outcome(p.Call(auth)), "auth_failed") << i;
    EXPECT_TRUE(p.ClosedWithin(10s)) << "connection " << i << " stayed open";
  }
  EXPECT_EQ(WaitForMetric(RejectSeries("auth_failed"), 2), 2);
}

TEST_F(GatewaySessionTest, OnlyOneHelloAndOneAuthenticationPerConnection) {
  auto device = Enroll("alice");
  ASSERT_TRUE(device.ok()) << device.status().ToString();
  auto peer = Connect();
  ASSERT_TRUE(peer.ok());
  Peer& p = **peer;

  wire::ClientFrame early;
  early.mutable_authenticate()->set_signature(std::string(64, '\0'));
  EXPECT_EQ(Outcome(p.Call(early)), "auth_failed") << "authenticate before hello";

  wire::ClientFrame hello;
  *hello.mutable_hello() = device->MakeHello();
  auto challenge = p.Call(hello);
  ASSERT_TRUE(challenge.ok() && challenge->has_challenge()) << Outcome(challenge);
  EXPECT_EQ(Outcome(p.Call(hello)), "auth_failed") << "second hello";

  // The first challenge still stands.
  auto answer = device->AnswerChallenge(challenge->challenge());
  ASSERT_TRUE(answer.ok());
  wire::ClientFrame auth;
  *auth.mutable_authenticate() = *answer;
  auto authenticated = p.Call(auth);
  ASSERT_TRUE(authenticated.ok() && authenticated->has_authenticated()) << Outcome(authenticated);
  EXPECT_EQ(authenticated->authenticated().user(), "alice");
  EXPECT_EQ(authenticated->authenticated().pending(), 0u);
  // The organisation's prekey policy, from the configuration (defaults here).
  EXPECT_EQ(authenticated->authenticated().prekey_rotation_ms(), 7LL * 24 * 3600 * 1000);
  EXPECT_EQ(authenticated->authenticated().prekey_grace_ms(), 35LL * 24 * 3600 * 1000);
  EXPECT_EQ(authenticated->authenticated().queue_ttl_ms(), 30LL * 24 * 3600 * 1000);

  EXPECT_EQ(Outcome(p.Call(hello)), "auth_failed") << "hello after authentication";
  EXPECT_EQ(Outcome(p.Call(auth)), "auth_failed") << "authenticate after authentication";
  EXPECT_EQ(WaitForMetric(RejectSeries("auth_failed"), 4), 4);
}

// ------------------------------------------------------------------ submit

TEST_F(GatewaySessionTest, SubmitRefusesAnEnvelopeThatDoesNotParse) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  wire::Envelope short_signature = Seal(Bobs());
  short_signature.mutable_signature()->resize(63);
  ExpectRefused(short_signature, "bad_envelope", /*names_message=*/false);

  wire::Envelope garbage;
  garbage.set_content("\x0a\x05" "hi");
  garbage.set_signature(std::string(64, '\x01'));
  ExpectRefused(garbage, "bad_envelope", /*names_message=*/false);

  EXPECT_EQ(WaitForMetric(RejectSeries("bad_envelope"), 2), 2);
}

TEST_F(GatewaySessionTest, SubmitRefusesAnEnvelopeFromAnotherSender) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  // Signed by bob's device, which its header names, but sent on alice's session.
  ExpectRefused(Seal(Bobs(), [](protocol::SealRequest& r) { r.sender_device.clear(); }, &bob1()),
                "wrong_sender");
  ExpectRefused(Seal(Bobs(), [](protocol::SealRequest& r) { r.sender_user = "bob"; }), "wrong_sender");
  EXPECT_EQ(WaitForMetric(RejectSeries("wrong_sender"), 2), 2);
}

TEST_F(GatewaySessionTest, SubmitRefusesABadSignature) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  wire::Envelope flipped = Seal(Bobs());
  (*flipped.mutable_signature())[10] ^= 0x01;
  ExpectRefused(flipped, "bad_signature");
  // alice's header, signed by bob's device.
  wire::Envelope foreign = Seal(Bobs());
  auto signature = protocol::Ed25519Sign(
      bob1().profile().identity_private.view(),
      Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(foreign.content())}));
  ASSERT_TRUE(signature.ok());
  foreign.set_signature(AsString(*signature));
  ExpectRefused(foreign, "bad_signature");
  EXPECT_EQ(WaitForMetric(RejectSeries("bad_signature"), 2), 2);
}

TEST_F(GatewaySessionTest, SubmitRefusesAConversationTheSenderIsNotIn) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  auto bob_and_carol = OpenConversation(**bob, {"carol"});
  ASSERT_TRUE(bob_and_carol.ok()) << bob_and_carol.status().ToString();
  ASSERT_NE(bob_and_carol->conversation_id(), conv_.conversation_id());

  ExpectRefused(Seal({RecipientOf(bob1()), RecipientOf(bob2()), RecipientOf(carol())},
                     [&](protocol::SealRequest& r) { r.conversation_id = bob_and_carol->conversation_id(); }),
                "not_member");
  ExpectRefused(Seal(Bobs(), [](protocol::SealRequest& r) { r.conversation_id = "c_ffffffffffffffff"; }),
                "not_member");
  EXPECT_EQ(WaitForMetric(RejectSeries("not_member"), 2), 2);
}

TEST_F(GatewaySessionTest, SubmitRefusesAnEpochThatIsUnknownOrNotCurrent) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  const int64_t now = NowMs();
  archive::EpochRecord past;
  past.epoch_id = epoch_id_ + 1;
  past.certificate = ToBytes(conv_.epoch().SerializeAsString());
  past.public_key = epoch_public_;
  past.not_before_ms = now - 10 * kDayMs;
  past.not_after_ms = now - kDayMs;
  ASSERT_TRUE(store().PutEpoch(past).ok());
  archive::EpochRecord future = past;
  future.epoch_id = epoch_id_ + 2;
  future.not_before_ms = now + kDayMs;
  future.not_after_ms = now + 10 * kDayMs;
  ASSERT_TRUE(store().PutEpoch(future).ok());

  for (uint32_t epoch : {epoch_id_ + 1, epoch_id_ + 2, epoch_id_ + 100}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    ExpectRefused(Seal(Bobs(), [&](protocol::SealRequest& r) { r.epoch_id = epoch; }), "stale_epoch");
  }
  EXPECT_EQ(WaitForMetric(RejectSeries("stale_epoch"), 3), 3);

  auto ok = alice_->Call(SubmitFrame(Seal(Bobs())));
  EXPECT_TRUE(ok.ok() && ok->has_submit_ack()) << Outcome(ok);
  EXPECT_EQ(StoredEnvelopes(), 1u);
}

TEST_F(GatewaySessionTest, SubmitRefusesCapsulesThatDoNotMatchTheConversation) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  {
    SCOPED_TRACE("one of bob's devices missing");
    ExpectRefused(Seal({RecipientOf(bob1())}), "recipients_mismatch");
  }
  {
    SCOPED_TRACE("a device outside the conversation added");
    ExpectRefused(Seal({RecipientOf(bob1()), RecipientOf(bob2()), RecipientOf(carol())}),
                  "recipients_mismatch");
  }
  {
    SCOPED_TRACE("a capsule for the submitting device itself");
    ExpectRefused(Seal({RecipientOf(bob1()), RecipientOf(bob2()), RecipientOf(alice())}),
                  "recipients_mismatch");
  }
  {
    SCOPED_TRACE("a capsule naming the wrong user for a member device");
    ExpectRefused(Seal({RecipientOf(bob1()), RecipientOf(bob2(), "carol")}), "recipients_mismatch");
  }
  EXPECT_EQ(WaitForMetric(RejectSeries("recipients_mismatch"), 4), 4);

  auto ok = alice_->Call(SubmitFrame(Seal(Bobs())));
  EXPECT_TRUE(ok.ok() && ok->has_submit_ack()) << Outcome(ok);
  EXPECT_EQ(StoredEnvelopes(), 1u);
}

// ------------------------------------------------- storage and delivery

TEST_F(GatewaySessionTest, ADuplicateSubmitIsAcknowledgedOnceStoredAndDeliveredOnce) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  const wire::Envelope envelope = Seal(Bobs());

  auto first = alice_->Call(SubmitFrame(envelope));
  ASSERT_TRUE(first.ok() && first->has_submit_ack()) << Outcome(first);
  // The retransmission of a client that lost the answer: a new connection.
  auto again = Online(alice());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  auto second = (*again)->Call(SubmitFrame(envelope));
  ASSERT_TRUE(second.ok() && second->has_submit_ack()) << Outcome(second);

  EXPECT_EQ(first->submit_ack().message_id(), MessageIdOf(envelope));
  EXPECT_EQ(second->submit_ack().message_id(), MessageIdOf(envelope));
  EXPECT_EQ(second->submit_ack().stored_at_ms(), first->submit_ack().stored_at_ms());
  EXPECT_EQ(StoredEnvelopes(), 1u);
  EXPECT_EQ(WaitForMetric("holdfast_messages_duplicate_total", 1), 1);
  EXPECT_EQ(WaitForMetric("holdfast_messages_stored_total", 1), 1);

  auto delivered = (*bob)->NextDeliver(10s);
  ASSERT_TRUE(delivered.ok()) << delivered.status().ToString();
  ASSERT_TRUE(delivered->has_value()) << "bob got nothing";
  auto extra = (*bob)->NextDeliver(1500ms);
  ASSERT_TRUE(extra.ok()) << extra.status().ToString();
  EXPECT_FALSE(extra->has_value()) << "bob got the message twice";
  EXPECT_EQ(Pending(bob1()), 1u);
  EXPECT_EQ(Pending(bob2()), 1u);
}

// The database went away during COMMIT, after the commit: the submit was
// refused, nothing was pushed, and the client sends again. The retry is a
// duplicate, and the recipients online get what is still waiting for them.
TEST_F(GatewaySessionTest, ARetryOfAnEnvelopeCommittedWithoutAnAckIsPushedToOnlineRecipients) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  const wire::Envelope envelope = Seal(Bobs(), {}, nullptr, "committed, answer lost");
  auto parsed = protocol::ParseEnvelope(AsBytes(envelope.SerializeAsString()));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  archive::IngestItem item;
  item.message_id = ToBytes(parsed->header.message_id());
  item.conversation_id = parsed->header.conversation_id();
  item.sender_user = "alice";
  item.sender_device = alice().device_id();
  item.epoch_id = parsed->header.epoch_id();
  item.sent_at_ms = parsed->header.sent_at_ms();
  const std::string bytes = envelope.SerializeAsString();
  item.envelope.assign(bytes.begin(), bytes.end());
  item.recipient_devices = {bob1().device_id(), bob2().device_id()};
  auto stored = store().IngestBatch({item});
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  auto nothing = (*bob)->NextDeliver(300ms);
  ASSERT_TRUE(nothing.ok());
  ASSERT_FALSE(nothing->has_value()) << "stored outside the gateway, yet pushed";

  auto retry = alice_->Call(SubmitFrame(envelope));
  ASSERT_TRUE(retry.ok() && retry->has_submit_ack()) << Outcome(retry);
  EXPECT_EQ(WaitForMetric("holdfast_messages_duplicate_total", 1), 1);
  auto delivered = (*bob)->NextDeliver(10s);
  ASSERT_TRUE(delivered.ok()) << delivered.status().ToString();
  ASSERT_TRUE(delivered->has_value()) << "the waiting delivery was not pushed";
  EXPECT_EQ((*delivered)->envelope().content(), envelope.content());
  EXPECT_EQ((*delivered)->delivery_id(), static_cast<uint64_t>((*stored)[0].deliveries[0].second));
  EXPECT_EQ(StoredEnvelopes(), 1u);
}

TEST_F(GatewaySessionTest, TwoIdenticalSubmitsInFlightAreStoredOnce) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  const wire::Envelope envelope = Seal(Bobs());

  // Both sent before either is answered: they may share one group commit.
  auto id1 = alice_->SendRequest(SubmitFrame(envelope));
  auto id2 = alice_->SendRequest(SubmitFrame(envelope));
  ASSERT_TRUE(id1.ok() && id2.ok());
  auto first = alice_->Await(*id1);
  auto second = alice_->Await(*id2);
  ASSERT_TRUE(first.ok() && first->has_submit_ack()) << Outcome(first);
  ASSERT_TRUE(second.ok() && second->has_submit_ack()) << Outcome(second);
  EXPECT_EQ(second->submit_ack().stored_at_ms(), first->submit_ack().stored_at_ms());
  EXPECT_EQ(StoredEnvelopes(), 1u);
  EXPECT_EQ(WaitForMetric("holdfast_messages_duplicate_total", 1), 1);

  auto delivered = (*bob)->NextDeliver(10s);
  ASSERT_TRUE(delivered.ok()) << delivered.status().ToString();
  ASSERT_TRUE(delivered->has_value()) << "bob got nothing";
  auto extra = (*bob)->NextDeliver(1500ms);
  ASSERT_TRUE(extra.ok()) << extra.status().ToString();
  EXPECT_FALSE(extra->has_value()) << "bob got the message twice";
  EXPECT_EQ(Pending(bob1()), 1u);
}

TEST_F(GatewaySessionTest, AnOnlineRecipientGetsTheExactEnvelopeAndAcknowledges) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  const wire::Envelope envelope = Seal(Bobs(), {}, nullptr, "quarterly numbers");

  auto ack = alice_->Call(SubmitFrame(envelope));
  ASSERT_TRUE(ack.ok() && ack->has_submit_ack()) << Outcome(ack);

  auto delivered = (*bob)->NextDeliver(10s);
  ASSERT_TRUE(delivered.ok()) << delivered.status().ToString();
  ASSERT_TRUE(delivered->has_value()) << "nothing was pushed to bob";
  const wire::Deliver& d = **delivered;
  EXPECT_NE(d.delivery_id(), 0u);
  EXPECT_EQ(d.envelope().content(), envelope.content());
  EXPECT_EQ(d.envelope().signature(), envelope.signature());
  EXPECT_EQ(d.sender().device_id(), AsString(alice().device_id()));
  EXPECT_EQ(d.sender().user(), "alice");
  EXPECT_EQ(d.epoch().body(), conv_.epoch().body());
  EXPECT_EQ(d.archive_notice(), config_.gateway.archive_notice);
  auto opened = devices_[1].OpenDelivery(d, NowMs());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->text, "quarterly numbers");

  EXPECT_EQ(Pending(bob1()), 1u);
  EXPECT_EQ(Pending(bob2()), 1u);
  EXPECT_EQ(Pending(alice()), 0u);

  wire::ClientFrame done;
  done.mutable_delivery_ack()->add_delivery_ids(d.delivery_id());
  ASSERT_TRUE((*bob)->SendRequest(done).ok());
  const auto deadline = Clock::now() + 5s;
  while (Pending(bob1()) != 0 && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(Pending(bob1()), 0u);
  EXPECT_EQ(Pending(bob2()), 1u) << "bob's other device has not acknowledged";
  // A delivery_ack has no answer on success, and the message is not pushed again.
  auto again = (*bob)->NextDeliver(300ms);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->has_value());
  EXPECT_TRUE((*bob)->answers().empty());
}

TEST_F(GatewaySessionTest, AQueuedDeliveryIsPushedAtLoginUntilAcknowledged) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  const wire::Envelope envelope = Seal(Bobs());
  auto ack = alice_->Call(SubmitFrame(envelope));
  ASSERT_TRUE(ack.ok() && ack->has_submit_ack()) << Outcome(ack);

  auto peer = Connect();
  ASSERT_TRUE(peer.ok());
  auto login = Login(**peer, bob2());
  ASSERT_TRUE(login.ok()) << login.status().ToString();
  EXPECT_EQ(login->pending(), 1u);
  auto delivered = (*peer)->NextDeliver(10s);
  ASSERT_TRUE(delivered.ok() && delivered->has_value());
  EXPECT_EQ((*delivered)->envelope().content(), envelope.content());
  EXPECT_EQ((*delivered)->envelope().signature(), envelope.signature());
  wire::ClientFrame done;
  done.mutable_delivery_ack()->add_delivery_ids((*delivered)->delivery_id());
  ASSERT_TRUE((*peer)->SendRequest(done).ok());
  const auto deadline = Clock::now() + 5s;
  while (Pending(bob2()) != 0 && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(Pending(bob2()), 0u);

  auto later = Connect();
  ASSERT_TRUE(later.ok());
  auto relogin = Login(**later, bob2());
  ASSERT_TRUE(relogin.ok()) << relogin.status().ToString();
  EXPECT_EQ(relogin->pending(), 0u);
  auto none = (*later)->NextDeliver(500ms);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(GatewaySessionTest, EverythingAcknowledgedIsStoredWhenStopReturns) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  const wire::Envelope before = Seal(Bobs());
  auto ack = alice_->Call(SubmitFrame(before));
  ASSERT_TRUE(ack.ok() && ack->has_submit_ack()) << Outcome(ack);

  // More submissions in flight while the gateway stops.
  std::vector<wire::Envelope> in_flight;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 20; ++i) {
    in_flight.push_back(Seal(Bobs(), {}, nullptr, "message " + std::to_string(i)));
    auto id = alice_->SendRequest(SubmitFrame(in_flight.back()));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
  }
  gateway_->Stop();

  auto stored = store().EnvelopesOfCustodian("alice", NowMs() - kDayMs, NowMs() + kDayMs);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  std::set<std::string> stored_ids;
  for (const auto& e : *stored) stored_ids.insert(AsString(e.message_id));
  EXPECT_EQ(stored_ids.count(MessageIdOf(before)), 1u) << "acknowledged before Stop, not stored";

  // Whatever answers made it out before the connection went: every ack
  // names a stored envelope.
  (void)alice_->ClosedWithin(1s);
  size_t acked = 0;
  for (const auto& answer : alice_->answers()) {
    if (!answer.has_submit_ack()) continue;
    ++acked;
    EXPECT_EQ(stored_ids.count(answer.submit_ack().message_id()), 1u)
        << "acknowledged (request " << answer.request_id() << ") but not stored";
  }
  EXPECT_LE(acked + 1, stored_ids.size());
  EXPECT_EQ(StoredEnvelopes(), stored_ids.size());
}

// ------------------------------------------------------------------ groups

wire::ClientFrame CreateGroupFrame(const std::string& title, const std::vector<std::string>& members) {
  wire::ClientFrame f;
  f.mutable_create_group()->set_title(title);
  for (const auto& m : members) f.mutable_create_group()->add_members(m);
  return f;
}

wire::ClientFrame ChangeMembersFrame(const std::string& id, const std::vector<std::string>& add,
                                     const std::vector<std::string>& remove) {
  wire::ClientFrame f;
  auto* cm = f.mutable_change_members();
  cm->set_conversation_id(id);
  for (const auto& u : add) cm->add_add(u);
  for (const auto& u : remove) cm->add_remove(u);
  return f;
}

wire::ClientFrame GetConversationFrame(const std::string& id) {
  wire::ClientFrame f;
  f.mutable_get_conversation()->set_conversation_id(id);
  return f;
}

std::vector<std::string> MembersOf(const wire::ConversationInfo& info) {
  return {info.members().begin(), info.members().end()};
}

std::set<std::string> DeviceIdsOf(const wire::ConversationInfo& info) {
  std::set<std::string> out;
  for (const auto& d : info.devices()) out.insert(d.device_id());
  return out;
}

TEST_F(GatewaySessionTest, NewConversationRequestsNeedAuthentication) {
  auto peer = Connect();
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  wire::ClientFrame prekey;
  prekey.mutable_update_prekey();
  wire::ClientFrame report;
  report.mutable_report_delivery()->set_reason("bad_signature");
  for (const wire::ClientFrame& f :
       {CreateGroupFrame("t", {}), ChangeMembersFrame("g_0000000000000000", {"bob"}, {}),
        GetConversationFrame("g_0000000000000000"), prekey, report}) {
    EXPECT_EQ(Outcome((*peer)->Call(f)), "unauthenticated") << f.kind_case();
  }
  EXPECT_EQ(WaitForMetric(RejectSeries("unauthenticated"), 5), 5);
}

TEST_F(GatewaySessionTest, AGroupIsCreatedReadAndChangedByItsMembers) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto created = alice_->Call(CreateGroupFrame("Trading desk", {"bob", "bob"}));
  ASSERT_TRUE(created.ok() && created->has_conversation()) << Outcome(created);
  const wire::ConversationInfo& group = created->conversation();
  const std::string id = group.conversation_id();
  EXPECT_EQ(id.substr(0, 2), "g_");
  EXPECT_NE(id, conv_.conversation_id());
  EXPECT_TRUE(group.group());
  EXPECT_EQ(group.title(), "Trading desk");
  EXPECT_EQ(group.created_by(), "alice");
  EXPECT_EQ(group.membership_version(), 0u);
  EXPECT_EQ(MembersOf(group), (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ(DeviceIdsOf(group), DeviceIdsOf(conv_)) << "every device of every member";
  EXPECT_EQ(group.epoch().body(), conv_.epoch().body());
  EXPECT_EQ(group.archive_notice(), config_.gateway.archive_notice);
  ASSERT_EQ(group.changes_size(), 1);
  EXPECT_EQ(group.changes(0).version(), 0u);
  EXPECT_EQ(group.changes(0).actor(), "alice");
  EXPECT_EQ(std::vector<std::string>(group.changes(0).added().begin(), group.changes(0).added().end()),
            (std::vector<std::string>{"alice", "bob"}));
  EXPECT_GT(group.changes(0).at_ms(), NowMs() - kHourMs);
  // A direct conversation says so.
  EXPECT_FALSE(conv_.group());
  EXPECT_EQ(conv_.membership_version(), 0u);
  EXPECT_EQ(conv_.changes_size(), 0);

  auto bob_peer = Online(bob1());
  auto carol_peer = Online(carol());
  ASSERT_TRUE(bob_peer.ok() && carol_peer.ok());
  Peer& bob = **bob_peer;
  Peer& carol_p = **carol_peer;

  // Members read it; others are not told it exists.
  auto read = bob.Call(GetConversationFrame(id));
  ASSERT_TRUE(read.ok() && read->has_conversation()) << Outcome(read);
  EXPECT_EQ(read->conversation().SerializeAsString(), group.SerializeAsString());
  auto direct = bob.Call(GetConversationFrame(conv_.conversation_id()));
  ASSERT_TRUE(direct.ok() && direct->has_conversation()) << Outcome(direct);
  EXPECT_EQ(MembersOf(direct->conversation()), MembersOf(conv_));
  EXPECT_EQ(Outcome(carol_p.Call(GetConversationFrame(id))), "not_member");
  EXPECT_EQ(Outcome(carol_p.Call(GetConversationFrame("g_0000000000000000"))), "not_member");
  EXPECT_EQ(Outcome(carol_p.Call(ChangeMembersFrame(id, {"carol"}, {}))), "not_member");

  // Any member adds.
  auto added = bob.Call(ChangeMembersFrame(id, {"carol"}, {}));
  ASSERT_TRUE(added.ok() && added->has_conversation()) << Outcome(added);
  const wire::ConversationInfo& three = added->conversation();
  EXPECT_EQ(MembersOf(three), (std::vector<std::string>{"alice", "bob", "carol"}));
  EXPECT_EQ(three.membership_version(), 1u);
  EXPECT_EQ(three.devices_size(), 4);
  EXPECT_TRUE(DeviceIdsOf(three).count(AsString(carol().device_id())));
  ASSERT_EQ(three.changes_size(), 2);
  EXPECT_EQ(three.changes(1).version(), 1u);
  EXPECT_EQ(three.changes(1).actor(), "bob");
  ASSERT_EQ(three.changes(1).added_size(), 1);
  EXPECT_EQ(three.changes(1).added(0), "carol");
  EXPECT_EQ(three.changes(1).removed_size(), 0);
  auto carol_reads = carol_p.Call(GetConversationFrame(id));
  ASSERT_TRUE(carol_reads.ok() && carol_reads->has_conversation()) << Outcome(carol_reads);
  EXPECT_EQ(carol_reads->conversation().membership_version(), 1u);

  // Refusals.
  EXPECT_EQ(Outcome(bob.Call(ChangeMembersFrame(id, {}, {"carol"}))), "permission_denied")
      << "only the creator removes others";
  EXPECT_EQ(Outcome(bob.Call(ChangeMembersFrame(id, {}, {"alice"}))), "permission_denied")
      << "the creator is not removed by others";
  EXPECT_EQ(Outcome(alice_->Call(ChangeMembersFrame(id, {"bob"}, {}))), "invalid_argument")
      << "already a member";
  EXPECT_EQ(Outcome(alice_->Call(ChangeMembersFrame(id, {}, {"mallory"}))), "invalid_argument")
      << "not a member";
  EXPECT_EQ(Outcome(alice_->Call(ChangeMembersFrame(id, {}, {}))), "invalid_argument") << "no change";
  EXPECT_EQ(Outcome(alice_->Call(ChangeMembersFrame(id, {""}, {}))), "invalid_argument") << "empty name";
  EXPECT_EQ(Outcome(alice_->Call(ChangeMembersFrame(id, {"mallory"}, {}))), "not_found") << "no such user";
  EXPECT_EQ(Outcome(alice_->Call(ChangeMembersFrame(conv_.conversation_id(), {"carol"}, {}))),
            "failed_precondition")
      << "a direct conversation";
  EXPECT_EQ(Outcome(alice_->Call(CreateGroupFrame("t", {"mallory"}))), "not_found");
  EXPECT_EQ(Outcome(alice_->Call(CreateGroupFrame(std::string(257, 't'), {"bob"}))), "invalid_argument");
  EXPECT_EQ(Outcome(alice_->Call(CreateGroupFrame("t", {std::string(129, 'b')}))), "invalid_argument");
  auto unchanged = alice_->Call(GetConversationFrame(id));
  ASSERT_TRUE(unchanged.ok() && unchanged->has_conversation()) << Outcome(unchanged);
  EXPECT_EQ(unchanged->conversation().membership_version(), 1u);

  // Anyone leaves; then they are an outsider.
  auto left = carol_p.Call(ChangeMembersFrame(id, {}, {"carol"}));
  ASSERT_TRUE(left.ok() && left->has_conversation()) << Outcome(left);
  EXPECT_EQ(MembersOf(left->conversation()), (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ(left->conversation().membership_version(), 2u);
  EXPECT_EQ(Outcome(carol_p.Call(GetConversationFrame(id))), "not_member");

  EXPECT_EQ(WaitForMetric(RejectSeries("not_member"), 4), 4);
  EXPECT_EQ(WaitForMetric(RejectSeries("permission_denied"), 2), 2);
  EXPECT_EQ(WaitForMetric(RejectSeries("invalid_argument"), 6), 6);
  EXPECT_EQ(WaitForMetric(RejectSeries("failed_precondition"), 1), 1);
}

TEST_F(GatewaySessionTest, ARemovedMembersDevicesAreRefusedFromTheNextMessageOn) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto created = alice_->Call(CreateGroupFrame("desk", {"bob", "carol"}));
  ASSERT_TRUE(created.ok() && created->has_conversation()) << Outcome(created);
  const std::string id = created->conversation().conversation_id();
  auto to_group = [&](protocol::SealRequest& r) { r.conversation_id = id; };
  const std::vector<protocol::Recipient> everyone = {RecipientOf(bob1()), RecipientOf(bob2()),
                                                     RecipientOf(carol())};

  auto first = alice_->Call(SubmitFrame(Seal(everyone, to_group)));
  ASSERT_TRUE(first.ok() && first->has_submit_ack()) << Outcome(first);
  EXPECT_EQ(Pending(carol()), 1u);

  auto removed = alice_->Call(ChangeMembersFrame(id, {}, {"carol"}));
  ASSERT_TRUE(removed.ok() && removed->has_conversation()) << Outcome(removed);
  EXPECT_EQ(removed->conversation().devices_size(), 3);

  // Sealed from the conversation as it was: refused, stored nothing.
  const wire::Envelope stale = Seal(everyone, to_group);
  auto refused = alice_->Call(SubmitFrame(stale));
  EXPECT_EQ(Outcome(refused), "recipients_mismatch");
  if (refused.ok() && refused->has_error()) {
    EXPECT_EQ(refused->error().message_id(), MessageIdOf(stale));
  }
  EXPECT_EQ(StoredEnvelopes(), 1u);

  // Sealed for the members that remain: accepted, and carol gets nothing.
  auto second = alice_->Call(SubmitFrame(Seal(Bobs(), to_group)));
  ASSERT_TRUE(second.ok() && second->has_submit_ack()) << Outcome(second);
  EXPECT_EQ(StoredEnvelopes(), 2u);
  EXPECT_EQ(Pending(carol()), 1u);
  EXPECT_EQ(Pending(bob1()), 2u);

  // carol herself can no longer send to it.
  auto carol_peer = Online(carol());
  ASSERT_TRUE(carol_peer.ok()) << carol_peer.status().ToString();
  const wire::Envelope from_carol = Seal(
      {RecipientOf(alice()), RecipientOf(bob1()), RecipientOf(bob2())},
      [&](protocol::SealRequest& r) {
        r.conversation_id = id;
        r.sender_user = "carol";
        r.sender_device = carol().device_id();
      },
      &carol());
  EXPECT_EQ(Outcome((*carol_peer)->Call(SubmitFrame(from_carol))), "not_member");
  EXPECT_EQ(StoredEnvelopes(), 2u);
  EXPECT_EQ(WaitForMetric(RejectSeries("recipients_mismatch"), 1), 1);
}

// ----------------------------------------------------------------- prekeys

TEST_F(GatewaySessionTest, APrekeyUpdateIsCheckedStoredAndHandedOut) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  const int64_t skew_ms = int64_t{config_.gateway.max_clock_skew_seconds} * 1000;
  auto signed_by = [](const client::Device& d, int64_t created_at) {
    auto p = protocol::SignPrekey(d.profile().identity_private.view(), protocol::RandomBytes(32),
                                  created_at);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : wire::SignedPrekey();
  };
  auto update = [](const wire::SignedPrekey& p) {
    wire::ClientFrame f;
    *f.mutable_update_prekey()->mutable_prekey() = p;
    return f;
  };
  auto stored = [&]() {
    auto d = store().GetDevice(alice().device_id());
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    wire::SignedPrekey p;
    if (d.ok()) {
      EXPECT_TRUE(p.ParseFromArray(d->signed_prekey.data(), static_cast<int>(d->signed_prekey.size())));
    }
    return p.SerializeAsString();
  };
  const std::string original = stored();

  wire::SignedPrekey flipped = signed_by(alice(), NowMs());
  (*flipped.mutable_signature())[7] ^= 0x04;
  EXPECT_EQ(Outcome(alice_->Call(update(flipped))), "bad_prekey") << "signature does not verify";
  EXPECT_EQ(Outcome(alice_->Call(update(signed_by(bob1(), NowMs())))), "bad_prekey")
      << "signed by another device";
  wire::SignedPrekey short_key = signed_by(alice(), NowMs());
  short_key.mutable_public_key()->resize(31);
  EXPECT_EQ(Outcome(alice_->Call(update(short_key))), "bad_prekey") << "31-byte key";
  EXPECT_EQ(Outcome(alice_->Call(update(signed_by(alice(), NowMs() - skew_ms - 60'000)))), "stale_prekey")
      << "older than the allowed skew";
  EXPECT_EQ(Outcome(alice_->Call(update(signed_by(alice(), NowMs() + skew_ms + 60'000)))), "stale_prekey")
      << "from the future";
  EXPECT_EQ(stored(), original);

  const wire::SignedPrekey fresh = signed_by(alice(), NowMs());
  auto ok = alice_->Call(update(fresh));
  ASSERT_TRUE(ok.ok() && ok->has_prekey_updated()) << Outcome(ok);
  EXPECT_EQ(ok->prekey_updated().created_at_ms(), fresh.created_at_ms());
  EXPECT_EQ(stored(), fresh.SerializeAsString());

  // The identical prekey again (a retry after a lost answer) is accepted.
  auto again = alice_->Call(update(fresh));
  ASSERT_TRUE(again.ok() && again->has_prekey_updated()) << Outcome(again);
  EXPECT_EQ(stored(), fresh.SerializeAsString());

  // Not newer than the stored one (both within the skew): refused.
  EXPECT_EQ(Outcome(alice_->Call(update(signed_by(alice(), fresh.created_at_ms())))), "stale_prekey");
  EXPECT_EQ(Outcome(alice_->Call(update(signed_by(alice(), fresh.created_at_ms() - 1000)))), "stale_prekey");
  EXPECT_EQ(stored(), fresh.SerializeAsString());
  EXPECT_EQ(WaitForMetric(RejectSeries("bad_prekey"), 3), 3);
  EXPECT_EQ(WaitForMetric(RejectSeries("stale_prekey"), 4), 4);

  // Everyone who lists the device, or gets a message from it, sees the new prekey.
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  auto listed = (*bob)->Call(GetConversationFrame(conv_.conversation_id()));
  ASSERT_TRUE(listed.ok() && listed->has_conversation()) << Outcome(listed);
  bool found = false;
  for (const auto& d : listed->conversation().devices()) {
    if (d.device_id() != AsString(alice().device_id())) continue;
    found = true;
    EXPECT_EQ(d.prekey().SerializeAsString(), fresh.SerializeAsString());
  }
  EXPECT_TRUE(found);
  auto ack = alice_->Call(SubmitFrame(Seal(Bobs())));
  ASSERT_TRUE(ack.ok() && ack->has_submit_ack()) << Outcome(ack);
  auto delivered = (*bob)->NextDeliver(10s);
  ASSERT_TRUE(delivered.ok() && delivered->has_value());
  EXPECT_EQ((*delivered)->sender().prekey().SerializeAsString(), fresh.SerializeAsString());
}

// -------------------------------------------------------- delivery reports

wire::ClientFrame ReportFrame(uint64_t delivery_id, const std::string& message_id, const std::string& reason,
                              const std::string& detail) {
  wire::ClientFrame f;
  auto* r = f.mutable_report_delivery();
  r->set_delivery_id(delivery_id);
  r->set_message_id(message_id);
  r->set_reason(reason);
  r->set_detail(detail);
  return f;
}

std::string ReportSeries(const std::string& reason) {
  return "holdfast_delivery_reports_total{reason=\"" + reason + "\"}";
}

TEST_F(GatewaySessionTest, ADeliveryReportIsRecordedCountedAndAudited) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  const wire::Envelope envelope = Seal(Bobs());
  auto ack = alice_->Call(SubmitFrame(envelope));
  ASSERT_TRUE(ack.ok() && ack->has_submit_ack()) << Outcome(ack);
  auto delivered = (*bob)->NextDeliver(10s);
  ASSERT_TRUE(delivered.ok() && delivered->has_value());
  const uint64_t delivery = (*delivered)->delivery_id();
  const std::string mid = MessageIdOf(envelope);

  auto first = (*bob)->Call(ReportFrame(delivery, mid, "archive_capsule_mismatch", "capsule differs"));
  ASSERT_TRUE(first.ok() && first->has_report_received()) << Outcome(first);
  EXPECT_GT(first->report_received().report_id(), 0u);
  // An unknown reason counts as "other"; alice names a delivery that is not hers.
  auto second = (*bob)->Call(ReportFrame(delivery, mid, "something_new", ""));
  ASSERT_TRUE(second.ok() && second->has_report_received()) << Outcome(second);
  auto third = alice_->Call(ReportFrame(delivery, mid, "bad_signature", std::string(5000, 'd')));
  ASSERT_TRUE(third.ok() && third->has_report_received()) << Outcome(third);
  EXPECT_EQ(Outcome(alice_->Call(ReportFrame(delivery, "short", "bad_signature", ""))), "invalid_argument");

  auto reports = store().DeliveryReportsSince(0);
  ASSERT_TRUE(reports.ok()) << reports.status().ToString();
  ASSERT_EQ(reports->size(), 3u);
  const auto& a = (*reports)[0];
  EXPECT_EQ(static_cast<uint64_t>(a.report_id), first->report_received().report_id());
  EXPECT_EQ(a.reporter_user, "bob");
  EXPECT_EQ(a.reporter_device, bob1().device_id());
  EXPECT_EQ(a.delivery_id, static_cast<int64_t>(delivery));
  EXPECT_EQ(a.message_id, ToBytes(mid));
  EXPECT_TRUE(a.envelope_id.has_value());
  EXPECT_EQ(a.reason, "archive_capsule_mismatch");
  EXPECT_EQ(a.detail, "capsule differs");
  EXPECT_EQ((*reports)[1].reason, "other");
  EXPECT_EQ((*reports)[1].envelope_id, a.envelope_id);
  EXPECT_EQ((*reports)[2].reporter_user, "alice");
  EXPECT_FALSE((*reports)[2].envelope_id.has_value());
  EXPECT_EQ((*reports)[2].detail.size(), 1024u);

  EXPECT_EQ(WaitForMetric(ReportSeries("archive_capsule_mismatch"), 1), 1);
  EXPECT_EQ(WaitForMetric(ReportSeries("other"), 1), 1);
  EXPECT_EQ(WaitForMetric(ReportSeries("bad_signature"), 1), 1);
  EXPECT_EQ(WaitForMetric(ReportSeries("undecryptable"), 0), 0);
  const std::string metrics = Metrics();
  EXPECT_EQ(metrics.find("something_new"), std::string::npos) << "a client's reason became a label";
  EXPECT_EQ(metrics.find(ToHex(bob1().device_id())), std::string::npos);

  archive::Compliance compliance(*db_);
  auto trail = compliance.AuditTrail();
  ASSERT_TRUE(trail.ok()) << trail.status().ToString();
  size_t audited = 0;
  for (const auto& e : *trail) audited += e.action == "delivery.report" ? 1 : 0;
  EXPECT_EQ(audited, 3u);
}

TEST_F(GatewaySessionTest, HistoryIsPagedNewestFirstAndOnlyForMembers) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  std::vector<wire::Envelope> sent;
  for (const char* text : {"first", "second", "third"}) {
    sent.push_back(Seal(Bobs(), {}, nullptr, text));
    auto ack = alice_->Call(SubmitFrame(sent.back()));
    ASSERT_TRUE(ack.ok() && ack->has_submit_ack()) << Outcome(ack);
  }
  auto history = [](const std::string& conversation, uint32_t limit,
                    const wire::HistoryCursor* before = nullptr) {
    wire::ClientFrame f;
    f.mutable_get_history()->set_conversation_id(conversation);
    f.mutable_get_history()->set_limit(limit);
    if (before) *f.mutable_get_history()->mutable_before() = *before;
    return f;
  };
  auto bob = Online(bob1());
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();

  auto page = (*bob)->Call(history(conv_.conversation_id(), 2));
  ASSERT_TRUE(page.ok() && page->has_history()) << Outcome(page);
  const wire::History& newest = page->history();
  ASSERT_EQ(newest.entries_size(), 2);
  EXPECT_TRUE(newest.more());
  EXPECT_EQ(newest.entries(0).envelope().content(), sent[2].content());
  EXPECT_EQ(newest.entries(1).envelope().content(), sent[1].content());
  EXPECT_EQ(newest.entries(0).sender().device_id(), AsString(alice().device_id()));
  EXPECT_EQ(newest.entries(0).epoch().body(), conv_.epoch().body());
  EXPECT_EQ(newest.archive_notice(), config_.gateway.archive_notice);
  // The entry opens on a device it was sealed to, like a delivery.
  wire::Deliver as_delivered;
  *as_delivered.mutable_envelope() = newest.entries(0).envelope();
  *as_delivered.mutable_sender() = newest.entries(0).sender();
  *as_delivered.mutable_epoch() = newest.entries(0).epoch();
  auto opened = devices_[2].OpenDelivery(as_delivered, NowMs());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->text, "third");

  auto older = (*bob)->Call(history(conv_.conversation_id(), 2, &newest.next()));
  ASSERT_TRUE(older.ok() && older->has_history()) << Outcome(older);
  ASSERT_EQ(older->history().entries_size(), 1);
  EXPECT_FALSE(older->history().more());
  EXPECT_EQ(older->history().entries(0).envelope().content(), sent[0].content());
  // History is not a delivery: the queue is untouched.
  EXPECT_EQ(Pending(bob1()), 3u);

  // The sender sees what it sent.
  auto own = alice_->Call(history(conv_.conversation_id(), 0));
  ASSERT_TRUE(own.ok() && own->has_history()) << Outcome(own);
  EXPECT_EQ(own->history().entries_size(), 3);

  EXPECT_EQ(Outcome((*bob)->Call(history(conv_.conversation_id(), 201))), "invalid_argument");
  auto outsider = Online(carol());
  ASSERT_TRUE(outsider.ok()) << outsider.status().ToString();
  EXPECT_EQ(Outcome((*outsider)->Call(history(conv_.conversation_id(), 10))), "not_member");
  EXPECT_EQ(Outcome((*outsider)->Call(history("c_0123456789abcdef", 10))), "not_member");
  auto anonymous = Connect();
  ASSERT_TRUE(anonymous.ok());
  EXPECT_EQ(Outcome((*anonymous)->Call(history(conv_.conversation_id(), 10))), "unauthenticated");
}

TEST_F(GatewaySessionTest, DeliveryReportsAreRateLimitedPerConnection) {
  ASSERT_NO_FATAL_FAILURE(SetUpChat());
  std::vector<uint64_t> ids;
  for (int i = 0; i < 101; ++i) {
    auto id = alice_->SendRequest(ReportFrame(0, {}, "undecryptable", std::to_string(i)));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
  }
  for (int i = 0; i < 100; ++i) {
    auto answer = alice_->Await(ids[i]);
    ASSERT_TRUE(answer.ok() && answer->has_report_received()) << i << ": " << Outcome(answer);
  }
  EXPECT_EQ(Outcome(alice_->Await(ids[100])), "rate_limited");
  EXPECT_EQ(Outcome(alice_->Call(ReportFrame(0, {}, "undecryptable", "more"))), "rate_limited");
  EXPECT_EQ(store().DeliveryReportsSince(0)->size(), 100u);
  EXPECT_EQ(WaitForMetric(ReportSeries("undecryptable"), 100), 100);
  EXPECT_EQ(WaitForMetric(RejectSeries("rate_limited"), 2), 2);

  // The limit is per connection: the same device reports again on a new one,
  // and the connection it hit the limit on still works otherwise.
  auto again = Online(alice());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  auto ok = (*again)->Call(ReportFrame(0, {}, "undecryptable", "after reconnecting"));
  EXPECT_TRUE(ok.ok() && ok->has_report_received()) << Outcome(ok);
  auto submitted = alice_->Call(SubmitFrame(Seal(Bobs())));
  EXPECT_TRUE(submitted.ok() && submitted->has_submit_ack()) << Outcome(submitted);
}

}  // namespace
}  // namespace holdfast::gateway
