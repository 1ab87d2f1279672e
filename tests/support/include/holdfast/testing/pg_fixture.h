// GoogleTest support for tests against a real PostgreSQL: one cluster per
// test binary, started on first use and stopped when the binary exits; one
// fresh database per test.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "holdfast/testing/pg_cluster.h"

namespace holdfast::testing {

// The cluster shared by every test of this binary. Started by the first call;
// a failure to start fails that test and every later caller.
TempPostgres* SharedPostgres();

// Derive fixtures from this one. SetUpTestSuite starts the shared cluster;
// SetUp creates an empty database for the test and sets conninfo().
class PostgresTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  void SetUp() override;

  TempPostgres& cluster() { return *SharedPostgres(); }
  const std::string& conninfo() const { return conninfo_; }
  // The one value `sql` returns (one row, first column) as a number, read
  // on a separate connection, as an operator with direct database access
  // would. On any error: a test failure and -1.
  int64_t Count(const std::string& sql);

 private:
  std::string conninfo_;
};

}  // namespace holdfast::testing
