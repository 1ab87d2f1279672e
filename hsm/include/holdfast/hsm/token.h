// PKCS#11 key custody for Holdfast.
//
// A Token loads the PKCS#11 module named in the configuration with dlopen,
// logs in to one token as the normal user and holds the keys of the
// organisation:
//   - the org root key, label "holdfast-org-root": ECDSA P-256, sign-only;
//   - one archive epoch key per epoch, label "holdfast-epoch-<id>": P-256,
//     derive-only;
//   - in a token of its own, the enrollment key, label "holdfast-enrollment":
//     ECDSA P-256, sign-only, which countersigns device certificates.
// Every private key is generated inside the token with CKA_SENSITIVE=true,
// CKA_EXTRACTABLE=false and CKA_TOKEN=true; no private key ever leaves it.
//
// Thread-safety: all methods may be called from any thread. Each call
// borrows one session from a pool of TokenConfig::sessions sessions, so up
// to that many calls run in the token at once; further callers wait.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::hsm {

inline constexpr std::string_view kOrgRootLabel = "holdfast-org-root";
// Kept in a second token, the only one the gateway logs in to.
inline constexpr std::string_view kEnrollmentKeyLabel = "holdfast-enrollment";
// P-256 derive-only, in the archive token: legal-hold copies of content keys
// from crypto-shredded epochs are sealed to it (docs/archive.md).
inline constexpr std::string_view kHoldKeyLabel = "holdfast-hold-key";
std::string EpochKeyLabel(uint32_t epoch_id);

struct TokenConfig {
  std::string module_path;   // e.g. /usr/lib/softhsm/libsofthsm2.so
  std::string token_label;   // CKA_LABEL of the token
  SecretBytes pin;           // user PIN; read from a file by the caller
  // Sessions kept open for concurrent calls (at least 1). All share the one
  // login, which PKCS#11 keeps per process and token.
  size_t sessions = 4;
};

// Reads a PIN from a file, stripping one trailing newline. kPermissionDenied,
// before anything is read, if group or others may read or write the file
// (the message names the file and its mode); kInvalidArgument if the PIN is
// empty or the file is larger than 256 bytes; kNotFound if it is absent.
Result<SecretBytes> ReadPinFile(const std::string& path);

// Reads a PIN from the environment variable `name`, stripping one trailing
// newline. kNotFound if it is unset, kInvalidArgument if it is empty or
// longer than 256 bytes. The variable stays set (a reopened Token reads it
// again).
// WARNING: the environment of a process is readable by its user and root
// (/proc/<pid>/environ) and is inherited by children; a file or a systemd
// credential is the better source.
Result<SecretBytes> ReadPinEnv(const std::string& name);

// A private key's attributes as the token reports them. Defaults are the
// unsafe values, so an attribute the token does not report fails the policy.
struct KeyInfo {
  std::string label;
  Bytes public_key;          // 65-byte uncompressed P-256 point; empty if the
                             // token holds no matching public key object
  bool is_private = false;   // CKA_PRIVATE: usable only after login
  bool sensitive = false;
  bool extractable = true;
  bool always_sensitive = false;
  bool never_extractable = false;
  bool can_sign = false;
  bool can_derive = false;
  bool can_decrypt = true;
  bool can_unwrap = true;
  bool can_sign_recover = true;
};

// Which Holdfast keys a token may hold: the archive token the org root and
// epoch keys, the enrollment token the enrollment key only (the gateway
// logs in to it, so an epoch key there would let the gateway decrypt).
enum class TokenRole { kArchive, kEnrollment };

// The attribute policy. Every key in `keys` (as ListKeys returns them) must
// carry a label the role allows and be CKA_PRIVATE, CKA_SENSITIVE,
// CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE, not CKA_EXTRACTABLE, never
// CKA_DECRYPT, CKA_UNWRAP or CKA_SIGN_RECOVER, and have exactly its usage:
// CKA_SIGN for the org root and the enrollment key, CKA_DERIVE for epoch
// keys. kFailedPrecondition on the first violation, e.g.
//   key holdfast-epoch-000003 in token "holdfast": CKA_EXTRACTABLE is true (must be false)
Status CheckKeyPolicy(const std::vector<KeyInfo>& keys, std::string_view token_label,
                      TokenRole role);

