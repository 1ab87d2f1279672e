// The device trust chain of Holdfast v1:
//
//   org root (P-256, HSM) ── signs ──> enrollment key certificate
//   enrollment key (P-256, HSM) ── countersigns ──> device certificate
//   user master key (Ed25519, client) ── signs ──> device certificate
//   device identity key (Ed25519) ── signs ──> prekeys, envelopes
//
// A device is trusted when both signatures on its certificate verify, the
// enrollment key certificate verifies under the pinned org root and was
// valid when the device was certified, and the certificate names the
// device's identity key and user. docs/protocol.md §3 is normative.
#pragma once

#include <cstdint>
#include <string>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/protocol/holdfast.pb.h"

namespace holdfast::protocol {

namespace wire = ::holdfast::wire::v1;

inline constexpr size_t kMasterKeySize = 32;  // Ed25519 public key

// ---------------------------------------------------- enrollment key

// The exact bytes the org root signs for an enrollment key certificate body.
Bytes EnrollmentKeyCertificateSigningInput(ByteView body);
// Builds an unsigned body (the caller signs EnrollmentKeyCertificateSigningInput
// of its serialisation with the org root).
wire::EnrollmentKeyCertificateBody MakeEnrollmentKeyCertificateBody(ByteView public_key,
                                                                    int64_t not_before_ms,
                                                                    int64_t not_after_ms,
                                                                    std::string org);
// Verifies the root signature and, when at_ms is not zero, that at_ms lies in
// the validity window (kFailedPrecondition otherwise).
Result<wire::EnrollmentKeyCertificateBody> VerifyEnrollmentKeyCertificate(
    const wire::EnrollmentKeyCertificate& cert, ByteView org_root_public, int64_t at_ms);

// -------------------------------------------------- device certificate

// The exact bytes the master key signs, and the enrollment key countersigns.
Bytes DeviceCertificateMasterInput(ByteView body);
Bytes DeviceCertificateOrgInput(ByteView body);

// A device certificate signed by the user's master key, not yet countersigned:
// what a device sends with its registration.
Result<wire::DeviceCertificate> CertifyDevice(ByteView master_private, const std::string& user,
                                              ByteView identity_public, int64_t issued_at_ms);

// Gateway side, before countersigning: parses the body and checks it is
// well formed, names `user` and `identity_public`, and carries a valid master
// signature. Returns the body.
Result<wire::DeviceCertificateBody> CheckCertificateRequest(const wire::DeviceCertificate& cert,
                                                            const std::string& user,
                                                            ByteView identity_public);

// What a verified device certificate establishes.
struct CertifiedDevice {
  std::string user;
  Bytes device_id;
  Bytes identity_key;
  Bytes master_key;
  int64_t issued_at_ms = 0;
  std::string org;  // named by the enrollment key certificate
};

// Full check of a countersigned certificate under the pinned org root: the
// master signature, the enrollment key certificate (valid at issued_at_ms),
// and the org countersignature.
Result<CertifiedDevice> VerifyDeviceCertificate(const wire::DeviceCertificate& cert,
                                                ByteView org_root_public);

// Everything a sender or recipient checks of a DeviceInfo: the device id is
// DeviceIdFor(identity_key), the prekey is signed by the identity key, and
// the certificate verifies under the org root and names this user, device
// and identity key.
Result<CertifiedDevice> VerifyDevice(const wire::DeviceInfo& device, ByteView org_root_public);

// Short human-comparable fingerprint of a key: 20 hex digits in groups of
// four, from SHA-256(kFingerprint || key).
std::string Fingerprint(ByteView public_key);

}  // namespace holdfast::protocol
