#include "holdfast/archive/database.h"

#include <gtest/gtest.h>

#include <thread>

#include "archive_fixture.h"
#include "holdfast/archive/store.h"

namespace holdfast::archive {
namespace {

using DatabaseTest = ArchiveTest;

TEST(ConnectionTest, OpenFailsWithUnavailable) {
  auto conn = Connection::Open("host=127.0.0.1 port=1 connect_timeout=2 user=nobody");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), Code::kUnavailable);
}

TEST_F(DatabaseTest, MigrateIsIdempotent) {
  // SetUp migrated once already.
  ASSERT_TRUE(Migrate(conn()).ok());
  ASSERT_TRUE(Migrate(conn()).ok());
  Store store(conn());
  ASSERT_TRUE(store.CreateUser("alice", "Alice").ok());
  ASSERT_TRUE(Migrate(conn()).ok());
  EXPECT_TRUE(*store.UserExists("alice"));

  auto other = Connection::Open(conninfo());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other->Execute("CREATE TABLE applied AS SELECT version FROM schema_migrations").ok());
  // Every embedded migration is recorded once, in order from 1.
  EXPECT_TRUE(other->Execute("DO $$ BEGIN"
                             " IF (SELECT count(*) <> max(version) OR min(version) <> 1"
                             "     FROM applied) THEN RAISE EXCEPTION 'gap'; END IF;"
                             " IF (SELECT count(*) FROM applied) < 2 THEN"
                             "   RAISE EXCEPTION 'too few'; END IF; END $$")
                  .ok());
}

TEST_F(DatabaseTest, FreshDatabaseMigratesFromConcurrentProcesses) {
  auto info = cluster().CreateFreshDatabase();
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  constexpr int kRacers = 4;
  std::vector<Status> results(kRacers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      auto c = Connection::Open(*info);
      results[i] = c.ok() ? Migrate(*c) : c.status();
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : results) EXPECT_TRUE(s.ok()) << s.ToString();

  auto c = Connection::Open(*info);
  ASSERT_TRUE(c.ok());
  Store store(*c);
  EXPECT_TRUE(store.CreateUser("bob", "").ok());
}

TEST_F(DatabaseTest, ChangedMigrationIsRefused) {
  Sql("UPDATE schema_migrations SET sha256 = sha256('tampered') WHERE version = 1");
  Status s = Migrate(conn());
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("0001"), std::string::npos) << s.message();
}

TEST_F(DatabaseTest, ExecuteMapsErrors) {
  EXPECT_TRUE(conn().Execute("CREATE TABLE t (k int PRIMARY KEY)").ok());
  EXPECT_TRUE(conn().Execute("INSERT INTO t VALUES (1)").ok());
  EXPECT_EQ(conn().Execute("INSERT INTO t VALUES (1)").code(), Code::kAlreadyExists);
  EXPECT_EQ(conn().Execute("SELEC 1").code(), Code::kInternal);
  // The connection is still usable after errors.
  EXPECT_TRUE(conn().Ping().ok());
}

TEST_F(DatabaseTest, ServerCrashIsUnavailableThenRecovers) {
  Store store(conn());
  ASSERT_TRUE(store.CreateUser("alice", "").ok());
  ASSERT_TRUE(conn().Ping().ok());
  ASSERT_TRUE(cluster().StopImmediate().ok());

  EXPECT_EQ(conn().Ping().code(), Code::kUnavailable);
  EXPECT_FALSE(conn().Healthy());
  EXPECT_EQ(store.CreateUser("bob", "").code(), Code::kUnavailable);
  std::vector<IngestItem> items(1);
  items[0].message_id = Bytes(16, 1);
  items[0].envelope = Bytes{1};
  EXPECT_EQ(store.IngestBatch(items).status().code(), Code::kUnavailable);

  ASSERT_TRUE(cluster().Start().ok());
  // The same Connection reconnects on its next use.
  EXPECT_TRUE(conn().Ping().ok());
  EXPECT_TRUE(conn().Healthy());
  EXPECT_TRUE(*store.UserExists("alice"));
  EXPECT_FALSE(*store.UserExists("bob"));
}

}  // namespace
}  // namespace holdfast::archive
