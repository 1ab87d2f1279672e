// The device trust chain on untrusted bytes, under the fixed org root. The
// first byte (modulo 5) chooses what the rest is:
//   0  a DeviceInfo                -> VerifyDevice, and the certificate checks below
//   1  a DeviceCertificate         -> VerifyDeviceCertificate, CheckCertificateRequest
//   2  an EnrollmentKeyCertificate -> VerifyEnrollmentKeyCertificate
//   3  a DeviceCertificateBody     -> as 1 (and 0 for the fixed identities), signed
//                                     and chained by the fixed keys
//   4  an EnrollmentKeyCertificateBody -> as 2, signed by the fixed root
// Everything that parses is tried as received and re-signed with the fixed
// keys (master, enrollment, org root, and the fixed identities' prekeys), so
// that mutated bodies reach the parsing and the chain checks behind the
// signatures. Kinds 3 and 4 let the mutations work on a body's fields
// directly rather than through the length prefix of the message around it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_keys.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"

namespace holdfast::protocol {
namespace {

ByteView View(const std::string& s) { return AsBytes(s); }

void Check(bool condition) {
  if (!condition) std::abort();
}

const Bytes& Root() { return fuzz::Keys().org_root.public_key; }

bool InEnrollmentWindow(int64_t at_ms) {
  return fuzz::kNowMs - 365 * fuzz::kDayMs <= at_ms && at_ms < fuzz::kNowMs + 365 * fuzz::kDayMs;
}

void CheckEnrollment(const wire::EnrollmentKeyCertificate& cert) {
  for (int64_t at : {int64_t{0}, fuzz::kNowMs}) {
    auto body = VerifyEnrollmentKeyCertificate(cert, Root(), at);
    if (!body.ok()) continue;
    Check(body->version() == labels::kProtocolVersion);
    Check(body->public_key().size() == 65 && body->public_key()[0] == 0x04);
    if (at != 0) Check(body->not_before_ms() <= at && at < body->not_after_ms());
  }
  // A key certificate that verifies certifies the fixed enrollment key's
  // countersignatures exactly within its window (docs/protocol.md 4.5, 3).
  auto body = VerifyEnrollmentKeyCertificate(cert, Root(), 0);
  if (!body.ok() || body->public_key() != AsString(fuzz::Keys().enrollment.public_key)) return;
  wire::DeviceCertificate device = fuzz::CertifyDevice("bob", fuzz::Keys().recipient.public_key,
                                                       fuzz::kNowMs);
  *device.mutable_enrollment_key() = cert;
  const bool in_window =
      body->not_before_ms() <= fuzz::kNowMs && fuzz::kNowMs < body->not_after_ms();
  Check(VerifyDeviceCertificate(device, Root()).ok() == in_window);
}

void CheckCertificate(const wire::DeviceCertificate& cert) {
  wire::DeviceCertificateBody body;
  const bool parsed = body.ParseFromString(cert.body());
  auto verified = VerifyDeviceCertificate(cert, Root());
  if (verified.ok()) {
    Check(parsed);
    Check(!verified->user.empty() && verified->user.size() <= kMaxNameSize);
    Check(verified->user == body.user());
    Check(verified->identity_key.size() == 32 &&
          AsString(verified->identity_key) == body.identity_key());
    Check(verified->device_id == DeviceIdFor(verified->identity_key));
    Check(verified->master_key.size() == kMasterKeySize &&
          AsString(verified->master_key) == body.master_key());
    Check(verified->issued_at_ms == body.issued_at_ms());
    // The full check includes the gateway's.
    Check(CheckCertificateRequest(cert, verified->user, verified->identity_key).ok());
    // The enrollment key was valid when the device was certified.
    auto enrollment = VerifyEnrollmentKeyCertificate(cert.enrollment_key(), Root(), 0);
    Check(enrollment.ok());
    Check(enrollment->not_before_ms() <= verified->issued_at_ms &&
          verified->issued_at_ms < enrollment->not_after_ms());
  }
  if (cert.has_enrollment_key()) CheckEnrollment(cert.enrollment_key());
  if (!parsed) return;

  // The gateway's check with the names the body claims, then what the
  // gateway makes of an accepted request: countersigned by the enrollment
  // key, it must verify for every client if issued inside the key's window,
  // and never outside it.
  auto request = CheckCertificateRequest(cert, body.user(), View(body.identity_key()));
  if (!request.ok()) return;
  Check(request->user() == body.user() && request->identity_key() == body.identity_key());
  Check(request->device_id() == AsString(DeviceIdFor(View(request->identity_key()))));
  wire::DeviceCertificate countersigned;
  countersigned.set_body(cert.body());
  countersigned.set_master_signature(cert.master_signature());
  countersigned.set_org_signature(
      AsString(fuzz::EnrollmentSign(DeviceCertificateOrgInput(View(cert.body())))));
  *countersigned.mutable_enrollment_key() = fuzz::EnrollmentCertificate();
  Check(VerifyDeviceCertificate(countersigned, Root()).ok() ==
        InEnrollmentWindow(request->issued_at_ms()));
}

void CheckDevice(const wire::DeviceInfo& device) {
  auto verified = VerifyDevice(device, Root());
  if (verified.ok()) {
    Check(verified->user == device.user());
    Check(AsString(verified->device_id) == device.device_id());
    Check(AsString(verified->identity_key) == device.identity_key());
    Check(VerifyDeviceInfo(device).ok());
    auto certified = VerifyDeviceCertificate(device.certificate(), Root());
    Check(certified.ok() && certified->master_key == verified->master_key &&
          certified->issued_at_ms == verified->issued_at_ms);
  }
  if (device.has_certificate()) CheckCertificate(device.certificate());
}

int FuzzOne(const uint8_t* data, size_t size) {
  if (size == 0 || size > (1u << 20)) return 0;
  const uint8_t kind = data[0] % 5;
  const uint8_t* rest = data + 1;
  const int n = static_cast<int>(size - 1);
  switch (kind) {
    case 0: {
      wire::DeviceInfo device;
      if (!device.ParseFromArray(rest, n)) return 0;
      CheckDevice(device);
      fuzz::Resign(device);
      CheckDevice(device);
      return 0;
    }
    case 1: {
      wire::DeviceCertificate cert;
      if (!cert.ParseFromArray(rest, n)) return 0;
      CheckCertificate(cert);
      fuzz::Resign(cert);
      CheckCertificate(cert);
      return 0;
    }
    case 2: {
      wire::EnrollmentKeyCertificate cert;
      if (!cert.ParseFromArray(rest, n)) return 0;
      CheckEnrollment(cert);
      cert.set_signature(
          AsString(fuzz::OrgRootSign(EnrollmentKeyCertificateSigningInput(View(cert.body())))));
      CheckEnrollment(cert);
      return 0;
    }
    case 3: {
      wire::DeviceCertificate cert;
      cert.set_body(reinterpret_cast<const char*>(rest), size - 1);
      *cert.mutable_enrollment_key() = fuzz::EnrollmentCertificate();
      fuzz::Resign(cert);
      CheckCertificate(cert);
      // As the certificate of a device whose prekey the fixed keys can sign.
      wire::DeviceCertificateBody body;
      if (!body.ParseFromString(cert.body())) return 0;
      wire::DeviceInfo device;
      device.set_user(body.user());
      device.set_device_id(body.device_id());
      device.set_identity_key(body.identity_key());
      device.mutable_prekey()->set_public_key(AsString(fuzz::Keys().recipient_prekey.public_key));
      device.mutable_prekey()->set_created_at_ms(fuzz::kNowMs);
      *device.mutable_certificate() = cert;
      fuzz::ResignPrekey(View(device.identity_key()), *device.mutable_prekey());
      CheckDevice(device);
      return 0;
    }
    default: {
      wire::EnrollmentKeyCertificate cert;
      cert.set_body(reinterpret_cast<const char*>(rest), size - 1);
      cert.set_signature(
          AsString(fuzz::OrgRootSign(EnrollmentKeyCertificateSigningInput(View(cert.body())))));
      CheckEnrollment(cert);
      return 0;
    }
  }
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
