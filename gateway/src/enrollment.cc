#include "enrollment.h"

#include "holdfast/gateway/ceremony.h"

namespace holdfast::gateway {

Result<std::unique_ptr<EnrollmentSigner>> EnrollmentSigner::Open(const Config& config) {
  HF_ASSIGN_OR_RETURN(std::unique_ptr<hsm::Token> token, OpenEnrollmentToken(config));
  HF_ASSIGN_OR_RETURN(Bytes public_key, token->PublicKey(hsm::kEnrollmentKeyLabel));
  return std::unique_ptr<EnrollmentSigner>(
      new EnrollmentSigner(config, std::move(token), std::move(public_key)));
}

Result<Bytes> EnrollmentSigner::Sign(ByteView message) {
  std::lock_guard lock(mu_);
  if (!token_) {
    HF_ASSIGN_OR_RETURN(std::unique_ptr<hsm::Token> token, OpenEnrollmentToken(config_));
    // A key replaced meanwhile would sign certificates that no stored
    // enrollment key certificate vouches for.
    HF_ASSIGN_OR_RETURN(Bytes public_key, token->PublicKey(hsm::kEnrollmentKeyLabel));
    if (public_key != public_key_) {
      return Status::FailedPrecondition("the enrollment key in the token changed since the gateway started");
    }
    token_ = std::move(token);
  }
  auto signature = token_->Sign(hsm::kEnrollmentKeyLabel, message);
  if (!signature.ok()) token_.reset();
  return signature;
}

}  // namespace holdfast::gateway
