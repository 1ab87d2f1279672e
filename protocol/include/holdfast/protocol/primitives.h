// Thin, misuse-resistant wrappers over OpenSSL 3 EVP for the primitives the
// protocol uses. Pure functions; no I/O besides the system RNG.
#pragma once

#include <cstdint>
#include <memory>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::protocol {

// Fills `out` from the OpenSSL DRBG.
Status RandomBytes(std::span<uint8_t> out);
Bytes RandomBytes(size_t n);

Bytes Sha256(ByteView data);

// Incremental SHA-256, for data that arrives in pieces (files, streams).
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void Update(ByteView data);
  // The digest of everything passed to Update; the hasher is spent after.
  Bytes Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// RFC 5869.
SecretBytes HkdfExtract(ByteView salt, ByteView ikm);
Result<SecretBytes> HkdfExpand(ByteView prk, ByteView info, size_t length);
Result<SecretBytes> Hkdf(ByteView salt, ByteView ikm, ByteView info, size_t length);

enum class Aead { kAes128Gcm, kAes256Gcm, kChaCha20Poly1305 };
size_t AeadKeySize(Aead aead);
inline constexpr size_t kAeadNonceSize = 12;
inline constexpr size_t kAeadTagSize = 16;

// Returns ciphertext || tag.
Result<Bytes> AeadSeal(Aead aead, ByteView key, ByteView nonce, ByteView aad, ByteView plaintext);
// Returns the plaintext, or kCryptoFailure if the tag does not verify.
Result<SecretBytes> AeadOpen(Aead aead, ByteView key, ByteView nonce, ByteView aad,
                             ByteView ciphertext_and_tag);

// Ed25519 (RFC 8032). Private keys are the 32-byte seed.
struct Ed25519KeyPair {
  SecretBytes private_key;
  Bytes public_key;
};
Result<Ed25519KeyPair> Ed25519Generate();
Result<Ed25519KeyPair> Ed25519FromSeed(ByteView seed);
Result<Bytes> Ed25519Sign(ByteView private_key, ByteView message);
// kCryptoFailure if the signature does not verify, kInvalidArgument if malformed.
Status Ed25519Verify(ByteView public_key, ByteView message, ByteView signature);

namespace internal {
class Ed25519SigningKey;
}

// An Ed25519 private key loaded once, for signing many messages: loading
// computes the public key (a base-point multiplication), which signing with
// raw seed bytes would repeat every time. Copies share the immutable key;
// Sign may be called from several threads at once.
class Ed25519Signer {
 public:
  static Result<Ed25519Signer> Load(ByteView seed);
  const Bytes& public_key() const;
  Result<Bytes> Sign(ByteView message) const;
  const internal::Ed25519SigningKey& key() const { return *key_; }

 private:
  explicit Ed25519Signer(std::shared_ptr<const internal::Ed25519SigningKey> key)
      : key_(std::move(key)) {}
  std::shared_ptr<const internal::Ed25519SigningKey> key_;
};

// X25519 (RFC 7748) on 32-byte keys. kCryptoFailure when the output is all
// zero (a small-order peer key), as RFC 9180 section 7.1.4 requires.
Result<SecretBytes> X25519(ByteView private_key, ByteView peer_public);

// P-256 ECDH. The private key is a 32-byte big-endian scalar in [1, n-1]; the
// peer key a 65-byte uncompressed point, rejected (kInvalidArgument) unless it
// is on the curve. Returns the 32-byte x-coordinate of the shared point.
Result<SecretBytes> EcdhP256(ByteView private_key, ByteView peer_public);

// ECDSA P-256 with SHA-256. Signatures are IEEE P1363 (64-byte r||s);
// public keys are 65-byte uncompressed SEC1 points.
Status EcdsaP256Verify(ByteView public_key, ByteView message, ByteView signature_p1363);
// Converts a P1363 signature to DER and back (OpenSSL speaks DER).
Result<Bytes> EcdsaP1363ToDer(ByteView p1363);
Result<Bytes> EcdsaDerToP1363(ByteView der);

}  // namespace holdfast::protocol
