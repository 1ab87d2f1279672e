#include "holdfast/testing/pg_fixture.h"

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

}  // namespace holdfast::testing
