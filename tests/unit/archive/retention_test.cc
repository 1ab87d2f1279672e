// The per-class retention sweep against real PostgreSQL.
#include "holdfast/archive/retention.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "archive_fixture.h"
#include "enrolled_person.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/store.h"

namespace holdfast::archive {
namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kJan = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kFeb = 1'769'904'000'000;  // 2026-02-01T00:00:00Z
constexpr int64_t kMar = kFeb + 28 * kDay;

// alice's direct conversations are kept 30 days, everything else a year.
constexpr std::string_view kPolicy = R"(version: 1
retention:
  classes:
    standard: {days: 365}
    short: {days: 30}
  default_class: standard
  assign:
    - match: {users: [alice], conversation_kind: direct}
      class: short
)";

// Mid-February: January's short-class messages are past 30 days, its
// standard ones far from a year.
constexpr int64_t kNow = kFeb + 14 * kDay;

class RetentionTest : public ArchiveTest {
 protected:
  void SetUp() override {
    ArchiveTest::SetUp();
    if (HasFatalFailure()) return;
    store_.emplace(conn());
    compliance_.emplace(conn());
    ASSERT_TRUE(store_->PutEpoch({1, Bytes{}, Bytes(65, 0x04), kJan, kFeb}).ok());
    ASSERT_TRUE(store_->PutEpoch({2, Bytes{}, Bytes(65, 0x04), kFeb, kMar}).ok());
    auto policy = policy::Policy::Parse(kPolicy, "retention-policy.yaml");
    ASSERT_TRUE(policy.ok()) << policy.status().ToString();
    policy_.emplace(std::move(policy).value());
    for (const char* name : {"alice", "bob", "carol"}) {
      auto p = EnrollPerson(*store_, name, kJan);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      people_.emplace(name, std::move(p).value());
    }
    ASSERT_TRUE(compliance_->AddOfficer({"lena", "legal_counsel"}, "admin").ok());
    auto case_id = compliance_->CreateCase("Acme v. Widget", "SDNY 26-cv-1", "lena");
    ASSERT_TRUE(case_id.ok());
    case_id_ = *case_id;
  }

  // Stores an envelope (opaque bytes: the sweep never parses one) from
  // `from` to every other member of `conversation_id`, delivered to their
  // devices. Returns its envelope id.
  int64_t Send(const std::string& from, const std::string& conversation_id,
               const std::vector<std::string>& to, int64_t sent_at_ms, uint32_t epoch_id,
               std::optional<OutboxTag> outbox = {}) {
    IngestItem item;
    const std::string id = "m" + std::to_string(++messages_);
    item.message_id.assign(id.begin(), id.end());
    item.conversation_id = conversation_id;
    item.sender_user = from;
    item.sender_device = people_.at(from).device_id;
    item.epoch_id = epoch_id;
    item.sent_at_ms = sent_at_ms;
    item.envelope = Bytes(64, 0x2a);
    for (const std::string& user : to) item.recipient_devices.push_back(people_.at(user).device_id);
    auto stored = store_->IngestBatch({item}, outbox);
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    if (!stored.ok()) return 0;
    for (const auto& [device, delivery] : (*stored)[0].deliveries) deliveries_.push_back(delivery);
    return (*stored)[0].envelope_id;
  }

  int64_t Direct(const std::string& from, const std::string& to, int64_t sent_at_ms,
                 uint32_t epoch_id = 1, std::optional<OutboxTag> outbox = {}) {
    auto conversation = store_->OpenConversation({from, to});
    EXPECT_TRUE(conversation.ok());
    return Send(from, conversation->conversation_id, {to}, sent_at_ms, epoch_id, outbox);
  }

