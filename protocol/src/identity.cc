#include "holdfast/protocol/identity.h"

#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "primitives_internal.h"

namespace holdfast::protocol {
namespace {

constexpr size_t kEd25519PublicSize = 32;

ByteView View(const std::string& s) { return AsBytes(s); }

Status Invalid(const std::string& what) {
  return Status::InvalidArgument("device certificate: " + what);
}

Result<wire::DeviceCertificateBody> ParseBody(const wire::DeviceCertificate& cert) {
  wire::DeviceCertificateBody body;
  if (!body.ParseFromString(cert.body())) return Invalid("bad protobuf");
  if (body.version() != labels::kProtocolVersion) return Invalid("unsupported version");
  if (body.user().empty() || body.user().size() > kMaxNameSize) return Invalid("bad user name");
  if (body.identity_key().size() != kEd25519PublicSize) {
    return Invalid("identity key must be 32 bytes");
  }
  if (body.master_key().size() != kMasterKeySize) return Invalid("master key must be 32 bytes");
  if (body.device_id() != AsString(DeviceIdFor(View(body.identity_key())))) {
    return Invalid("device id does not match the identity key");
  }
  return body;
}

Status CheckMasterSignature(const wire::DeviceCertificate& cert,
                            const wire::DeviceCertificateBody& body) {
  Status s = Ed25519Verify(View(body.master_key()), DeviceCertificateMasterInput(View(cert.body())),
                           View(cert.master_signature()));
  return s.ok() ? s : s.WithContext("device certificate: master signature");
}

}  // namespace

// ---------------------------------------------------- enrollment key

Bytes EnrollmentKeyCertificateSigningInput(ByteView body) {
  return Concat({AsBytes(labels::kEnrollmentKeyCertSig), body});
}

wire::EnrollmentKeyCertificateBody MakeEnrollmentKeyCertificateBody(ByteView public_key,
                                                                    int64_t not_before_ms,
                                                                    int64_t not_after_ms,
                                                                    std::string org) {
  wire::EnrollmentKeyCertificateBody body;
  body.set_version(labels::kProtocolVersion);
  body.set_public_key(AsString(public_key));
  body.set_not_before_ms(not_before_ms);
  body.set_not_after_ms(not_after_ms);
  body.set_org(std::move(org));
  return body;
}

Result<wire::EnrollmentKeyCertificateBody> VerifyEnrollmentKeyCertificate(
    const wire::EnrollmentKeyCertificate& cert, ByteView org_root_public, int64_t at_ms) {
  Status status = EcdsaP256Verify(org_root_public,
                                  EnrollmentKeyCertificateSigningInput(View(cert.body())),
                                  View(cert.signature()));
  if (!status.ok()) return status.WithContext("enrollment key certificate");
  wire::EnrollmentKeyCertificateBody body;
  if (!body.ParseFromString(cert.body())) {
    return Status::InvalidArgument("enrollment key certificate: bad protobuf");
  }
  if (body.version() != labels::kProtocolVersion) {
    return Status::InvalidArgument("enrollment key certificate: unsupported version");
  }
  if (!internal::ValidateP256Public(View(body.public_key())).ok()) {
    return Status::InvalidArgument(
        "enrollment key certificate: public key is not a valid P-256 point");
  }
  if (at_ms != 0 && (at_ms < body.not_before_ms() || at_ms >= body.not_after_ms())) {
    return Status::FailedPrecondition("enrollment key certificate: outside its validity window");
  }
  return body;
}

// -------------------------------------------------- device certificate

Bytes DeviceCertificateMasterInput(ByteView body) {
  return Concat({AsBytes(labels::kDeviceCertMaster), body});
}

Bytes DeviceCertificateOrgInput(ByteView body) {
  return Concat({AsBytes(labels::kDeviceCertOrg), body});
}

Result<wire::DeviceCertificate> CertifyDevice(ByteView master_private, const std::string& user,
                                              ByteView identity_public, int64_t issued_at_ms) {
  if (identity_public.size() != kEd25519PublicSize) {
    return Invalid("identity key must be 32 bytes");
  }
  HF_ASSIGN_OR_RETURN(internal::Ed25519SigningKey master,
                      internal::Ed25519SigningKey::Load(master_private));
  wire::DeviceCertificateBody body;
  body.set_version(labels::kProtocolVersion);
  body.set_user(user);
  body.set_device_id(AsString(DeviceIdFor(identity_public)));
  body.set_identity_key(AsString(identity_public));
  body.set_master_key(AsString(master.public_key()));
  body.set_issued_at_ms(issued_at_ms);
  wire::DeviceCertificate cert;
  cert.set_body(body.SerializeAsString());
  HF_ASSIGN_OR_RETURN(Bytes signature, master.Sign(DeviceCertificateMasterInput(View(cert.body()))));
  cert.set_master_signature(AsString(signature));
  // Checked like any other certificate: a malformed user name fails here.
  HF_RETURN_IF_ERROR(ParseBody(cert).status());
  return cert;
}

Result<wire::DeviceCertificateBody> CheckCertificateRequest(const wire::DeviceCertificate& cert,
                                                            const std::string& user,
                                                            ByteView identity_public) {
  HF_ASSIGN_OR_RETURN(wire::DeviceCertificateBody body, ParseBody(cert));
  if (body.user() != user) return Invalid("names another user");
  if (body.identity_key() != AsString(identity_public)) {
    return Invalid("names another identity key");
  }
  HF_RETURN_IF_ERROR(CheckMasterSignature(cert, body));
  return body;
}

Result<CertifiedDevice> VerifyDeviceCertificate(const wire::DeviceCertificate& cert,
                                                ByteView org_root_public) {
  HF_ASSIGN_OR_RETURN(wire::DeviceCertificateBody body, ParseBody(cert));
  HF_RETURN_IF_ERROR(CheckMasterSignature(cert, body));
  if (!cert.has_enrollment_key()) return Invalid("no enrollment key certificate");
  // The window is checked here: VerifyEnrollmentKeyCertificate skips it for
  // at_ms == 0, which is what a body without issued_at_ms carries.
  auto enrollment = VerifyEnrollmentKeyCertificate(cert.enrollment_key(), org_root_public, 0);
  if (!enrollment.ok()) return enrollment.status().WithContext("device certificate");
  if (body.issued_at_ms() < enrollment->not_before_ms() ||
      body.issued_at_ms() >= enrollment->not_after_ms()) {
    return Status::FailedPrecondition(
        "device certificate: enrollment key certificate: outside its validity window");
  }
  Status s = EcdsaP256Verify(View(enrollment->public_key()),
                             DeviceCertificateOrgInput(View(cert.body())),
                             View(cert.org_signature()));
  if (!s.ok()) return s.WithContext("device certificate: org countersignature");
  CertifiedDevice out;
  out.user = body.user();
  out.device_id.assign(body.device_id().begin(), body.device_id().end());
  out.identity_key.assign(body.identity_key().begin(), body.identity_key().end());
  out.master_key.assign(body.master_key().begin(), body.master_key().end());
  out.issued_at_ms = body.issued_at_ms();
  out.org = enrollment->org();
  return out;
}

Result<CertifiedDevice> VerifyDevice(const wire::DeviceInfo& device, ByteView org_root_public) {
  HF_RETURN_IF_ERROR(VerifyDeviceInfo(device));
  if (!device.has_certificate()) return Invalid("missing");
  HF_ASSIGN_OR_RETURN(CertifiedDevice certified,
                      VerifyDeviceCertificate(device.certificate(), org_root_public));
  if (certified.user != device.user() || AsString(certified.device_id) != device.device_id() ||
      AsString(certified.identity_key) != device.identity_key()) {
    return Invalid("does not name this device");
  }
  return certified;
}

std::string Fingerprint(ByteView public_key) {
  Bytes digest = Sha256(Concat({AsBytes(labels::kFingerprint), public_key}));
  const std::string hex = ToHex(ByteView(digest.data(), 10));
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 4) {
    if (i) out += ' ';
    out += hex.substr(i, 4);
  }
  return out;
}

}  // namespace holdfast::protocol
