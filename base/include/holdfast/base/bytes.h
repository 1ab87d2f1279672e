// Byte strings, secrets that wipe themselves, hex, and constant-time compare.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

// Overwrites memory in a way the optimiser may not remove.
void SecureWipe(void* data, size_t size);

// Compares two byte strings in time that depends only on their lengths.
bool ConstantTimeEqual(ByteView a, ByteView b);

// A heap buffer for key material. Wiped on destruction and on move-from.
// Deliberately has no implicit conversion to Bytes: copying a secret into an
// ordinary buffer must be written out with Reveal().
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size) : data_(size) {}
  explicit SecretBytes(ByteView data) : data_(data.begin(), data.end()) {}
  SecretBytes(const SecretBytes&) = default;
  SecretBytes& operator=(const SecretBytes& other);
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes();

  uint8_t* data() { return data_.data(); }
  const uint8_t* data() const { return data_.data(); }
  size_t size() const { return data_.size(); }
  bool empty() const { return data_.empty(); }
  void resize(size_t n);  // wipes the old storage if it reallocates
  ByteView view() const { return {data_.data(), data_.size()}; }
  std::span<uint8_t> span() { return {data_.data(), data_.size()}; }
  // Every use of Reveal() is a place a secret leaves this type; grep for it.
  Bytes Reveal() const { return data_; }

 private:
  void Wipe();
  std::vector<uint8_t> data_;
};

std::string ToHex(ByteView data);
std::optional<Bytes> FromHex(std::string_view hex);

inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string AsString(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
Bytes Concat(std::initializer_list<ByteView> parts);

}  // namespace holdfast
