// A websocket frame as the gateway reads it: holdfast.wire.v1.ClientFrame,
// then the pure checks the gateway makes on its payload (session.cc):
//   register       -> VerifyPrekey, CheckCertificateRequest, and VerifyDevice
//                     on the DeviceInfo the gateway hands out once it has
//                     countersigned the certificate
//   update_prekey  -> VerifyPrekey against the fixed recipient's identity
//   report_delivery -> the message id bound, DeliveryReportReason and the
//                     sanitising of the detail the archive stores
//   submit         -> ParseEnvelope and VerifyEnvelopeSignature
// Prekeys of the fixed identities and master signatures are tried as
// received and re-signed, so that mutations reach the checks behind them.
// The member and title bounds of open_conversation, create_group and
// change_members live inside session.cc only and are not reached here.
//
// The same bytes are also decoded as a ServerFrame, the other direction of
// the socket: that is where DeviceInfo and EpochCertificate arrive from the
// network, so VerifyDeviceInfo, VerifyDevice and VerifyEpochCertificate
// (fixed org root) run on every device and certificate in it. An epoch
// certificate is tried as received and re-signed with the fixed root, so
// that mutated bodies reach the checks behind the signature. (What a device
// does with a whole ServerFrame is fuzz_client_state's.) Finally the raw
// bytes go through the detail sanitiser, as text protobuf would not let by.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz_keys.h"
#include "holdfast/archive/store.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "json.h"  // archive/src: the detail sanitiser

namespace holdfast::protocol {
namespace {

ByteView View(const std::string& s) { return AsBytes(s); }

void Check(bool condition) {
  if (!condition) std::abort();
}

void CheckEnvelope(const wire::Envelope& envelope) {
  auto parsed = ParseEnvelope(envelope);
  if (!parsed.ok()) return;
  (void)VerifyEnvelopeSignature(*parsed, fuzz::Keys().sender.public_key);
}

void CheckDevice(const wire::DeviceInfo& device) {
  const Status status = VerifyDeviceInfo(device);
  // A verified device is bound to its identity key.
  if (status.ok()) {
    Check(device.device_id() == AsString(DeviceIdFor(View(device.identity_key()))));
  }
  auto certified = VerifyDevice(device, fuzz::Keys().org_root.public_key);
  if (certified.ok()) Check(status.ok() && certified->user == device.user());
}

void CheckEpoch(const wire::EpochCertificate& cert) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  for (int64_t now : {int64_t{0}, fuzz::kNowMs}) {
    auto body = VerifyEpochCertificate(cert, k.org_root.public_key, now);
    if (body.ok()) Check(body->version() == 1 && body->public_key().size() == 65);
  }
  wire::EpochCertificate resigned = cert;
  resigned.set_signature(
      AsString(fuzz::OrgRootSign(EpochCertificateSigningInput(View(cert.body())))));
  auto body = VerifyEpochCertificate(resigned, k.org_root.public_key, fuzz::kNowMs);
  if (body.ok()) {
    Check(body->not_before_ms() <= fuzz::kNowMs && fuzz::kNowMs < body->not_after_ms());
  }
}

bool InEnrollmentWindow(int64_t at_ms) {
  return fuzz::kNowMs - 365 * fuzz::kDayMs <= at_ms && at_ms < fuzz::kNowMs + 365 * fuzz::kDayMs;
}

void CheckRegister(const wire::RegisterRequest& r) {
  const Bytes identity(r.identity_key().begin(), r.identity_key().end());
  if (identity.size() != 32) return;  // the gateway refuses before any check
  if (!VerifyPrekey(identity, r.prekey()).ok()) return;
  wire::DeviceInfo info;
  info.set_user(r.user());
  info.set_device_id(AsString(DeviceIdFor(identity)));
  info.set_identity_key(r.identity_key());
  *info.mutable_prekey() = r.prekey();
  // What the gateway stores for an accepted registration must verify for
  // every client that receives it.
  Check(VerifyDeviceInfo(info).ok());
  if (!r.has_certificate()) return;
  auto body = CheckCertificateRequest(r.certificate(), r.user(), identity);
  if (!body.ok()) return;
  Check(body->user() == r.user() && body->identity_key() == r.identity_key());
  Check(body->device_id() == info.device_id());
  // The gateway countersigns only the body and the master signature
  // (issued_at_ms within its clock skew, which lies inside the enrollment
  // key's window); clients then accept the device exactly as registered.
  wire::DeviceCertificate* cert = info.mutable_certificate();
  cert->set_body(r.certificate().body());
  cert->set_master_signature(r.certificate().master_signature());
  cert->set_org_signature(
      AsString(fuzz::EnrollmentSign(DeviceCertificateOrgInput(View(cert->body())))));
  *cert->mutable_enrollment_key() = fuzz::EnrollmentCertificate();
  auto device = VerifyDevice(info, fuzz::Keys().org_root.public_key);
  Check(device.ok() == InEnrollmentWindow(body->issued_at_ms()));
  if (device.ok()) {
    Check(device->user == r.user() && device->identity_key == identity);
    Check(AsString(device->master_key) == body->master_key());
  }
}

void CheckUpdatePrekey(const wire::UpdatePrekey& u) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  if (!VerifyPrekey(k.recipient.public_key, u.prekey()).ok()) return;
  Check(u.prekey().public_key().size() == 32);
  // The gateway hands out the device with the new prekey: it must verify.
  wire::DeviceInfo info;
  info.set_user("bob");
  info.set_device_id(AsString(k.recipient_device));
  info.set_identity_key(AsString(k.recipient.public_key));
  *info.mutable_prekey() = u.prekey();
  static const wire::DeviceCertificate cert =
      fuzz::CertifyDevice("bob", k.recipient.public_key, fuzz::kNowMs);
  *info.mutable_certificate() = cert;
  Check(VerifyDevice(info, k.org_root.public_key).ok());
}

