// Helpers shared by primitives.cc and hpke.cc; not part of the public API.
#pragma once

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::protocol::internal {

inline constexpr size_t kX25519KeySize = 32;
inline constexpr size_t kP256ScalarSize = 32;
inline constexpr size_t kP256PointSize = 65;

// True when `scalar` is 32 bytes encoding an integer in [1, n-1].
bool P256ScalarInRange(ByteView scalar);
// pk = sk * G, uncompressed. kInvalidArgument if sk is out of range.
Result<Bytes> P256PublicFromPrivate(ByteView private_key);
// kInvalidArgument unless `point` is a 65-byte uncompressed point on P-256.
Status ValidateP256Public(ByteView point);
Result<Bytes> X25519PublicFromPrivate(ByteView private_key);

}  // namespace holdfast::protocol::internal
