#include "holdfast/archive/database.h"

#include <poll.h>

#include <cerrno>
#include <cstdio>

#include "migrations.h"
#include "pg.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::archive {

using internal::Exec;
using internal::ExecScript;
using internal::Params;
using internal::Transaction;

Result<Connection> Connection::Open(const std::string& conninfo) {
  PGconn* conn = ConnectQuietly(conninfo);
  if (conn == nullptr) return Status::Unavailable("cannot connect to PostgreSQL: out of memory");
  auto impl = std::make_unique<Impl>(conninfo, conn);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return Status::Unavailable("cannot connect to PostgreSQL: " + message);
  }
  return Connection(std::move(impl));
}

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() = default;

Status Connection::Execute(const std::string& sql) { return ExecScript(*impl_, sql); }

Status Connection::Ping() {
  auto res = Exec(*impl_, "SELECT 1");
  if (!res.ok()) return Status::Unavailable(res.status().message());
  return Status::Ok();
}

bool Connection::Healthy() const {
  return impl_ && impl_->conn != nullptr && PQstatus(impl_->conn) == CONNECTION_OK;
}

Status Connection::SetApplicationName(const std::string& name) {
  return Exec(*impl_, "SELECT set_config('application_name', $1, false)", Params().Text(name))
      .status();
}

Status Connection::Listen(const std::string& channel) {
  HF_RETURN_IF_ERROR(impl_->EnsureConnected());
  char* quoted = PQescapeIdentifier(impl_->conn, channel.data(), channel.size());
  if (quoted == nullptr) return internal::ErrorStatus(impl_->conn, nullptr, "LISTEN");
  const std::string sql = std::string("LISTEN ") + quoted;
  PQfreemem(quoted);
  return ExecScript(*impl_, sql);
}

Result<std::vector<std::string>> Connection::AwaitNotifications(std::chrono::milliseconds timeout,
                                                                int wake_fd) {
  PGconn* conn = impl_->conn;
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    return Status::Unavailable("connection to PostgreSQL lost");
  }
  std::vector<std::string> out;
  auto drain = [&] {
    while (PGnotify* n = PQnotifies(conn)) {
      out.emplace_back(n->extra ? n->extra : "");
      PQfreemem(n);
    }
  };
  // Notifications that arrived with the results of earlier statements.
  drain();
  if (!out.empty()) return out;
  pollfd fds[2] = {{PQsocket(conn), POLLIN, 0}, {wake_fd, POLLIN, 0}};
  const int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, static_cast<int>(timeout.count()));
  if (n < 0 && errno != EINTR) return Status::Unavailable("poll on the PostgreSQL socket failed");
  if (n > 0 && fds[0].revents != 0) {
    if (PQconsumeInput(conn) != 1 || PQstatus(conn) != CONNECTION_OK) {
      return internal::ErrorStatus(conn, nullptr, "waiting for notifications");
    }
    drain();
  }
  return out;
}

namespace {

// pg_advisory_xact_lock key serialising migrations across processes.
constexpr int64_t kMigrationLock = 0x686f6c64'66617374;  // "holdfast"

std::string VersionName(const internal::Migration& m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d", m.version);
  return buf;
}

Status ApplyOne(Connection::Impl& c, const internal::Migration& m) {
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(Exec(c, "SELECT pg_advisory_xact_lock($1)", Params().Int8(kMigrationLock))
                         .status());
  // Created under the lock: two racing CREATE TABLE IF NOT EXISTS can both
  // miss the table and then collide.
  HF_RETURN_IF_ERROR(ExecScript(c,
                                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                " version integer PRIMARY KEY,"
                                " name text NOT NULL,"
                                " sha256 bytea NOT NULL,"
                                " applied_at timestamptz NOT NULL DEFAULT now())"));
  Bytes digest = protocol::Sha256(AsBytes(m.sql));
  HF_ASSIGN_OR_RETURN(auto applied,
                      Exec(c, "SELECT sha256 FROM schema_migrations WHERE version = $1",
                           Params().Int4(m.version)));
  if (applied.rows() > 0) {
    if (applied.Bytea(0, 0) != digest) {
      return Status::FailedPrecondition("migration " + VersionName(m) +
                                        " was changed after it was applied");
    }
    return Status::Ok();  // rolled back: nothing was written
  }
  HF_RETURN_IF_ERROR(ExecScript(c, std::string(m.sql)).WithContext("migration " + VersionName(m)));
  HF_RETURN_IF_ERROR(
      Exec(c, "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
           Params().Int4(m.version).Text(m.name).Bytea(digest))
          .status());
  return tx.Commit();
}

}  // namespace

Status Migrate(Connection& conn, int up_to_version) {
  for (const internal::Migration& m : internal::Migrations()) {
    if (m.version > up_to_version) break;
    HF_RETURN_IF_ERROR(ApplyOne(conn.impl(), m));
  }
  return Status::Ok();
}

}  // namespace holdfast::archive
