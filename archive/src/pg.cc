#include "pg.h"

#include <cstring>
#include <utility>

namespace holdfast::archive {

namespace {
void DiscardNotice(void*, const char*) {}
}  // namespace

PGconn* ConnectQuietly(const std::string& conninfo) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn != nullptr) PQsetNoticeProcessor(conn, DiscardNotice, nullptr);
  return conn;
}

Connection::Impl::~Impl() {
  if (conn != nullptr) PQfinish(conn);
}

Status Connection::Impl::EnsureConnected() {
  if (conn != nullptr && PQstatus(conn) == CONNECTION_OK) return Status::Ok();
  if (in_transaction) {
    return Status::Unavailable("connection to PostgreSQL lost inside a transaction");
  }
  // A fresh connection rather than PQreset: it also drops pipeline state.
  if (conn != nullptr) PQfinish(conn);
  prepared.clear();
  next_statement = 0;
  conn = ConnectQuietly(conninfo);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = conn ? PQerrorMessage(conn) : "out of memory";
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return Status::Unavailable("cannot reconnect to PostgreSQL: " + message);
  }
  return Status::Ok();
}

namespace internal {
namespace {

void PutBe32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

void PutBe64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

uint64_t GetBe(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// Binary array format: ndim, has-null flag, element oid, then per dimension
// (size, lower bound), then per element (length, bytes).
template <typename Range, typename Encode>
std::string EncodeArray(Oid element_type, const Range& items, Encode encode) {
  std::string out;
  PutBe32(out, items.empty() ? 0 : 1);
  PutBe32(out, 0);
  PutBe32(out, element_type);
  if (!items.empty()) {
    PutBe32(out, static_cast<uint32_t>(items.size()));
    PutBe32(out, 1);
  }
  for (const auto& item : items) {
    std::string element = encode(item);
    PutBe32(out, static_cast<uint32_t>(element.size()));
    out += element;
  }
  return out;
}

std::string Trimmed(const char* message) {
  std::string m = message ? message : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

}  // namespace

// ------------------------------------------------------------------ results

PgResult& PgResult::operator=(PgResult&& other) noexcept {
  if (this != &other) {
    if (res_ != nullptr) PQclear(res_);
    res_ = other.res_;
    other.res_ = nullptr;
  }
  return *this;
}

PgResult::~PgResult() {
  if (res_ != nullptr) PQclear(res_);
}

int64_t PgResult::affected() const {
  const char* n = PQcmdTuples(res_);
  return (n == nullptr || *n == '\0') ? 0 : std::strtoll(n, nullptr, 10);
}

ByteView PgResult::Raw(int row, int col) const {
  return {reinterpret_cast<const uint8_t*>(PQgetvalue(res_, row, col)),
          static_cast<size_t>(PQgetlength(res_, row, col))};
}

std::string PgResult::Text(int row, int col) const { return AsString(Raw(row, col)); }

Bytes PgResult::Bytea(int row, int col) const {
  ByteView raw = Raw(row, col);
  return Bytes(raw.begin(), raw.end());
}

int64_t PgResult::Int(int row, int col) const {
  ByteView raw = Raw(row, col);
  switch (raw.size()) {
    case 2: return static_cast<int16_t>(GetBe(raw.data(), 2));
    case 4: return static_cast<int32_t>(GetBe(raw.data(), 4));
    case 8: return static_cast<int64_t>(GetBe(raw.data(), 8));
    default: return 0;
  }
}

bool PgResult::Bool(int row, int col) const {
  ByteView raw = Raw(row, col);
  return raw.size() == 1 && raw[0] != 0;
}

std::vector<std::string> PgResult::TextArray(int row, int col) const {
  std::vector<std::string> out;
  ByteView raw = Raw(row, col);
  if (raw.size() < 12) return out;
  size_t ndim = GetBe(raw.data(), 4);
  size_t pos = 12;
  size_t count = ndim == 0 ? 0 : 1;
  for (size_t d = 0; d < ndim && pos + 8 <= raw.size(); ++d, pos += 8) {
    count *= GetBe(raw.data() + pos, 4);
  }
  for (size_t i = 0; i < count && pos + 4 <= raw.size(); ++i) {
    auto len = static_cast<int32_t>(GetBe(raw.data() + pos, 4));
    pos += 4;
    if (len < 0) {
      out.emplace_back();
      continue;
    }
    if (pos + static_cast<size_t>(len) > raw.size()) break;
    out.push_back(AsString(raw.subspan(pos, static_cast<size_t>(len))));
    pos += static_cast<size_t>(len);
  }
  return out;
}

std::vector<int64_t> PgResult::Int8Array(int row, int col) const {
  std::vector<int64_t> out;
  ByteView raw = Raw(row, col);
  if (raw.size() < 12 || GetBe(raw.data(), 4) != 1 || raw.size() < 20) return out;
  const size_t count = GetBe(raw.data() + 12, 4);
  size_t pos = 20;
  out.reserve(count);
  for (size_t i = 0; i < count && pos + 12 <= raw.size(); ++i, pos += 12) {
    if (GetBe(raw.data() + pos, 4) != 8) break;
    out.push_back(static_cast<int64_t>(GetBe(raw.data() + pos + 4, 8)));
  }
  return out;
}

// --------------------------------------------------------------- parameters

Params& Params::Add(Oid type, std::string value, bool is_null) {
  types_.push_back(type);
  values_.push_back(std::move(value));
  nulls_.push_back(is_null);
  return *this;
}

Params& Params::Text(std::string_view v) { return Add(kTextOid, std::string(v)); }
Params& Params::Bytea(ByteView v) { return Add(kByteaOid, AsString(v)); }
Params& Params::Bool(bool v) { return Add(kBoolOid, std::string(1, v ? '\1' : '\0')); }
Params& Params::Null(Oid type) { return Add(type, {}, true); }

Params& Params::Int8(int64_t v) {
  std::string out;
  PutBe64(out, static_cast<uint64_t>(v));
  return Add(kInt8Oid, std::move(out));
}

Params& Params::Int4(int32_t v) {
  std::string out;
  PutBe32(out, static_cast<uint32_t>(v));
  return Add(kInt4Oid, std::move(out));
}

Params& Params::TextArray(const std::vector<std::string>& v) {
  return Add(kTextArrayOid,
             EncodeArray(kTextOid, v, [](const std::string& s) { return s; }));
}

Params& Params::ByteaArray(const std::vector<Bytes>& v) {
  return Add(kByteaArrayOid,
             EncodeArray(kByteaOid, v, [](const Bytes& b) { return AsString(b); }));
}

Params& Params::Int8Array(const std::vector<int64_t>& v) {
  return Add(kInt8ArrayOid, EncodeArray(kInt8Oid, v, [](int64_t x) {
               std::string out;
               PutBe64(out, static_cast<uint64_t>(x));
               return out;
             }));
}

// One dimension: ndim, has-null flag, element oid, size, lower bound.
constexpr size_t kArrayHeader = 20;

ArrayBuilder::ArrayBuilder(Oid element_type)
    : element_type_(element_type), buf_(kArrayHeader, '\0') {}

ArrayBuilder& ArrayBuilder::Element(const void* data, size_t size) {
  PutBe32(buf_, static_cast<uint32_t>(size));
  buf_.append(static_cast<const char*>(data), size);
  ++count_;
  return *this;
}

ArrayBuilder& ArrayBuilder::Bytea(ByteView v) { return Element(v.data(), v.size()); }
ArrayBuilder& ArrayBuilder::Text(std::string_view v) { return Element(v.data(), v.size()); }

ArrayBuilder& ArrayBuilder::Int8(int64_t v) {
  PutBe32(buf_, 8);
  PutBe64(buf_, static_cast<uint64_t>(v));
  ++count_;
  return *this;
}

std::string ArrayBuilder::Take() {
  std::string header;
  PutBe32(header, count_ == 0 ? 0 : 1);
  PutBe32(header, 0);
  PutBe32(header, element_type_);
  if (count_ == 0) {
    buf_ = header;  // an empty array has no dimensions
  } else {
    PutBe32(header, static_cast<uint32_t>(count_));
    PutBe32(header, 1);
    buf_.replace(0, kArrayHeader, header);
  }
  count_ = 0;
  return std::exchange(buf_, std::string(kArrayHeader, '\0'));
}

Params& Params::Array(ArrayBuilder&& array) {
  Oid type = array.element_type_ == kByteaOid  ? kByteaArrayOid
             : array.element_type_ == kTextOid ? kTextArrayOid
                                               : kInt8ArrayOid;
  return Add(type, array.Take());
}

std::vector<const char*> Params::values() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) {
    out.push_back(nulls_[i] ? nullptr : values_[i].data());
  }
  return out;
}

std::vector<int> Params::lengths() const {
  std::vector<int> out;
  out.reserve(values_.size());
  for (const std::string& v : values_) out.push_back(static_cast<int>(v.size()));
  return out;
}

// ------------------------------------------------------------------- errors

Status ErrorStatus(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string message = Trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
  if (message.empty()) message = Trimmed(PQerrorMessage(conn));
  std::string text = std::string(what) + ": " + message;
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  if (state == nullptr || PQstatus(conn) != CONNECTION_OK) return Status::Unavailable(text);
  std::string_view s(state);
  if (s == "23505") return Status::AlreadyExists(text);
  if (s == "23503") return Status::NotFound(text);
  if (s.starts_with("22") || s == "23502" || s == "23514") return Status::InvalidArgument(text);
  // Connection exceptions, shutdown, resource exhaustion, and conflicts a
  // retry resolves (serialization failure, deadlock).
  if (s.starts_with("08") || s.starts_with("57P") || s.starts_with("53") || s == "40001" ||
      s == "40P01") {
    return Status::Unavailable(text);
  }
  return Status::Internal(text + " (SQLSTATE " + std::string(s) + ")");
}

namespace {

bool Succeeded(const PGresult* res) {
  ExecStatusType st = PQresultStatus(res);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

std::string_view FirstLine(std::string_view sql) {
  size_t start = sql.find_first_not_of(" \n\t");
  if (start == std::string_view::npos) return {};
  sql.remove_prefix(start);
  return sql.substr(0, std::min(sql.find('\n'), size_t{60}));
}

}  // namespace

Result<PgResult> Exec(Connection::Impl& c, std::string_view sql, const Params& params) {
  HF_RETURN_IF_ERROR(c.EnsureConnected());
  std::string query(sql);
  auto it = c.prepared.find(query);
  if (it == c.prepared.end()) {
    std::string name = "hf_" + std::to_string(++c.next_statement);
    PgResult prep(
        PQprepare(c.conn, name.c_str(), query.c_str(), params.size(), params.types()));
    if (!Succeeded(prep.get())) return ErrorStatus(c.conn, prep.get(), FirstLine(sql));
    it = c.prepared.emplace(std::move(query), std::move(name)).first;
  }
  auto values = params.values();
  auto lengths = params.lengths();
  auto formats = params.formats();
  PgResult res(PQexecPrepared(c.conn, it->second.c_str(), params.size(), values.data(),
                              lengths.data(), formats.data(), /*resultFormat=*/1));
  if (!Succeeded(res.get())) return ErrorStatus(c.conn, res.get(), FirstLine(sql));
  return res;
}

Status ExecScript(Connection::Impl& c, const std::string& sql) {
  HF_RETURN_IF_ERROR(c.EnsureConnected());
  PgResult res(PQexec(c.conn, sql.c_str()));
  if (!Succeeded(res.get())) return ErrorStatus(c.conn, res.get(), FirstLine(sql));
  return Status::Ok();
}

// ------------------------------------------------------------- transactions

Result<Transaction> Transaction::Begin(Connection::Impl& c) {
  if (c.in_transaction) return Status::Internal("nested transaction");
  HF_RETURN_IF_ERROR(ExecScript(c, "BEGIN"));
  c.in_transaction = true;
  return Transaction(&c);
}

Status Transaction::Commit() {
  if (c_ == nullptr) return Status::Internal("transaction already finished");
  Connection::Impl* c = c_;
  PgResult res(PQexec(c->conn, "COMMIT"));
  c_ = nullptr;
  c->in_transaction = false;
  if (!Succeeded(res.get())) return ErrorStatus(c->conn, res.get(), "COMMIT");
  // COMMIT of a transaction that already failed reports success with the
  // tag ROLLBACK.
  if (std::strcmp(PQcmdStatus(const_cast<PGresult*>(res.get())), "COMMIT") != 0) {
    return Status::Internal("transaction was rolled back");
  }
  return Status::Ok();
}

void Transaction::Rollback() {
  if (c_ == nullptr) return;
  if (PQstatus(c_->conn) == CONNECTION_OK) PgResult(PQexec(c_->conn, "ROLLBACK"));
  c_->in_transaction = false;
  c_ = nullptr;
}

Transaction::~Transaction() { Rollback(); }

// ---------------------------------------------------------------- pipelines

Status Pipeline::Enter() {
  HF_RETURN_IF_ERROR(c_.EnsureConnected());
  if (PQenterPipelineMode(c_.conn) != 1) {
    return ErrorStatus(c_.conn, nullptr, "entering pipeline mode");
  }
  entered_ = true;
  return Status::Ok();
}

Status Pipeline::Send(std::string_view sql, const Params& params) {
  if (!entered_) HF_RETURN_IF_ERROR(Enter());
  std::string query(sql);
  auto it = c_.prepared.find(query);
  if (it == c_.prepared.end()) {
    std::string name = "hf_" + std::to_string(++c_.next_statement);
    if (PQsendPrepare(c_.conn, name.c_str(), query.c_str(), params.size(), params.types()) != 1) {
      return ErrorStatus(c_.conn, nullptr, FirstLine(sql));
    }
    // Recorded now so later statements of this pipeline reuse it; forgotten
    // again in Finish() if the preparation fails.
    prepares_.push_back(query);
    it = c_.prepared.emplace(std::move(query), std::move(name)).first;
  }
  auto values = params.values();
  auto lengths = params.lengths();
  auto formats = params.formats();
  // In blocking mode libpq reads pending results while it waits to write,
  // so a long pipeline cannot deadlock against the server.
  if (PQsendQueryPrepared(c_.conn, it->second.c_str(), params.size(), values.data(),
                          lengths.data(), formats.data(), /*resultFormat=*/1) != 1) {
    return ErrorStatus(c_.conn, nullptr, FirstLine(sql));
  }
  prepares_.emplace_back();
  return Status::Ok();
}

Result<std::vector<PgResult>> Pipeline::Finish() {
  if (!entered_) return std::vector<PgResult>{};
  if (PQpipelineSync(c_.conn) != 1) return ErrorStatus(c_.conn, nullptr, "pipeline sync");
  std::vector<PgResult> results;
  Status first_error;
  for (const std::string& prepared_sql : prepares_) {
    PgResult res(PQgetResult(c_.conn));
    if (res.get() == nullptr) {
      return Status::Unavailable("connection to PostgreSQL lost in a pipeline");
    }
    ExecStatusType st = PQresultStatus(res.get());
    if (first_error.ok() && !Succeeded(res.get())) {
      first_error = st == PGRES_PIPELINE_ABORTED
                        ? Status::Internal("pipeline aborted")
                        : ErrorStatus(c_.conn, res.get(), "pipelined statement");
    }
    // Each command's results end with a null result.
    while (PgResult(PQgetResult(c_.conn)).get() != nullptr) {
    }
    if (prepared_sql.empty()) {
      results.push_back(std::move(res));
    } else if (!Succeeded(res.get())) {
      c_.prepared.erase(prepared_sql);
    }
  }
  prepares_.clear();
  PgResult sync(PQgetResult(c_.conn));
  if (!first_error.ok()) {
    // A failed statement leaves an explicit transaction block aborted
    // after the sync; end it so the connection is usable again.
    PGTransactionStatusType ts = PQtransactionStatus(c_.conn);
    if (sync.get() != nullptr && (ts == PQTRANS_INERROR || ts == PQTRANS_INTRANS) &&
        PQexitPipelineMode(c_.conn) == 1) {
      entered_ = false;
      PgResult(PQexec(c_.conn, "ROLLBACK"));
      return first_error;
    }
  }
  if (sync.get() == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
    if (first_error.ok()) first_error = Status::Unavailable("pipeline did not end in a sync");
    return first_error;
  }
  if (PQexitPipelineMode(c_.conn) != 1) {
    if (first_error.ok()) first_error = ErrorStatus(c_.conn, nullptr, "leaving pipeline mode");
    return first_error;
  }
  entered_ = false;
  if (!first_error.ok()) return first_error;
  return results;
}

Pipeline::~Pipeline() {
  if (!entered_ || c_.conn == nullptr) return;
  if (PQexitPipelineMode(c_.conn) != 1) {
    // Results are still pending; the connection is in an unknown state, so
    // drop it and let the next statement reconnect.
    PQfinish(c_.conn);
    c_.conn = nullptr;
  }
}

}  // namespace internal
}  // namespace holdfast::archive
