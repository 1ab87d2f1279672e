// A migrated, empty Holdfast database per test, in the binary's shared cluster.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

#include "holdfast/archive/database.h"
#include "holdfast/testing/pg_fixture.h"

namespace holdfast::archive {

class ArchiveTest : public holdfast::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    auto conn = Connection::Open(conninfo());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    conn_.emplace(std::move(conn).value());
    Status migrated = Migrate(*conn_);
    ASSERT_TRUE(migrated.ok()) << migrated.ToString();
  }

  Connection& conn() { return *conn_; }

  // Runs SQL on a separate connection, as an operator (or attacker) with
  // direct database access would.
  void Sql(const std::string& sql) {
    auto other = Connection::Open(conninfo());
    ASSERT_TRUE(other.ok()) << other.status().ToString();
    Status s = other->Execute(sql);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Deliveries whose envelope is gone; any deletion must leave none.
  int64_t OrphanDeliveries() {
    return Count("SELECT count(*) FROM deliveries d LEFT JOIN envelopes e USING (envelope_id)"
                 " WHERE e.envelope_id IS NULL");
  }

  std::optional<Connection> conn_;
};

}  // namespace holdfast::archive
