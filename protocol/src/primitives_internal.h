// Helpers shared by primitives.cc, hpke.cc and envelope.cc; not part of the
// public API.
//
// The classes here exist so that a key is decoded, checked and loaded into
// OpenSSL once and then used as often as a caller needs within one
// operation (SealMessage, OpenMessage, OpenWithArchiveDh), instead of being
// rebuilt from bytes, and re-validated, at every use.
#pragma once

#include <utility>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "ssl_ptr.h"

namespace holdfast::protocol::internal {

inline constexpr size_t kX25519KeySize = 32;
inline constexpr size_t kP256ScalarSize = 32;
inline constexpr size_t kP256PointSize = 65;

// True when `scalar` is 32 bytes encoding an integer in [1, n-1]. Runs in
// time independent of the value of the scalar.
bool P256ScalarInRange(ByteView scalar);
// pk = sk * G, uncompressed. kInvalidArgument if sk is out of range.
Result<Bytes> P256PublicFromPrivate(ByteView private_key);
// kInvalidArgument unless `point` is a 65-byte uncompressed point on P-256.
Status ValidateP256Public(ByteView point);
Result<Bytes> X25519PublicFromPrivate(ByteView private_key);

// A P-256 public key decoded from its 65-byte uncompressed encoding. A value
// of this type is a point on the curve and not the point at infinity (see
// Parse for why that is all the validation P-256 needs).
class P256PublicKey {
 public:
  static Result<P256PublicKey> Parse(ByteView encoded);

  ByteView encoded() const { return encoded_; }
  const EC_POINT* point() const { return point_.get(); }

 private:
  P256PublicKey(Bytes encoded, EcPointPtr point)
      : encoded_(std::move(encoded)), point_(std::move(point)) {}

  Bytes encoded_;
  EcPointPtr point_;
};

// P-256 ECDH with a decoded peer key: the x-coordinate of sk * peer.
// kInvalidArgument if sk is not a scalar in [1, n-1].
Result<SecretBytes> P256Dh(ByteView private_key, const P256PublicKey& peer);

// An X25519 private key loaded into OpenSSL once, with its public key.
class X25519PrivateKey {
 public:
  static Result<X25519PrivateKey> Load(ByteView private_key);
  // A fresh random key from the OpenSSL DRBG.
  static Result<X25519PrivateKey> Generate();

  const Bytes& public_key() const { return public_key_; }
  // X25519(sk, peer); kCryptoFailure on an all-zero output (RFC 9180 7.1.4).
  Result<SecretBytes> Dh(ByteView peer_public) const;

 private:
  X25519PrivateKey(EvpPkeyPtr key, Bytes public_key)
      : key_(std::move(key)), public_key_(std::move(public_key)) {}

  EvpPkeyPtr key_;
  Bytes public_key_;
};

// An Ed25519 signing key loaded into OpenSSL once (which computes the public
// key), so that deriving the public key and signing do not each redo it.
class Ed25519SigningKey {
 public:
  static Result<Ed25519SigningKey> Load(ByteView seed);

  const Bytes& public_key() const { return public_key_; }
  Result<Bytes> Sign(ByteView message) const;

 private:
  Ed25519SigningKey(EvpPkeyPtr key, Bytes public_key)
      : key_(std::move(key)), public_key_(std::move(public_key)) {}

  EvpPkeyPtr key_;
  Bytes public_key_;
};

}  // namespace holdfast::protocol::internal
