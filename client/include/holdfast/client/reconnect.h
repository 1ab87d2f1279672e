// Reconnecting after the gateway or the network went away: capped
// exponential backoff with full jitter, so that thousands of clients that
// lost the same gateway do not come back in lockstep.
//
// Delay before attempt n (n = 0 after the first failure) is uniform in
// [0, min(cap, base * 2^n)]; Reset() after a connection that worked.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

#include "holdfast/base/status.h"

namespace holdfast::client {

class Backoff {
 public:
  explicit Backoff(std::chrono::milliseconds base = std::chrono::milliseconds(200),
                   std::chrono::milliseconds cap = std::chrono::seconds(30));

  // The wait before the next attempt; each call doubles the ceiling up to the cap.
  std::chrono::milliseconds Next();
  void Reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  std::chrono::milliseconds base_;
  std::chrono::milliseconds cap_;
  int attempt_ = 0;
  std::minstd_rand rng_;
};

// Whether a failure of a connection or a request is worth reconnecting
// for: the gateway was unreachable, closed the connection, timed out or
// refused with `unavailable` (its database or HSM is down). Refusals that a
// resend cannot fix (bad envelope, not a member, ...) are not.
bool ShouldReconnect(const Status& status);

}  // namespace holdfast::client