  // January: two short-class messages (alice and bob, direct), two
  // standard ones (bob and carol), alice in a group (standard), and a
  // short-class message to carol that carol's hold keeps.
  void Populate() {
    short_one_ = Direct("alice", "bob", kJan + kHour, 1, OutboxTag{"node-a", 1});
    short_two_ = Direct("bob", "alice", kJan + 2 * kHour);
    standard_one_ = Direct("bob", "carol", kJan + 3 * kHour);
    standard_two_ = Direct("carol", "bob", kJan + 4 * kHour);
    auto group = store_->CreateGroup("alice", "desk", {"bob", "carol"});
    ASSERT_TRUE(group.ok()) << group.status().ToString();
    group_one_ = Send("alice", group->conversation_id, {"bob", "carol"}, kJan + 5 * kHour, 1);
    held_ = Direct("alice", "carol", kJan + 4 * kDay);
    hold_id_ = *compliance_->AddHold(case_id_, "carol", kJan + 3 * kDay, kJan + 5 * kDay, "lena");
    // February: alice's, not yet 30 days old.
    recent_ = Direct("alice", "bob", kFeb + kDay, 2);
  }

  Result<RetentionSweepReport> Sweep(int64_t now_ms = kNow, bool dry_run = false,
                                     int batch_size = 2) {
    RetentionSweepOptions options;
    options.dry_run = dry_run;
    options.batch_size = batch_size;
    return SweepRetention(conn(), *policy_, now_ms, options);
  }

  bool Exists(int64_t envelope_id) {
    return Count("SELECT count(*) FROM envelopes WHERE envelope_id = " +
                 std::to_string(envelope_id)) == 1;
  }
  int64_t DeliveriesOf(int64_t envelope_id) {
    return Count("SELECT count(*) FROM deliveries WHERE envelope_id = " +
                 std::to_string(envelope_id));
  }

  std::vector<AuditEvent> Sweeps() {
    auto trail = compliance_->AuditTrail();
    EXPECT_TRUE(trail.ok());
    std::vector<AuditEvent> out;
    for (const auto& e : *trail) {
      if (e.action == "retention.sweep") out.push_back(e);
    }
    return out;
  }

  static const RetentionClassCount& Class(const RetentionSweepReport& r, const std::string& name) {
    auto it = std::find_if(r.classes.begin(), r.classes.end(),
                           [&](const auto& c) { return c.retention_class == name; });
    EXPECT_NE(it, r.classes.end()) << name;
    return *it;
  }

  std::optional<Store> store_;
  std::optional<Compliance> compliance_;
  std::optional<policy::Policy> policy_;
  std::map<std::string, Person> people_;
  std::vector<int64_t> deliveries_;
  int messages_ = 0;
  int64_t case_id_ = 0;
  int64_t hold_id_ = 0;
  int64_t short_one_ = 0, short_two_ = 0, standard_one_ = 0, standard_two_ = 0, group_one_ = 0,
          held_ = 0, recent_ = 0;
};

