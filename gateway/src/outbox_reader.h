// Multi-node delivery: pushes deliveries that other gateway nodes stored to
// the devices connected to this one. One thread with its own connection
// LISTENs on archive::kOutboxChannel and, on a notification from another
// node or after a second without one, reads the outbox rows of other nodes
// past the last seq it saw of each, then the undelivered deliveries among
// them whose device is online here, and posts their Deliver frames to the
// sessions on the I/O thread. A lost connection is reopened with backoff
// and reading resumes from the last seqs seen, so nothing is skipped.
//
// The same connection LISTENs on archive::kRestoreChannel: a completed
// history restore's notices are pushed to its user's devices online here
// (the others get them at their next login).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "holdfast/archive/database.h"
#include "hub.h"

namespace holdfast::gateway {

class OutboxReader {
 public:
  explicit OutboxReader(Hub& hub);
  ~OutboxReader();
  OutboxReader(const OutboxReader&) = delete;
  OutboxReader& operator=(const OutboxReader&) = delete;

  // Opens the connection and reads where each node's outbox ends, then
  // starts the thread. Call before accepting clients: a device that logs in
  // later reads every delivery stored before this in its queue.
  Status Start();
  // Wakes the thread and joins it; pushes already posted still run.
  void Stop();

  // application_name of the reader's connection.
  static std::string ApplicationName(const std::string& node_id) {
    return "holdfast-outbox-" + node_id;
  }

 private:
  void Run();
  Status Open();
  Status ReadNew(archive::Connection& conn);
  // Tells the sessions of devices online here that have notices of these
  // completed history restores to send them.
  Status PushRestoreNotices(archive::Connection& conn, const std::vector<int64_t>& request_ids);
  bool Stopping();

  Hub& hub_;
  // [reader thread] node id -> highest seq read.
  std::map<std::string, int64_t> last_seen_;
  bool initialised_ = false;
  std::optional<archive::Connection> conn_;  // [reader thread] after Start

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int wake_[2] = {-1, -1};  // a pipe: Stop writes, the wait polls the read end
  std::thread thread_;
};

}  // namespace holdfast::gateway
