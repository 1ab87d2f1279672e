// Officer authentication for the admin API: Argon2id password hashes,
// RFC 6238 one-time codes, and bearer session tokens.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::gateway {

// An Argon2id encoded string ($argon2id$v=19$m=...,t=...,p=...$salt$hash)
// of `password` under a fresh 16-byte salt: 64 MiB, 3 passes, 1 lane.
Result<std::string> HashPassword(std::string_view password);
// Whether `password` matches `encoded`; false for a malformed string. The
// comparison is libargon2's, in constant time.
bool CheckPassword(std::string_view password, const std::string& encoded);

enum class TotpHash { kSha1, kSha256, kSha512 };

// RFC 6238 TOTP value of `secret` for time step `step`, `digits` digits
// (6..8), zero-padded.
std::string TotpCode(ByteView secret, int64_t step, int digits = 6, TotpHash hash = TotpHash::kSha1);

// The time step of a Unix time in seconds (T0 = 0, X = 30 s).
inline int64_t TotpStep(int64_t unix_seconds) { return unix_seconds / 30; }

// The step, among now-1 .. now+1 (clock drift of one step either way),
// whose SHA-1 6-digit code equals `code`, compared in constant time; -1 if
// none.
int64_t MatchTotp(ByteView secret, std::string_view code, int64_t now_step);

// Base32 (RFC 4648, no padding), as authenticator apps take secrets.
std::string Base32(ByteView data);
// otpauth://totp/<issuer>:<account>?secret=...&issuer=... for a QR code.
std::string TotpUri(std::string_view issuer, std::string_view account, ByteView secret);

// A fresh session token (32 random bytes, base64url) and the SHA-256 the
// database keeps of a token.
Result<std::string> NewSessionToken();
Bytes SessionTokenDigest(std::string_view token);

}  // namespace holdfast::gateway
