// Group commit: envelopes accepted by sessions are queued here; one thread
// stores everything queued so far in a single transaction and only then
// calls each envelope's completion. A completion with an OK outcome means the
// envelope is durable; with an error, nothing of it was stored. Every
// commit that creates deliveries also writes this node's next outbox row
// (archive::OutboxTag), numbered here, so per node seq order is commit order.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "holdfast/archive/store.h"
#include "metrics.h"

namespace holdfast::gateway {

class Ingester {
 public:
  using Completion = std::function<void(Result<archive::IngestOutcome>)>;

  // Above `queue_max` queued envelopes the ingester is backlogged until the
  // queue is back under half of it; `on_drained` (ingest thread, must be
  // quick) is called whenever a backlog ends.
  Ingester(std::string conninfo, std::string node_id, int batch_max, int queue_max,
           Metrics& metrics, std::function<void()> on_drained);
  ~Ingester();
  Ingester(const Ingester&) = delete;
  Ingester& operator=(const Ingester&) = delete;

  // Completions run on the ingest thread; they must be quick (post onward).
  void Submit(archive::IngestItem item, Completion done);
  // Sessions stop reading new frames while this holds. Submit itself never
  // refuses: what a session read before is still accepted.
  bool Backlogged() const { return backlogged_.load(std::memory_order_relaxed); }
  // Commits or fails everything queued, then joins the thread.
  void Stop();

 private:
  struct Pending {
    archive::IngestItem item;
    Completion done;
  };
  void Run();
  // Ends a backlog once the queue is at most half of queue_max_.
  void NoteDrained();

  const std::string conninfo_;
  const std::string node_id_;
  const size_t batch_max_;
  const size_t queue_max_;
  Metrics& metrics_;
  const std::function<void()> on_drained_;
  std::atomic<bool> backlogged_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace holdfast::gateway