TEST_F(RetentionTest, DeletesExpiredShortClassAndKeepsTheRest) {
  Populate();
  // A report about the first short-class message, and a resend request for it.
  DeliveryReport report{people_.at("bob").device_id, deliveries_.front(), Bytes{}, "other", ""};
  ASSERT_TRUE(store_->RecordDeliveryReport(report).ok());
  Sql("INSERT INTO devices (device_id, user_name, identity_key, signed_prekey, certificate)"
      " VALUES ('\\x00', 'bob', '\\x01', '\\x02', '\\x03');"
      " INSERT INTO resend_requests (envelope_id, message_id, conversation_id, sender_device,"
      " target_device) SELECT envelope_id, message_id, conversation_id, sender_device, '\\x00'"
      " FROM envelopes WHERE envelope_id = " + std::to_string(short_one_));
  ASSERT_EQ(Count("SELECT count(*) FROM resend_requests"), 1);
  ASSERT_EQ(Count("SELECT cardinality(delivery_ids) FROM outbox"), 1);

  auto swept = Sweep();
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_FALSE(swept->dry_run);
  EXPECT_EQ(swept->policy_version, policy_->version());
  EXPECT_EQ(swept->examined_before_ms, kNow - 30 * kDay);
  // The six January envelopes; February's is younger than the shortest class.
  EXPECT_EQ(swept->examined, 6u);
  EXPECT_EQ(Class(*swept, "short").deleted, 2u);
  EXPECT_EQ(Class(*swept, "short").days, 30);
  EXPECT_EQ(Class(*swept, "short").kept_by_hold, 1u);
  EXPECT_EQ(Class(*swept, "standard").deleted, 0u);
  EXPECT_EQ(Class(*swept, "standard").kept_by_hold, 0u);
  EXPECT_EQ(swept->deleted, 2u);
  EXPECT_EQ(swept->kept_by_hold, 1u);
  EXPECT_EQ(swept->deliveries_deleted, 2u);
  EXPECT_EQ(swept->hold_ids, (std::vector<int64_t>{hold_id_}));
  EXPECT_NE(swept->sweep_id, 0);

  EXPECT_FALSE(Exists(short_one_));
  EXPECT_FALSE(Exists(short_two_));
  EXPECT_EQ(DeliveriesOf(short_one_), 0);
  EXPECT_EQ(DeliveriesOf(short_two_), 0);
  for (int64_t kept : {standard_one_, standard_two_, group_one_, held_, recent_}) {
    EXPECT_TRUE(Exists(kept)) << kept;
    EXPECT_GE(DeliveriesOf(kept), 1) << kept;
  }
  // Nothing names the deleted envelopes any more; the report stays.
  EXPECT_EQ(Count("SELECT count(*) FROM resend_requests"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM delivery_reports WHERE envelope_id IS NULL"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM outbox"), 1);
  EXPECT_EQ(Count("SELECT cardinality(delivery_ids) FROM outbox"), 0);
  EXPECT_EQ(OrphanDeliveries(), 0);

  auto sweeps = Sweeps();
  ASSERT_EQ(sweeps.size(), 1u);
  EXPECT_EQ(sweeps[0].actor, "system:retention");
  for (const char* part : {"\"envelopes_deleted\":2", "\"kept_by_hold\":1",
                           "{\"class\":\"short\",\"days\":30,\"deleted\":2,\"kept_by_hold\":1}",
                           "{\"class\":\"standard\",\"days\":365,\"deleted\":0,\"kept_by_hold\":0}"}) {
    EXPECT_NE(sweeps[0].detail.find(part), std::string::npos) << sweeps[0].detail;
  }
  EXPECT_NE(sweeps[0].detail.find(policy_->version()), std::string::npos) << sweeps[0].detail;
  EXPECT_EQ(Count("SELECT count(*) FROM retention_sweeps WHERE state = 'completed'"), 1);
  EXPECT_TRUE(compliance_->VerifyAuditChain().ok());
}

