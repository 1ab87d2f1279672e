// An ECDSA P-256 signing key in software, for tests that play the org root
// or the enrollment key the way the HSM would: SHA-256, P1363 r||s.
#pragma once

#include <memory>

#include "holdfast/base/bytes.h"

namespace holdfast::testing {

class P256Key {
 public:
  P256Key();  // a fresh key; throws std::runtime_error if OpenSSL fails
  ~P256Key();
  P256Key(const P256Key&) = delete;
  P256Key& operator=(const P256Key&) = delete;

  const Bytes& public_key() const { return public_key_; }  // 65-byte uncompressed point
  // ECDSA over SHA-256(message), 64 bytes r||s.
  Bytes Sign(ByteView message) const;

 private:
  struct Key;
  std::unique_ptr<Key> key_;
  Bytes public_key_;
};

}  // namespace holdfast::testing
