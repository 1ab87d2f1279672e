// Officers' sign-in credentials and admin API sessions, as stored. The
// hashing and checking of passwords and one-time codes is the caller's
// (gateway/src/officer_auth.h): this class stores an Argon2id string, a
// TOTP secret and the SHA-256 of session tokens, and records every
// sign-in, failure and session end in the audit log.
//
// Not thread-safe, like the Connection it uses.
#pragma once

#include <cstdint>
#include <string>

#include "holdfast/archive/database.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::archive {

struct OfficerCredentials {
  std::string name;
  std::string role;
  std::string password_hash;  // empty: no password set, sign-in impossible
  SecretBytes totp_secret;    // empty: no second factor enrolled, sign-in impossible
  int64_t totp_last_step = 0;
  int failed_logins = 0;
  int64_t locked_until_ms = 0;  // 0: not locked
  bool disabled = false;
};

struct AdminSession {
  std::string officer;
  std::string role;
  int64_t created_at_ms = 0;
  int64_t last_seen_at_ms = 0;
  int64_t step_up_at_ms = 0;  // 0: never
  bool ended = false;
};

class OfficerAccounts {
 public:
  explicit OfficerAccounts(Connection& conn) : conn_(conn) {}

  // kNotFound for an unknown officer.
  Result<OfficerCredentials> Get(const std::string& name);
  Status SetPassword(const std::string& name, const std::string& argon2id_encoded,
                     const std::string& actor);
  Status SetTotpSecret(const std::string& name, ByteView secret, const std::string& actor);
  // Disables the officer and ends their sessions.
  Status Disable(const std::string& name, const std::string& actor);

  // A failed sign-in or step-up: counts it, and from the `max_failures`th
  // consecutive one locks the account for `lock_ms`. Audited with the
  // reason and address (never the password or code).
  Status RecordFailure(const std::string& name, const std::string& address,
                       const std::string& reason, int max_failures, int64_t lock_ms);
  // Takes TOTP time step `step` for the officer unless it (or a later one)
  // was already used: false means a replayed code.
  Result<bool> UseTotpStep(const std::string& name, int64_t step);
  // A successful sign-in: resets the failure count and stores the session.
  Status OpenSession(ByteView token_sha256, const std::string& name, const std::string& address);

  // The session of a token hash, and marks it seen. kNotFound if there is
  // none, it ended, its officer is disabled, or it is idle past `idle_ms`
  // or older than `absolute_ms` (such a session is ended).
  Result<AdminSession> Resume(ByteView token_sha256, int64_t idle_ms, int64_t absolute_ms);
  Status StepUp(ByteView token_sha256);
  Status EndSession(ByteView token_sha256, const std::string& actor);

 private:
  Connection& conn_;
};

}  // namespace holdfast::archive
