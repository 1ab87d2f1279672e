// The gateway's one use of an HSM login: countersigning device certificates
// with the enrollment key. The enrollment key lives in a token of its own,
// so the login gives no access to the org root or to the archive epoch keys
// (see hsm_access.h), and a countersignature alone makes no device: the
// certificate also needs the user's master-key signature.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/gateway/config.h"
#include "holdfast/hsm/token.h"

namespace holdfast::gateway {

class EnrollmentSigner {
 public:
  // Logs in to the enrollment token (hsm.enrollment_token_label, PIN from
  // hsm.enrollment_pin_file) and reads the enrollment key's public key.
  // ApplyProcessEnvironment must have run first.
  static Result<std::unique_ptr<EnrollmentSigner>> Open(const Config& config);

  // The enrollment key's public point as read by Open; a later Sign never
  // uses another key.
  const Bytes& public_key() const { return public_key_; }

  // ECDSA P-256 over SHA-256(message) with the enrollment key, 64 bytes
  // r||s. A failure drops the session; the next call logs in again, so a
  // token that comes back needs no gateway restart. Thread-safe; calls are
  // serialised.
  Result<Bytes> Sign(ByteView message);

 private:
  EnrollmentSigner(Config config, std::unique_ptr<hsm::Token> token, Bytes public_key)
      : config_(std::move(config)), token_(std::move(token)), public_key_(std::move(public_key)) {}

  const Config config_;
  std::mutex mu_;
  std::unique_ptr<hsm::Token> token_;  // guarded by mu_; null after a failure
  const Bytes public_key_;
};

}  // namespace holdfast::gateway
