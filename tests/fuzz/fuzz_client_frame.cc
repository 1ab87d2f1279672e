// A websocket frame as the gateway reads it: holdfast.wire.v1.ClientFrame,
// then the pure checks the gateway makes on its payload (session.cc):
// register -> VerifyPrekey (and VerifyDeviceInfo on the DeviceInfo the
// gateway will later hand out for it), submit -> ParseEnvelope and
// VerifyEnvelopeSignature.
//
// The same bytes are also decoded as a ServerFrame, the other direction of
// the socket: that is where DeviceInfo and EpochCertificate arrive from the
// network, so VerifyDeviceInfo and VerifyEpochCertificate (fixed org root)
// run on every device and certificate in it. A certificate is tried as
// received and re-signed with the fixed root, so that mutated bodies reach
// the checks behind the signature.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_keys.h"
#include "holdfast/protocol/envelope.h"

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

void CheckClientFrame(const wire::ClientFrame& frame) {
  switch (frame.kind_case()) {
    case wire::ClientFrame::kRegister: {
      const wire::RegisterRequest& r = frame.register_();
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
      return;
    }
    case wire::ClientFrame::kSubmit:
      CheckEnvelope(frame.submit().envelope());
      return;
    case wire::ClientFrame::kHello:
    case wire::ClientFrame::kAuthenticate:
    case wire::ClientFrame::kOpenConversation:
    case wire::ClientFrame::kDeliveryAck:
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
