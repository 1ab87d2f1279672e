#include "db_pool.h"

namespace holdfast::gateway {

Result<archive::Connection*> EnsureConnection(std::optional<archive::Connection>& slot,
                                              const std::string& conninfo) {
  if (slot && slot->Healthy()) return &*slot;
  slot.reset();
  auto conn = archive::Connection::Open(conninfo);
  if (!conn.ok()) return conn.status();
  slot.emplace(std::move(conn).value());
  return &*slot;
}

DbPool::DbPool(std::string conninfo, int threads) : conninfo_(std::move(conninfo)) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

DbPool::~DbPool() { Stop(); }

void DbPool::Post(Job job) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      jobs_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  // After Stop nothing is queued: the job hears at once that there is no
  // database, so whatever it holds is released now, not at destruction.
  job(Status::Unavailable("gateway is shutting down"));
}

void DbPool::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void DbPool::Run() {
  std::optional<archive::Connection> conn;
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (!job(EnsureConnection(conn, conninfo_))) {
      conn.reset();
      job(EnsureConnection(conn, conninfo_));
    }
  }
}

}  // namespace holdfast::gateway
