// The client's decoders: a websocket frame as a device reads it,
// holdfast.wire.v1.ServerFrame, handed to a fixed registered Device (user
// "bob", the fixed recipient keys, certified by the fixed master and
// enrollment keys under the fixed org root), which has already seen the
// direct conversation "conv-7f3a" with alice and the group "grp-ops":
//   conversation   -> ObserveConversation, PrepareMessage
//   deliver        -> OpenDelivery, ReportFor on a failure
//   registered     -> AcceptRegistration on the same device before registration
//   challenge      -> AnswerChallenge
//   prekey_updated -> CompletePrekeyRotation after a fixed BeginPrekeyRotation
// Every input starts from a fresh copy of that device. Each frame is tried
// as received and re-signed with the fixed keys (certificates, epoch
// certificate, the fixed identities' prekeys and the sender's envelope), so
// that mutations behind the signatures reach the checks after them.
//
// Properties: a call that fails leaves the profile as it was; a profile a
// call changed saves and loads back to the same file; a message the device
// seals or accepts opens for the archive with the same text; a delivery
// report is one the gateway accepts.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_keys.h"
#include "holdfast/client/device.h"
#include "holdfast/client/key_store.h"
#include "holdfast/client/profile.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"

namespace holdfast::client {
namespace {

namespace protocol = ::holdfast::protocol;
namespace fuzz = ::holdfast::fuzz;

// Devices certified by one conversation frame that are re-signed: enough for
// every seed, and it bounds the signing work a large frame costs.
constexpr int kMaxResigned = 8;
constexpr char kText[] = "fuzzed text";

ByteView View(const std::string& s) { return AsBytes(s); }

void Check(bool condition) {
  if (!condition) std::abort();
}

template <typename T>
T Must(Result<T> r) {
  Check(r.ok());
  return std::move(r).value();
}

void Must(const Status& s) { Check(s.ok()); }

wire::DeviceInfo DeviceOf(const protocol::Ed25519KeyPair& identity, const std::string& user,
                          ByteView prekey_public) {
  wire::DeviceInfo d;
  d.set_user(user);
  d.set_device_id(AsString(protocol::DeviceIdFor(identity.public_key)));
  d.set_identity_key(AsString(identity.public_key));
  *d.mutable_prekey() = Must(protocol::SignPrekey(identity.private_key.view(), prekey_public,
                                                  fuzz::kNowMs - 20 * fuzz::kDayMs));
  *d.mutable_certificate() =
      fuzz::CertifyDevice(user, identity.public_key, fuzz::kNowMs - 20 * fuzz::kDayMs);
  return d;
}

wire::EpochCertificate Epoch() {
  wire::EpochCertificateBody body;
  body.set_version(protocol::labels::kProtocolVersion);
  body.set_epoch_id(fuzz::kEpochId);
  body.set_public_key(AsString(fuzz::Keys().archive.public_key));
  body.set_not_before_ms(fuzz::kNowMs - 30 * fuzz::kDayMs);
  body.set_not_after_ms(fuzz::kNowMs + 30 * fuzz::kDayMs);
  body.set_org(fuzz::kOrg);
  wire::EpochCertificate cert;
  cert.set_body(body.SerializeAsString());
  cert.set_signature(
      AsString(fuzz::OrgRootSign(protocol::EpochCertificateSigningInput(View(cert.body())))));
  return cert;
}

// The recipient before registration; its certificate is signed by the
// master key only.
const Device& Unregistered() {
  static const Device device =
      Must(Device::FromSeed("bob", fuzz::kNowMs - 20 * fuzz::kDayMs, fuzz::RecipientDeviceSeed()));
  return device;
}

const Device& Registered() {
  static const Device device = [] {
    const fuzz::FixedKeys& k = fuzz::Keys();
    Device d = Unregistered();
    wire::RegisterResponse response;
    response.set_device_id(AsString(k.recipient_device));
    response.set_org_root_key(AsString(k.org_root.public_key));
    response.set_org(fuzz::kOrg);
    *response.mutable_certificate() =
        fuzz::CertifyDevice("bob", k.recipient.public_key, fuzz::kNowMs - 20 * fuzz::kDayMs);
    Must(d.AcceptRegistration(response, "wss://gateway.example:8443/v1", ""));

    const wire::DeviceInfo bob = d.Info();
    const wire::DeviceInfo alice = DeviceOf(k.sender, "alice", k.sender_prekey.public_key);
    wire::ConversationInfo direct;
    direct.set_conversation_id("conv-7f3a");
    direct.add_members("alice");
    direct.add_members("bob");
    *direct.add_devices() = bob;
    *direct.add_devices() = alice;
    *direct.mutable_epoch() = Epoch();
    direct.set_archive_notice("Messages in this conversation are archived.");
    Must(d.ObserveConversation(direct, fuzz::kNowMs - 10 * fuzz::kDayMs).status());

    wire::ConversationInfo group = direct;
    group.set_conversation_id("grp-ops");
    group.set_group(true);
    group.set_title("ops");
    group.set_created_by("alice");
    group.set_membership_version(1);
    Must(d.ObserveConversation(group, fuzz::kNowMs - 10 * fuzz::kDayMs).status());
    return d;
  }();
  return device;
}

std::string Snapshot(const Device& d) {
  return Must(EncodeProfile(d.profile(), KeyStore::InsecurePlaintext()));
}

// A changed profile must survive a save and a load unchanged.
void CheckSaves(const Device& d) {
  const std::string text = Snapshot(d);
  auto loaded = Must(DecodeProfile(text, nullptr));
  Check(Must(EncodeProfile(loaded.profile, loaded.store)) == text);
}

// What the device remembers stays sorted: lookups rely on it.
void CheckSorted(const Profile& p) {
  Check(std::ranges::is_sorted(p.contacts, {}, &Contact::user));
  Check(std::ranges::adjacent_find(p.contacts, {}, &Contact::user) == p.contacts.end());
  for (const Contact& c : p.contacts) {
    Check(std::ranges::is_sorted(c.devices, {}, &Contact::Device::device_id));
    Check(std::ranges::adjacent_find(c.devices, {}, &Contact::Device::device_id) ==
          c.devices.end());
  }
  for (const KnownConversation& c : p.conversations) Check(std::ranges::is_sorted(c.members));
}

// The archive opens what a device sealed or accepted, to the same text.
void CheckDisclosable(const protocol::ParsedEnvelope& parsed, const std::string& epoch_public,
                      const std::string& text) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  if (epoch_public != AsString(k.archive.public_key)) return;
  auto dh = Must(protocol::EcdhP256(k.archive.private_key.view(),
                                    View(parsed.content.archive().enc())));
  auto disclosed = protocol::OpenWithArchiveDh(parsed, dh.view(), k.archive.public_key);
  Check(disclosed.ok() && disclosed->text == text);
}

std::string EpochPublicKey(const wire::EpochCertificate& cert) {
  wire::EpochCertificateBody body;
  return body.ParseFromString(cert.body()) ? body.public_key() : std::string();
}

void Conversation(const wire::ConversationInfo& c) {
  const Device& base = Registered();
  Device d = base;
  const std::string before = Snapshot(d);
  auto notices = d.ObserveConversation(c, fuzz::kNowMs);
  if (!notices.ok()) {
    Check(Snapshot(d) == before);
  } else {
    for (const Notice& n : *notices) Check(n.conversation_id == c.conversation_id());
    const auto& known = d.profile().conversations;
    Check(std::ranges::count(known, c.conversation_id(), &KnownConversation::conversation_id) ==
          1);
    CheckSorted(d.profile());
    CheckSaves(d);
  }

  auto sealed = base.PrepareMessage(c, kText, fuzz::kNowMs);
  if (!sealed.ok()) return;
  auto parsed = Must(protocol::ParseEnvelope(*sealed));
  Must(protocol::VerifyEnvelopeSignature(parsed, base.identity_public()));
  Check(parsed.header.conversation_id() == c.conversation_id());
  Check(parsed.header.sender_user() == "bob");
  Check(parsed.header.sender_device() == AsString(base.device_id()));
  // One capsule for every listed device but this one.
  int listed_others = 0;
  for (const auto& device : c.devices()) {
    if (device.device_id() != AsString(base.device_id())) ++listed_others;
  }
  Check(parsed.content.devices_size() == listed_others);
  for (const auto& capsule : parsed.content.devices()) {
    Check(capsule.device_id() != AsString(base.device_id()));
    Check(std::ranges::any_of(c.devices(), [&](const wire::DeviceInfo& device) {
      return device.device_id() == capsule.device_id() && device.user() == capsule.user();
    }));
  }
  CheckDisclosable(parsed, EpochPublicKey(c.epoch()), kText);
  // And alice, whose prekey is known, opens her copy.
  const fuzz::FixedKeys& k = fuzz::Keys();
  const bool alice_listed = std::ranges::any_of(c.devices(), [&](const wire::DeviceInfo& device) {
    return device.device_id() == AsString(k.sender_device) &&
           device.prekey().public_key() == AsString(k.sender_prekey.public_key);
  });
  if (alice_listed) {
    auto opened =
        protocol::OpenMessage(parsed, base.identity_public(), k.sender_device,
                              k.sender_prekey.private_key.view(), View(EpochPublicKey(c.epoch())));
    Check(opened.ok() && opened->text == kText);
  }
}

// A report the client makes is one the gateway records (session.cc:
// OnReportDelivery) and a frame it can decode.
void CheckReport(const wire::ReportDelivery& report, const wire::Deliver& delivery) {
  Check(report.delivery_id() == delivery.delivery_id());
  Check(report.message_id().empty() || report.message_id().size() == protocol::kMessageIdSize);
  Check(report.reason() == "archive_capsule_mismatch" || report.reason() == "bad_signature" ||
        report.reason() == "bad_device_certificate" || report.reason() == "undecryptable");
  Check(report.detail().size() <= 1024);
  wire::ClientFrame frame;
  *frame.mutable_report_delivery() = report;
  wire::ClientFrame decoded;
  Check(decoded.ParseFromString(frame.SerializeAsString()));
}

void Delivery(const wire::Deliver& delivery) {
  Device d = Registered();
  const std::string before = Snapshot(d);
  auto received = d.OpenDelivery(delivery, fuzz::kNowMs);
  if (!received.ok()) {
    Check(Snapshot(d) == before);
    if (auto report = ReportFor(delivery, received.status())) CheckReport(*report, delivery);
    return;
  }
  Check(received->sender_user == delivery.sender().user());
  Check(AsString(received->sender_device) == delivery.sender().device_id());
  for (const Notice& n : received->notices) Check(n.conversation_id == received->conversation_id);
  CheckSorted(d.profile());
  CheckSaves(d);
  auto parsed = Must(protocol::ParseEnvelope(delivery.envelope()));
  Check(AsString(received->message_id) == parsed.header.message_id());
  CheckDisclosable(parsed, EpochPublicKey(delivery.epoch()), received->text);
}

void Registration(const wire::RegisterResponse& response) {
  Device d = Unregistered();
  const std::string before = Snapshot(d);
  const Status s = d.AcceptRegistration(response, "wss://gateway.example:8443/v1", "");
  if (!s.ok()) {
    Check(Snapshot(d) == before && !d.registered());
    return;
  }
  Check(d.registered() && d.device_id() == fuzz::Keys().recipient_device);
  Check(AsString(d.profile().org_root_key) == response.org_root_key());
  // Once registered, the device reloads from its profile.
  CheckSaves(d);
  Must(Device::FromProfile(d.profile()).status());
}

void PrekeyUpdated(const wire::PrekeyUpdated& confirmation) {
  Device d = Registered();
  auto update = Must(d.BeginPrekeyRotation(fuzz::kNowMs, Bytes(32, 0x42)));
  const std::string before = Snapshot(d);
  const Status s = d.CompletePrekeyRotation(confirmation, fuzz::kNowMs);
  if (!s.ok()) {
    Check(Snapshot(d) == before);
    return;
  }
  Check(d.profile().prekey.SerializeAsString() == update.prekey().SerializeAsString());
  Check(d.profile().pending_prekeys.empty() && d.profile().retired_prekeys.size() == 1);
  Must(Device::FromProfile(d.profile()).status());
}

void Frame(const wire::ServerFrame& frame) {
  switch (frame.kind_case()) {
    case wire::ServerFrame::kConversation:
      return Conversation(frame.conversation());
    case wire::ServerFrame::kDeliver:
      return Delivery(frame.deliver());
    case wire::ServerFrame::kRegistered:
      return Registration(frame.registered());
    case wire::ServerFrame::kChallenge: {
      auto answer = Registered().AnswerChallenge(frame.challenge());
      if (answer.ok()) {
        Must(protocol::Ed25519Verify(
            Registered().identity_public(),
            protocol::AuthTranscript(View(frame.challenge().nonce()), Registered().device_id()),
            View(answer->signature())));
      }
      return;
    }
    case wire::ServerFrame::kPrekeyUpdated:
      return PrekeyUpdated(frame.prekey_updated());
    default:
      return;
  }
}

void ResignEpoch(wire::EpochCertificate& cert) {
  cert.set_signature(
      AsString(fuzz::OrgRootSign(protocol::EpochCertificateSigningInput(View(cert.body())))));
}

// Re-signs what frame carries; false if there was nothing to sign.
bool Resign(wire::ServerFrame& frame) {
  switch (frame.kind_case()) {
    case wire::ServerFrame::kConversation: {
      auto* c = frame.mutable_conversation();
      int n = 0;
      for (auto& device : *c->mutable_devices()) {
        if (n++ == kMaxResigned) break;
        fuzz::Resign(device);
      }
      if (c->has_epoch()) ResignEpoch(*c->mutable_epoch());
      return true;
    }
    case wire::ServerFrame::kDeliver: {
      auto* d = frame.mutable_deliver();
      if (d->has_sender()) fuzz::Resign(*d->mutable_sender());
      if (d->has_epoch()) ResignEpoch(*d->mutable_epoch());
      if (d->has_envelope()) {
        auto* e = d->mutable_envelope();
        e->set_signature(AsString(fuzz::SenderSign(
            Concat({AsBytes(protocol::labels::kEnvelopeSig), View(e->content())}))));
      }
      return true;
    }
    case wire::ServerFrame::kRegistered:
      if (!frame.registered().has_certificate()) return false;
      fuzz::Resign(*frame.mutable_registered()->mutable_certificate());
      return true;
    default:
      return false;
  }
}

int FuzzOne(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;  // the gateway's default max_frame_bytes
  wire::ServerFrame frame;
  if (!frame.ParseFromArray(data, static_cast<int>(size))) return 0;
  Frame(frame);
  if (Resign(frame)) Frame(frame);
  return 0;
}

}  // namespace
}  // namespace holdfast::client

// Protobuf logs every string field with invalid UTF-8 it refuses; at
// thousands of inputs a second that is noise and a slowdown.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return holdfast::client::FuzzOne(data, size);
}
