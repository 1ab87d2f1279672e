#include "hsm_access.h"

#include "holdfast/hsm/admin.h"

namespace holdfast::gateway {

Status HsmProbe::Check(std::chrono::milliseconds max_age) {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (checked_ != std::chrono::steady_clock::time_point{} && now - checked_ < max_age) return last_;
  last_ = hsm::ProbeToken(config_.hsm.module,
                          enrollment_ ? config_.hsm.enrollment_token_label : config_.hsm.token_label);
  checked_ = now;
  return last_;
}

}  // namespace holdfast::gateway
