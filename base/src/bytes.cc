#include "holdfast/base/bytes.h"

#include <cstring>

namespace holdfast {

void SecureWipe(void* data, size_t size) {
  if (data == nullptr || size == 0) return;
  volatile uint8_t* p = static_cast<volatile uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) p[i] = 0;
  // Keeps the stores from being treated as dead.
  asm volatile("" : : "r"(data) : "memory");
}

bool ConstantTimeEqual(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= a[i] ^ b[i];
    // Stops the compiler from turning the loop into an early-exit compare.
    asm volatile("" : "+r"(diff));
  }
  return diff == 0;
}

SecretBytes& SecretBytes::operator=(const SecretBytes& other) {
  if (this != &other) {
    Wipe();
    data_ = other.data_;
  }
  return *this;
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : data_(std::move(other.data_)) {
  other.data_.clear();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    data_ = std::move(other.data_);
    other.data_.clear();
  }
  return *this;
}

SecretBytes::~SecretBytes() { Wipe(); }

void SecretBytes::Wipe() { SecureWipe(data_.data(), data_.capacity()); }

void SecretBytes::resize(size_t n) {
  if (n <= data_.capacity()) {
    if (n < data_.size()) SecureWipe(data_.data() + n, data_.size() - n);
    data_.resize(n);
    return;
  }
  std::vector<uint8_t> grown(n);
  std::memcpy(grown.data(), data_.data(), data_.size());
  Wipe();
  data_.swap(grown);
}

std::string ToHex(ByteView data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (uint8_t b : data) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

static int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<Bytes> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

Bytes Concat(std::initializer_list<ByteView> parts) {
  size_t n = 0;
  for (auto p : parts) n += p.size();
  Bytes out;
  out.reserve(n);
  for (auto p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace holdfast
