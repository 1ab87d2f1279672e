#include "holdfast/testing/pg_fixture.h"

#include <libpq-fe.h>

#include <memory>

namespace holdfast::testing {
namespace {

struct Shared {
  std::unique_ptr<TempPostgres> cluster;
  Status status;
  bool tried = false;
};

Shared& TheShared() {
  // Destroyed at exit, which stops the cluster and removes its directory.
  static Shared shared;
  return shared;
}

}  // namespace

TempPostgres* SharedPostgres() {
  Shared& shared = TheShared();
  if (!shared.tried) {
    shared.tried = true;
    auto created = TempPostgres::Create();
    if (created.ok()) {
      shared.cluster = std::move(created).value();
    } else {
      shared.status = created.status();
    }
  }
  return shared.cluster.get();
}

void PostgresTest::SetUpTestSuite() { SharedPostgres(); }

void PostgresTest::SetUp() {
  TempPostgres* pg = SharedPostgres();
  ASSERT_NE(pg, nullptr) << "could not start PostgreSQL: " << TheShared().status.ToString();
  auto info = pg->CreateFreshDatabase();
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  conninfo_ = *info;
}

int64_t PostgresTest::Count(const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo_.c_str());
  PGresult* r = PQexec(c, sql.c_str());
  int64_t n = -1;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
    n = std::stoll(PQgetvalue(r, 0, 0));
  } else {
    ADD_FAILURE() << sql << ": " << PQerrorMessage(c);
  }
  PQclear(r);
  PQfinish(c);
  return n;
}

}  // namespace holdfast::testing
