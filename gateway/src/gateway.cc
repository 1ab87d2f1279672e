#include "holdfast/gateway/gateway.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "admin_plane.h"
#include "db_pool.h"
#include "enrollment.h"
#include "holdfast/archive/database.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "holdfast/policy/policy.h"
#include "holdfast/protocol/identity.h"
#include "hsm_access.h"
#include "hub.h"
#include "ingester.h"
#include "metrics.h"
#include "outbox_reader.h"
#include "session.h"

namespace holdfast::gateway {
namespace {

namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

// Outbox rows older than this are deleted (each node's newest excepted):
// they only remind other nodes to push; devices read the deliveries table.
constexpr int64_t kOutboxRetentionMs = 10 * 60 * 1000;

// Takes the node id's advisory lock on `conn`: false if another gateway
// holds it. Taking it again on the session that holds it succeeds, so the
// maintenance thread repeats this to keep the lock across a reconnection.
Status LockNode(archive::Connection& conn, const std::string& node_id) {
  archive::Store store(conn);
  HF_ASSIGN_OR_RETURN(bool locked, store.TryLockNode(node_id));
  if (!locked) return Status::FailedPrecondition("node id " + node_id + " is in use by another gateway");
  return Status::Ok();
}

Status WritePortsFile(const std::string& path, uint16_t client, uint16_t admin) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::Unavailable("cannot write " + tmp);
    out << "{\"client\": " << client << ", \"admin\": " << admin << "}\n";
    if (!out) return Status::Unavailable("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::Unavailable("cannot rename " + tmp);
  return Status::Ok();
}

// The stored enrollment key certificate must verify under the org root,
// be valid at now_ms and certify the key in the enrollment token.
Status CheckEnrollmentCertificate(archive::Store& store, ByteView org_root, ByteView enrollment_public,
                                  int64_t now_ms) {
  constexpr std::string_view kRunInit = "; run `holdfast-admin init`";
  auto stored = store.GetSetting(std::string(archive::kEnrollmentKeyCertificateSetting));
  if (!stored.ok()) {
    if (stored.status().code() != Code::kNotFound) return stored.status();
    return Status::FailedPrecondition("no enrollment key certificate recorded" + std::string(kRunInit));
  }
  protocol::wire::EnrollmentKeyCertificate cert;
  if (!cert.ParseFromArray(stored->data(), static_cast<int>(stored->size()))) {
    return Status::FailedPrecondition("the stored enrollment key certificate does not parse" +
                                      std::string(kRunInit));
  }
  auto body = protocol::VerifyEnrollmentKeyCertificate(cert, org_root, now_ms);
  if (!body.ok()) return Status::FailedPrecondition(body.status().message() + std::string(kRunInit));
  if (body->public_key() != AsString(enrollment_public)) {
    return Status::FailedPrecondition(
        "the enrollment key certificate is for another key than the enrollment token holds" +
        std::string(kRunInit));
  }
  return Status::Ok();
}

class GatewayImpl final : public Gateway {
 public:
  GatewayImpl(Config config, archive::Connection node_lock, Bytes org_root,
              std::unique_ptr<EnrollmentSigner> enrollment, std::unique_ptr<Directory> directory,
              const std::string& policy_version)
      : config_(std::move(config)),
        node_lock_(std::move(node_lock)),
        tls_(ssl::context::tls_server),
        db_(config_.database.conninfo, config_.database.workers),
        ingester_(config_.database.conninfo, config_.gateway.node_id, config_.database.ingest_batch_max,
                  config_.database.ingest_queue_max, metrics_, [this] { net::post(io_, [this] { ResumePaused(); }); }),
        hsm_(config_),
        enrollment_hsm_(config_, /*enrollment=*/true),
        enrollment_(std::move(enrollment)),
        directory_(std::move(directory)),
        hub_{config_,
             io_,
             metrics_,
             db_,
             ingester_,
             std::move(org_root),
             *enrollment_,
             directory_.get(),
             FailureLimiter(config_.gateway.enrollment_failures_per_user),
             FailureLimiter(config_.gateway.enrollment_failures_per_ip),
             {},
             {},
             {},
             {}},
        io_(1),
        outbox_(hub_),
        acceptor_(io_) {
    metrics_.SetPolicyVersion(policy_version);
  }

