#include "ingester.h"

#include <chrono>
#include <optional>

#include "db_pool.h"

namespace holdfast::gateway {

Ingester::Ingester(std::string conninfo, std::string node_id, int batch_max, int queue_max,
                   Metrics& metrics, std::function<void()> on_drained)
    : conninfo_(std::move(conninfo)),
      node_id_(std::move(node_id)),
      batch_max_(static_cast<size_t>(batch_max)),
      queue_max_(static_cast<size_t>(queue_max)),
      metrics_(metrics),
      on_drained_(std::move(on_drained)) {
  thread_ = std::thread([this] { Run(); });
}

Ingester::~Ingester() { Stop(); }

void Ingester::Submit(archive::IngestItem item, Completion done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      done(Status::Unavailable("gateway is shutting down; send again"));
      return;
    }
    queue_.push_back({std::move(item), std::move(done)});
    metrics_.ingest_queue_depth->Set(static_cast<double>(queue_.size()));
    if (queue_.size() >= queue_max_ && !backlogged_.load(std::memory_order_relaxed)) {
      backlogged_.store(true, std::memory_order_relaxed);
      metrics_.ingest_backlogged->Set(1);
    }
  }
  cv_.notify_one();
}

void Ingester::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Ingester::Run() {
  std::optional<archive::Connection> conn;
  // This node's last outbox seq, read once from the database. Each attempt
  // takes a new one: an attempt whose outcome was lost may have committed
  // its row. Gaps are harmless; readers only look for higher numbers.
  std::optional<int64_t> seq;
  for (;;) {
    std::vector<Pending> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      // Everything that arrived while the previous commit ran goes into this
      // one: batches grow with load and stay at one envelope when idle.
      while (!queue_.empty() && batch.size() < batch_max_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      metrics_.ingest_queue_depth->Set(static_cast<double>(queue_.size()));
    }
    NoteDrained();
    std::vector<archive::IngestItem> items;
    items.reserve(batch.size());
    for (auto& p : batch) items.push_back(std::move(p.item));

    const auto start = std::chrono::steady_clock::now();
    // A broken connection (a restarted server) gets one retry on a new
    // one. Retrying is safe even if the lost reply was to a COMMIT that
    // succeeded: IngestBatch is idempotent on message ids.
    Result<std::vector<archive::IngestOutcome>> outcome = Status::Unavailable("no database connection");
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool fresh = !conn || !conn->Healthy();
      auto c = EnsureConnection(conn, conninfo_);
      // An acknowledgement promises durability: never inherit a server or
      // role default that turned synchronous commit off.
      if (c.ok() && fresh) {
        if (Status s = (*c)->Execute("SET synchronous_commit = on"); !s.ok()) c = s;
      }
      if (c.ok()) {
        archive::Store store(**c);
        if (!seq) {
          auto last = store.LastOutboxSeq(node_id_);
          if (last.ok()) {
            seq = *last;
          } else {
            outcome = last.status();
          }
        }
        if (seq) outcome = store.IngestBatch(items, archive::OutboxTag{node_id_, ++*seq});
      } else {
        outcome = c.status();
      }
      if (outcome.ok() || outcome.status().code() != Code::kUnavailable) break;
      conn.reset();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics_.ingest_batch_size->Observe(static_cast<double>(batch.size()));
    metrics_.ingest_commit_seconds->Observe(seconds);
    metrics_.database_up->Set(outcome.ok() ? 1 : 0);

    if (!outcome.ok()) {
      for (auto& p : batch) p.done(outcome.status());
      continue;
    }
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move((*outcome)[i]));
  }
}

void Ingester::NoteDrained() {
  {
    std::lock_guard lock(mu_);
    if (!backlogged_.load(std::memory_order_relaxed) || queue_.size() > queue_max_ / 2) return;
    backlogged_.store(false, std::memory_order_relaxed);
    metrics_.ingest_backlogged->Set(0);
  }
  if (on_drained_) on_drained_();
}

}  // namespace holdfast::gateway
