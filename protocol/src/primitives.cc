#include "holdfast/protocol/primitives.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "primitives_internal.h"
#include "ssl_ptr.h"

namespace holdfast::protocol {
namespace {

using internal::BignumPtr;
using internal::BnCtxPtr;
using internal::EcdsaSigPtr;
using internal::EcGroupPtr;
using internal::EcPointPtr;
using internal::EvpCipherCtxPtr;
using internal::EvpMacCtxPtr;
using internal::EvpMacPtr;
using internal::EvpMdCtxPtr;
using internal::EvpPkeyCtxPtr;
using internal::EvpPkeyPtr;
using internal::SecretBignumPtr;

constexpr size_t kSha256Size = 32;
constexpr size_t kEd25519KeySize = 32;
constexpr size_t kEd25519SignatureSize = 64;
constexpr size_t kP1363Size = 64;

// Holds the input within OpenSSL's int-sized length arguments.
bool FitsInt(size_t n) { return n <= static_cast<size_t>(INT_MAX); }

const uint8_t* NonNull(ByteView v) {
  static const uint8_t kEmpty = 0;
  return v.empty() ? &kEmpty : v.data();
}

// An HMAC-SHA256 context with the digest already chosen, built once per
// thread. Setting the digest by name fetches it from the provider on every
// EVP_MAC_init; duplicating this template instead copies the fetched digest.
// thread_local rather than shared: an EVP_MAC_CTX is not meant for
// concurrent use, even read-only duplication is not documented as safe.
const EVP_MAC_CTX* HmacSha256Template() {
  thread_local const EvpMacCtxPtr tmpl = [] {
    EvpMacPtr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    EvpMacCtxPtr ctx(mac ? EVP_MAC_CTX_new(mac.get()) : nullptr);  // holds its own reference
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (ctx && EVP_MAC_CTX_set_params(ctx.get(), params) != 1) ctx.reset();
    return ctx;
  }();
  return tmpl.get();
}

Result<SecretBytes> HmacSha256(ByteView key, std::initializer_list<ByteView> parts) {
  const EVP_MAC_CTX* tmpl = HmacSha256Template();
  if (tmpl == nullptr) return Status::Internal("hmac: setup failed");
  EvpMacCtxPtr ctx(EVP_MAC_CTX_dup(tmpl));
  if (!ctx) return Status::Internal("hmac: context allocation failed");
  if (EVP_MAC_init(ctx.get(), NonNull(key), key.size(), nullptr) != 1) {
    return Status::Internal("hmac: init failed");
  }
  for (ByteView part : parts) {
    if (!part.empty() && EVP_MAC_update(ctx.get(), part.data(), part.size()) != 1) {
      return Status::Internal("hmac: update failed");
    }
  }
  SecretBytes out(kSha256Size);
  size_t out_len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &out_len, out.size()) != 1 ||
      out_len != kSha256Size) {
    return Status::Internal("hmac: final failed");
  }
  return out;
}

const EVP_CIPHER* CipherFor(Aead aead, size_t key_size) {
  switch (aead) {
    case Aead::kAes128Gcm:
      return key_size == 16 ? EVP_aes_128_gcm() : nullptr;
    case Aead::kAes256Gcm:
      return key_size == 32 ? EVP_aes_256_gcm() : nullptr;
    case Aead::kChaCha20Poly1305:
      return key_size == 32 ? EVP_chacha20_poly1305() : nullptr;
  }
  return nullptr;
}

Status CheckAeadArgs(Aead aead, ByteView key, ByteView nonce, ByteView aad, size_t text_size) {
  if (key.size() != AeadKeySize(aead)) return Status::InvalidArgument("aead: wrong key size");
  if (nonce.size() != kAeadNonceSize) return Status::InvalidArgument("aead: wrong nonce size");
  if (!FitsInt(aad.size()) || !FitsInt(text_size + kAeadTagSize)) {
    return Status::InvalidArgument("aead: input too large");
  }
  return Status::Ok();
}

