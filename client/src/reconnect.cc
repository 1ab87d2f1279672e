#include "holdfast/client/reconnect.h"

#include <algorithm>
#include <random>

namespace holdfast::client {

Backoff::Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap)
    : base_(std::max(base, std::chrono::milliseconds(1))),
      cap_(std::max(cap, base_)),
      rng_(std::random_device{}()) {}

std::chrono::milliseconds Backoff::Next() {
  // base * 2^attempt without overflow: stop doubling once past the cap.
  int64_t ceiling = base_.count();
  for (int i = 0; i < attempt_ && ceiling < cap_.count(); ++i) ceiling *= 2;
  ceiling = std::min<int64_t>(ceiling, cap_.count());
  ++attempt_;
  std::uniform_int_distribution<int64_t> pick(0, ceiling);
  return std::chrono::milliseconds(pick(rng_));
}

bool ShouldReconnect(const Status& status) {
  if (status.code() == Code::kUnavailable) return true;
  // A refusal from the gateway is kFailedPrecondition naming its code.
  return status.code() == Code::kFailedPrecondition &&
         status.message().find("server refused (unavailable)") != std::string::npos;
}

}  // namespace holdfast::client
