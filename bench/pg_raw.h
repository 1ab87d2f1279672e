// PostgreSQL's own batched insert, the limit the ingest and load benchmarks
// measure Holdfast against: plain libpq writing the same rows into tables
// shaped like envelopes and deliveries, with client-assigned ids, one
// transaction per batch (a multi-row INSERT ... SELECT FROM unnest, or
// BEGIN; binary COPY; COMMIT).
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <iostream>
#include <memory>
#include <string>

#include "bench_util.h"
#include "holdfast/archive/store.h"

namespace holdfast::bench {

using archive::IngestItem;

// ------------------------------------------------------------- libpq RAII

struct ConnFinish {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultClear {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgConn = std::unique_ptr<PGconn, ConnFinish>;
using PgRes = std::unique_ptr<PGresult, ResultClear>;

inline void NoNotices(void*, const PGresult*) {}

inline PgConn Connect(const std::string& conninfo) {
  PgConn conn(PQconnectdb(conninfo.c_str()));
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    Fail("connect", conn ? PQerrorMessage(conn.get()) : "out of memory");
  }
  PQsetNoticeReceiver(conn.get(), NoNotices, nullptr);
  return conn;
}

// Returns false (after printing why) unless the result has status `want`.
inline bool Expect(PGconn* conn, const PgRes& res, ExecStatusType want, const char* what) {
  if (res && PQresultStatus(res.get()) == want) return true;
  std::cerr << "bench: " << what << ": " << PQerrorMessage(conn) << "\n";
  return false;
}

inline void Exec(PGconn* conn, const std::string& sql) {
  PgRes res(PQexec(conn, sql.c_str()));
  if (!Expect(conn, res, PGRES_COMMAND_OK, sql.c_str())) std::exit(1);
}

// ------------------------------------------------------ binary encodings

inline constexpr Oid kInt8 = 20, kBytea = 17, kText = 25;
inline constexpr Oid kInt8Array = 1016, kByteaArray = 1001, kTextArray = 1009;
// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
inline constexpr int64_t kPgEpochOffsetUs = 946684800LL * 1000000;

inline void PutBE(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutField(std::string& out, const void* data, size_t size) {
  PutBE(out, size, 4);
  out.append(static_cast<const char*>(data), size);
}
inline void PutField(std::string& out, const Bytes& b) { PutField(out, b.data(), b.size()); }
inline void PutField(std::string& out, const std::string& s) { PutField(out, s.data(), s.size()); }
inline void PutInt8Field(std::string& out, int64_t v) {
  PutBE(out, 8, 4);
  PutBE(out, static_cast<uint64_t>(v), 8);
}

// One-dimensional binary array (array_send format) built element by element.
class BinaryArray {
 public:
  explicit BinaryArray(Oid element, size_t count) {
    PutBE(buf_, 1, 4);        // dimensions
    PutBE(buf_, 0, 4);        // no nulls
    PutBE(buf_, element, 4);  // element type
    PutBE(buf_, count, 4);    // length
    PutBE(buf_, 1, 4);        // lower bound
  }
  void Add(const Bytes& b) { PutField(buf_, b); }
  void Add(const std::string& s) { PutField(buf_, s); }
  void AddInt8(int64_t v) { PutInt8Field(buf_, v); }
  const std::string& data() const { return buf_; }

 private:
  std::string buf_;
};

// ------------------------------------------------------------ raw writers

// Writes batches of rows into a pair of tables with plain libpq, with
// client-assigned ids.
class RawWriter {
 public:
  RawWriter(const std::string& conninfo, std::string envelopes, std::string deliveries,
            bool overriding)
      : conn_(Connect(conninfo)), envelopes_(std::move(envelopes)),
        deliveries_(std::move(deliveries)) {
    const std::string over = overriding ? " OVERRIDING SYSTEM VALUE" : "";
    const std::string sql =
        "WITH e AS (INSERT INTO " + envelopes_ +
        " (envelope_id, message_id, conversation_id, sender_user, sender_device, epoch_id,"
        " retention_epoch, sent_at, envelope)" + over +
        " SELECT id, mid, conv, snd, dev, ep, ep,"
        " timestamptz 'epoch' + ms * interval '1 millisecond',"
        " env FROM unnest($1::int8[], $2::bytea[], $3::text[], $4::text[], $5::bytea[],"
        " $6::int8[], $7::int8[], $8::bytea[]) AS u(id, mid, conv, snd, dev, ep, ms, env))"
        " INSERT INTO " + deliveries_ + " (delivery_id, envelope_id, retention_epoch, device_id)" +
        over + " SELECT * FROM unnest($9::int8[], $10::int8[], $12::int8[], $11::bytea[])";
    const Oid types[12] = {kInt8Array, kByteaArray, kTextArray, kTextArray, kByteaArray,
                           kInt8Array, kInt8Array, kByteaArray, kInt8Array, kInt8Array,
                           kByteaArray, kInt8Array};
    PgRes res(PQprepare(conn_.get(), "ingest", sql.c_str(), 12, types));
    if (!Expect(conn_.get(), res, PGRES_COMMAND_OK, "prepare unnest insert")) std::exit(1);
  }

  void ResetIds() { next_envelope_ = next_delivery_ = 1; }

  // One statement, so one implicit transaction.
  bool InsertUnnest(const IngestItem* rows, size_t n) {
    size_t deliveries = 0;
    for (size_t i = 0; i < n; ++i) deliveries += rows[i].recipient_devices.size();
    BinaryArray id(kInt8, n), mid(kBytea, n), conv(kText, n), snd(kText, n), dev(kBytea, n),
        ep(kInt8, n), ms(kInt8, n), env(kBytea, n);
    BinaryArray d_id(kInt8, deliveries), d_env(kInt8, deliveries), d_dev(kBytea, deliveries),
        d_ep(kInt8, deliveries);
    for (size_t i = 0; i < n; ++i) {
      const IngestItem& r = rows[i];
      const int64_t envelope_id = next_envelope_++;
      id.AddInt8(envelope_id);
      mid.Add(r.message_id);
      conv.Add(r.conversation_id);
      snd.Add(r.sender_user);
      dev.Add(r.sender_device);
      ep.AddInt8(r.epoch_id);
      ms.AddInt8(r.sent_at_ms);
      env.Add(r.envelope);
      for (const Bytes& device : r.recipient_devices) {
        d_id.AddInt8(next_delivery_++);
        d_env.AddInt8(envelope_id);
        d_dev.Add(device);
        d_ep.AddInt8(r.epoch_id);
      }
    }
    const BinaryArray* arrays[12] = {&id, &mid, &conv, &snd, &dev, &ep, &ms, &env,
                                     &d_id, &d_env, &d_dev, &d_ep};
    const char* values[12];
    int lengths[12], formats[12];
    for (int i = 0; i < 12; ++i) {
      values[i] = arrays[i]->data().data();
      lengths[i] = static_cast<int>(arrays[i]->data().size());
      formats[i] = 1;
    }
    PgRes res(PQexecPrepared(conn_.get(), "ingest", 12, values, lengths, formats, 1));
    return Expect(conn_.get(), res, PGRES_COMMAND_OK, "unnest insert");
  }

  // BEGIN; COPY envelopes; COPY deliveries; COMMIT.
  bool InsertCopy(const IngestItem* rows, size_t n) {
    std::string env_buf = Header(), del_buf = Header();
    for (size_t i = 0; i < n; ++i) {
      const IngestItem& r = rows[i];
      const int64_t envelope_id = next_envelope_++;
      PutBE(env_buf, 9, 2);
      PutInt8Field(env_buf, envelope_id);
      PutField(env_buf, r.message_id);
      PutField(env_buf, r.conversation_id);
      PutField(env_buf, r.sender_user);
      PutField(env_buf, r.sender_device);
      PutInt8Field(env_buf, r.epoch_id);
      PutInt8Field(env_buf, r.epoch_id);
      PutInt8Field(env_buf, r.sent_at_ms * 1000 - kPgEpochOffsetUs);
      PutField(env_buf, r.envelope);
      for (const Bytes& device : r.recipient_devices) {
        PutBE(del_buf, 4, 2);
        PutInt8Field(del_buf, next_delivery_++);
        PutInt8Field(del_buf, envelope_id);
        PutInt8Field(del_buf, r.epoch_id);
        PutField(del_buf, device);
      }
    }
    PutBE(env_buf, 0xffff, 2);
    PutBE(del_buf, 0xffff, 2);
    PGconn* c = conn_.get();
    PgRes begin(PQexec(c, "BEGIN"));
    if (!Expect(c, begin, PGRES_COMMAND_OK, "BEGIN")) return false;
    if (!Copy(envelopes_ +
                  " (envelope_id, message_id, conversation_id, sender_user, sender_device,"
                  " epoch_id, retention_epoch, sent_at, envelope)",
              env_buf) ||
        !Copy(deliveries_ + " (delivery_id, envelope_id, retention_epoch, device_id)", del_buf)) {
      PgRes rollback(PQexec(c, "ROLLBACK"));
      return false;
    }
    PgRes commit(PQexec(c, "COMMIT"));
    return Expect(c, commit, PGRES_COMMAND_OK, "COMMIT");
  }

 private:
  static std::string Header() {
    std::string h("PGCOPY\n\377\r\n\0", 11);
    PutBE(h, 0, 4);  // flags
    PutBE(h, 0, 4);  // header extension length
    return h;
  }

  bool Copy(const std::string& target, const std::string& data) {
    PGconn* c = conn_.get();
    const std::string sql = "COPY " + target + " FROM STDIN (FORMAT binary)";
    PgRes start(PQexec(c, sql.c_str()));
    if (!Expect(c, start, PGRES_COPY_IN, "COPY")) return false;
    if (PQputCopyData(c, data.data(), static_cast<int>(data.size())) != 1 ||
        PQputCopyEnd(c, nullptr) != 1) {
      std::cerr << "bench: COPY data: " << PQerrorMessage(c) << "\n";
      return false;
    }
    bool ok = true;
    for (PgRes res(PQgetResult(c)); res; res.reset(PQgetResult(c))) {
      ok = Expect(c, res, PGRES_COMMAND_OK, "COPY end") && ok;
    }
    return ok;
  }

  PgConn conn_;
  std::string envelopes_, deliveries_;
  int64_t next_envelope_ = 1, next_delivery_ = 1;
};

}  // namespace holdfast::bench
