#include "session.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include "delivery.h"
#include "holdfast/base/time.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
namespace wire = protocol::wire;


std::string Key(ByteView b) { return AsString(b); }

// Maps a status to the stable reason code sent to clients and used as the
// reject metric label.
std::string ReasonFor(const Status& s) {
  switch (s.code()) {
    case Code::kUnavailable: return "unavailable";
    case Code::kPermissionDenied: return "permission_denied";
    case Code::kNotFound: return "not_found";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kFailedPrecondition: return "failed_precondition";
    default: return "internal";
  }
}

constexpr size_t kMaxMemberNameBytes = 128;
// Delivery reports accepted on one connection: each is a row and an audit
// event, so one connection cannot flood the audit trail.
constexpr int kMaxReportsPerConnection = 100;

// The error message for the first member name that is not 1 to 128 bytes.
std::optional<std::string> BadMemberName(const google::protobuf::RepeatedPtrField<std::string>& names) {
  for (const auto& m : names) {
    if (m.empty() || m.size() > kMaxMemberNameBytes) {
      return "member names must be 1.." + std::to_string(kMaxMemberNameBytes) + " characters";
    }
  }
  return std::nullopt;
}

bool IsMember(const archive::ConversationRecord& conv, const std::string& user) {
  return std::find(conv.members.begin(), conv.members.end(), user) != conv.members.end();
}

// A conversation answer, or a refusal whose reason code (not_member) no
// Status code maps to.
struct ConversationAnswer {
  std::string reject_reason;
  std::string reject_message;
  wire::ConversationInfo info;
};

ConversationAnswer NotMember(std::string message) {
  ConversationAnswer a;
  a.reject_reason = "not_member";
  a.reject_message = std::move(message);
  return a;
}

// What every conversation request answers: the current members and all
// their devices, the current epoch certificate, the archive notice and, for
// a group, its title, creator, version and recent membership changes. Runs
// on a database worker.
Result<ConversationAnswer> Describe(archive::Store& store, const archive::ConversationRecord& conv,
                                    const std::string& notice) {
  HF_ASSIGN_OR_RETURN(auto devices, store.DevicesOfUsers(conv.members));
  HF_ASSIGN_OR_RETURN(auto epoch, store.CurrentEpoch(NowMs()));
  ConversationAnswer out;
  wire::ConversationInfo& info = out.info;
  info.set_conversation_id(conv.conversation_id);
  for (const auto& m : conv.members) info.add_members(m);
  for (const auto& d : devices) {
    HF_ASSIGN_OR_RETURN(*info.add_devices(), ToDeviceInfo(d));
  }
  HF_ASSIGN_OR_RETURN(*info.mutable_epoch(), ToEpochCert(epoch));
  info.set_archive_notice(notice);
  if (conv.group) {
    info.set_group(true);
    info.set_title(conv.title);
    info.set_created_by(conv.created_by);
    info.set_membership_version(static_cast<uint64_t>(conv.membership_version));
    HF_ASSIGN_OR_RETURN(auto changes, store.RecentMembershipChanges(conv.conversation_id));
    for (const auto& c : changes) {
      wire::MembershipChange* change = info.add_changes();
      change->set_version(static_cast<uint64_t>(c.version));
      change->set_actor(c.actor);
      for (const auto& u : c.added) change->add_added(u);
      for (const auto& u : c.removed) change->add_removed(u);
      change->set_at_ms(c.at_ms);
    }
  }
  return out;
}

// The recipients of a re-sent message (9.11): every capsule must name the
// target device, under its user, of an open resend request of the sender
// device for the original message, in the original's conversation.
struct ResendRecipients {
  std::string refusal;  // recipients_mismatch detail, or empty
  std::vector<Bytes> devices;
};

Result<ResendRecipients> CheckResendRecipients(archive::Store& store,
                                               const protocol::ParsedEnvelope& parsed,
                                               ByteView sender_device) {
  const auto& h = parsed.header;
  HF_ASSIGN_OR_RETURN(auto open,
                      store.OpenResendRequestsFor(sender_device, AsBytes(h.resend_of())));
  ResendRecipients out;
  if (open.empty()) {
    out.refusal = "no open resend request of this device for the message in resend_of";
    return out;
  }
  if (open.front().conversation_id != h.conversation_id()) {
    out.refusal = "resend_of names a message of another conversation";
    return out;
  }
  std::map<std::string, std::string> targets;  // device -> user
  for (const auto& q : open) targets[Key(q.target.device_id)] = q.target.user;
  size_t extra = 0;
  for (const auto& c : parsed.content.devices()) {
    auto it = targets.find(c.device_id());
    if (it == targets.end() || it->second != c.user()) {
      ++extra;
      continue;
    }
    out.devices.emplace_back(c.device_id().begin(), c.device_id().end());
  }
  if (extra) {
    out.refusal = std::to_string(extra) +
                  " capsule(s) for devices without an open resend request for this message";
    out.devices.clear();
  }
  return out;
}

// Gives each entry of `history` (built from `page`, in order) the capsule a
// history restore sealed to `device` for its envelope, if there is one
// (docs/protocol.md 9.10).
Status AddRestoredCapsules(archive::Store& store, const std::string& user, const Bytes& device,
                           const std::vector<archive::StoredEnvelope>& page,
                           wire::History& history) {
  std::vector<int64_t> ids;
  for (int i = 0; i < history.entries_size(); ++i) ids.push_back(page[i].envelope_id);
  HF_ASSIGN_OR_RETURN(auto keys, store.RestoredKeys(device, ids));
  if (keys.empty()) return Status::Ok();
  std::map<int64_t, const archive::RestoredKeyRecord*> by_envelope;
  for (const auto& k : keys) by_envelope.emplace(k.envelope_id, &k);
  for (int i = 0; i < history.entries_size(); ++i) {
    auto it = by_envelope.find(page[i].envelope_id);
    if (it == by_envelope.end()) continue;
    const Bytes& capsule = it->second->capsule;  // enc (32) || ct (48)
    wire::HistoryEntry& entry = *history.mutable_entries(i);
    wire::DeviceCapsule& restored = *entry.mutable_restored_capsule();
    restored.set_user(user);
    restored.set_device_id(AsString(device));
    restored.set_enc(AsString(ByteView(capsule).subspan(0, 32)));
    restored.set_ct(AsString(ByteView(capsule).subspan(32)));
    entry.set_restore_request_id(static_cast<uint64_t>(it->second->request_id));
  }
  return Status::Ok();
}

class SessionImpl final : public Session {
 public:
  SessionImpl(tcp::socket socket, ssl::context& tls, Hub& hub)
      : ws_(std::move(socket), tls), hub_(hub), auth_timer_(hub.io) {}

  ~SessionImpl() override {
    if (registered_online_) hub_.online_devices.Remove(Key(device_id_));
    hub_.metrics.connections_active->Decrement();
    if (authenticated_) hub_.metrics.sessions_authenticated->Decrement();
  }

  void Start() override {
    hub_.metrics.connections_total->Increment();
    hub_.metrics.connections_active->Increment();
    beast::error_code ec;
    const auto peer = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
    if (!ec) peer_address_ = peer.address().to_string();
    net::dispatch(ws_.get_executor(), [self = Self()] { self->Handshake(); });
  }

  void Push(std::shared_ptr<const std::string> frame) override { Enqueue(std::move(frame)); }

  void Resume() override {
    paused_ = false;
    MaybeRead();
  }

  void ResendRequestsCreated() override {
    if (resend_ready_ && !closing_) FetchResendRequests();
  }

  void RestoreNoticesCreated() override {
    if (resend_ready_ && !closing_) FetchRestoreNotices();
  }

  // Closes once every queued frame is written: an acknowledgement or a
  // refusal queued before Close still reaches the client.
  void Close() override {
    if (closing_) return;
    closing_ = true;
    Unregister();
    if (!writing_) CloseNow();
  }

 private:
  std::shared_ptr<SessionImpl> Self() {
    return std::static_pointer_cast<SessionImpl>(shared_from_this());
  }

  // ------------------------------------------------------------ transport

