// Every label, info string and fixed context of the Holdfast v1 protocol.
// docs/protocol.md quotes these; change one and you change the wire format.
#pragma once

#include <cstdint>
#include <string_view>

namespace holdfast::protocol::labels {

inline constexpr uint32_t kProtocolVersion = 1;

// Ed25519 signature over an envelope: Sign(kEnvelopeSig || content).
inline constexpr std::string_view kEnvelopeSig = "holdfast/v1 envelope";
// Ed25519 signature over a prekey: Sign(kPrekeySig || public_key || created_at_ms as 8-byte big-endian).
inline constexpr std::string_view kPrekeySig = "holdfast/v1 prekey";
// Ed25519 signature proving possession of a device key at login:
// Sign(kAuthSig || nonce || device_id).
inline constexpr std::string_view kAuthSig = "holdfast/v1 auth";
// ECDSA P-256 SHA-256 by the org root over kEpochCertSig || body.
inline constexpr std::string_view kEpochCertSig = "holdfast/v1 epoch-cert";
// ECDSA P-256 SHA-256 by the org root over kManifestSig || manifest bytes.
inline constexpr std::string_view kManifestSig = "holdfast/v1 export-manifest";
inline constexpr std::string_view kAuditTreeHeadSig = "holdfast/v1 audit-tree-head";  // docs/archive.md
// Ed25519 by the user master key over kDeviceCertMaster || DeviceCertificateBody.
inline constexpr std::string_view kDeviceCertMaster = "holdfast/v1 device-cert master";
// ECDSA P-256 SHA-256 by the enrollment key over kDeviceCertOrg || DeviceCertificateBody.
inline constexpr std::string_view kDeviceCertOrg = "holdfast/v1 device-cert org";
// ECDSA P-256 SHA-256 by the org root over kEnrollmentKeyCertSig || body.
inline constexpr std::string_view kEnrollmentKeyCertSig = "holdfast/v1 enrollment-key-cert";
// Fingerprint = hex(SHA-256(kFingerprint || public key)[0..10)).
inline constexpr std::string_view kFingerprint = "holdfast/v1 fingerprint";
// device_id = SHA-256(kDeviceId || identity_key)[0..16).
inline constexpr std::string_view kDeviceId = "holdfast/v1 device-id";
// body_key = HKDF-SHA256(salt = "", ikm = CEK, info = kBodyKey, L = 32).
inline constexpr std::string_view kBodyKey = "holdfast/v1 body-key";
// HPKE info for a device capsule.
inline constexpr std::string_view kDeviceCapsuleInfo = "holdfast/v1 device-capsule";
// HPKE info for the archive capsule: kArchiveCapsuleInfo || epoch_id (4-byte big-endian).
inline constexpr std::string_view kArchiveCapsuleInfo = "holdfast/v1 archive-capsule";
// ikmE = HKDF-SHA256(salt = message_id, ikm = CEK, info = kArchiveEphemeral, L = 32);
// (skE, pkE) = DeriveKeyPair(ikmE) of DHKEM(P-256, HKDF-SHA256).
inline constexpr std::string_view kArchiveEphemeral = "holdfast/v1 archive-ephemeral";
// HPKE info of a hold capsule (docs/archive.md): kHoldCapsuleInfo || message_id.
inline constexpr std::string_view kHoldCapsuleInfo = "holdfast/v1 hold-capsule";
// ECDSA P-256 SHA-256 by the org root over kDeletionCertSig || certificate JSON.
inline constexpr std::string_view kDeletionCertSig = "holdfast/v1 deletion-certificate";
// ECDSA P-256 SHA-256 by the org root over kHoldKeyCertSig || certificate JSON.
inline constexpr std::string_view kHoldKeyCertSig = "holdfast/v1 hold-key-cert";

}  // namespace holdfast::protocol::labels
