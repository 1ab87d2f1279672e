// PostgreSQL access: one RAII connection type over libpq, schema migrations.
#pragma once

#include <chrono>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "holdfast/base/status.h"

namespace holdfast::archive {

// A move-only owner of one libpq connection. Not thread-safe: use one
// connection per thread.
class Connection {
 public:
  // `conninfo` is a libpq connection string. kUnavailable on failure.
  static Result<Connection> Open(const std::string& conninfo);
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  ~Connection();

  // Executes statements without parameters or results (DDL, BEGIN, ...).
  Status Execute(const std::string& sql);
  // SELECT 1; kUnavailable if the server does not answer.
  Status Ping();
  bool Healthy() const;
  // Sets this session's application_name (shown in pg_stat_activity).
  Status SetApplicationName(const std::string& name);

  // LISTEN on `channel`. A connection that breaks is reopened by the next
  // statement without it: a listener must open a new connection instead
  // once any call returned kUnavailable.
  Status Listen(const std::string& channel);
  // The payloads of the notifications received so far; if there are none,
  // waits up to `timeout` for some, or until `wake_fd` (if not -1) becomes
  // readable, and returns what arrived (maybe nothing). kUnavailable if the
  // connection broke.
  Result<std::vector<std::string>> AwaitNotifications(std::chrono::milliseconds timeout,
                                                      int wake_fd = -1);

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Applies every migration in archive/migrations not yet recorded in
// schema_migrations, each in its own transaction. Idempotent. With
// up_to_version, stops after that version (for tests of a migration on a
// database of the schema before it).
Status Migrate(Connection& conn, int up_to_version = std::numeric_limits<int>::max());

}  // namespace holdfast::archive
