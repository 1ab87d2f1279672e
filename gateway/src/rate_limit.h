// Token buckets of failures, keyed by a user name or a source address: each
// key may fail `per_minute` times in a burst, and one more each 60/per_minute
// seconds after. Not thread-safe; the gateway uses it on its I/O thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace holdfast::gateway {

class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // Past `max_keys` tracked keys, keys whose bucket is full again are
  // dropped; if none is, a new key is not tracked (the other limiter still
  // applies), so memory stays bounded whatever the number of names tried.
  explicit FailureLimiter(uint32_t per_minute, size_t max_keys = 100000)
      : capacity_(per_minute), max_keys_(max_keys) {}

  // True while `key` has a failure left.
  bool Allowed(const std::string& key, Clock::time_point now) {
    auto it = buckets_.find(key);
    if (it == buckets_.end()) return true;
    Refill(it->second, now);
    return it->second.tokens >= 1.0;
  }

  void Failed(const std::string& key, Clock::time_point now) {
    auto it = buckets_.find(key);
    if (it == buckets_.end()) {
      if (buckets_.size() >= max_keys_) Sweep(now);
      if (buckets_.size() >= max_keys_) return;
      it = buckets_.emplace(key, Bucket{static_cast<double>(capacity_), now}).first;
    }
    Refill(it->second, now);
    it->second.tokens = it->second.tokens >= 1.0 ? it->second.tokens - 1.0 : 0.0;
  }

  size_t tracked() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens;
    Clock::time_point at;
  };

  void Refill(Bucket& b, Clock::time_point now) {
    const double minutes = std::chrono::duration<double>(now - b.at).count() / 60.0;
    if (minutes > 0) {
      b.tokens = std::min<double>(capacity_, b.tokens + minutes * capacity_);
      b.at = now;
    }
  }

  void Sweep(Clock::time_point now) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      Refill(it->second, now);
      it = it->second.tokens >= capacity_ ? buckets_.erase(it) : std::next(it);
    }
  }

  const uint32_t capacity_;
  const size_t max_keys_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace holdfast::gateway
