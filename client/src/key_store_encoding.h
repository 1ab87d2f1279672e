// Unambiguous byte encoding of a list of fields, used as AEAD associated
// data by the key store. Private to client/.
//
// Encoding: label, then for each field a 4-byte big-endian length and the
// bytes; counts and integers are 8-byte big-endian values without a length.
#pragma once

#include <cstdint>
#include <string_view>

#include "holdfast/base/bytes.h"

namespace holdfast::client::internal {

class FieldEncoder {
 public:
  explicit FieldEncoder(std::string_view label) { Add(label); }

  void Add(ByteView field) {
    const auto n = static_cast<uint32_t>(field.size());
    for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<uint8_t>(n >> shift));
    out_.insert(out_.end(), field.begin(), field.end());
  }
  void Add(std::string_view field) { Add(AsBytes(field)); }
  void AddInt(int64_t v) {
    const auto u = static_cast<uint64_t>(v);
    for (int shift = 56; shift >= 0; shift -= 8) out_.push_back(static_cast<uint8_t>(u >> shift));
  }
  void AddCount(size_t n) { AddInt(static_cast<int64_t>(n)); }

  Bytes Finish() && { return std::move(out_); }

 private:
  Bytes out_;
};

}  // namespace holdfast::client::internal