Result<EvpPkeyPtr> Ed25519PrivateKey(ByteView seed) {
  if (seed.size() != kEd25519KeySize) {
    return Status::InvalidArgument("ed25519: private key must be 32 bytes");
  }
  EvpPkeyPtr key(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  if (!key) return Status::Internal("ed25519: cannot load private key");
  return key;
}

Result<Bytes> RawPublicKey(const EVP_PKEY* key, size_t size) {
  Bytes pub(size);
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key, pub.data(), &len) != 1 || len != size) {
    return Status::Internal("cannot read raw public key");
  }
  return pub;
}

// The P-256 group, built once per thread: EC_GROUP_new_by_curve_name sets up
// Montgomery contexts and costs about as much as a field inversion, and an
// EC_GROUP is not documented as safe to share between threads.
const EC_GROUP* P256Group() {
  thread_local const EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
  return group.get();
}

// A private scalar as a BIGNUM for EC_POINT_mul, flagged constant-time the
// way EC_KEY_set_private_key flags it.
SecretBignumPtr P256Scalar(ByteView scalar) {
  SecretBignumPtr k(BN_bin2bn(scalar.data(), static_cast<int>(scalar.size()), nullptr));
  if (k) BN_set_flags(k.get(), BN_FLG_CONSTTIME);
  return k;
}

// An EVP_PKEY holding only a P-256 public point, for ECDSA verification.
// Decoding checks the point (see internal::P256PublicKey::Parse).
Result<EvpPkeyPtr> P256EvpPublicKey(ByteView point) {
  if (point.size() != internal::kP256PointSize || point[0] != 0x04) {
    return Status::InvalidArgument("p256: public key must be a 65-byte uncompressed point");
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return Status::Internal("p256: cannot create key context");
  }
  char group[] = "prime256v1";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                        const_cast<uint8_t*>(point.data()), point.size()),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return Status::InvalidArgument("p256: public key is not a point on the curve");
  }
  return EvpPkeyPtr(raw);
}

}  // namespace

// ------------------------------------------------------------ internal