TEST_F(RetentionTest, DryRunDeletesNothingAndCountsTheSame) {
  Populate();
  const int64_t envelopes = Count("SELECT count(*) FROM envelopes");
  const int64_t audit = Count("SELECT count(*) FROM audit_events");
  auto dry = Sweep(kNow, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  EXPECT_TRUE(dry->dry_run);
  EXPECT_EQ(Count("SELECT count(*) FROM envelopes"), envelopes);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events"), audit);
  EXPECT_EQ(Count("SELECT count(*) FROM retention_sweeps"), 0);
  EXPECT_EQ(dry->sweep_id, 0);
  EXPECT_EQ(dry->deliveries_deleted, 0u);

  auto real = Sweep();
  ASSERT_TRUE(real.ok()) << real.status().ToString();
  EXPECT_EQ(dry->examined, real->examined);
  EXPECT_EQ(dry->deleted, real->deleted);
  EXPECT_EQ(dry->kept_by_hold, real->kept_by_hold);
  EXPECT_EQ(dry->hold_ids, real->hold_ids);
  ASSERT_EQ(dry->classes.size(), real->classes.size());
  for (size_t i = 0; i < dry->classes.size(); ++i) {
    EXPECT_EQ(dry->classes[i].retention_class, real->classes[i].retention_class);
    EXPECT_EQ(dry->classes[i].deleted, real->classes[i].deleted);
    EXPECT_EQ(dry->classes[i].kept_by_hold, real->classes[i].kept_by_hold);
  }
  EXPECT_EQ(Count("SELECT count(*) FROM envelopes"), envelopes - 2);
}

TEST_F(RetentionTest, SecondSweepDeletesNothingMoreAndAuditsNothing) {
  Populate();
  ASSERT_TRUE(Sweep().ok());
  const int64_t envelopes = Count("SELECT count(*) FROM envelopes");
  auto again = Sweep(kNow + kHour);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->deleted, 0u);
  EXPECT_EQ(again->kept_by_hold, 1u);
  EXPECT_EQ(again->examined, 4u);
  EXPECT_EQ(again->sweep_id, 0);
  EXPECT_EQ(Count("SELECT count(*) FROM envelopes"), envelopes);
  EXPECT_EQ(Sweeps().size(), 1u);
  EXPECT_EQ(Count("SELECT count(*) FROM retention_sweeps"), 1);
}

TEST_F(RetentionTest, HeldEnvelopeGoesOnceTheHoldIsReleased) {
  Populate();
  ASSERT_TRUE(Sweep().ok());
  EXPECT_TRUE(Exists(held_));
  // A hold placed now on bob keeps standard_one_ well past its year.
  const int64_t bob_hold = *compliance_->AddHold(case_id_, "bob", kJan, kFeb, "lena");
  Sql("UPDATE holds SET state = 'released', released_at = now() WHERE hold_id = " +
      std::to_string(hold_id_));
  auto swept = Sweep();
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_EQ(Class(*swept, "short").deleted, 1u);
  EXPECT_EQ(swept->kept_by_hold, 0u);
  EXPECT_FALSE(Exists(held_));
  EXPECT_EQ(DeliveriesOf(held_), 0);
  ASSERT_EQ(Sweeps().size(), 2u);

  // A year on, the standard class has run out too; bob's hold keeps what
  // it covers (his two January conversations and the group), the rest goes.
  auto later = Sweep(kJan + 400 * kDay);
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_EQ(Class(*later, "standard").deleted, 0u);
  EXPECT_EQ(Class(*later, "standard").kept_by_hold, 3u);
  EXPECT_EQ(Class(*later, "short").deleted, 1u);  // February's
  EXPECT_EQ(later->hold_ids, (std::vector<int64_t>{bob_hold}));
  EXPECT_FALSE(Exists(recent_));
  for (int64_t kept : {standard_one_, standard_two_, group_one_}) EXPECT_TRUE(Exists(kept));
  EXPECT_EQ(OrphanDeliveries(), 0);
  EXPECT_EQ(Sweeps().size(), 3u);
  EXPECT_TRUE(compliance_->VerifyAuditChain().ok());
}