  ~GatewayImpl() override { Stop(); }

  Status LoadTls() {
    boost::system::error_code ec;
    tls_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                         ssl::context::single_dh_use,
                     ec);
    if (!ec) tls_.use_certificate_chain_file(config_.gateway.tls_cert, ec);
    if (ec) return Status::InvalidArgument("TLS certificate " + config_.gateway.tls_cert + ": " + ec.message());
    tls_.use_private_key_file(config_.gateway.tls_key, ssl::context::pem, ec);
    if (ec) return Status::InvalidArgument("TLS key " + config_.gateway.tls_key + ": " + ec.message());
    SSL_CTX* ctx = tls_.native_handle();
    // TLS 1.2 suites are forward-secret AEAD only; TLS 1.3 keeps OpenSSL's
    // defaults (AES-GCM, ChaCha20-Poly1305).
    SSL_CTX_set_cipher_list(ctx,
                            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
                            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
                            "ECDHE-RSA-AES128-GCM-SHA256");
    // An idle connection gives its 2 x 17 KiB OpenSSL record buffers back.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    // Resumption by stateless tickets only (TLS 1.2 and 1.3), under a key
    // the process draws at start: a reconnecting client skips the
    // certificate signature and its verification, and no server-side cache
    // grows with the number of clients.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_timeout(ctx, 2 * 3600);
    return Status::Ok();
  }

  Status Start() override {
    boost::system::error_code ec;
    const auto address = net::ip::make_address(config_.gateway.listen.host, ec);
    if (ec) return Status::InvalidArgument("gateway.listen host: " + ec.message());
    const tcp::endpoint ep(address, config_.gateway.listen.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable("cannot listen on " + config_.gateway.listen.host + ":" +
                                 std::to_string(config_.gateway.listen.port) + ": " + ec.message());
    }
    client_port_ = acceptor_.local_endpoint().port();

    HF_ASSIGN_OR_RETURN(admin_, AdminPlane::Start(config_, metrics_, hsm_, enrollment_hsm_));
    metrics_.hsm_up->Set(hsm_.Check().ok() ? 1 : 0);
    metrics_.hsm_enrollment_up->Set(enrollment_hsm_.Check().ok() ? 1 : 0);
    metrics_.database_up->Set(1);

    HF_RETURN_IF_ERROR(outbox_.Start());
    Accept();
    io_thread_ = std::thread([this] {
      auto guard = net::make_work_guard(io_);
      io_.run();
    });
    maintenance_ = std::thread([this] { Maintain(); });
    if (!config_.ports_file.empty()) {
      HF_RETURN_IF_ERROR(WritePortsFile(config_.ports_file, client_port_, admin_->port()));
    }
    return Status::Ok();
  }