namespace internal {

bool P256ScalarInRange(ByteView scalar) {
  // The group order n, big-endian.
  static constexpr uint8_t kOrder[kP256ScalarSize] = {
      0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
  if (scalar.size() != kP256ScalarSize) return false;
  // scalar < n iff scalar - n borrows; no branch or early exit on the
  // secret bytes.
  unsigned borrow = 0;
  unsigned any = 0;
  for (size_t i = kP256ScalarSize; i-- > 0;) {
    const unsigned diff = static_cast<unsigned>(scalar[i]) - kOrder[i] - borrow;
    borrow = (diff >> 8) & 1u;
    any |= scalar[i];
  }
  return (borrow & static_cast<unsigned>(any != 0)) == 1u;
}

Result<Bytes> P256PublicFromPrivate(ByteView private_key) {
  if (!P256ScalarInRange(private_key)) {
    return Status::InvalidArgument("p256: private key must be a 32-byte scalar in [1, n-1]");
  }
  const EC_GROUP* group = P256Group();
  BnCtxPtr bn_ctx(BN_CTX_new());
  SecretBignumPtr k = P256Scalar(private_key);
  if (!group || !bn_ctx || !k) return Status::Internal("p256: allocation failed");
  EcPointPtr point(EC_POINT_new(group));
  if (!point || EC_POINT_mul(group, point.get(), k.get(), nullptr, nullptr, bn_ctx.get()) != 1) {
    return Status::Internal("p256: scalar multiplication failed");
  }
  Bytes out(kP256PointSize);
  if (EC_POINT_point2oct(group, point.get(), POINT_CONVERSION_UNCOMPRESSED, out.data(),
                         out.size(), bn_ctx.get()) != kP256PointSize) {
    return Status::Internal("p256: point encoding failed");
  }
  return out;
}

// What decoding guarantees, checked against OpenSSL 3.0 (crypto/ec/ecp_oct.c,
// ec_lib.c): EC_POINT_oct2point rejects x or y >= p (EC_R_INVALID_ENCODING)
// and sets the point with EC_POINT_set_affine_coordinates, which fails
// unless the point is on the curve. The 65-byte 0x04 form cannot encode the
// point at infinity (that is the single byte 0x00, refused by the size
// check). So the decoded point is a finite point of the curve, and as P-256
// has cofactor 1 every such point has order n. EVP_PKEY_public_check adds
// exactly one more test, n * Q == infinity, a full scalar multiplication that
// can never fail for a point that decoded; it is therefore not run. (The same
// holds for EVP_PKEY_fromdata with OSSL_PKEY_PARAM_PUB_KEY, which decodes with
// EC_POINT_oct2point; tests/unit/protocol's Wycheproof and invalid-point tests
// exercise the rejections.)
Result<P256PublicKey> P256PublicKey::Parse(ByteView encoded) {
  if (encoded.size() != kP256PointSize || encoded[0] != 0x04) {
    return Status::InvalidArgument("p256: public key must be a 65-byte uncompressed point");
  }
  const EC_GROUP* group = P256Group();
  if (!group) return Status::Internal("p256: allocation failed");
  EcPointPtr point(EC_POINT_new(group));
  if (!point) return Status::Internal("p256: allocation failed");
  if (EC_POINT_oct2point(group, point.get(), encoded.data(), encoded.size(), nullptr) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument("p256: public key is not a point on the curve");
  }
  return P256PublicKey(Bytes(encoded.begin(), encoded.end()), std::move(point));
}

Status ValidateP256Public(ByteView point) {
  auto key = P256PublicKey::Parse(point);
  return key.ok() ? Status::Ok() : key.status();
}

// The same computation as OpenSSL's ECDH (ossl_ecdh_simple_compute_key):
// EC_POINT_mul of the peer point by the constant-time-flagged scalar, then
// the affine x-coordinate. Done here directly on a decoded point and the
// cached group, so no EVP_PKEY is built for either side.
Result<SecretBytes> P256Dh(ByteView private_key, const P256PublicKey& peer) {
  if (!P256ScalarInRange(private_key)) {
    return Status::InvalidArgument("p256: private key must be a 32-byte scalar in [1, n-1]");
  }
  const EC_GROUP* group = P256Group();
  BnCtxPtr bn_ctx(BN_CTX_new());
  SecretBignumPtr k = P256Scalar(private_key);
  SecretBignumPtr x(BN_new());
  if (!group || !bn_ctx || !k || !x) return Status::Internal("p256: allocation failed");
  SecretEcPointPtr shared(EC_POINT_new(group));
  if (!shared ||
      EC_POINT_mul(group, shared.get(), nullptr, peer.point(), k.get(), bn_ctx.get()) != 1) {
    return Status::CryptoFailure("dh: key agreement failed");
  }
  // Infinity is impossible for k in [1, n-1] and a point of order n; the
  // call below fails on it anyway.
  SecretBytes out(kP256ScalarSize);
  if (EC_POINT_get_affine_coordinates(group, shared.get(), x.get(), nullptr, bn_ctx.get()) != 1 ||
      BN_bn2binpad(x.get(), out.data(), static_cast<int>(out.size())) !=
          static_cast<int>(kP256ScalarSize)) {
    return Status::CryptoFailure("dh: key agreement failed");
  }
  return out;
}

Result<Bytes> X25519PublicFromPrivate(ByteView private_key) {
  HF_ASSIGN_OR_RETURN(X25519PrivateKey key, X25519PrivateKey::Load(private_key));
  return key.public_key();
}

Result<X25519PrivateKey> X25519PrivateKey::Load(ByteView private_key) {
  if (private_key.size() != kX25519KeySize) {
    return Status::InvalidArgument("x25519: private key must be 32 bytes");
  }
  // Loading computes the public key; it is kept rather than recomputed.
  EvpPkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                              private_key.size()));
  if (!key) return Status::Internal("x25519: cannot load private key");
  HF_ASSIGN_OR_RETURN(Bytes pub, RawPublicKey(key.get(), kX25519KeySize));
  return X25519PrivateKey(std::move(key), std::move(pub));
}