class Token {
 public:
  // Loads the module, initialises it, finds the token by label, opens a
  // session and logs in. kUnavailable when any step fails; the message names
  // the PKCS#11 function and the CKR_ value.
  // WARNING: PKCS#11 login state is per process and token. If another Token
  // of this process is logged in to the same token, the PIN is not checked
  // again, and a C_Logout or C_CloseAllSessions by anything else in the
  // process on that token logs every Token out. The Token keeps the PIN (in
  // a wiping buffer) to log in again: a call whose session turns out closed
  // or logged out is retried once on a freshly opened and logged-in
  // session; a second failure is returned (kUnavailable).
  static Result<std::unique_ptr<Token>> Open(const TokenConfig& config);
  virtual ~Token() = default;

  // Key generation. kAlreadyExists if a private key with that label exists.
  // Returns the 65-byte uncompressed public point. GenerateSigningKey makes
  // an ECDSA P-256 sign-only pair like the org root (kInvalidArgument for an
  // empty label); GenerateOrgRoot is GenerateSigningKey(kOrgRootLabel).
  virtual Result<Bytes> GenerateSigningKey(std::string_view label) = 0;
  virtual Result<Bytes> GenerateOrgRoot() = 0;
  virtual Result<Bytes> GenerateEpochKey(uint32_t epoch_id) = 0;

  // The public key of a key pair, by label; kNotFound if absent. Describe
  // fails with kNotFound only if the private key is absent. ListKeys returns
  // the private keys labelled "holdfast-*", sorted by label.
  virtual Result<Bytes> PublicKey(std::string_view label) = 0;
  virtual Result<KeyInfo> Describe(std::string_view label) = 0;
  virtual Result<std::vector<KeyInfo>> ListKeys() = 0;

  // ECDSA P-256 over SHA-256(message) with the private key labelled
  // `label`. SHA-256 is computed in software and the digest signed with
  // CKM_ECDSA. Returns the 64-byte P1363 signature r||s. kNotFound if there
  // is no such key; a key that may not sign fails in the token (the status
  // names C_SignInit and the CKR_ value). SignWithOrgRoot is
  // Sign(kOrgRootLabel, message).
  virtual Result<Bytes> Sign(std::string_view label, ByteView message) = 0;
  virtual Result<Bytes> SignWithOrgRoot(ByteView message) = 0;

  // ECDH inside the token with the epoch key and a peer P-256 point
  // (65 bytes uncompressed). Returns the raw shared x-coordinate; the
  // derived secret object is destroyed before returning. kInvalidArgument if
  // the point is malformed or not on P-256, kNotFound if the epoch key is
  // absent.
  // WARNING: the shared secret leaves the token (SoftHSM2 has no HKDF
  // mechanism), so the caller runs HKDF in software and must wipe it; the
  // epoch private key itself never leaves.
  virtual Result<SecretBytes> DeriveEcdh(uint32_t epoch_id, ByteView peer_public) = 0;

  // Crypto-shredding and hold keys. GenerateDeriveKey makes a P-256
  // derive-only pair like an epoch key under any non-empty label;
  // DeriveEcdhWith is DeriveEcdh with the private key labelled `label`.
  // DestroyKey destroys the private key labelled `label` (C_DestroyObject)
  // and keeps its public key object; kNotFound if there is none. What the
  // token's backups hold is not touched.
  // These have defaults (failing with kFailedPrecondition) so that wrappers
  // around a Token need not forward them.
  virtual Result<Bytes> GenerateDeriveKey(std::string_view label);
  virtual Result<SecretBytes> DeriveEcdhWith(std::string_view label, ByteView peer_public);
  virtual Status DestroyKey(std::string_view label);

  // Checks that a session is alive and logged in (after the one retry
  // described at Open).
  virtual Status Ping() = 0;
};

}  // namespace holdfast::hsm
