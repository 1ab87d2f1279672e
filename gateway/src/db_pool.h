// A fixed set of threads, each owning one PostgreSQL connection, running
// jobs in FIFO order. Jobs must not block on the client transport; they
// post their results back to the I/O thread themselves.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "holdfast/archive/database.h"
#include "holdfast/base/status.h"

namespace holdfast::gateway {

class DbPool {
 public:
  // A job receives the worker's connection, or the error that kept the
  // worker from having one. It returns false to be run once more on a
  // fresh connection: only a job that failed because the connection broke,
  // and so changed nothing, may ask for that.
  using Job = std::function<bool(Result<archive::Connection*>)>;

  DbPool(std::string conninfo, int threads);
  ~DbPool();
  DbPool(const DbPool&) = delete;
  DbPool& operator=(const DbPool&) = delete;

  // After Stop, runs the job at once on the caller's thread with
  // kUnavailable instead of queueing it.
  void Post(Job job);
  // Finishes the queued jobs and joins the threads.
  void Stop();

 private:
  void Run();

  const std::string conninfo_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Opens (or reopens after a failure) a connection kept in `slot`.
Result<archive::Connection*> EnsureConnection(std::optional<archive::Connection>& slot,
                                              const std::string& conninfo);

}  // namespace holdfast::gateway