Result<X25519PrivateKey> X25519PrivateKey::Generate() {
  // One key-generation context per thread, reused: EVP_PKEY_keygen may be
  // called repeatedly on a context, and creating one fetches the algorithm.
  thread_local const EvpPkeyCtxPtr keygen = [] {
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr));
    if (ctx && EVP_PKEY_keygen_init(ctx.get()) != 1) ctx.reset();
    return ctx;
  }();
  if (!keygen) return Status::Internal("x25519: cannot create key generation context");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen(keygen.get(), &raw) != 1) {
    return Status::Internal("x25519: key generation failed");
  }
  EvpPkeyPtr key(raw);
  HF_ASSIGN_OR_RETURN(Bytes pub, RawPublicKey(key.get(), kX25519KeySize));
  return X25519PrivateKey(std::move(key), std::move(pub));
}

Result<SecretBytes> X25519PrivateKey::Dh(ByteView peer_public) const {
  if (peer_public.size() != kX25519KeySize) {
    return Status::InvalidArgument("x25519: keys must be 32 bytes");
  }
  EvpPkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(),
                                              peer_public.size()));
  if (!peer) return Status::Internal("x25519: cannot load keys");
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) {
    return Status::Internal("dh: derive init failed");
  }
  // validate_peer = 0: for X25519, OpenSSL 3.0's public-key check
  // (ecx_validate) only confirms that the key object holds a public key,
  // which EVP_PKEY_new_raw_public_key just guaranteed. Every 32-byte string is
  // a valid X25519 input (RFC 7748); the check that matters, the all-zero
  // output of a small-order peer, is made below.
  if (EVP_PKEY_derive_set_peer_ex(ctx.get(), peer.get(), 0) != 1) {
    return Status::InvalidArgument("dh: peer public key rejected");
  }
  SecretBytes shared(kX25519KeySize);
  size_t len = shared.size();
  // OpenSSL itself fails the derivation on an all-zero output; check anyway
  // because RFC 9180 makes it a protocol requirement.
  if (EVP_PKEY_derive(ctx.get(), shared.data(), &len) != 1 || len != kX25519KeySize) {
    return Status::CryptoFailure("dh: key agreement failed");
  }
  static const std::array<uint8_t, kX25519KeySize> kZero{};
  if (ConstantTimeEqual(shared.view(), kZero)) {
    return Status::CryptoFailure("x25519: all-zero shared secret");
  }
  return shared;
}

Result<Ed25519SigningKey> Ed25519SigningKey::Load(ByteView seed) {
  HF_ASSIGN_OR_RETURN(EvpPkeyPtr key, Ed25519PrivateKey(seed));
  HF_ASSIGN_OR_RETURN(Bytes pub, RawPublicKey(key.get(), kEd25519KeySize));
  return Ed25519SigningKey(std::move(key), std::move(pub));
}

}  // namespace internal

Result<Ed25519Signer> Ed25519Signer::Load(ByteView seed) {
  HF_ASSIGN_OR_RETURN(internal::Ed25519SigningKey key, internal::Ed25519SigningKey::Load(seed));
  return Ed25519Signer(std::make_shared<const internal::Ed25519SigningKey>(std::move(key)));
}

const Bytes& Ed25519Signer::public_key() const { return key_->public_key(); }

Result<Bytes> Ed25519Signer::Sign(ByteView message) const { return key_->Sign(message); }

