#include "holdfast/archive/database.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
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

  // Every embedded migration (one per archive/migrations/*.sql) is recorded
  // once, from 1. Versions are taken by parallel branches, so a branch may
  // have gaps until the others land.
  int64_t files = 0;
  int64_t highest = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(HOLDFAST_SOURCE_DIR "/archive/migrations")) {
    if (entry.path().extension() != ".sql") continue;
    ++files;
    highest = std::max<int64_t>(highest, std::stoll(entry.path().filename().string()));
  }
  ASSERT_GE(files, 2);
  EXPECT_EQ(Count("SELECT count(DISTINCT version) FROM schema_migrations"), files);
  EXPECT_EQ(Count("SELECT min(version) FROM schema_migrations"), 1);
  EXPECT_EQ(Count("SELECT max(version) FROM schema_migrations"), highest);
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

// 0010 converts envelopes and deliveries of a database in use into
// partitioned tables: every row lands in its epoch's partition (or the
// held or default one), keeps its id, and ingest goes on from there.
TEST_F(DatabaseTest, PartitioningMigrationKeepsExistingRows) {
  auto info = cluster().CreateFreshDatabase();
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  auto c = Connection::Open(*info);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(Migrate(*c, 7).ok());
  // Epoch 1 was shredded with envelope 2 held; epoch 2 is live; epoch 9
  // has no epochs row. Envelopes 1 and 7 were deleted.
  Status filled = c->Execute(R"sql(
INSERT INTO officers (name, role) VALUES ('kim', 'key_custodian'), ('ken', 'key_custodian');
INSERT INTO epochs VALUES
  (1, '\x01', '\x04', '2026-01-01Z', '2026-02-01Z'),
  (2, '\x02', '\x04', '2026-02-01Z', '2026-03-01Z');
INSERT INTO envelopes (message_id, conversation_id, sender_user, sender_device, epoch_id,
                       sent_at, envelope)
SELECT decode(lpad(to_hex(i), 32, '0'), 'hex'), 'c_1', 'alice', '\x01',
       CASE WHEN i <= 2 THEN 1 WHEN i <= 5 THEN 2 ELSE 9 END,
       '2026-02-02Z', decode(lpad(to_hex(i), 8, '0'), 'hex')
FROM generate_series(1, 7) i;
DELETE FROM envelopes WHERE envelope_id IN (1, 7);
INSERT INTO deliveries (envelope_id, device_id, delivered_at)
SELECT envelope_id, '\x02', CASE WHEN envelope_id = 3 THEN now() END FROM envelopes;
INSERT INTO epoch_shreddings (epoch_id, requested_by, approved_by, approved_at, state,
                              destroyed_at)
VALUES (1, 'kim', 'ken', now(), 'completed', now());
INSERT INTO hold_capsules (envelope_id, hold_key_label, enc, ct)
VALUES (2, 'holdfast-hold-key', decode(repeat('04', 65), 'hex'), '\x01');
INSERT INTO users (user_name) VALUES ('bob');
INSERT INTO devices (device_id, user_name, identity_key, signed_prekey, certificate)
VALUES ('\x02', 'bob', '\x02', '\x02', '\x02');
INSERT INTO delivery_reports (reporter_device, reporter_user, envelope_id, reason)
VALUES ('\x02', 'bob', 4, 'other');
)sql");
  ASSERT_TRUE(filled.ok()) << filled.ToString();

  Status migrated = Migrate(*c);
  ASSERT_TRUE(migrated.ok()) << migrated.ToString();
  Status checked = c->Execute(R"sql(
DO $$ BEGIN
  IF (SELECT array_agg(envelope_id ORDER BY envelope_id) FROM envelopes_held) <> '{2}'
     OR (SELECT array_agg(envelope_id ORDER BY envelope_id) FROM envelopes_e2) <> '{3,4,5}'
     OR (SELECT array_agg(envelope_id ORDER BY envelope_id) FROM envelopes_default) <> '{6}'
     OR to_regclass('envelopes_e1') IS NOT NULL
     OR (SELECT count(*) FROM deliveries_held WHERE envelope_id = 2) <> 1
     OR (SELECT count(*) FROM deliveries_e2) <> 3
     OR (SELECT count(*) FROM deliveries_default) <> 1
     OR (SELECT count(*) FROM deliveries WHERE delivered_at IS NOT NULL) <> 1
     OR (SELECT envelope FROM envelopes WHERE envelope_id = 4) <> '\x00000004'
     OR (SELECT envelope_id FROM delivery_reports) <> 4
     OR (SELECT count(*) FROM hold_capsules) <> 1
     OR to_regclass('envelopes_unpartitioned') IS NOT NULL THEN
    RAISE EXCEPTION 'rows moved wrongly';
  END IF;
END $$;
)sql");
  EXPECT_TRUE(checked.ok()) << checked.ToString();

  // Ingest continues after the highest id ever given (envelope 7 was
  // deleted, yet its id is not given again), deduplicating
  // against the migrated rows.
  Store store(*c);
  IngestItem again;
  again.message_id = Bytes(16, 0);
  again.message_id[15] = 4;
  again.conversation_id = "c_1";
  again.sender_user = "alice";
  again.sender_device = Bytes{1};
  again.epoch_id = 2;
  again.sent_at_ms = 1'769'990'400'000;
  again.envelope = Bytes{0, 0, 0, 4};
  again.recipient_devices = {Bytes{2}};
  IngestItem fresh = again;
  fresh.message_id[15] = 7;
  auto out = store.IngestBatch({again, fresh});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE((*out)[0].duplicate);
  EXPECT_FALSE((*out)[0].conflict);
  EXPECT_EQ((*out)[0].envelope_id, 4);
  EXPECT_FALSE((*out)[1].duplicate);
  // (The duplicate drew an id too, as ON CONFLICT does.)
  EXPECT_GT((*out)[1].envelope_id, 7);
  ASSERT_EQ((*out)[1].deliveries.size(), 1u);
  EXPECT_EQ((*out)[1].deliveries[0].second, 6);
  // Pending: envelopes 2, 4, 5, 6 and 7 (3 was acknowledged).
  EXPECT_EQ(*store.CountPendingDeliveries(Bytes{2}, 3650LL * 24 * 3600 * 1000), 5u);
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
