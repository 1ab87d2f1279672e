#include "hsm_access.h"


namespace holdfast::gateway {

Status HsmAccess::Check() {
  return Use([](hsm::Token&) { return Status::Ok(); });
}

Status HsmAccess::Use(const std::function<Status(hsm::Token&)>& fn) {
  std::lock_guard lock(mu_);
  if (!token_) {
    auto t = OpenToken(config_);
    if (!t.ok()) return t.status();
    token_ = std::move(t).value();
  }
  if (Status s = token_->Ping(); !s.ok()) {
    token_.reset();
    return s;
  }
  return fn(*token_);
}

}  // namespace holdfast::gateway