namespace internal {

Result<Bytes> Ed25519SigningKey::Sign(ByteView message) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
    return Status::Internal("ed25519: sign init failed");
  }
  Bytes sig(kEd25519SignatureSize);
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, NonNull(message), message.size()) != 1 ||
      len != kEd25519SignatureSize) {
    return Status::Internal("ed25519: sign failed");
  }
  return sig;
}

}  // namespace internal

// ------------------------------------------------------------------ RNG

Status RandomBytes(std::span<uint8_t> out) {
  if (out.empty()) return Status::Ok();
  if (!FitsInt(out.size())) return Status::InvalidArgument("rng: request too large");
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    return Status::Internal("rng: RAND_bytes failed");
  }
  return Status::Ok();
}

Bytes RandomBytes(size_t n) {
  Bytes out(n);
  Status status = RandomBytes(std::span<uint8_t>(out));
  // A DRBG that cannot produce output leaves nothing safe to do.
  if (!status.ok()) std::abort();
  return out;
}

// --------------------------------------------------------------- SHA-256

Bytes Sha256(ByteView data) {
  Bytes out(kSha256Size);
  unsigned int len = 0;
  if (EVP_Digest(NonNull(data), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != kSha256Size) {
    std::abort();
  }
  return out;
}

struct Sha256Hasher::Ctx {
  EvpMdCtxPtr md;
};

Sha256Hasher::Sha256Hasher() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md.reset(EVP_MD_CTX_new());
  // Fails only on allocation failure or a broken OpenSSL build.
  if (!ctx_->md || EVP_DigestInit_ex(ctx_->md.get(), EVP_sha256(), nullptr) != 1) std::abort();
}

Sha256Hasher::~Sha256Hasher() = default;

void Sha256Hasher::Update(ByteView data) {
  if (EVP_DigestUpdate(ctx_->md.get(), NonNull(data), data.size()) != 1) std::abort();
}

Bytes Sha256Hasher::Finish() {
  Bytes out(kSha256Size);
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_->md.get(), out.data(), &len) != 1 || len != kSha256Size) std::abort();
  return out;
}

// ------------------------------------------------------------------ HKDF

SecretBytes HkdfExtract(ByteView salt, ByteView ikm) {
  // RFC 5869: an absent salt is HashLen zero bytes, which HMAC pads to the
  // same key as the empty string.
  auto prk = HmacSha256(salt, {ikm});
  if (!prk.ok()) std::abort();
  return std::move(prk).value();
}

Result<SecretBytes> HkdfExpand(ByteView prk, ByteView info, size_t length) {
  if (length > 255 * kSha256Size) {
    return Status::InvalidArgument("hkdf: output longer than 255 * HashLen");
  }
  if (prk.size() < kSha256Size) return Status::InvalidArgument("hkdf: prk too short");
  SecretBytes okm(length);
  SecretBytes t;
  size_t done = 0;
  for (uint8_t counter = 1; done < length; ++counter) {
    const uint8_t c[1] = {counter};
    HF_ASSIGN_OR_RETURN(t, HmacSha256(prk, {t.view(), info, ByteView(c, 1)}));
    size_t n = std::min(t.size(), length - done);
    std::memcpy(okm.data() + done, t.data(), n);
    done += n;
  }
  return okm;
}

Result<SecretBytes> Hkdf(ByteView salt, ByteView ikm, ByteView info, size_t length) {
  SecretBytes prk = HkdfExtract(salt, ikm);
  return HkdfExpand(prk.view(), info, length);
}

// ------------------------------------------------------------------ AEAD

size_t AeadKeySize(Aead aead) {
  switch (aead) {
    case Aead::kAes128Gcm:
      return 16;
    case Aead::kAes256Gcm:
    case Aead::kChaCha20Poly1305:
      return 32;
  }
  return 0;
}

