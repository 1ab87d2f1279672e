#include "hsm_access.h"


namespace holdfast::gateway {

Status HsmAccess::Check() {
  std::lock_guard lock(mu_);
  if (!token_) {
    auto t = OpenToken(config_);
    if (!t.ok()) return t.status();
    token_ = std::move(t).value();
  }
  Status s = token_->Ping();
  if (!s.ok()) token_.reset();
  return s;
}

}  // namespace holdfast::gateway
