// libpq plumbing shared by the archive: the connection internals, a
// move-only PGresult owner, binary parameters, transactions and pipelines.
// Every statement is parameterised and exchanges values in binary format.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "holdfast/archive/database.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::archive {

struct Connection::Impl {
  Impl(std::string conninfo, PGconn* conn) : conninfo(std::move(conninfo)), conn(conn) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl();

  // Reconnects if the connection broke, unless a transaction was open on
  // it: then the caller must first finish (roll back) that transaction.
  Status EnsureConnected();

  std::string conninfo;
  PGconn* conn;
  bool in_transaction = false;
  // SQL text -> prepared statement name on this connection.
  std::unordered_map<std::string, std::string> prepared;
  uint64_t next_statement = 0;  // names are never reused on a connection
};

// PQconnectdb with notices (e.g. "relation already exists, skipping")
// discarded instead of printed to stderr.
PGconn* ConnectQuietly(const std::string& conninfo);

namespace internal {

// Built-in type oids (pg_type.dat); stable across PostgreSQL versions.
inline constexpr Oid kBoolOid = 16;
inline constexpr Oid kByteaOid = 17;
inline constexpr Oid kInt8Oid = 20;
inline constexpr Oid kInt4Oid = 23;
inline constexpr Oid kTextOid = 25;
inline constexpr Oid kByteaArrayOid = 1001;
inline constexpr Oid kTextArrayOid = 1009;
inline constexpr Oid kInt8ArrayOid = 1016;

class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* res) : res_(res) {}
  PgResult(PgResult&& other) noexcept : res_(other.res_) { other.res_ = nullptr; }
  PgResult& operator=(PgResult&& other) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult();

  int rows() const { return PQntuples(res_); }
  int64_t affected() const;
  bool IsNull(int row, int col) const { return PQgetisnull(res_, row, col) != 0; }
  // Accessors for binary-format columns; the caller knows the column types.
  std::string Text(int row, int col) const;
  Bytes Bytea(int row, int col) const;
  // int2, int4 or int8.
  int64_t Int(int row, int col) const;
  bool Bool(int row, int col) const;
  std::vector<std::string> TextArray(int row, int col) const;
  // A one-dimensional int8[] without NULLs.
  std::vector<int64_t> Int8Array(int row, int col) const;

  const PGresult* get() const { return res_; }

 private:
  ByteView Raw(int row, int col) const;
  PGresult* res_ = nullptr;
};

// A one-dimensional binary array parameter (array_send format) built one
// element at a time, so large batches are encoded without per-element
// copies. Elements are never NULL.
class ArrayBuilder {
 public:
  // element_type: kByteaOid, kTextOid or kInt8Oid.
  explicit ArrayBuilder(Oid element_type);
  ArrayBuilder& Bytea(ByteView v);
  ArrayBuilder& Text(std::string_view v);
  ArrayBuilder& Int8(int64_t v);
  void Reserve(size_t bytes) { buf_.reserve(buf_.size() + bytes); }
  size_t size() const { return count_; }

 private:
  friend class Params;
  ArrayBuilder& Element(const void* data, size_t size);
  // The encoded array (header filled in); leaves the builder empty.
  std::string Take();
  Oid element_type_;
  size_t count_ = 0;
  std::string buf_;  // header placeholder, then the elements
};

// Statement parameters, all sent in binary format with explicit types.
class Params {
 public:
  Params& Text(std::string_view v);
  Params& Bytea(ByteView v);
  Params& Int8(int64_t v);
  Params& Int4(int32_t v);
  Params& Bool(bool v);
  // NULL of the given type oid.
  Params& Null(Oid type);
  Params& TextArray(const std::vector<std::string>& v);
  Params& ByteaArray(const std::vector<Bytes>& v);
  Params& Int8Array(const std::vector<int64_t>& v);
  Params& Array(ArrayBuilder&& array);

  int size() const { return static_cast<int>(types_.size()); }
  const Oid* types() const { return types_.data(); }
  // Pointers into this object; valid until it is changed or destroyed.
  std::vector<const char*> values() const;
  std::vector<int> lengths() const;
  std::vector<int> formats() const { return std::vector<int>(types_.size(), 1); }

 private:
  Params& Add(Oid type, std::string value, bool is_null = false);
  std::vector<Oid> types_;
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
};

// Maps a failed result (or a broken connection) to a Status.
Status ErrorStatus(PGconn* conn, const PGresult* res, std::string_view what);

// Runs one statement. Results are in binary format.
Result<PgResult> Exec(Connection::Impl& c, std::string_view sql, const Params& params = {});
// Runs a text of one or more statements without parameters (DDL).
Status ExecScript(Connection::Impl& c, const std::string& sql);

// BEGIN on construction via Begin(); ROLLBACK on destruction unless
// Commit() succeeded. A connection holds at most one at a time.
class Transaction {
 public:
  static Result<Transaction> Begin(Connection::Impl& c);
  Transaction(Transaction&& other) noexcept : c_(other.c_) { other.c_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  ~Transaction();
  // kUnavailable when the commit's outcome is unknown (connection lost).
  Status Commit();

 private:
  explicit Transaction(Connection::Impl* c) : c_(c) {}
  void Rollback();
  Connection::Impl* c_;
};

// Sends several statements in one round trip (libpq pipeline mode). Each
// statement runs as if sent alone; wrap them in BEGIN/COMMIT statements to
// make them atomic.
class Pipeline {
 public:
  explicit Pipeline(Connection::Impl& c) : c_(c) {}
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;
  ~Pipeline();

  // Queues a statement; errors only if it could not even be queued.
  Status Send(std::string_view sql, const Params& params = {});
  // Syncs and returns one result per statement, in order. If any statement
  // failed, returns the first failure; later statements were skipped.
  Result<std::vector<PgResult>> Finish();

 private:
  Status Enter();
  Connection::Impl& c_;
  bool entered_ = false;
  // One entry per queued command: for a statement preparation, the SQL it
  // prepares (its result is checked, not returned); empty for a statement.
  std::vector<std::string> prepares_;
};

}  // namespace internal
}  // namespace holdfast::archive