Result<Bytes> AeadSeal(Aead aead, ByteView key, ByteView nonce, ByteView aad,
                       ByteView plaintext) {
  HF_RETURN_IF_ERROR(CheckAeadArgs(aead, key, nonce, aad, plaintext.size()));
  const EVP_CIPHER* cipher = CipherFor(aead, key.size());
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!cipher || !ctx) return Status::Internal("aead: setup failed");
  if (EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_IVLEN, kAeadNonceSize, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) != 1) {
    return Status::Internal("aead: init failed");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return Status::Internal("aead: aad failed");
  }
  Bytes out(plaintext.size() + kAeadTagSize);
  int written = 0;
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), out.data(), &len, plaintext.data(),
                          static_cast<int>(plaintext.size())) != 1) {
      return Status::Internal("aead: encrypt failed");
    }
    written = len;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + written, &len) != 1) {
    return Status::Internal("aead: final failed");
  }
  written += len;
  if (static_cast<size_t>(written) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, kAeadTagSize,
                          out.data() + plaintext.size()) != 1) {
    return Status::Internal("aead: tag failed");
  }
  return out;
}

Result<SecretBytes> AeadOpen(Aead aead, ByteView key, ByteView nonce, ByteView aad,
                             ByteView ciphertext_and_tag) {
  if (ciphertext_and_tag.size() < kAeadTagSize) {
    return Status::CryptoFailure("aead: ciphertext shorter than the tag");
  }
  size_t ct_size = ciphertext_and_tag.size() - kAeadTagSize;
  HF_RETURN_IF_ERROR(CheckAeadArgs(aead, key, nonce, aad, ct_size));
  const EVP_CIPHER* cipher = CipherFor(aead, key.size());
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!cipher || !ctx) return Status::Internal("aead: setup failed");
  if (EVP_DecryptInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_IVLEN, kAeadNonceSize, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) != 1) {
    return Status::Internal("aead: init failed");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return Status::Internal("aead: aad failed");
  }
  SecretBytes out(ct_size);
  int written = 0;
  if (ct_size > 0) {
    if (EVP_DecryptUpdate(ctx.get(), out.data(), &len, ciphertext_and_tag.data(),
                          static_cast<int>(ct_size)) != 1) {
      return Status::Internal("aead: decrypt failed");
    }
    written = len;
  }
  // OpenSSL compares the tag in constant time; the caller only learns pass/fail.
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, kAeadTagSize,
                          const_cast<uint8_t*>(ciphertext_and_tag.data() + ct_size)) != 1) {
    return Status::Internal("aead: set tag failed");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + written, &len) != 1) {
    return Status::CryptoFailure("aead: authentication failed");
  }
  return out;
}

// --------------------------------------------------------------- Ed25519

Result<Ed25519KeyPair> Ed25519Generate() {
  SecretBytes seed(kEd25519KeySize);
  HF_RETURN_IF_ERROR(RandomBytes(seed.span()));
  return Ed25519FromSeed(seed.view());
}

Result<Ed25519KeyPair> Ed25519FromSeed(ByteView seed) {
  HF_ASSIGN_OR_RETURN(internal::Ed25519SigningKey key, internal::Ed25519SigningKey::Load(seed));
  return Ed25519KeyPair{SecretBytes(seed), key.public_key()};
}

Result<Bytes> Ed25519Sign(ByteView private_key, ByteView message) {
  HF_ASSIGN_OR_RETURN(internal::Ed25519SigningKey key,
                      internal::Ed25519SigningKey::Load(private_key));
  return key.Sign(message);
}

Status Ed25519Verify(ByteView public_key, ByteView message, ByteView signature) {
  if (public_key.size() != kEd25519KeySize) {
    return Status::InvalidArgument("ed25519: public key must be 32 bytes");
  }
  if (signature.size() != kEd25519SignatureSize) {
    return Status::InvalidArgument("ed25519: signature must be 64 bytes");
  }
  EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data(),
                                             public_key.size()));
  if (!key) return Status::InvalidArgument("ed25519: malformed public key");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return Status::Internal("ed25519: verify init failed");
  }
  if (EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), NonNull(message),
                       message.size()) != 1) {
    return Status::CryptoFailure("ed25519: signature does not verify");
  }
  return Status::Ok();
}