  void Handshake() {
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(30));
    ws_.next_layer().async_handshake(ssl::stream_base::server, [self = Self()](beast::error_code ec) {
      if (ec) {
        self->hub_.metrics.tls_handshake_failures->Increment();
        return;
      }
      if (SSL_session_reused(self->ws_.next_layer().native_handle())) {
        self->hub_.metrics.tls_handshakes_resumed->Increment();
      } else {
        self->hub_.metrics.tls_handshakes_full->Increment();
      }
      self->ReadUpgrade();
    });
  }

  void ReadUpgrade() {
    http::async_read(ws_.next_layer(), buffer_, upgrade_,
                     [self = Self()](beast::error_code ec, size_t) {
                       if (ec) return;
                       self->Accept();
                     });
  }

  void Accept() {
    if (!websocket::is_upgrade(upgrade_) || upgrade_.target() != "/v1") {
      auto res = std::make_shared<http::response<http::string_body>>(http::status::not_found,
                                                                     upgrade_.version());
      res->set(http::field::content_type, "text/plain");
      res->body() = "Holdfast client endpoint is wss://<host>/v1\n";
      res->prepare_payload();
      http::async_write(ws_.next_layer(), *res,
                        [self = Self(), res](beast::error_code, size_t) {
                          beast::get_lowest_layer(self->ws_).close();
                        });
      return;
    }
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(http::field::server, "holdfast-gateway");
    }));
    // The frame limit is the read buffer's size limit, not Beast's
    // read_message_max: Beast reports message_too_big only if its own TLS
    // shutdown succeeds, which it rarely does while the rest of the frame is
    // still arriving, so the refusal would go uncounted.
    ws_.read_message_max(0);
    buffer_.max_size(hub_.config.gateway.max_frame_bytes);
    ws_.async_accept(upgrade_, [self = Self()](beast::error_code ec) {
      if (ec) return;
      self->buffer_.clear();
      self->buffer_.shrink_to_fit();
      self->upgrade_ = {};
      self->StartAuthDeadline();
      self->Read();
    });
  }

  void Read() {
    reading_ = true;
    ws_.async_read(buffer_, [self = Self()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void CloseNow() {
    auth_timer_.cancel();
    ws_.async_close(websocket::close_code::normal, [self = Self()](beast::error_code) {});
  }

  // Reads the next frame unless the client has too much work in flight or
  // too much unread output: then reading pauses and TCP pushes back, so a
  // client cannot grow the gateway's memory or monopolise the database.
  // While the ingester is backlogged no session reads: what was read is
  // still stored and acknowledged, and clients wait in TCP rather than get
  // refusals.
  void MaybeRead() {
    if (closing_ || reading_ || paused_) return;
    if (inflight_ >= kMaxInflight || outbox_bytes_ >= kMaxOutboxBytes) return;
    if (hub_.ingester.Backlogged()) {
      paused_ = true;
      hub_.paused.push_back(Self());
      hub_.metrics.ingest_backpressure_pauses->Increment();
      // The backlog may have ended before this session was listed.
      if (!hub_.ingester.Backlogged()) Resume();
      return;
    }
    Read();
  }

  void StartAuthDeadline() {
    auth_timer_.expires_after(kAuthDeadline);
    auth_timer_.async_wait([self = Self()](beast::error_code ec) {
      if (ec || self->authenticated_ || self->enrolled_ || self->closing_) return;
      self->hub_.metrics.reject("auth_timeout").Increment();
      self->Close();
    });
  }

  void OnRead(beast::error_code ec) {
    reading_ = false;
    if (ec) {
      closing_ = true;
      auth_timer_.cancel();
      Unregister();
      if (ec == websocket::error::buffer_overflow || ec == websocket::error::message_too_big) {
        hub_.metrics.reject("frame_too_large").Increment();
        // Mid-frame: no orderly close is possible, so drop the connection.
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().close(ignored);
      }
      return;
    }
    hub_.metrics.frames_received->Increment();
    wire::ClientFrame frame;
    const auto data = buffer_.data();
    const bool parsed = ws_.got_binary() &&
                        frame.ParseFromArray(data.data(), static_cast<int>(data.size()));
    const bool has_password = parsed && frame.has_register_() && !frame.register_().password().empty();
    // A directory password leaves only in the copy the sign-in job owns.
    if (has_password) SecureWipe(data.data(), data.size());
    buffer_.consume(buffer_.size());
    // An idle session keeps no large frame's worth of buffer.
    if (buffer_.capacity() > kKeepBufferBytes) buffer_.shrink_to_fit();
    if (!parsed) {
      Reject(0, "malformed_frame", "frame is not a binary holdfast.wire.v1.ClientFrame", {});
      if (++malformed_ >= 3) return Close();
    } else {
      Dispatch(frame);
      if (has_password) {
        std::string& password = *frame.mutable_register_()->mutable_password();
        SecureWipe(password.data(), password.size());
      }
    }
    MaybeRead();
  }

  void Enqueue(std::shared_ptr<const std::string> frame) {
    if (closing_ && !writing_ && outbox_.empty()) return;  // already closed or closing
    outbox_bytes_ += frame->size();
    outbox_.push_back(std::move(frame));
    if (!writing_) Write();
  }

  void Write() {
    writing_ = true;
    ws_.binary(true);
    ws_.async_write(net::buffer(*outbox_.front()), [self = Self()](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (ec) {
        self->outbox_.clear();
        self->outbox_bytes_ = 0;
        self->closing_ = true;
        self->Unregister();
        return;
      }
      self->outbox_bytes_ -= self->outbox_.front()->size();
      self->outbox_.pop_front();
      if (!self->outbox_.empty()) return self->Write();
      if (self->closing_) return self->CloseNow();
      self->MaybeRead();
    });
  }

  void WorkStarted() { ++inflight_; }
  void WorkDone() {
    --inflight_;
    MaybeRead();
  }

  void Send(const wire::ServerFrame& frame) {
    Enqueue(std::make_shared<const std::string>(frame.SerializeAsString()));
  }

  void Reject(uint64_t request_id, const std::string& reason, const std::string& message,
              const std::string& message_id) {
    hub_.metrics.reject(reason).Increment();
    wire::ServerFrame out;
    out.set_request_id(request_id);
    auto* err = out.mutable_error();
    err->set_code(reason);
    err->set_message(message);
    if (!message_id.empty()) err->set_message_id(message_id);
    Send(out);
  }

  void Unregister() {
    if (!registered_online_) return;
    registered_online_ = false;
    hub_.online_devices.Remove(Key(device_id_));
    auto range = hub_.online.equal_range(Key(device_id_));
    for (auto it = range.first; it != range.second;) {
      auto locked = it->second.lock();
      if (!locked || locked.get() == this) {
        it = hub_.online.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Runs `job` on a database worker and `reply` back on the I/O thread. A
  // job that failed because the connection broke (a restarted server) is
  // run once more on a new connection before the client hears of it.
  template <typename T>
  void OnDatabase(std::function<Result<T>(archive::Store&)> job,
                  std::function<void(Result<T>)> reply) {
    auto attempts = std::make_shared<int>(0);
    WorkStarted();
    hub_.db.Post([self = Self(), job = std::move(job), reply = std::move(reply),
                  attempts](Result<archive::Connection*> conn) mutable {
      Result<T> result = conn.ok() ? [&]() -> Result<T> {
        archive::Store store(**conn);
        return job(store);
      }()
                                   : Result<T>(conn.status());
      const bool broken = !result.ok() && result.status().code() == Code::kUnavailable;
      if (broken && ++*attempts == 1) return false;
      self->hub_.metrics.database_up->Set(broken ? 0 : 1);
      // The executor is read before `self` is moved into the handler.
      auto& io = self->hub_.io;
      net::post(io, [self = std::move(self), reply = std::move(reply),
                     result = std::move(result)]() mutable {
        reply(std::move(result));
        self->WorkDone();
      });
      return true;
    });
  }

  // ------------------------------------------------------------ protocol

  void Dispatch(const wire::ClientFrame& f) {
    const uint64_t rid = f.request_id();
    switch (f.kind_case()) {
      case wire::ClientFrame::kRegister: return OnRegister(rid, f.register_());
      case wire::ClientFrame::kHello: return OnHello(rid, f.hello());
      case wire::ClientFrame::kAuthenticate: return OnAuthenticate(rid, f.authenticate());
      case wire::ClientFrame::kOpenConversation:
        if (!RequireAuth(rid)) return;
        return OnOpenConversation(rid, f.open_conversation());
      case wire::ClientFrame::kSubmit:
        if (!RequireAuth(rid)) return;
        return OnSubmit(rid, f.submit());
      case wire::ClientFrame::kDeliveryAck:
        if (!RequireAuth(rid)) return;
        return OnDeliveryAck(f.delivery_ack());
      case wire::ClientFrame::kCreateGroup:
        if (!RequireAuth(rid)) return;
        return OnCreateGroup(rid, f.create_group());
      case wire::ClientFrame::kChangeMembers:
        if (!RequireAuth(rid)) return;
        return OnChangeMembers(rid, f.change_members());
      case wire::ClientFrame::kGetConversation:
        if (!RequireAuth(rid)) return;
        return OnGetConversation(rid, f.get_conversation());
      case wire::ClientFrame::kUpdatePrekey:
        if (!RequireAuth(rid)) return;
        return OnUpdatePrekey(rid, f.update_prekey());
      case wire::ClientFrame::kReportDelivery:
        if (!RequireAuth(rid)) return;
        return OnReportDelivery(rid, f.report_delivery());
      case wire::ClientFrame::kGetHistory:
        if (!RequireAuth(rid)) return;
        return OnGetHistory(rid, f.get_history());
      case wire::ClientFrame::kHistoryRestoredAck:
        if (!RequireAuth(rid)) return;
        return OnHistoryRestoredAck(f.history_restored_ack());
      case wire::ClientFrame::kResendAck:
        if (!RequireAuth(rid)) return;
        return OnResendAck(f.resend_ack());
      case wire::ClientFrame::KIND_NOT_SET:
        return Reject(rid, "malformed_frame", "frame has no request", {});
    }
  }

  bool RequireAuth(uint64_t rid) {
    if (authenticated_) return true;
    Reject(rid, "unauthenticated", "authenticate the device first (hello, authenticate)", {});
    return false;
  }

  // A checked registration request, waiting for its credential's check.
  struct Enrollment {
    archive::DeviceRecord rec;
    Bytes master;
    int64_t issued_at = 0;
    wire::DeviceCertificate request;
  };

  void OnRegister(uint64_t rid, const wire::RegisterRequest& r) {
    const Bytes identity(r.identity_key().begin(), r.identity_key().end());
    if (identity.size() != 32) {
      return Reject(rid, "enrollment_refused", "identity_key must be a 32-byte Ed25519 key", {});
    }
    const bool with_password = !r.password().empty();
    if (with_password == !r.enrollment_code().empty()) {
      return Reject(rid, "enrollment_refused", "set exactly one of enrollment_code and password", {});
    }
    if (r.user().empty() || r.user().size() > kMaxMemberNameBytes) {
      return Reject(rid, "enrollment_refused",
                    "user must be 1.." + std::to_string(kMaxMemberNameBytes) + " bytes", {});
    }
    if (with_password && hub_.directory == nullptr) {
      return Reject(rid, "enrollment_refused",
                    "directory sign-in is not enabled on this gateway; use an enrollment code", {});
    }
    if (!with_password && !hub_.config.directory.codes_allowed()) {
      return Reject(rid, "enrollment_refused",
                    "this gateway enrolls devices with directory passwords only", {});
    }
    if (Status s = protocol::VerifyPrekey(identity, r.prekey()); !s.ok()) {
      return Reject(rid, "enrollment_refused", "prekey: " + s.message(), {});
    }
    if (!r.has_certificate()) {
      return Reject(rid, "enrollment_refused",
                    "a device certificate signed by the user's master key is required", {});
    }
    auto body = protocol::CheckCertificateRequest(r.certificate(), r.user(), identity);
    if (!body.ok()) return Reject(rid, "enrollment_refused", body.status().message(), {});
    const int64_t now = NowMs();
    const int64_t skew_ms = int64_t{hub_.config.gateway.max_clock_skew_seconds} * 1000;
    // A certificate is checked later against the enrollment key
    // certificate valid at issued_at_ms, so that time must be now.
    if (body->issued_at_ms() < now - skew_ms || body->issued_at_ms() > now + skew_ms) {
      return Reject(rid, "clock_skew",
                    "device certificate issued_at_ms is more than " + std::to_string(skew_ms / 1000) +
                        " s from the gateway's clock (" + std::to_string(now) + ")",
                    {});
    }
    if (!EnrollmentAllowed(rid, r.user())) return;
    auto e = std::make_shared<Enrollment>();
    e->rec.user = r.user();
    e->rec.device_id = protocol::DeviceIdFor(identity);
    e->rec.identity_key = identity;
    const std::string prekey = r.prekey().SerializeAsString();
    e->rec.signed_prekey.assign(prekey.begin(), prekey.end());
    e->rec.registered_at_ms = now;
    e->master.assign(body->master_key().begin(), body->master_key().end());
    e->issued_at = body->issued_at_ms();
    // Only the body and the master signature are the client's.
    e->request.set_body(r.certificate().body());
    e->request.set_master_signature(r.certificate().master_signature());
    if (!with_password) return Enroll(rid, std::move(e), r.enrollment_code(), std::nullopt);

    auto password = std::make_shared<SecretBytes>(AsBytes(r.password()));
    Directory* directory = hub_.directory;
    const std::string user = r.user();
    WorkStarted();
    const bool posted = directory->Post([self = Self(), rid, e, user, password, directory]() mutable {
      Result<DirectoryUser> signed_in = directory->Authenticate(user, *password);
      *password = SecretBytes();
      auto& io = self->hub_.io;
      net::post(io, [self = std::move(self), rid, e = std::move(e),
                     signed_in = std::move(signed_in)]() mutable {
        self->OnSignedIn(rid, std::move(e), std::move(signed_in));
        self->WorkDone();
      });
    });
    if (!posted) {
      WorkDone();
      hub_.metrics.directory_bind_error->Increment();
      return Reject(rid, "unavailable", "directory sign-in is busy; try again later", {});
    }
  }

  // Refuses (rate_limited) a user name or source address with too many
  // recent failures.
  bool EnrollmentAllowed(uint64_t rid, const std::string& user) {
    const auto now = FailureLimiter::Clock::now();
    const bool user_ok = hub_.user_failures.Allowed(user, now);
    const bool ip_ok = peer_address_.empty() || hub_.ip_failures.Allowed(peer_address_, now);
    if (user_ok && ip_ok) return true;
    (ip_ok ? hub_.metrics.enrollment_limited_user : hub_.metrics.enrollment_limited_ip)->Increment();
    Reject(rid, "rate_limited", "too many failed enrollments; try again in a minute", {});
    return false;
  }

  void EnrollmentFailed(const std::string& user) {
    const auto now = FailureLimiter::Clock::now();
    hub_.user_failures.Failed(user, now);
    if (!peer_address_.empty()) hub_.ip_failures.Failed(peer_address_, now);
  }

  void OnSignedIn(uint64_t rid, std::shared_ptr<Enrollment> e, Result<DirectoryUser> signed_in) {
    Metrics& m = hub_.metrics;
    if (!signed_in.ok()) {
      if (signed_in.status().code() == Code::kPermissionDenied) {
        m.directory_bind_bad_credentials->Increment();
        EnrollmentFailed(e->rec.user);
        return Reject(rid, "bad_credentials", "wrong user name or password", {});
      }
      m.directory_bind_error->Increment();
      std::fprintf(stderr, "holdfast-gateway: directory sign-in: %s\n",
                   signed_in.status().ToString().c_str());
      return Reject(rid, "unavailable",
                    "the directory cannot check the password now; try again later (" +
                        signed_in.status().message() + ")",
                    {});
    }
    if (!signed_in->may(kPermissionEnroll)) {
      m.directory_bind_not_permitted->Increment();
      EnrollmentFailed(e->rec.user);
      return Reject(rid, "not_permitted", "the directory does not allow this user to enroll devices", {});
    }
    m.directory_bind_ok->Increment();
    archive::DirectoryAccount account;
    account.user = signed_in->user;
    account.display_name = signed_in->display_name;
    account.permissions = signed_in->permissions;
    Enroll(rid, std::move(e), {}, std::move(account));
  }

  // Stores the device with the credential checked: `account` for a
  // directory sign-in, else the enrollment code, which the store checks.
  void Enroll(uint64_t rid, std::shared_ptr<const Enrollment> e, std::string code,
              std::optional<archive::DirectoryAccount> account) {
    // As in OnSubmit, a refusal is a value: the HSM failing is not the
    // database failing, which OnDatabase retries.
    struct Registered {
      std::string reject_reason;
      std::string reject_message;
      Bytes device_id;
      wire::DeviceCertificate certificate;
      archive::RegisterOutcome outcome;
    };
    auto refuse = [](std::string reason, std::string message) {
      Registered out;
      out.reject_reason = std::move(reason);
      out.reject_message = std::move(message);
      return out;
    };
    EnrollmentSigner& signer = hub_.enrollment;
    Metrics& metrics = hub_.metrics;
    const Bytes root = hub_.org_root_public;
    const std::string user = e->rec.user;
    const int64_t ttl_ms = int64_t{hub_.config.delivery.queue_ttl_days} * 24 * 3600 * 1000;
    OnDatabase<Registered>(
        [e, code, account, root, refuse, ttl_ms, &signer, &metrics](archive::Store& store)
            -> Result<Registered> {
          // Read for every registration: `holdfast-admin init` may have
          // renewed it since the gateway started.
          auto stored = store.GetSetting(std::string(archive::kEnrollmentKeyCertificateSetting));
          if (!stored.ok() && stored.status().code() != Code::kNotFound) return stored.status();
          wire::EnrollmentKeyCertificate enrollment_cert;
          if (!stored.ok() ||
              !enrollment_cert.ParseFromArray(stored->data(), static_cast<int>(stored->size()))) {
            return refuse("unavailable", "no usable enrollment key certificate is recorded");
          }
          auto enrollment = protocol::VerifyEnrollmentKeyCertificate(enrollment_cert, root, e->issued_at);
          if (!enrollment.ok()) return refuse("unavailable", enrollment.status().message());
          if (enrollment->public_key() != AsString(signer.public_key())) {
            return refuse("unavailable", "the enrollment key certificate is for another key");
          }
          Registered out;
          out.device_id = e->rec.device_id;
          out.certificate = e->request;
          Status signing = Status::Ok();
          auto countersign = [&]() -> Result<Bytes> {
            auto signature =
                signer.Sign(protocol::DeviceCertificateOrgInput(AsBytes(out.certificate.body())));
            if (!signature.ok()) {
              metrics.countersign_error->Increment();
              signing = signature.status();
              return signing;
            }
            metrics.countersign_ok->Increment();
            out.certificate.set_org_signature(AsString(*signature));
            *out.certificate.mutable_enrollment_key() = enrollment_cert;
            const std::string bytes = out.certificate.SerializeAsString();
            return Bytes(bytes.begin(), bytes.end());
          };
          Status s = account ? store.RegisterDirectoryDevice(*account, e->master, e->rec, countersign,
                                                             &out.outcome, ttl_ms)
                             : store.RegisterDevice(e->rec.user, code, e->master, e->rec, countersign,
                                                  &out.outcome, ttl_ms);
          if (!signing.ok()) {
            return refuse("unavailable", "the enrollment key cannot sign now; try again later (" +
                                             signing.message() + ")");
          }
          if (s.code() == Code::kFailedPrecondition) return refuse("master_key_mismatch", s.message());
          HF_RETURN_IF_ERROR(s);
          return out;
        },
        [self = Self(), rid, user](Result<Registered> r) {
          if (!r.ok()) {
            const bool refused = r.status().code() != Code::kUnavailable;
            // A wrong, used or expired code.
            if (r.status().code() == Code::kPermissionDenied) self->EnrollmentFailed(user);
            return self->Reject(rid, refused ? "enrollment_refused" : "unavailable",
                                r.status().message(), {});
          }
          if (!r->reject_reason.empty()) return self->Reject(rid, r->reject_reason, r->reject_message, {});
          self->hub_.metrics.devices_registered->Increment();
          self->enrolled_ = true;
          self->hub_.metrics.resend_created->Increment(
              static_cast<double>(r->outcome.resend_requests));
          for (const Bytes& sender : r->outcome.resend_senders) {
            auto range = self->hub_.online.equal_range(Key(sender));
            for (auto it = range.first; it != range.second; ++it) {
              if (auto s = it->second.lock()) s->ResendRequestsCreated();
            }
          }
          wire::ServerFrame out;
          out.set_request_id(rid);
          auto* reg = out.mutable_registered();
          reg->set_device_id(AsString(r->device_id));
          reg->set_org_root_key(AsString(self->hub_.org_root_public));
          reg->set_org(self->hub_.config.org);
          *reg->mutable_certificate() = std::move(r->certificate);
          self->Send(out);
        });
  }

  void OnHello(uint64_t rid, const wire::Hello& h) {
    if (authenticated_ || !nonce_.empty()) {
      return Reject(rid, "auth_failed", "hello is allowed once per connection", {});
    }
    const Bytes device(h.device_id().begin(), h.device_id().end());
    if (device.size() != protocol::kDeviceIdSize) {
      return Reject(rid, "unknown_device", "device_id must be 16 bytes", {});
    }
    nonce_ = protocol::RandomBytes(32);
    OnDatabase<archive::DeviceRecord>(
        [device](archive::Store& store) { return store.GetDevice(device); },
        [self = Self(), rid](Result<archive::DeviceRecord> r) {
          if (!r.ok()) {
            return self->Reject(rid, r.status().code() == Code::kNotFound ? "unknown_device" : "unavailable",
                                r.status().message(), {});
          }
          self->device_ = *r;
          self->device_id_ = r->device_id;
          wire::ServerFrame out;
          out.set_request_id(rid);
          out.mutable_challenge()->set_nonce(AsString(self->nonce_));
          self->Send(out);
        });
  }

  void OnAuthenticate(uint64_t rid, const wire::Authenticate& a) {
    if (authenticated_ || device_id_.empty()) {
      return Reject(rid, "auth_failed", "send hello and wait for the challenge first", {});
    }
    const Bytes sig(a.signature().begin(), a.signature().end());
    const Status s = protocol::Ed25519Verify(device_.identity_key,
                                             protocol::AuthTranscript(nonce_, device_id_), sig);
    nonce_.clear();
    if (!s.ok()) {
      Reject(rid, "auth_failed", "challenge signature does not verify", {});
      return Close();
    }
    authenticated_ = true;
    hub_.metrics.sessions_authenticated->Increment();
    hub_.online.emplace(Key(device_id_), Self());
    // Before the queue fetch below: a delivery the outbox reader skips
    // because this device was not yet online was committed before the
    // fetch reads the queue.
    hub_.online_devices.Add(Key(device_id_));
    registered_online_ = true;
    auto info = ToDeviceInfo(device_);
    if (info.ok()) self_info_ = *info;

    wire::ServerFrame out;
    out.set_request_id(rid);
    out.mutable_authenticated()->set_user(device_.user);
    constexpr int64_t kDayMs = 24LL * 3600 * 1000;
    out.mutable_authenticated()->set_prekey_rotation_ms(hub_.config.keys.prekey_rotation_days * kDayMs);
    out.mutable_authenticated()->set_prekey_grace_ms(hub_.config.keys.prekey_grace_days * kDayMs);
    out.mutable_authenticated()->set_queue_ttl_ms(hub_.config.delivery.queue_ttl_days * kDayMs);
    FetchPending(std::make_shared<wire::ServerFrame>(std::move(out)));
  }

  // Sends the next page of this device's open resend requests, those after
  // the last one sent on this connection (so none is sent twice on it; a
  // request not acknowledged is sent again on the next login). The next
  // page follows once the client has acknowledged something.
  void FetchResendRequests() {
    if (resend_fetching_) {
      resend_refetch_ = true;
      return;
    }
    resend_fetching_ = true;
    constexpr int kPage = 64;
    const Bytes device = device_id_;
    const int64_t after = resend_cursor_;
    struct Page {
      std::vector<std::string> frames;
      int64_t last_request_id = 0;
      bool full = false;
    };
    OnDatabase<Page>(
        [device, after](archive::Store& store) -> Result<Page> {
          Page page;
          HF_ASSIGN_OR_RETURN(auto open, store.OpenResendRequests(device, after, kPage));
          if (open.empty()) return page;
          // Without a current epoch nothing can be sealed; the requests
          // wait for the next login.
          auto epoch = store.CurrentEpoch(NowMs());
          if (!epoch.ok()) {
            if (epoch.status().code() == Code::kNotFound) return page;
            return epoch.status();
          }
          HF_ASSIGN_OR_RETURN(auto epoch_cert, ToEpochCert(*epoch));
          page.full = open.size() == static_cast<size_t>(kPage);
          for (const auto& q : open) {
            page.last_request_id = q.request_id;
            wire::ServerFrame f;
            auto* rr = f.mutable_resend_request();
            rr->set_request_id(static_cast<uint64_t>(q.request_id));
            rr->set_message_id(AsString(q.message_id));
            rr->set_conversation_id(q.conversation_id);
            HF_ASSIGN_OR_RETURN(*rr->add_devices(), ToDeviceInfo(q.target));
            *rr->mutable_epoch() = epoch_cert;
            page.frames.push_back(f.SerializeAsString());
          }
          return page;
        },
        [self = Self()](Result<Page> r) {
          self->resend_fetching_ = false;
          if (r.ok()) {
            for (auto& f : r->frames) {
              self->hub_.metrics.resend_sent->Increment();
              self->Enqueue(std::make_shared<const std::string>(std::move(f)));
            }
            self->resend_cursor_ = std::max(self->resend_cursor_, r->last_request_id);
            self->resend_more_ = r->full;
          }
          if (self->resend_refetch_ && !self->closing_) {
            self->resend_refetch_ = false;
            self->FetchResendRequests();
          }
        });
  }

  void OnResendAck(const wire::ResendAck& ack) {
    std::vector<int64_t> ids;
    for (uint64_t id : ack.request_ids()) {
      if (id <= uint64_t{INT64_MAX}) ids.push_back(static_cast<int64_t>(id));
    }
    const Bytes device = device_id_;
    OnDatabase<int64_t>(
        [device, ids](archive::Store& store) { return store.CloseResendRequests(device, ids); },
        [self = Self()](Result<int64_t> closed) {
          if (closed.ok()) self->hub_.metrics.resend_closed->Increment(static_cast<double>(*closed));
          if (self->resend_more_ && !self->closing_) {
            self->resend_more_ = false;
            self->FetchResendRequests();
          }
        });
  }

  // Sends this device's restore notices not yet acknowledged, those after
  // the last one sent on this connection (docs/protocol.md 9.12). A device
  // has few (one per restore of its user), so there is no paging.
  void FetchRestoreNotices() {
    if (notices_fetching_) {
      notices_refetch_ = true;
      return;
    }
    notices_fetching_ = true;
    constexpr int kMax = 64;
    const Bytes device = device_id_;
    const int64_t after = notice_cursor_;
    struct Notices {
      std::vector<std::string> frames;
      int64_t last_notice_id = 0;
    };
    OnDatabase<Notices>(
        [device, after](archive::Store& store) -> Result<Notices> {
          Notices out;
          HF_ASSIGN_OR_RETURN(auto open, store.OpenRestoreNotices(device, after, kMax));
          for (const auto& n : open) {
            out.last_notice_id = n.notice_id;
            wire::ServerFrame f;
            auto* hr = f.mutable_history_restored();
            hr->set_notice_id(static_cast<uint64_t>(n.notice_id));
            hr->set_request_id(static_cast<uint64_t>(n.request_id));
            hr->set_user(n.user);
            hr->set_target_device(AsString(n.target_device));
            for (const auto& c : n.conversations) hr->add_conversation_ids(c);
            hr->set_envelope_count(static_cast<uint64_t>(n.envelope_count));
            hr->set_restored_at_ms(n.restored_at_ms);
            out.frames.push_back(f.SerializeAsString());
          }
          return out;
        },
        [self = Self()](Result<Notices> r) {
          self->notices_fetching_ = false;
          if (r.ok()) {
            for (auto& f : r->frames) self->Enqueue(std::make_shared<const std::string>(std::move(f)));
            self->notice_cursor_ = std::max(self->notice_cursor_, r->last_notice_id);
          }
          if (self->notices_refetch_ && !self->closing_) {
            self->notices_refetch_ = false;
            self->FetchRestoreNotices();
          }
        });
  }

  void OnHistoryRestoredAck(const wire::HistoryRestoredAck& ack) {
    std::vector<int64_t> ids;
    for (uint64_t id : ack.notice_ids()) {
      if (id <= uint64_t{INT64_MAX}) ids.push_back(static_cast<int64_t>(id));
    }
    const Bytes device = device_id_;
    OnDatabase<int64_t>(
        [device, ids](archive::Store& store) { return store.AckRestoreNotices(device, ids); },
        [](Result<int64_t>) {});
  }

  // Loads queued deliveries; sends `first` (if any) before them.
  void FetchPending(std::shared_ptr<wire::ServerFrame> first) {
    constexpr int kPage = 256;
    constexpr size_t kPageBytes = 4u << 20;
    const Bytes device = device_id_;
    const std::string notice = hub_.config.gateway.archive_notice;
    const int64_t ttl_ms = int64_t{hub_.config.delivery.queue_ttl_days} * 24 * 3600 * 1000;
    struct Page {
      uint64_t total = 0;
      std::vector<std::string> frames;
    };
    OnDatabase<Page>(
        [device, notice, ttl_ms](archive::Store& store) -> Result<Page> {
          Page page;
          HF_ASSIGN_OR_RETURN(page.total, store.CountPendingDeliveries(device, ttl_ms));
          HF_ASSIGN_OR_RETURN(auto pending, store.PendingDeliveries(device, kPage, ttl_ms));
          HF_ASSIGN_OR_RETURN(page.frames, DeliverFrames(store, pending, notice, kPageBytes));
          return page;
        },
        [self = Self(), first](Result<Page> r) {
          if (!r.ok()) {
            if (first) self->Reject(first->request_id(), "unavailable", r.status().message(), {});
            return;
          }
          if (first) {
            first->mutable_authenticated()->set_pending(r->total);
            self->Send(*first);
          }
          for (auto& f : r->frames) {
            self->hub_.metrics.deliveries_pushed->Increment();
            self->Enqueue(std::make_shared<const std::string>(std::move(f)));
          }
          self->unacked_from_fetch_ = r->frames.size();
          self->more_pending_ = r->total > r->frames.size();
          // Resend requests follow `authenticated` (9.11).
          if (first) {
            self->resend_ready_ = true;
            self->FetchResendRequests();
            self->FetchRestoreNotices();  // 9.12, like resend requests
          }
        });
  }

  // Sends the conversation, or the refusal the answer carries.
  std::function<void(Result<ConversationAnswer>)> AnswerConversation(uint64_t rid) {
    return [self = Self(), rid](Result<ConversationAnswer> r) {
      if (!r.ok()) return self->Reject(rid, ReasonFor(r.status()), r.status().message(), {});
      if (!r->reject_reason.empty()) return self->Reject(rid, r->reject_reason, r->reject_message, {});
      wire::ServerFrame out;
      out.set_request_id(rid);
      *out.mutable_conversation() = std::move(r->info);
      self->Send(out);
    };
  }

  void OnOpenConversation(uint64_t rid, const wire::OpenConversation& oc) {
    if (auto bad = BadMemberName(oc.members())) return Reject(rid, "invalid_argument", *bad, {});
    std::set<std::string> member_set(oc.members().begin(), oc.members().end());
    member_set.insert(device_.user);
    if (member_set.size() > archive::kMaxConversationMembers) {
      return Reject(rid, "invalid_argument", "too many members", {});
    }
    std::vector<std::string> members(member_set.begin(), member_set.end());
    const std::string notice = hub_.config.gateway.archive_notice;
    OnDatabase<ConversationAnswer>(
        [members, notice](archive::Store& store) -> Result<ConversationAnswer> {
          for (const auto& m : members) {
            HF_ASSIGN_OR_RETURN(bool exists, store.UserExists(m));
            if (!exists) return Status::NotFound("no such user: " + m);
          }
          HF_ASSIGN_OR_RETURN(auto conv, store.OpenConversation(members));
          return Describe(store, conv, notice);
        },
        AnswerConversation(rid));
  }

  void OnCreateGroup(uint64_t rid, const wire::CreateGroup& g) {
    if (auto bad = BadMemberName(g.members())) return Reject(rid, "invalid_argument", *bad, {});
    if (g.title().size() > archive::kMaxGroupTitleBytes) {
      return Reject(rid, "invalid_argument",
                    "title must be at most " + std::to_string(archive::kMaxGroupTitleBytes) + " bytes",
                    {});
    }
    std::set<std::string> member_set(g.members().begin(), g.members().end());
    member_set.insert(device_.user);
    if (member_set.size() > archive::kMaxConversationMembers) {
      return Reject(rid, "invalid_argument", "too many members", {});
    }
    std::vector<std::string> members(member_set.begin(), member_set.end());
    const std::string user = device_.user;
    const std::string title = g.title();
    const std::string notice = hub_.config.gateway.archive_notice;
    const bool directory_on = hub_.config.directory.enabled();
    OnDatabase<ConversationAnswer>(
        [user, title, members, notice, directory_on](archive::Store& store) -> Result<ConversationAnswer> {
          // A directory user may create groups if the directory said so at
          // the user's latest enrollment; a local account always may.
          if (directory_on) {
            HF_ASSIGN_OR_RETURN(auto permissions, store.DirectoryPermissions(user));
            if (permissions && std::find(permissions->begin(), permissions->end(),
                                         kPermissionCreateGroups) == permissions->end()) {
              ConversationAnswer refused;
              refused.reject_reason = "not_permitted";
              refused.reject_message = "the directory does not allow this user to create groups";
              return refused;
            }
          }
          HF_ASSIGN_OR_RETURN(auto conv, store.CreateGroup(user, title, members));
          return Describe(store, conv, notice);
        },
        AnswerConversation(rid));
  }

  void OnChangeMembers(uint64_t rid, const wire::ChangeMembers& cm) {
    auto bad = BadMemberName(cm.add());
    if (!bad) bad = BadMemberName(cm.remove());
    if (bad) return Reject(rid, "invalid_argument", *bad, {});
    std::vector<std::string> add(cm.add().begin(), cm.add().end());
    std::vector<std::string> remove(cm.remove().begin(), cm.remove().end());
    const std::string id = cm.conversation_id();
    const std::string user = device_.user;
    const std::string notice = hub_.config.gateway.archive_notice;
    OnDatabase<ConversationAnswer>(
        [id, user, add, remove, notice](archive::Store& store) -> Result<ConversationAnswer> {
          // ChangeMembers checks membership again under the row lock; this
          // read only tells a non-member apart from a refused member.
          auto conv = store.GetConversation(id);
          if (!conv.ok()) {
            if (conv.status().code() != Code::kNotFound) return conv.status();
            return NotMember("no such conversation");
          }
          if (!IsMember(*conv, user)) return NotMember("not a member of the conversation");
          HF_ASSIGN_OR_RETURN(auto changed, store.ChangeMembers(id, user, add, remove));
          return Describe(store, changed, notice);
        },
        AnswerConversation(rid));
  }

  void OnGetConversation(uint64_t rid, const wire::GetConversation& gc) {
    const std::string id = gc.conversation_id();
    const std::string user = device_.user;
    const std::string notice = hub_.config.gateway.archive_notice;
    OnDatabase<ConversationAnswer>(
        [id, user, notice](archive::Store& store) -> Result<ConversationAnswer> {
          auto conv = store.GetConversation(id);
          if (!conv.ok()) {
            if (conv.status().code() != Code::kNotFound) return conv.status();
            return NotMember("no such conversation");
          }
          if (!IsMember(*conv, user)) return NotMember("not a member of the conversation");
          return Describe(store, *conv, notice);
        },
        AnswerConversation(rid));
  }

  void OnGetHistory(uint64_t rid, const wire::GetHistory& gh) {
    constexpr uint32_t kMaxLimit = 200;
    constexpr uint32_t kDefaultLimit = 50;
    // A page stops early past this size; `more` and `next` say where.
    constexpr size_t kPageBytes = 4u << 20;
    if (gh.limit() > kMaxLimit) {
      return Reject(rid, "invalid_argument",
                    "history limit is at most " + std::to_string(kMaxLimit), {});
    }
    if (gh.before().sent_at_ms() < 0 ||
        gh.before().envelope_id() > static_cast<uint64_t>(INT64_MAX)) {
      return Reject(rid, "invalid_argument", "history cursor out of range", {});
    }
    const int limit = static_cast<int>(gh.limit() == 0 ? kDefaultLimit : gh.limit());
    const std::string id = gh.conversation_id();
    const std::string user = device_.user;
    const archive::Store::HistoryCursor before{gh.before().sent_at_ms(),
                                               static_cast<int64_t>(gh.before().envelope_id())};
    const std::string notice = hub_.config.gateway.archive_notice;
    struct Answer {
      bool not_member = false;
      wire::ServerFrame frame;
    };
    const Bytes device = device_id_;
    OnDatabase<Answer>(
        [id, user, device, before, limit, notice](archive::Store& store) -> Result<Answer> {
          Answer a;
          // One more than asked tells whether older entries exist.
          auto page = store.ConversationHistory(user, id, before, limit + 1);
          if (!page.ok()) {
            if (page.status().code() != Code::kNotFound) return page.status();
            a.not_member = true;
            return a;
          }
          auto* h = a.frame.mutable_history();
          h->set_conversation_id(id);
          h->set_archive_notice(notice);
          FrameParts parts(store);
          size_t bytes = 0;
          for (const auto& e : *page) {
            if (h->entries_size() == limit || bytes >= kPageBytes) {
              h->set_more(true);
              break;
            }
            auto* entry = h->add_entries();
            entry->set_stored_at_ms(e.stored_at_ms);
            HF_ASSIGN_OR_RETURN(auto got, parts.Get(e.envelope, e.sender_device));
            std::move(got).Into(*entry);
            bytes += entry->ByteSizeLong();
            h->mutable_next()->set_sent_at_ms(e.sent_at_ms);
            h->mutable_next()->set_envelope_id(static_cast<uint64_t>(e.envelope_id));
          }
          HF_RETURN_IF_ERROR(AddRestoredCapsules(store, user, device, *page, *h));
          return a;
        },
        [self = Self(), rid](Result<Answer> r) {
          if (!r.ok()) return self->Reject(rid, "unavailable", r.status().message(), {});
          if (r->not_member) {
            return self->Reject(rid, "not_member",
                                "no such conversation, or never a member of it", {});
          }
          self->hub_.metrics.history_pages->Increment();
          r->frame.set_request_id(rid);
          self->Send(r->frame);
        });
  }

  void OnSubmit(uint64_t rid, const wire::Submit& submit) {
    const auto received = std::chrono::steady_clock::now();
    hub_.metrics.messages_received->Increment();
    auto parsed_or = protocol::ParseEnvelope(submit.envelope());
    if (!parsed_or.ok()) return Reject(rid, "bad_envelope", parsed_or.status().message(), {});
    auto parsed = std::make_shared<protocol::ParsedEnvelope>(std::move(parsed_or).value());
    const auto& h = parsed->header;
    const std::string& mid = h.message_id();
    if (h.sender_device() != AsString(device_id_) || h.sender_user() != device_.user) {
      return Reject(rid, "wrong_sender", "envelope sender is not this session's device", mid);
    }
    const int64_t now = NowMs();
    const int64_t skew_ms = int64_t{hub_.config.gateway.max_clock_skew_seconds} * 1000;
    // Bounds sent_at, which disclosure scopes and recipients' epoch checks
    // rely on: a sender cannot backdate a message out of a legal hold.
    if (h.sent_at_ms() < now - skew_ms || h.sent_at_ms() > now + skew_ms) {
      return Reject(rid, "clock_skew",
                    "sent_at_ms is more than " + std::to_string(skew_ms / 1000) +
                        " s from the gateway's clock (" + std::to_string(now) + ")",
                    mid);
    }

    // A refusal is a value here, not a Status: the reason code travels
    // to the client and the reject metric as is.
    struct Checked {
      std::string reject_reason;
      std::string reject_message;
      archive::IngestItem item;
      wire::EpochCertificate epoch;
    };
    auto refuse = [](std::string reason, std::string message) {
      Checked c;
      c.reject_reason = std::move(reason);
      c.reject_message = std::move(message);
      return c;
    };
    const std::string user = device_.user;
    const Bytes self_device = device_id_;
    const Bytes identity = device_.identity_key;
    // Everything below, the signature check included, runs on a database
    // worker so that the I/O thread only moves bytes.
    OnDatabase<Checked>(
        [parsed, user, self_device, identity, now, refuse](archive::Store& store) -> Result<Checked> {
          if (Status s = protocol::VerifyEnvelopeSignature(*parsed, identity); !s.ok()) {
            return refuse("bad_signature", s.message());
          }
          const auto& h = parsed->header;
          // Membership is read here, in the job that decides: once a
          // change_members is answered, every submit after it is checked
          // against the new members.
          HF_ASSIGN_OR_RETURN(auto context, store.SubmitContextOf(h.conversation_id(), h.epoch_id()));
          const auto& conv = context.conversation;
          if (!conv) return refuse("not_member", "no such conversation");
          if (std::find(conv->members.begin(), conv->members.end(), user) == conv->members.end()) {
            return refuse("not_member", "sender is not a member of the conversation");
          }
          const auto& epoch = context.epoch;
          if (!epoch || now < epoch->not_before_ms || now >= epoch->not_after_ms ||
              h.sent_at_ms() < epoch->not_before_ms || h.sent_at_ms() >= epoch->not_after_ms) {
            return refuse("stale_epoch", "epoch " + std::to_string(h.epoch_id()) +
                                             " is not current; fetch the conversation again");
          }
          std::vector<Bytes> recipients;
          if (!h.resend_of().empty()) {
            HF_ASSIGN_OR_RETURN(auto resend, CheckResendRecipients(store, *parsed, self_device));
            if (!resend.refusal.empty()) return refuse("recipients_mismatch", resend.refusal);
            recipients = std::move(resend.devices);
          }
          // A re-sent message is checked against its requests instead.
          const std::vector<archive::DeviceRecord> no_devices;
          const auto& devices = h.resend_of().empty() ? context.devices : no_devices;
          std::map<std::string, std::string> expected;  // device -> user
          for (const auto& d : devices) {
            if (d.device_id != self_device) expected[Key(d.device_id)] = d.user;
          }
          std::map<std::string, std::string> covered;
          for (const auto& c : parsed->content.devices()) covered[c.device_id()] = c.user();
          size_t missing = 0, extra = 0;
          for (const auto& [dev, u] : expected) {
            auto it = covered.find(dev);
            if (it == covered.end() || it->second != u) ++missing;
          }
          for (const auto& [dev, u] : covered) extra += expected.count(dev) ? 0 : 1;
          if (h.resend_of().empty() && (missing || extra)) {
            return refuse("recipients_mismatch",
                          std::to_string(missing) + " device(s) of the conversation not covered, " +
                              std::to_string(extra) +
                              " capsule(s) for devices outside it; fetch the conversation again");
          }
          Checked out;
          auto& item = out.item;
          item.message_id.assign(h.message_id().begin(), h.message_id().end());
          item.conversation_id = h.conversation_id();
          item.sender_user = h.sender_user();
          item.sender_device = self_device;
          item.epoch_id = h.epoch_id();
          item.sent_at_ms = h.sent_at_ms();
          const std::string env = parsed->envelope.SerializeAsString();
          item.envelope.assign(env.begin(), env.end());
          if (h.resend_of().empty()) {
            for (const auto& [dev, u] : expected) item.recipient_devices.emplace_back(dev.begin(), dev.end());
          } else {
            item.recipient_devices = std::move(recipients);
          }
          HF_ASSIGN_OR_RETURN(out.epoch, ToEpochCert(*epoch));
          return out;
        },
        [self = Self(), rid, parsed, received](Result<Checked> r) {
          const std::string& mid = parsed->header.message_id();
          if (!r.ok()) return self->Reject(rid, ReasonFor(r.status()), r.status().message(), mid);
          if (!r->reject_reason.empty()) return self->Reject(rid, r->reject_reason, r->reject_message, mid);
          self->Ingest(rid, std::move(r->item), std::move(r->epoch), parsed, received);
        });
  }

  void Ingest(uint64_t rid, archive::IngestItem item, wire::EpochCertificate epoch,
              std::shared_ptr<protocol::ParsedEnvelope> parsed,
              std::chrono::steady_clock::time_point received) {
    WorkStarted();
    hub_.ingester.Submit(std::move(item), [self = Self(), rid, parsed, epoch = std::move(epoch),
                                           received](Result<archive::IngestOutcome> r) mutable {
      auto& io = self->hub_.io;
      net::post(io, [self = std::move(self), rid, parsed, epoch = std::move(epoch), received,
                     r = std::move(r)]() mutable {
        self->OnStored(rid, std::move(r), *parsed, epoch, received);
        self->WorkDone();
      });
    });
  }

  // Runs after the group commit: acknowledge first, then fan out.
  void OnStored(uint64_t rid, Result<archive::IngestOutcome> r, const protocol::ParsedEnvelope& parsed,
                const wire::EpochCertificate& epoch, std::chrono::steady_clock::time_point received) {
    const std::string& mid = parsed.header.message_id();
    if (!r.ok()) {
      return Reject(rid, "unavailable", "not stored, send again: " + r.status().message(), mid);
    }
    if (r->conflict) {
      return Reject(rid, "message_id_conflict",
                    "a different envelope is already stored under this message id; "
                    "seal the message again with a new message id",
                    mid);
    }
    wire::ServerFrame ack;
    ack.set_request_id(rid);
    ack.mutable_submit_ack()->set_message_id(mid);
    ack.mutable_submit_ack()->set_stored_at_ms(r->stored_at_ms);
    Send(ack);
    hub_.metrics.ack_latency->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - received).count());
    if (r->duplicate) {
      hub_.metrics.messages_duplicate->Increment();
      if (hub_.pushed.Contains(mid)) return;
      // The first copy was committed by an attempt whose outcome was lost
      // (the database went away during COMMIT), or stored through another
      // node: it was refused, nothing was pushed here, and its deliveries
      // wait. Push what is still undelivered; a device that had it drops
      // the repeat by message id.
      const int64_t envelope_id = r->envelope_id;
      const uint32_t epoch_id = parsed.header.epoch_id();
      OnDatabase<std::vector<std::pair<Bytes, int64_t>>>(
          [envelope_id, epoch_id](archive::Store& store) {
            return store.UndeliveredOfEnvelope(envelope_id, epoch_id);
          },
          [self = Self(), envelope = parsed.envelope,
           epoch](Result<std::vector<std::pair<Bytes, int64_t>>> waiting) {
            if (waiting.ok()) self->PushDeliveries(*waiting, envelope, epoch);
          });
      return;
    }
    hub_.metrics.messages_stored->Increment();
    if (!parsed.header.resend_of().empty()) hub_.metrics.resend_resent->Increment();
    hub_.pushed.Add(mid);
    PushDeliveries(r->deliveries, parsed.envelope, epoch);
  }

  // Pushes an envelope this session's device sent to those of its
  // deliveries whose device is connected here.
  void PushDeliveries(const std::vector<std::pair<Bytes, int64_t>>& deliveries,
                      const wire::Envelope& envelope, const wire::EpochCertificate& epoch) {
    for (const auto& [device, delivery_id] : deliveries) {
      auto range = hub_.online.equal_range(Key(device));
      if (range.first == range.second) continue;
      wire::ServerFrame f;
      auto* d = f.mutable_deliver();
      d->set_delivery_id(static_cast<uint64_t>(delivery_id));
      *d->mutable_envelope() = envelope;
      *d->mutable_sender() = self_info_;
      *d->mutable_epoch() = epoch;
      d->set_archive_notice(hub_.config.gateway.archive_notice);
      auto bytes = std::make_shared<const std::string>(f.SerializeAsString());
      for (auto it = range.first; it != range.second; ++it) {
        if (auto s = it->second.lock()) {
          hub_.metrics.deliveries_pushed->Increment();
          s->Push(bytes);
        }
      }
    }
  }

  void OnDeliveryAck(const wire::DeliveryAck& ack) {
    std::vector<int64_t> ids;
    for (uint64_t id : ack.delivery_ids()) ids.push_back(static_cast<int64_t>(id));
    hub_.metrics.deliveries_acked->Increment(static_cast<double>(ids.size()));
    const Bytes device = device_id_;
    const size_t acked = ids.size();
    OnDatabase<bool>(
        [device, ids](archive::Store& store) -> Result<bool> {
          HF_RETURN_IF_ERROR(store.AckDeliveries(device, ids));
          return true;
        },
        [self = Self(), acked](Result<bool>) {
          // Once a full page of queued deliveries is acknowledged, send the next.
          if (self->unacked_from_fetch_ == 0) return;
          self->unacked_from_fetch_ -= std::min(acked, self->unacked_from_fetch_);
          if (self->unacked_from_fetch_ == 0 && self->more_pending_) self->FetchPending(nullptr);
        });
  }

  void OnUpdatePrekey(uint64_t rid, const wire::UpdatePrekey& u) {
    // A refusal is a value: its reason code has no Status code.
    struct Outcome {
      std::string reject_reason;
      std::string reject_message;
    };
    auto prekey = std::make_shared<const wire::SignedPrekey>(u.prekey());
    const Bytes device = device_id_;
    const Bytes identity = device_.identity_key;
    const int64_t now = NowMs();
    const int64_t skew_ms = int64_t{hub_.config.gateway.max_clock_skew_seconds} * 1000;
    // Not audited: the prekey is signed by the device's identity key, whose
    // registration is, so an event would prove nothing more; and every
    // rotation of every device would queue on the audit chain's lock.
    OnDatabase<Outcome>(
        [prekey, device, identity, now, skew_ms](archive::Store& store) -> Result<Outcome> {
          if (Status s = protocol::VerifyPrekey(identity, *prekey); !s.ok()) {
            return Outcome{"bad_prekey", s.message()};
          }
          const std::string bytes = prekey->SerializeAsString();
          // A resend of the stored prekey (its answer was lost) succeeds, so
          // that a client may discard a pending prekey the gateway refuses.
          HF_ASSIGN_OR_RETURN(archive::DeviceRecord current, store.GetDevice(device));
          if (AsString(current.signed_prekey) == bytes) return Outcome{};
          const int64_t created = prekey->created_at_ms();
          if (created < now - skew_ms || created > now + skew_ms) {
            return Outcome{"stale_prekey", "created_at_ms is more than " +
                                               std::to_string(skew_ms / 1000) +
                                               " s from the gateway's clock (" +
                                               std::to_string(now) + ")"};
          }
          const Status s = store.UpdatePrekey(device, Bytes(bytes.begin(), bytes.end()));
          if (s.code() == Code::kFailedPrecondition) return Outcome{"stale_prekey", s.message()};
          HF_RETURN_IF_ERROR(s);
          return Outcome{};
        },
        [self = Self(), rid, prekey](Result<Outcome> r) {
          if (!r.ok()) return self->Reject(rid, ReasonFor(r.status()), r.status().message(), {});
          if (!r->reject_reason.empty()) {
            return self->Reject(rid, r->reject_reason, r->reject_message, {});
          }
          const std::string bytes = prekey->SerializeAsString();
          self->device_.signed_prekey.assign(bytes.begin(), bytes.end());
          *self->self_info_.mutable_prekey() = *prekey;
          wire::ServerFrame out;
          out.set_request_id(rid);
          out.mutable_prekey_updated()->set_created_at_ms(prekey->created_at_ms());
          self->Send(out);
        });
  }

  void OnReportDelivery(uint64_t rid, const wire::ReportDelivery& r) {
    if (++reports_ > kMaxReportsPerConnection) {
      return Reject(rid, "rate_limited",
                    "at most " + std::to_string(kMaxReportsPerConnection) +
                        " delivery reports per connection",
                    {});
    }
    if (!r.message_id().empty() && r.message_id().size() != protocol::kMessageIdSize) {
      return Reject(rid, "invalid_argument", "message_id must be empty or 16 bytes", {});
    }
    archive::DeliveryReport report;
    report.reporter_device = device_id_;
    // Zero is "not given"; an id past int64 names no delivery.
    if (r.delivery_id() != 0 && r.delivery_id() <= uint64_t{INT64_MAX}) {
      report.delivery_id = static_cast<int64_t>(r.delivery_id());
    }
    report.message_id.assign(r.message_id().begin(), r.message_id().end());
    report.reason = r.reason();
    report.detail = r.detail();
    const std::string reason(archive::DeliveryReportReason(r.reason()));
    OnDatabase<int64_t>(
        [report = std::move(report)](archive::Store& store) { return store.RecordDeliveryReport(report); },
        [self = Self(), rid, reason](Result<int64_t> id) {
          if (!id.ok()) return self->Reject(rid, ReasonFor(id.status()), id.status().message(), {});
          self->hub_.metrics.delivery_report(reason).Increment();
          wire::ServerFrame out;
          out.set_request_id(rid);
          out.mutable_report_received()->set_report_id(static_cast<uint64_t>(*id));
          self->Send(out);
        });
  }

  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws_;
  Hub& hub_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> upgrade_;
  std::deque<std::shared_ptr<const std::string>> outbox_;
  static constexpr int kMaxInflight = 16;
  static constexpr size_t kKeepBufferBytes = 4096;
  static constexpr size_t kMaxOutboxBytes = 8u << 20;
  static constexpr std::chrono::seconds kAuthDeadline{30};

  net::steady_timer auth_timer_;
  bool closing_ = false;
  bool reading_ = false;
  bool paused_ = false;  // listed in hub_.paused
  bool writing_ = false;
  bool enrolled_ = false;  // registered a device on this connection
  int inflight_ = 0;
  size_t outbox_bytes_ = 0;
  int malformed_ = 0;
  int reports_ = 0;  // report_delivery frames on this connection
  std::string peer_address_;  // the client's IP address, for enrollment rate limits

  Bytes nonce_;
  Bytes device_id_;
  archive::DeviceRecord device_;
  wire::DeviceInfo self_info_;
  bool authenticated_ = false;
  bool registered_online_ = false;
  size_t unacked_from_fetch_ = 0;
  bool more_pending_ = false;
  // Resend requests (9.11): the last request id sent on this connection.
  int64_t resend_cursor_ = 0;
  bool resend_ready_ = false;    // `authenticated` was sent
  bool resend_fetching_ = false;
  bool resend_refetch_ = false;  // more were created while fetching
  bool resend_more_ = false;     // the last page was full
  // Restore notices (9.12): the last notice id sent on this connection.
  int64_t notice_cursor_ = 0;
  bool notices_fetching_ = false;
  bool notices_refetch_ = false;
};

}  // namespace

std::shared_ptr<Session> Session::Create(tcp::socket socket, ssl::context& tls, Hub& hub) {
  return std::make_shared<SessionImpl>(std::move(socket), tls, hub);
}

}  // namespace holdfast::gateway