// Strict UTF-8 as PostgreSQL takes it: shortest form, no surrogates, at
// most U+10FFFF.
bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                                                       : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

// What the archive stores of a reported detail (store.cc,
// RecordDeliveryReport): valid UTF-8 without NUL, at most the bound, the
// input itself when that already was such text.
void CheckDetail(std::string_view detail) {
  const size_t max = archive::kMaxDeliveryReportDetailBytes;
  const std::string stored = archive::internal::SanitizeUtf8(detail, max);
  Check(stored.size() <= max && ValidUtf8(stored));
  Check(stored.find('\0') == std::string::npos);
  if (detail.size() <= max && ValidUtf8(detail) && detail.find('\0') == std::string_view::npos) {
    Check(stored == detail);
  }
  // And the audit event that quotes it.
  const std::string json = archive::internal::JsonString(stored);
  Check(json.size() >= 2 && json.front() == '"' && json.back() == '"' && ValidUtf8(json));
  Check(std::ranges::none_of(json, [](char c) { return static_cast<unsigned char>(c) < 0x20; }));
}

void CheckReport(const wire::ReportDelivery& r) {
  // session.cc refuses other message ids; the store takes at most 64 bytes.
  const bool accepted = r.message_id().empty() || r.message_id().size() == kMessageIdSize;
  if (accepted) Check(r.message_id().size() <= 64);
  const std::string_view reason = archive::DeliveryReportReason(r.reason());
  Check(std::ranges::find(archive::kDeliveryReportReasons, reason) !=
        archive::kDeliveryReportReasons.end());
  Check(reason == r.reason() || reason == "other");
  CheckDetail(r.detail());
}

void CheckClientFrame(const wire::ClientFrame& frame) {
  switch (frame.kind_case()) {
    case wire::ClientFrame::kRegister: {
      CheckRegister(frame.register_());
      // As a client holding the fixed keys would have signed it.
      wire::RegisterRequest resigned = frame.register_();
      fuzz::ResignPrekey(View(resigned.identity_key()), *resigned.mutable_prekey());
      if (resigned.has_certificate()) {
        resigned.mutable_certificate()->set_master_signature(AsString(
            fuzz::MasterSign(DeviceCertificateMasterInput(View(resigned.certificate().body())))));
      }
      CheckRegister(resigned);
      return;
    }
    case wire::ClientFrame::kUpdatePrekey: {
      CheckUpdatePrekey(frame.update_prekey());
      wire::UpdatePrekey resigned = frame.update_prekey();
      fuzz::ResignPrekey(fuzz::Keys().recipient.public_key, *resigned.mutable_prekey());
      CheckUpdatePrekey(resigned);
      return;
    }
    case wire::ClientFrame::kReportDelivery:
      CheckReport(frame.report_delivery());
      return;
    case wire::ClientFrame::kSubmit:
      CheckEnvelope(frame.submit().envelope());
      return;
    case wire::ClientFrame::kHello:
    case wire::ClientFrame::kAuthenticate:
    case wire::ClientFrame::kOpenConversation:
    case wire::ClientFrame::kDeliveryAck:
    case wire::ClientFrame::kCreateGroup:
    case wire::ClientFrame::kChangeMembers:
    case wire::ClientFrame::kGetConversation:
    case wire::ClientFrame::KIND_NOT_SET:
      return;  // no pure check beyond decoding
  }
}

void CheckServerFrame(const wire::ServerFrame& frame) {
  switch (frame.kind_case()) {
    case wire::ServerFrame::kConversation: {
      const wire::ConversationInfo& c = frame.conversation();
      for (const wire::DeviceInfo& d : c.devices()) CheckDevice(d);
      if (c.has_epoch()) CheckEpoch(c.epoch());
      return;
    }
    case wire::ServerFrame::kDeliver: {
      const wire::Deliver& d = frame.deliver();
      CheckEnvelope(d.envelope());
      if (d.has_sender()) CheckDevice(d.sender());
      if (d.has_epoch()) CheckEpoch(d.epoch());
      return;
    }
    default:
      return;
  }
}

int FuzzOne(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;  // the gateway's default max_frame_bytes
  const int n = static_cast<int>(size);
  wire::ClientFrame client;
  if (client.ParseFromArray(data, n)) CheckClientFrame(client);
  wire::ServerFrame server;
  if (server.ParseFromArray(data, n)) CheckServerFrame(server);
  // A detail that is not even valid UTF-8 (protobuf would refuse it today).
  CheckDetail(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

}  // namespace
}  // namespace holdfast::protocol

// Protobuf logs every string field with invalid UTF-8 it refuses; at
// thousands of inputs a second that is noise and a slowdown.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return holdfast::protocol::FuzzOne(data, size);
}
