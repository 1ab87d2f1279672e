// Shared, lazily (re)opened access to the HSM token. The gateway starts and
// ingests without the HSM; this reports whether it is reachable.
#pragma once

#include <functional>
#include <memory>
#include <mutex>

#include "holdfast/gateway/ceremony.h"
#include "holdfast/gateway/config.h"
#include "holdfast/hsm/token.h"

namespace holdfast::gateway {

class HsmAccess {
 public:
  explicit HsmAccess(const Config& config) : config_(config) {}

  // Opens the token if needed and pings it; on failure drops the session so
  // the next call retries from scratch.
  Status Check();
  // Runs `fn` with the token, opening it first if needed; holds the lock
  // for the duration, so keep `fn` short.
  Status Use(const std::function<Status(hsm::Token&)>& fn);

 private:
  const Config& config_;
  std::mutex mu_;
  std::unique_ptr<hsm::Token> token_;
};


}  // namespace holdfast::gateway
