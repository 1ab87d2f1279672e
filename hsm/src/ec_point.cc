#include "ec_point.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#include <memory>

namespace holdfast::hsm::internal {
namespace {

struct PointDeleter {
  void operator()(EC_POINT* p) const { EC_POINT_free(p); }
};

bool IsUncompressedPoint(ByteView p) {
  return p.size() == kP256PointSize && p[0] == 0x04;
}

}  // namespace

Result<Bytes> DecodeEcPointAttribute(ByteView value) {
  if (IsUncompressedPoint(value)) return Bytes(value.begin(), value.end());
  // Tag 0x04 and a short-form length: the only DER a 65-byte point can have.
  if (value.size() == kP256PointSize + 2 && value[0] == 0x04 &&
      value[1] == kP256PointSize && IsUncompressedPoint(value.subspan(2))) {
    return Bytes(value.begin() + 2, value.end());
  }
  return Status::Internal("CKA_EC_POINT is not an uncompressed P-256 point (" +
                          std::to_string(value.size()) + " bytes)");
}

Bytes DerOctetString(ByteView data) {
  Bytes out;
  out.reserve(data.size() + 4);
  out.push_back(0x04);
  if (data.size() < 0x80) {
    out.push_back(static_cast<uint8_t>(data.size()));
  } else if (data.size() <= 0xff) {
    out.push_back(0x81);
    out.push_back(static_cast<uint8_t>(data.size()));
  } else {
    out.push_back(0x82);
    out.push_back(static_cast<uint8_t>(data.size() >> 8));
    out.push_back(static_cast<uint8_t>(data.size()));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Status CheckP256Point(ByteView point) {
  if (point.size() != kP256PointSize) {
    return Status::InvalidArgument("peer point must be 65 bytes, got " +
                                   std::to_string(point.size()));
  }
  if (point[0] != 0x04) {
    return Status::InvalidArgument("peer point must be uncompressed (0x04 prefix)");
  }
  // Built once and never freed: constructing the group costs as much as the
  // check itself, and a const EC_GROUP may be shared between threads.
  static const EC_GROUP* const group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  if (group == nullptr) return Status::Internal("EC_GROUP_new_by_curve_name(P-256) failed");
  std::unique_ptr<EC_POINT, PointDeleter> p(EC_POINT_new(group));
  if (!p) return Status::Internal("EC_POINT_new failed");
  // oct2point rejects coordinates that are out of range or off the curve.
  if (EC_POINT_oct2point(group, p.get(), point.data(), point.size(), nullptr) != 1 ||
      EC_POINT_is_at_infinity(group, p.get())) {
    ERR_clear_error();
    return Status::InvalidArgument("peer point is not on P-256");
  }
  return Status::Ok();
}

}  // namespace holdfast::hsm::internal
