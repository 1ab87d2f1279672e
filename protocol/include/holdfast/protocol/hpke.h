// HPKE (RFC 9180) on OpenSSL EVP: base mode, single-shot and context APIs.
//
// Supported: KEM 0x0010 DHKEM(P-256, HKDF-SHA256), 0x0020 DHKEM(X25519,
// HKDF-SHA256); KDF 0x0001 HKDF-SHA256; AEAD 0x0001 AES-128-GCM, 0x0002
// AES-256-GCM, 0x0003 ChaCha20-Poly1305, 0xFFFF export-only.
//
// Key encodings follow RFC 9180 SerializePublicKey/SerializePrivateKey:
// X25519 keys are 32 bytes; P-256 public keys are 65-byte uncompressed
// points and private keys 32-byte big-endian scalars.
#pragma once

#include <cstdint>
#include <optional>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::protocol::hpke {

enum struct KemId : uint16_t { kP256HkdfSha256 = 0x0010, kX25519HkdfSha256 = 0x0020 };
enum struct KdfId : uint16_t { kHkdfSha256 = 0x0001 };
enum struct AeadId : uint16_t {
  kAes128Gcm = 0x0001,
  kAes256Gcm = 0x0002,
  kChaCha20Poly1305 = 0x0003,
  kExportOnly = 0xFFFF,
};

struct Suite {
  KemId kem;
  KdfId kdf;
  AeadId aead;
};

// The suites Holdfast uses (docs/protocol.md).
inline constexpr Suite kDeviceSuite{KemId::kX25519HkdfSha256, KdfId::kHkdfSha256,
                                    AeadId::kChaCha20Poly1305};
inline constexpr Suite kArchiveSuite{KemId::kP256HkdfSha256, KdfId::kHkdfSha256,
                                     AeadId::kAes256Gcm};

struct KeyPair {
  SecretBytes private_key;
  Bytes public_key;
};

Result<KeyPair> GenerateKeyPair(KemId kem);
// RFC 9180 section 7.1.3 DeriveKeyPair.
Result<KeyPair> DeriveKeyPair(KemId kem, ByteView ikm);
// Computes the public key for a serialised private key.
Result<Bytes> PublicKeyFromPrivate(KemId kem, ByteView private_key);

// A sender context after SetupBaseS; holds the key schedule secrets.
class SenderContext {
 public:
  const Bytes& enc() const { return enc_; }
  Result<Bytes> Seal(ByteView aad, ByteView plaintext);
  Result<SecretBytes> Export(ByteView exporter_context, size_t length) const;

 private:
  friend class ContextAccess;
  Suite suite_{};
  Bytes enc_;
  SecretBytes key_, base_nonce_, exporter_secret_;
  uint64_t seq_ = 0;
};

class ReceiverContext {
 public:
  Result<SecretBytes> Open(ByteView aad, ByteView ciphertext);
  Result<SecretBytes> Export(ByteView exporter_context, size_t length) const;

 private:
  friend class ContextAccess;
  Suite suite_{};
  SecretBytes key_, base_nonce_, exporter_secret_;
  uint64_t seq_ = 0;
};

// SetupBaseS with a fresh random ephemeral key.
Result<SenderContext> SetupBaseSender(Suite suite, ByteView recipient_public, ByteView info);
// SetupBaseS with a given ephemeral key pair (deterministic; used for the
// archive capsule and for test vectors).
Result<SenderContext> SetupBaseSenderWithEphemeral(Suite suite, const KeyPair& ephemeral,
                                                   ByteView recipient_public, ByteView info);
Result<ReceiverContext> SetupBaseReceiver(Suite suite, ByteView enc, ByteView recipient_private,
                                          ByteView info);
// SetupBaseR when DH(skR, pkE) was computed elsewhere, e.g. inside an HSM
// that never releases skR. `dh` is the raw ECDH output (the x-coordinate for
// P-256); `recipient_public` is pkR serialised.
Result<ReceiverContext> SetupBaseReceiverWithDh(Suite suite, ByteView enc, ByteView dh,
                                                ByteView recipient_public, ByteView info);

struct Sealed {
  Bytes enc;
  Bytes ct;
};

// Single-shot base mode (RFC 9180 section 6.1).
Result<Sealed> Seal(Suite suite, ByteView recipient_public, ByteView info, ByteView aad,
                    ByteView plaintext);
Result<SecretBytes> Open(Suite suite, ByteView recipient_private, ByteView enc, ByteView info,
                         ByteView aad, ByteView ciphertext);

}  // namespace holdfast::protocol::hpke
