// PostgreSQL access: one RAII connection type over libpq, schema migrations.
#pragma once

#include <limits>
#include <memory>
#include <string>

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
