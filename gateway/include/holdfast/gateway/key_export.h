// The organisation's public key material for auditors and for pinning in a
// client's MDM profile (`holdfast-admin keys export`), and the offline check
// of anything the org root signs (`holdfast-admin verify-cert`), which needs
// no configuration, database or HSM.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/archive/database.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/gateway/config.h"
#include "holdfast/hsm/token.h"

namespace holdfast::gateway {

// File names inside an export directory.
inline constexpr std::string_view kOrgRootPemFile = "org-root.pem";
inline constexpr std::string_view kOrgRootHexFile = "org-root.hex";
inline constexpr std::string_view kEnrollmentCertFile = "enrollment-key.cert";
inline constexpr std::string_view kEnrollmentJsonFile = "enrollment-key.json";
inline constexpr std::string_view kExportReadmeFile = "README.txt";
inline constexpr std::string_view kExportSumsFile = "SHA256SUMS";
// "epoch-000001.cert" / ".json", as the HSM labels.
std::string EpochCertFile(uint32_t epoch_id);
std::string EpochJsonFile(uint32_t epoch_id);

struct ExportedFile {
  std::string name;
  std::string sha256;  // hex
  uint64_t bytes = 0;
};

struct KeyExportSummary {
  std::string out_dir;
  Bytes org_root;
  std::vector<ExportedFile> files;  // SHA256SUMS last
};

// Writes into `dir` (created mode 0755; kAlreadyExists if it holds anything):
// the org root public key (PEM SubjectPublicKeyInfo and hex), the enrollment
// key certificate and every epoch certificate (serialised wire certificate
// and a JSON rendering of its body), README.txt describing each file with its
// SHA-256, and SHA256SUMS (`sha256sum -c` format) over all of them. The org
// root key is read from `token` and must equal the one recorded in the
// database; every certificate must verify under it before anything is
// written (kFailedPrecondition otherwise). Audited as "key.export" by `actor`.
Result<KeyExportSummary> ExportPublicKeys(archive::Connection& conn, hsm::Token& token,
                                          const Config& config, const std::string& dir,
                                          const std::string& actor);

// A P-256 point (65 bytes, uncompressed) as a PEM SubjectPublicKeyInfo.
Result<std::string> P256PublicKeyPem(ByteView point);
// The org root key from a file's text: a PEM SubjectPublicKeyInfo of a
// P-256 key, or 130 hex digits (04...). Returns the uncompressed point.
Result<Bytes> ParseOrgRootKey(std::string_view text);

enum class SignedObject { kEpochCertificate, kEnrollmentKeyCertificate, kDeviceCertificate, kExportManifest };

struct VerifiedObject {
  SignedObject kind;
  std::vector<std::string> facts;  // what the signatures establish, one line each
};

// Reads `path` and verifies it under `org_root`, recognising a serialised
// wire EpochCertificate, EnrollmentKeyCertificate or DeviceCertificate, or an
// export manifest.json (a file starting with '{'), whose signature is read
// from `signature_path` or else from manifest.sig beside it; files the
// manifest lists that are beside it must match their SHA-256 and size.
// kCryptoFailure when a signature does not verify, kInvalidArgument when the
// file is none of these. Validity windows are reported against now_ms, not
// enforced.
Result<VerifiedObject> VerifySignedFile(const std::string& path, ByteView org_root,
                                        const std::optional<std::string>& signature_path, int64_t now_ms);

}  // namespace holdfast::gateway
