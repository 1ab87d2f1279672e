// Encryption at rest for a profile's private keys.
//
// A profile's identity seed and prekey private key are sealed with
// ChaCha20-Poly1305 under a random 32-byte store key. The store key itself
// is wrapped by a KeyWrapper: PassphraseWrapper derives a key-encryption key
// from a passphrase with Argon2id; a platform keystore (iOS Keychain, Android
// Keystore) can implement KeyWrapper instead. Only the wrapped store key is
// written to disk, so saving again (new seen message ids, say) re-seals
// without re-running Argon2id.
//
// What a wrong secret looks like:
//  - PassphraseWrapper::Unwrap fails with kPermissionDenied "wrong passphrase".
//    A file whose wrapping fields (salt, cost parameters, wrapped key) were
//    altered reads the same way: nothing can tell the two apart.
//  - A wrapper that returns some other 32-byte key is caught by the key check
//    value: kPermissionDenied.
//  - Any other change to the file (a sealed key, a bound field) fails the
//    AEAD tag: kCryptoFailure.
//
// WARNING: the store key lives in memory for as long as the KeyStore does.
// Random nonces (96 bits) are drawn for every seal; a store key is good for
// far more saves than a device will ever make, but not for 2^32.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::client {

inline constexpr size_t kStoreKeySize = 32;
// Scheme names stored in the file. Platform wrappers pick their own name
// (lower-case letters, digits and '-', at most 32 characters), never these.
inline constexpr std::string_view kArgon2idScheme = "argon2id";
inline constexpr std::string_view kInsecurePlaintextScheme = "insecure-plaintext";

bool IsValidWrapperScheme(std::string_view scheme);

// A wrapped store key as the file holds it. Every field is stored in the
// clear and bound into the associated data of the sealed keys.
struct WrappedKey {
  std::string scheme;
  std::map<std::string, std::string> params;  // scheme-specific, non-secret
  Bytes wrapped;                              // opaque to the key store
};

// Wraps and unwraps a 32-byte key. Called only from the thread creating or
// opening a KeyStore; implementations need not be thread-safe.
class KeyWrapper {
 public:
  virtual ~KeyWrapper() = default;
  // Everything in the result is stored in the clear.
  virtual Result<WrappedKey> Wrap(const SecretBytes& key) const = 0;
  // The 32-byte key; kPermissionDenied when this wrapper cannot unwrap it,
  // kFailedPrecondition when `wrapped` belongs to a different scheme.
  virtual Result<SecretBytes> Unwrap(const WrappedKey& wrapped) const = 0;
};

// Argon2id cost parameters (RFC 9106), validated on construction.
class Argon2idParams {
 public:
  static constexpr uint32_t kDefaultTimeCost = 3;
  static constexpr uint32_t kDefaultMemoryKib = 64 * 1024;
  static constexpr uint32_t kDefaultParallelism = 1;
  // Upper bounds, so that a file cannot ask for unbounded work.
  static constexpr uint32_t kMaxTimeCost = 64;
  static constexpr uint32_t kMaxMemoryKib = 4 * 1024 * 1024;
  static constexpr uint32_t kMaxParallelism = 16;

  // t = 3, m = 64 MiB, p = 1.
  static Argon2idParams Default() { return {}; }
  // kInvalidArgument unless 1 <= t <= kMaxTimeCost, 1 <= p <= kMaxParallelism
  // and 8 * p <= m_kib <= kMaxMemoryKib.
  static Result<Argon2idParams> Create(uint32_t time_cost, uint32_t memory_kib,
                                       uint32_t parallelism);

  uint32_t time_cost() const { return time_cost_; }
  uint32_t memory_kib() const { return memory_kib_; }
  uint32_t parallelism() const { return parallelism_; }

 private:
  Argon2idParams() = default;
  uint32_t time_cost_ = kDefaultTimeCost;
  uint32_t memory_kib_ = kDefaultMemoryKib;
  uint32_t parallelism_ = kDefaultParallelism;
};

// The passphrase KeyWrapper: KEK = Argon2id(passphrase, salt, t, m, p) with a
// fresh random 16-byte salt per Wrap; the store key is sealed under the KEK
// with ChaCha20-Poly1305, the scheme and parameters as associated data.
// Params: "salt" (hex), "t", "m_kib", "p" (decimal). Unwrap uses the
// parameters in the file, so they can be raised by wrapping again.
class PassphraseWrapper final : public KeyWrapper {
 public:
  // Copies `passphrase` into a buffer wiped on destruction; the caller wipes
  // its own copy. kInvalidArgument if it is empty.
  static Result<PassphraseWrapper> Create(ByteView passphrase,
                                          Argon2idParams params = Argon2idParams::Default());

  Result<WrappedKey> Wrap(const SecretBytes& key) const override;
  Result<SecretBytes> Unwrap(const WrappedKey& wrapped) const override;

 private:
  PassphraseWrapper(SecretBytes passphrase, Argon2idParams params)
      : passphrase_(std::move(passphrase)), params_(params) {}
  SecretBytes passphrase_;
  Argon2idParams params_;
};

// The encrypted part of a profile file.
struct SealedKeys {
  WrappedKey key;
  Bytes key_check;   // commits to the store key; see KeyStore
  Bytes nonce;       // 12 bytes
  Bytes ciphertext;  // ChaCha20-Poly1305 ciphertext || tag
};

// How a profile's private keys are kept: sealed under a store key, or (only
// on explicit request) in the clear. Move-only; wipes the store key.
class KeyStore final {
 public:
  // No encryption at all. Exists only for --insecure-plaintext-keys.
  static KeyStore InsecurePlaintext() { return KeyStore(); }
  // A fresh random store key wrapped by `wrapper` (one Argon2id run for a
  // passphrase).
  static Result<KeyStore> Create(const KeyWrapper& wrapper);

  KeyStore(KeyStore&&) noexcept = default;
  KeyStore& operator=(KeyStore&&) noexcept = default;
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;
  ~KeyStore() = default;

  bool encrypted() const { return !key_.empty(); }
  // The scheme name written to the file.
  std::string_view scheme() const {
    return encrypted() ? std::string_view(wrapped_.scheme) : kInsecurePlaintextScheme;
  }

  // Seals `secrets` with a fresh nonce. The associated data is a fixed label,
  // `bound` (the caller's encoding of the file's other fields), the wrapped
  // key and the key check, each length-prefixed. kFailedPrecondition for an
  // unencrypted store.
  Result<SealedKeys> Seal(ByteView secrets, ByteView bound) const;

  // Unwraps the store key with `wrapper`, checks it against the key check and
  // opens the sealed keys. On success the returned KeyStore can re-seal.
  struct Opened;
  static Result<Opened> Open(const SealedKeys& sealed, ByteView bound, const KeyWrapper& wrapper);

 private:
  KeyStore() = default;
  KeyStore(SecretBytes key, WrappedKey wrapped)
      : key_(std::move(key)), wrapped_(std::move(wrapped)) {}

  SecretBytes key_;
  WrappedKey wrapped_;
};

struct KeyStore::Opened {
  KeyStore store;
  SecretBytes secrets;
};

}  // namespace holdfast::client
