// P-256 points as PKCS#11 carries them.
#pragma once

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::hsm::internal {

inline constexpr size_t kP256PointSize = 65;  // 0x04 || x || y

// CKA_EC_PARAMS for P-256: the DER encoding of OID 1.2.840.10045.3.1.7.
inline constexpr uint8_t kP256EcParams[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                            0xce, 0x3d, 0x03, 0x01, 0x07};

// The uncompressed point from a CKA_EC_POINT value, which PKCS#11 v2.40
// defines as a DER OCTET STRING wrapping the point; a bare point is accepted
// too because some modules return one. kInternal if it is neither.
Result<Bytes> DecodeEcPointAttribute(ByteView value);

// DER OCTET STRING wrapping data.
Bytes DerOctetString(ByteView data);

// OK if point is an uncompressed P-256 point that lies on the curve;
// kInvalidArgument otherwise.
Status CheckP256Point(ByteView point);

}  // namespace holdfast::hsm::internal
