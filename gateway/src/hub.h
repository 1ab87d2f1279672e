// State shared by every client session of one gateway process. Owned by the
// Gateway; sessions hold a reference. Members marked [io] are touched only
// on the I/O thread.
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "db_pool.h"
#include "directory.h"
#include "enrollment.h"
#include "holdfast/archive/store.h"
#include "holdfast/gateway/config.h"
#include "ingester.h"
#include "metrics.h"
#include "rate_limit.h"

namespace holdfast::gateway {

class Session;

// The devices with an authenticated session on this process, readable from
// any thread: the I/O thread adds and removes, the outbox reader takes
// snapshots.
class OnlineDevices {
 public:
  void Add(const std::string& device) {
    std::lock_guard lock(mu_);
    ++sessions_[device];
  }
  void Remove(const std::string& device) {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(device);
    if (it != sessions_.end() && --it->second <= 0) sessions_.erase(it);
  }
  std::vector<Bytes> Snapshot() const {
    std::lock_guard lock(mu_);
    std::vector<Bytes> out;
    out.reserve(sessions_.size());
    for (const auto& [device, count] : sessions_) out.emplace_back(device.begin(), device.end());
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> sessions_;  // device id (raw bytes) -> open sessions
};

// Message ids whose deliveries this process pushed after storing them, the
// newest 65 536, so that a retransmission is not pushed again.
class RecentlyPushed {
 public:
  void Add(const std::string& message_id) {
    if (!ids_.insert(message_id).second) return;
    order_.push_back(message_id);
    if (order_.size() > kCapacity) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
  }
  bool Contains(const std::string& message_id) const { return ids_.count(message_id) != 0; }

 private:
  static constexpr size_t kCapacity = 1 << 16;
  std::unordered_set<std::string> ids_;
  std::deque<std::string> order_;
};

struct Hub {
  const Config& config;
  boost::asio::io_context& io;
  Metrics& metrics;
  DbPool& db;
  Ingester& ingester;
  Bytes org_root_public;
  EnrollmentSigner& enrollment;  // thread-safe; used from database workers
  Directory* directory;          // null unless directory.mode enables sign-in

  // [io] failed enrollments by user name and by source address.
  FailureLimiter user_failures;
  FailureLimiter ip_failures;

  // [io] device id (raw bytes as string) -> the device's open session.
  std::multimap<std::string, std::weak_ptr<Session>> online;
  // [io]
  RecentlyPushed pushed;
  // [io] Sessions that stopped reading while the ingester was backlogged.
  std::vector<std::weak_ptr<Session>> paused;
  // The same devices, for other threads.
  OnlineDevices online_devices;
};

}  // namespace holdfast::gateway