TEST_F(RetentionTest, HeldPartitionIsUntouched) {
  Populate();
  // What a completed shredding leaves of an envelope a hold kept.
  Sql("UPDATE deliveries SET retention_epoch = -1 WHERE envelope_id = " +
      std::to_string(short_one_) + "; UPDATE envelopes SET retention_epoch = -1 WHERE envelope_id = " +
      std::to_string(short_one_));
  auto swept = Sweep(kJan + 400 * kDay);
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_TRUE(Exists(short_one_));
  EXPECT_EQ(DeliveriesOf(short_one_), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM envelopes_held"), 1);
  // Everything else but what carol's hold keeps is past its class.
  EXPECT_EQ(Count("SELECT count(*) FROM envelopes"), 2);
  EXPECT_TRUE(Exists(held_));
}

TEST_F(RetentionTest, ContinuesAnInterruptedSweep) {
  Populate();
  // A sweep stopped after the batch that deleted short_one_.
  Sql("DELETE FROM deliveries WHERE envelope_id = " + std::to_string(short_one_) +
      "; DELETE FROM envelopes WHERE envelope_id = " + std::to_string(short_one_) +
      "; INSERT INTO retention_sweeps (actor, policy_version, cursor_epoch, cursor_envelope_id,"
      " examined, deliveries_deleted, classes, deleted, kept_by_hold) VALUES ('kim', '" +
      policy_->version() + "', 1, " + std::to_string(short_one_) +
      ", 1, 1, '{short,standard}', '{1,0}', '{0,0}')");
  auto swept = Sweep();
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_TRUE(swept->resumed);
  EXPECT_EQ(swept->examined, 6u);
  EXPECT_EQ(Class(*swept, "short").deleted, 2u);
  EXPECT_EQ(swept->deliveries_deleted, 2u);
  EXPECT_FALSE(Exists(short_two_));
  auto sweeps = Sweeps();
  ASSERT_EQ(sweeps.size(), 1u);
  EXPECT_NE(sweeps[0].detail.find("\"started_by\":\"kim\",\"resumed_by\":[\"system:retention\"]"),
            std::string::npos)
      << sweeps[0].detail;
  EXPECT_NE(sweeps[0].detail.find("\"envelopes_deleted\":2"), std::string::npos)
      << sweeps[0].detail;
  EXPECT_EQ(Count("SELECT count(*) FROM retention_sweeps WHERE state = 'running'"), 0);

  // Under another policy, a stopped sweep is closed as it stands first.
  Sql("INSERT INTO retention_sweeps (actor, policy_version, cursor_epoch, cursor_envelope_id,"
      " classes, deleted, kept_by_hold) VALUES ('kim', 'sha256:older', 1, 0, '{short}', '{5}',"
      " '{0}')");
  ASSERT_TRUE(Sweep().ok());
  sweeps = Sweeps();
  ASSERT_EQ(sweeps.size(), 2u);
  EXPECT_NE(sweeps[1].detail.find("\"interrupted\":true"), std::string::npos) << sweeps[1].detail;
  EXPECT_NE(sweeps[1].detail.find("sha256:older"), std::string::npos) << sweeps[1].detail;
  EXPECT_EQ(Count("SELECT count(*) FROM retention_sweeps WHERE state = 'running'"), 0);
  EXPECT_TRUE(compliance_->VerifyAuditChain().ok());
}

TEST_F(RetentionTest, OneSweepAtATime) {
  Populate();
  PGconn* other = PQconnectdb(conninfo().c_str());
  PGresult* r = PQexec(other, "SELECT pg_advisory_lock(x'6866726574656e74'::bigint)");
  ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQerrorMessage(other);
  PQclear(r);
  EXPECT_EQ(Sweep().status().code(), Code::kUnavailable);
  // A dry run takes no lock.
  EXPECT_TRUE(Sweep(kNow, /*dry_run=*/true).ok());
  r = PQexec(other, "SELECT pg_advisory_unlock(x'6866726574656e74'::bigint)");
  PQclear(r);
  PQfinish(other);
  auto swept = Sweep();
  EXPECT_TRUE(swept.ok()) << swept.status().ToString();
}

TEST_F(RetentionTest, PolicyWithoutRetentionKeepsEverything) {
  Populate();
  auto keep_all = policy::Policy::Parse("version: 1\n", "keep.yaml");
  ASSERT_TRUE(keep_all.ok()) << keep_all.status().ToString();
  auto swept = SweepRetention(conn(), *keep_all, kJan + 4000 * kDay, RetentionSweepOptions{});
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_EQ(swept->examined, 0u);
  EXPECT_EQ(swept->deleted, 0u);
  EXPECT_EQ(Count("SELECT count(*) FROM envelopes"), 7);
}

}  // namespace
}  // namespace holdfast::archive