// ------------------------------------------------------------------ ECDH

Result<SecretBytes> X25519(ByteView private_key, ByteView peer_public) {
  if (private_key.size() != internal::kX25519KeySize ||
      peer_public.size() != internal::kX25519KeySize) {
    return Status::InvalidArgument("x25519: keys must be 32 bytes");
  }
  HF_ASSIGN_OR_RETURN(internal::X25519PrivateKey own,
                      internal::X25519PrivateKey::Load(private_key));
  return own.Dh(peer_public);
}

Result<SecretBytes> EcdhP256(ByteView private_key, ByteView peer_public) {
  HF_ASSIGN_OR_RETURN(internal::P256PublicKey peer, internal::P256PublicKey::Parse(peer_public));
  return internal::P256Dh(private_key, peer);
}

// ----------------------------------------------------------------- ECDSA

Status EcdsaP256Verify(ByteView public_key, ByteView message, ByteView signature_p1363) {
  if (signature_p1363.size() != kP1363Size) {
    return Status::InvalidArgument("ecdsa: signature must be 64 bytes");
  }
  HF_ASSIGN_OR_RETURN(EvpPkeyPtr key, P256EvpPublicKey(public_key));
  HF_ASSIGN_OR_RETURN(Bytes der, EcdsaP1363ToDer(signature_p1363));
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1) {
    return Status::Internal("ecdsa: verify init failed");
  }
  if (EVP_DigestVerify(ctx.get(), der.data(), der.size(), NonNull(message), message.size()) !=
      1) {
    return Status::CryptoFailure("ecdsa: signature does not verify");
  }
  return Status::Ok();
}

Result<Bytes> EcdsaP1363ToDer(ByteView p1363) {
  if (p1363.size() != kP1363Size) {
    return Status::InvalidArgument("ecdsa: P1363 signature must be 64 bytes");
  }
  BignumPtr r(BN_bin2bn(p1363.data(), 32, nullptr));
  BignumPtr s(BN_bin2bn(p1363.data() + 32, 32, nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return Status::Internal("ecdsa: allocation failed");
  }
  // ECDSA_SIG_set0 took ownership.
  (void)r.release();
  (void)s.release();
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return Status::Internal("ecdsa: DER encoding failed");
  Bytes der(static_cast<size_t>(len));
  uint8_t* p = der.data();
  if (i2d_ECDSA_SIG(sig.get(), &p) != len) return Status::Internal("ecdsa: DER encoding failed");
  return der;
}

Result<Bytes> EcdsaDerToP1363(ByteView der) {
  if (!FitsInt(der.size())) return Status::InvalidArgument("ecdsa: DER signature too large");
  const uint8_t* p = der.data();
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig || p != der.data() + der.size()) {
    return Status::InvalidArgument("ecdsa: malformed DER signature");
  }
  // Reject BER and other non-canonical encodings: only exact DER round-trips.
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  Bytes canonical(len > 0 ? static_cast<size_t>(len) : 0);
  uint8_t* q = canonical.data();
  if (len <= 0 || i2d_ECDSA_SIG(sig.get(), &q) != len ||
      !std::equal(canonical.begin(), canonical.end(), der.begin(), der.end())) {
    return Status::InvalidArgument("ecdsa: signature is not canonical DER");
  }
  const BIGNUM* r = ECDSA_SIG_get0_r(sig.get());
  const BIGNUM* s = ECDSA_SIG_get0_s(sig.get());
  Bytes out(kP1363Size);
  if (BN_is_negative(r) || BN_is_negative(s) || BN_bn2binpad(r, out.data(), 32) != 32 ||
      BN_bn2binpad(s, out.data() + 32, 32) != 32) {
    return Status::InvalidArgument("ecdsa: r or s out of range");
  }
  return out;
}

}  // namespace holdfast::protocol
