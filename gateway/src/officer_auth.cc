#include "holdfast/gateway/officer_auth.h"

#include <argon2.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cctype>

#include "holdfast/protocol/primitives.h"

namespace holdfast::gateway {
namespace {

constexpr uint32_t kArgonMemoryKiB = 64 * 1024;
constexpr uint32_t kArgonPasses = 3;
constexpr uint32_t kArgonLanes = 1;
constexpr size_t kArgonSaltBytes = 16;
constexpr size_t kArgonHashBytes = 32;

}  // namespace

Result<std::string> HashPassword(std::string_view password) {
  if (password.size() < 12) return Status::InvalidArgument("a password has at least 12 characters");
  Bytes salt = protocol::RandomBytes(kArgonSaltBytes);
  std::string encoded(argon2_encodedlen(kArgonPasses, kArgonMemoryKiB, kArgonLanes,
                                        kArgonSaltBytes, kArgonHashBytes, Argon2_id),
                      '\0');
  const int rc = argon2id_hash_encoded(kArgonPasses, kArgonMemoryKiB, kArgonLanes, password.data(),
                                       password.size(), salt.data(), salt.size(), kArgonHashBytes,
                                       encoded.data(), encoded.size());
  if (rc != ARGON2_OK) return Status::Internal(std::string("Argon2id: ") + argon2_error_message(rc));
  encoded.resize(encoded.find('\0'));
  return encoded;
}

bool CheckPassword(std::string_view password, const std::string& encoded) {
  if (encoded.rfind("$argon2id$", 0) != 0) return false;
  return argon2id_verify(encoded.c_str(), password.data(), password.size()) == ARGON2_OK;
}

std::string TotpCode(ByteView secret, int64_t step, int digits, TotpHash hash) {
  std::array<uint8_t, 8> counter{};
  for (int i = 7; i >= 0; --i) {
    counter[static_cast<size_t>(i)] = static_cast<uint8_t>(step & 0xff);
    step >>= 8;
  }
  const EVP_MD* md = hash == TotpHash::kSha1     ? EVP_sha1()
                     : hash == TotpHash::kSha256 ? EVP_sha256()
                                                 : EVP_sha512();
  std::array<uint8_t, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_len = 0;
  HMAC(md, secret.data(), static_cast<int>(secret.size()), counter.data(), counter.size(),
       mac.data(), &mac_len);
  // RFC 4226 §5.3 dynamic truncation.
  const size_t offset = mac[mac_len - 1] & 0x0f;
  uint32_t binary = (static_cast<uint32_t>(mac[offset] & 0x7f) << 24) |
                    (static_cast<uint32_t>(mac[offset + 1]) << 16) |
                    (static_cast<uint32_t>(mac[offset + 2]) << 8) | mac[offset + 3];
  SecureWipe(mac.data(), mac.size());
  uint32_t modulus = 1;
  for (int i = 0; i < digits; ++i) modulus *= 10;
  std::string code = std::to_string(binary % modulus);
  return std::string(static_cast<size_t>(digits) - code.size(), '0') + code;
}

int64_t MatchTotp(ByteView secret, std::string_view code, int64_t now_step) {
  if (code.size() != 6) return -1;
  int64_t found = -1;
  for (int64_t step = now_step - 1; step <= now_step + 1; ++step) {
    const std::string expected = TotpCode(secret, step, 6);
    if (ConstantTimeEqual(AsBytes(expected), AsBytes(code))) found = step;
  }
  return found;
}

std::string Base32(ByteView data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t byte : data) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += kAlphabet[(buffer >> (bits - 5)) & 0x1f];
      bits -= 5;
    }
  }
  if (bits > 0) out += kAlphabet[(buffer << (5 - bits)) & 0x1f];
  return out;
}

namespace {

std::string UriEscape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 0x0f];
    }
  }
  return out;
}

}  // namespace

std::string TotpUri(std::string_view issuer, std::string_view account, ByteView secret) {
  return "otpauth://totp/" + UriEscape(issuer) + ":" + UriEscape(account) +
         "?secret=" + Base32(secret) + "&issuer=" + UriEscape(issuer) +
         "&algorithm=SHA1&digits=6&period=30";
}

Result<std::string> NewSessionToken() {
  Bytes raw = protocol::RandomBytes(32);
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), raw.data(),
                                static_cast<int>(raw.size()));
  SecureWipe(raw.data(), raw.size());
  if (n <= 0) return Status::Internal("encoding a session token");
  out.resize(static_cast<size_t>(n));
  for (char& ch : out) {
    if (ch == '+') ch = '-';
    if (ch == '/') ch = '_';
  }
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

Bytes SessionTokenDigest(std::string_view token) { return protocol::Sha256(AsBytes(token)); }

}  // namespace holdfast::gateway