  void Stop() override {
    if (stopped_) return;
    stopped_ = true;
    {
      std::lock_guard lock(maintenance_mu_);
      maintenance_stop_ = true;
    }
    maintenance_cv_.notify_all();
    if (maintenance_.joinable()) maintenance_.join();
    outbox_.Stop();
    // Stop accepting, let the ingest queue drain so every envelope already
    // accepted is committed and acknowledged (or refused), then close the
    // sessions and stop.
    RunOnIo([this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    ingester_.Stop();
    db_.Stop();
    // Sign-ins under way answer (through io_, still running) before it stops.
    if (directory_) directory_->Stop();
    RunOnIo([this] {
      // Close() unregisters from hub_.online, so collect first.
      std::vector<std::shared_ptr<Session>> open;
      for (auto& [device, weak] : hub_.online) {
        if (auto s = weak.lock()) open.push_back(std::move(s));
      }
      for (auto& s : open) s->Close();
    });
    // Let queued acknowledgements and close frames go out, briefly.
    for (int i = 0; i < 50 && metrics_.connections_active->Value() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
    hub_.online.clear();
    if (admin_) admin_->Stop();
  }

  uint16_t client_port() const override { return client_port_; }
  uint16_t admin_port() const override { return admin_ ? admin_->port() : 0; }

 private:
  // Every 30 s: probe the HSM, publish how long the newest archive epoch
  // has left (rotation itself is a key ceremony: `holdfast-admin epoch
  // rotate-if-due`), expire deliveries past the queue TTL and publish the
  // queue's depth. Its own connection and thread, so a slow HSM never
  // stalls clients.
  void Maintain() {
    std::optional<archive::Connection> conn;
    std::unique_lock lock(maintenance_mu_);
    while (!maintenance_stop_) {
      lock.unlock();
      if (Status s = MaintainOnce(conn); !s.ok()) {
        metrics_.maintenance_failures->Increment();
        std::fprintf(stderr, "holdfast-gateway: maintenance: %s\n", s.ToString().c_str());
      }
      lock.lock();
      maintenance_cv_.wait_for(lock, std::chrono::seconds(30), [this] { return maintenance_stop_; });
    }
  }

  Status MaintainOnce(std::optional<archive::Connection>& conn) {
    const Status hsm = hsm_.Check(std::chrono::seconds(0));
    metrics_.hsm_up->Set(hsm.ok() ? 1 : 0);
    metrics_.hsm_enrollment_up->Set(enrollment_hsm_.Check(std::chrono::seconds(0)).ok() ? 1 : 0);
    HF_ASSIGN_OR_RETURN(archive::Connection * c, EnsureConnection(conn, config_.database.conninfo));
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    archive::Store store(*c);
    HF_ASSIGN_OR_RETURN(auto epochs, store.ListEpochs());
    if (!epochs.empty()) {
      metrics_.epoch_remaining_seconds->Set(static_cast<double>(epochs.back().not_after_ms - now) / 1000.0);
    }
    HF_RETURN_IF_ERROR(LockNode(node_lock_, config_.gateway.node_id));
    HF_RETURN_IF_ERROR(store.PruneOutbox(kOutboxRetentionMs).status().WithContext("outbox pruning"));
    // Short statements, so acks and ingest never wait long on their rows;
    // a backlog beyond kMaxExpiredPerRun is left to the next run.
    constexpr int kExpiryBatch = 1000;
    constexpr uint64_t kMaxExpiredPerRun = 100 * kExpiryBatch;
    const int64_t ttl_ms = int64_t{config_.delivery.queue_ttl_days} * 24 * 3600 * 1000;
    for (uint64_t expired_total = 0; expired_total < kMaxExpiredPerRun;) {
      HF_ASSIGN_OR_RETURN(uint64_t expired, store.ExpireDeliveries(ttl_ms, kExpiryBatch));
      metrics_.deliveries_expired->Increment(static_cast<double>(expired));
      expired_total += expired;
      if (expired < static_cast<uint64_t>(kExpiryBatch)) break;
    }
    HF_ASSIGN_OR_RETURN(uint64_t queued, store.CountQueuedDeliveries(ttl_ms));
    metrics_.delivery_queue_depth->Set(static_cast<double>(queued));
    if (!hsm.ok()) return hsm.WithContext("HSM");
    return Status::Ok();
  }

  // Runs `fn` on the I/O thread and waits for it; runs it inline if the
  // I/O thread was never started.
  void RunOnIo(std::function<void()> fn) {
    if (!io_thread_.joinable()) return fn();
    std::promise<void> done;
    net::post(io_, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

  // [io] The ingest backlog ended: every session that paused reads again.
  void ResumePaused() {
    auto paused = std::move(hub_.paused);
    hub_.paused.clear();
    for (auto& weak : paused) {
      if (auto s = weak.lock()) s->Resume();
    }
  }

  void Accept() {
    acceptor_.async_accept(io_, [this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted) return;
      } else {
        socket.set_option(tcp::no_delay(true), ec);
        Session::Create(std::move(socket), tls_, hub_)->Start();
      }
      Accept();
    });
  }

  // Order matters: sessions still queued in io_ when it is destroyed refer
  // to hub_ and metrics_, so io_ is declared after them.
  Metrics metrics_;
  Config config_;
  archive::Connection node_lock_;  // holds the node id's lock; maintenance thread only
  ssl::context tls_;
  DbPool db_;
  Ingester ingester_;
  HsmProbe hsm_;             // archive token
  HsmProbe enrollment_hsm_;  // enrollment token
  std::unique_ptr<EnrollmentSigner> enrollment_;
  std::unique_ptr<Directory> directory_;
  Hub hub_;
  net::io_context io_;
  OutboxReader outbox_;
  tcp::acceptor acceptor_;
  std::unique_ptr<AdminPlane> admin_;
  std::thread io_thread_;
  std::thread maintenance_;
  std::mutex maintenance_mu_;
  std::condition_variable maintenance_cv_;
  bool maintenance_stop_ = false;
  uint16_t client_port_ = 0;
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Gateway>> Gateway::Create(const Config& given) {
  Config config = given;
  if (config.gateway.node_id.empty()) config.gateway.node_id = DefaultNodeId(config.gateway.listen.port);
  if (!ValidNodeId(config.gateway.node_id)) {
    return Status::InvalidArgument("gateway.node_id must be 1 to 64 of A-Z a-z 0-9 . _ -");
  }
  HF_ASSIGN_OR_RETURN(auto conn, archive::Connection::Open(config.database.conninfo));
  HF_RETURN_IF_ERROR(archive::Migrate(conn).WithContext("database migration"));
  archive::Store store(conn);
  auto root = store.GetSetting(std::string(archive::kOrgRootPublicKeySetting));
  if (!root.ok()) {
    if (root.status().code() == Code::kNotFound) {
      return Status::FailedPrecondition(
          "no org root key recorded; run `holdfast-admin init` to create the keys first");
    }
    return root.status();
  }
  // Enrollment needs the enrollment token and the org root's certificate
  // of its key; without them the gateway does not start. Once started, a
  // token that fails refuses enrollments only (unavailable).
  auto enrollment = EnrollmentSigner::Open(config);
  if (!enrollment.ok()) {
    return enrollment.status().WithContext(
        "enrollment token \"" + config.hsm.enrollment_token_label +
        "\" (create it with `holdfast-admin hsm init-token` and its key with `holdfast-admin init`)");
  }
  HF_RETURN_IF_ERROR(CheckEnrollmentCertificate(store, *root, (*enrollment)->public_key(), NowMs()));
  // The policy is checked at start so that a broken file fails fast here,
  // not at the first disclosure.
  auto policy = policy::Policy::Load(config.policy_file);
  if (!policy.ok()) return policy.status().WithContext("policy file");
  // Held for the process's lifetime on a connection of its own. A process
  // that just stopped under the same id may still hold it for a moment:
  // its backend ends shortly after its connection closes.
  HF_ASSIGN_OR_RETURN(auto node_lock, archive::Connection::Open(config.database.conninfo));
  HF_RETURN_IF_ERROR(node_lock.SetApplicationName("holdfast-node-" + config.gateway.node_id));
  Status locked = LockNode(node_lock, config.gateway.node_id);
  for (int i = 0; i < 50 && locked.code() == Code::kFailedPrecondition; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    locked = LockNode(node_lock, config.gateway.node_id);
  }
  HF_RETURN_IF_ERROR(locked);
  std::unique_ptr<Directory> directory;
  if (config.directory.enabled()) {
    HF_ASSIGN_OR_RETURN(directory, Directory::Create(config.directory));
  }
  auto gw = std::make_unique<GatewayImpl>(config, std::move(node_lock), std::move(root).value(),
                                          std::move(enrollment).value(), std::move(directory),
                                          policy->version());
  HF_RETURN_IF_ERROR(gw->LoadTls());
  return std::unique_ptr<Gateway>(std::move(gw));
}

}  // namespace holdfast::gateway
