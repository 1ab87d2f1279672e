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

// Reads what FieldEncoder wrote; every read fails once the input is short.
class FieldDecoder {
 public:
  explicit FieldDecoder(ByteView in) : in_(in) {}

  bool Read(Bytes& field) {
    uint64_t n = 0;
    if (!ReadBe(4, n) || in_.size() - pos_ < n) return ok_ = false;
    field.assign(in_.begin() + pos_, in_.begin() + pos_ + n);
    pos_ += n;
    return true;
  }
  bool Read(std::string& field) {
    Bytes b;
    if (!Read(b)) return false;
    field.assign(b.begin(), b.end());
    SecureWipe(b.data(), b.size());
    return true;
  }
  bool ReadInt(int64_t& v) {
    uint64_t u = 0;
    if (!ReadBe(8, u)) return false;
    v = static_cast<int64_t>(u);
    return true;
  }
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  bool ReadBe(size_t width, uint64_t& v) {
    if (!ok_ || in_.size() - pos_ < width) return ok_ = false;
    v = 0;
    for (size_t i = 0; i < width; ++i) v = (v << 8) | in_[pos_ + i];
    pos_ += width;
    return true;
  }

  ByteView in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace holdfast::client::internal
