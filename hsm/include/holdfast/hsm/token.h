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
// Thread-safety: all methods may be called from any thread; calls are
// serialised on one session.
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
std::string EpochKeyLabel(uint32_t epoch_id);

struct TokenConfig {
  std::string module_path;   // e.g. /usr/lib/softhsm/libsofthsm2.so
  std::string token_label;   // CKA_LABEL of the token
  SecretBytes pin;           // user PIN; read from a file by the caller
};

// Reads a PIN from a file, stripping one trailing newline. kPermissionDenied,
// before anything is read, if group or others may read or write the file
// (the message names the file and its mode); kInvalidArgument if the PIN is
// empty or the file is larger than 256 bytes; kNotFound if it is absent.
Result<SecretBytes> ReadPinFile(const std::string& path);

struct KeyInfo {
  std::string label;
  Bytes public_key;          // 65-byte uncompressed P-256 point; empty if the
                             // token holds no matching public key object
  bool sensitive = false;
  bool extractable = true;
  bool can_sign = false;
  bool can_derive = false;
};

class Token {
 public:
  // Loads the module, initialises it, finds the token by label, opens a
  // session and logs in. kUnavailable when any step fails; the message names
  // the PKCS#11 function and the CKR_ value.
  // WARNING: PKCS#11 login state is per process and token. If another Token
  // of this process is logged in to the same token, the PIN is not checked
  // again.
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

  // Checks that the session is alive and logged in.
  virtual Status Ping() = 0;
};

}  // namespace holdfast::hsm
