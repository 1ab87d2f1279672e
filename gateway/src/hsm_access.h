// HSM health as the gateway sees it. The gateway never logs in to the
// token: a logged-in session could derive with the archive epoch keys, and
// the gateway must not be able to open the archive. It only probes the
// token's state (hsm::ProbeToken), and caches the answer briefly so that a
// busy /readyz cannot hammer the module.
#pragma once

#include <chrono>
#include <mutex>

#include "holdfast/gateway/config.h"

namespace holdfast::gateway {

class HsmProbe {
 public:
  // Probes the archive token, or with `enrollment` the enrollment token.
  explicit HsmProbe(const Config& config, bool enrollment = false)
      : config_(config), enrollment_(enrollment) {}

  // The result of the last probe younger than `max_age`, or a fresh one.
  Status Check(std::chrono::milliseconds max_age = std::chrono::seconds(2));

 private:
  const Config& config_;
  const bool enrollment_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point checked_{};
  Status last_ = Status::Unavailable("not probed yet");
};

}  // namespace holdfast::gateway
