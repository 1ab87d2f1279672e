// A throw-away PostgreSQL cluster for tests, run by scripts/pg-cluster.
//
// The cluster lives in a fresh directory under /tmp (mode 0755, so the
// "holdfast" service user can reach it when the tests run as root), listens
// on a free 127.0.0.1 port and is stopped (-m immediate) and deleted with
// its directory when the object is destroyed. Not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "holdfast/base/status.h"

namespace holdfast::testing {

class TempPostgres {
 public:
  // Initialises and starts a cluster. kUnavailable with the script's output
  // if any step fails.
  static Result<std::unique_ptr<TempPostgres>> Create();
  ~TempPostgres();
  TempPostgres(const TempPostgres&) = delete;
  TempPostgres& operator=(const TempPostgres&) = delete;

  const std::string& dir() const { return dir_; }
  int port() const { return port_; }
  // A libpq connection string for `dbname` over TCP on 127.0.0.1.
  std::string conninfo(const std::string& dbname = "postgres") const;

  // CREATE DATABASE `name`; kAlreadyExists if it does.
  Status CreateDatabase(const std::string& name);
  // Creates a database with a name not used before in this cluster and
  // returns its conninfo.
  Result<std::string> CreateFreshDatabase();

  // Kills the server as a crash would (pg_ctl stop -m immediate).
  Status StopImmediate();
  // Starts the server again and waits until it accepts connections.
  Status Start();

 private:
  TempPostgres(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  Status Script(const std::string& command, const std::string& arg = "");

  std::string dir_;
  int port_ = 0;
  int databases_ = 0;
};

// Runs `argv` (argv[0] is a path), waits, and returns its combined stdout and
// stderr; kInternal with that output if it exits non-zero.
Result<std::string> RunCommand(const std::vector<std::string>& argv);

// A port on 127.0.0.1 that was free a moment ago.
Result<int> PickFreeLoopbackPort();

}  // namespace holdfast::testing
