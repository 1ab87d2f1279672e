// The audit log's Merkle tree, signed tree heads and proof bundles, against
// real PostgreSQL and SoftHSM2. Tampering is done the way someone with
// direct database access would: with SQL on another connection.
#include "holdfast/archive/audit_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "archive_fixture.h"
#include "holdfast/archive/audit_tree.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/merkle.h"
#include "holdfast/archive/store.h"
#include "holdfast/hsm/token.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/primitives.h"
#include "holdfast/testing/softhsm.h"

namespace holdfast::archive {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

// One SoftHSM2 token with an org root key, shared by every test of the binary.
struct SharedHsm {
  std::unique_ptr<testing::TempSoftHsm> hsm;
  std::unique_ptr<hsm::Token> token;
  Bytes org_root;
  Status status;
};

SharedHsm& Hsm() {
  static SharedHsm shared = [] {
    SharedHsm s;
    auto hsm = testing::TempSoftHsm::Create();
    if (!hsm.ok()) {
      s.status = hsm.status();
      return s;
    }
    s.hsm = std::move(hsm).value();
    auto token = hsm::Token::Open(
        {s.hsm->module_path(), s.hsm->token_label(), SecretBytes(AsBytes(s.hsm->user_pin()))});
    if (!token.ok()) {
      s.status = token.status();
      return s;
    }
    s.token = std::move(token).value();
    auto root = s.token->GenerateOrgRoot();
    if (!root.ok()) {
      s.status = root.status();
      return s;
    }
    s.org_root = *root;
    return s;
  }();
  return shared;
}

// The leaf hash of an entry, computed by PostgreSQL as an attacker who knows
// the format would.
constexpr std::string_view kSqlLeafHash =
    "sha256('\\x00'::bytea"
    " || int4send(23) || convert_to('holdfast/v1 audit-entry', 'UTF8')"
    " || int8send(leaf_index) || int8send(hf_ms(at))"
    " || int4send(length(convert_to(actor, 'UTF8'))) || convert_to(actor, 'UTF8')"
    " || int4send(length(convert_to(action, 'UTF8'))) || convert_to(action, 'UTF8')"
    " || int4send(length(convert_to(detail::text, 'UTF8'))) || convert_to(detail::text, 'UTF8'))";

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += "\n  " + l;
  return out;
}

class AuditLogTest : public ArchiveTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Hsm().status.ok()) << Hsm().status.ToString();
    ArchiveTest::SetUp();
    if (HasFatalFailure()) return;
    Status s = Store(conn()).PutSetting(std::string(kOrgRootPublicKeySetting), Hsm().org_root);
    ASSERT_TRUE(s.ok()) << s.ToString();
    log_.emplace(conn());
    compliance_.emplace(conn());
  }

  AuditLog& log() { return *log_; }
  hsm::Token& token() { return *Hsm().token; }
  const Bytes& org_root() { return Hsm().org_root; }

  void Append(int count) {
    for (int i = 0; i < count; ++i) {
      const int n = next_++;
      Status s = compliance_->Audit("actor" + std::to_string(n), "action" + std::to_string(n),
                                    R"({"n":)" + std::to_string(n) + "}");
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }

  TreeHead Sign() {
    auto head = log().SignTreeHead(token(), kNow + next_);
    EXPECT_TRUE(head.ok()) << head.status().ToString();
    return head.ok() ? *head : TreeHead{};
  }

  std::vector<Bytes> RecomputedLeaves() {
    auto trail = compliance_->AuditTrail();
    EXPECT_TRUE(trail.ok()) << trail.status().ToString();
    std::vector<Bytes> leaves;
    for (const AuditEvent& e : *trail) leaves.push_back(AuditLeafHash(e));
    return leaves;
  }

  AuditVerifyReport Verify() {
    auto report = log().Verify(org_root());
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? *report : AuditVerifyReport{};
  }

  void ExpectIntact() {
    AuditVerifyReport report = Verify();
    EXPECT_TRUE(report.intact()) << Join(report.problems);
  }

  // Verify reports exactly these problems (each given by a fragment), in order.
  void ExpectProblems(const std::vector<std::string>& fragments) {
    AuditVerifyReport report = Verify();
    ASSERT_EQ(report.problems.size(), fragments.size()) << Join(report.problems);
    for (size_t i = 0; i < fragments.size(); ++i) {
      EXPECT_NE(report.problems[i].find(fragments[i]), std::string::npos)
          << "want \"" << fragments[i] << "\" in" << Join(report.problems);
    }
  }

  std::optional<AuditLog> log_;
  std::optional<Compliance> compliance_;
  int next_ = 0;
};

// ------------------------------------------------------------------ entries

TEST(AuditTreeFormat, EntryBytesAreTheDocumentedEncoding) {
  const AuditEvent e{5, 1'767'225'600'123, "olivia", "case.create", R"({"case_id":1})", {}};
  auto hex = [](const char* h) { return *FromHex(h); };
  const Bytes want = Concat({hex("00000017"), AsBytes("holdfast/v1 audit-entry"),
                             hex("0000000000000005"), hex("0000019b76daa87b"),
                             hex("00000006"), AsBytes("olivia"),
                             hex("0000000b"), AsBytes("case.create"),
                             hex("0000000d"), AsBytes(R"({"case_id":1})")});
  EXPECT_EQ(ToHex(AuditEntryBytes(e)), ToHex(want));
  EXPECT_EQ(AuditLeafHash(e), protocol::Sha256(Concat({hex("00"), want})));
}

TEST(AuditTreeFormat, TreeHeadSigningInputIsFixedLayout) {
  const Bytes root(32, 0xab);
  const Bytes input = TreeHeadSigningInput(0x0102, root, -1);
  const std::string label = "holdfast/v1 audit-tree-head";
  ASSERT_EQ(input.size(), label.size() + 8 + 32 + 8);
  EXPECT_EQ(AsString(ByteView(input).first(label.size())), label);
  EXPECT_EQ(ToHex(ByteView(input).subspan(label.size(), 8)), "0000000000000102");
  EXPECT_EQ(Bytes(input.begin() + label.size() + 8, input.end() - 8), root);
  EXPECT_EQ(ToHex(ByteView(input).last(8)), "ffffffffffffffff");
}

TEST_F(AuditLogTest, ConcurrentAppendsGetGapFreeIndexes) {
  constexpr int kEach = 60;
  std::vector<Status> failures(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      auto c = Connection::Open(conninfo());
      if (!c.ok()) {
        failures[t] = c.status();
        return;
      }
      Compliance mine(*c);
      for (int i = 0; i < kEach; ++i) {
        Status s = mine.Audit("worker" + std::to_string(t), "tick", "{}");
        if (!s.ok()) failures[t] = s;
        // A rolled-back append must not leave a gap.
        if (mine.Audit("worker", "bad", "{not json").code() != Code::kInvalidArgument) {
          failures[t] = Status::Internal("an invalid append was not refused");
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : failures) EXPECT_TRUE(s.ok()) << s.ToString();

  auto trail = compliance_->AuditTrail();
  ASSERT_TRUE(trail.ok());
  ASSERT_EQ(trail->size(), 2u * kEach);
  int per_worker[2] = {0, 0};
  for (size_t i = 0; i < trail->size(); ++i) {
    const AuditEvent& e = (*trail)[i];
    EXPECT_EQ(e.index, i);
    EXPECT_EQ(e.leaf_hash, AuditLeafHash(e));
    if (i > 0) {
      EXPECT_LE((*trail)[i - 1].at_ms, e.at_ms);
    }
    ++per_worker[e.actor == "worker1"];
  }
  EXPECT_EQ(per_worker[0], kEach);
  EXPECT_EQ(per_worker[1], kEach);
  // The subtree hashes the appends stored give the recomputed root.
  TreeHead head = Sign();
  EXPECT_EQ(head.tree_size, 2u * kEach);
  EXPECT_EQ(head.root_hash, merkle::RootHash(RecomputedLeaves()));
  ExpectIntact();
}

TEST_F(AuditLogTest, StoredTreeGivesTheRootsAndProofsOfTheRecomputedOne) {
  EXPECT_EQ(Sign().root_hash, merkle::RootHash({}));  // the empty tree
  std::vector<TreeHead> heads;
  for (int n = 1; n <= 19; ++n) {
    Append(1);
    heads.push_back(Sign());
    ASSERT_EQ(heads.back().tree_size, static_cast<uint64_t>(n));
    EXPECT_EQ(heads.back().root_hash, merkle::RootHash(RecomputedLeaves())) << "size " << n;
  }
  const std::vector<Bytes> leaves = RecomputedLeaves();
  for (uint64_t size = 1; size <= leaves.size(); ++size) {
    const std::span<const Bytes> prefix(leaves.data(), size);
    for (uint64_t index = 0; index < size; ++index) {
      auto bundle = log().ProveInclusion(index, size);
      ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
      EXPECT_EQ(bundle->proof, *merkle::InclusionProof(prefix, index));
    }
    for (uint64_t old_size = 1; old_size <= size; ++old_size) {
      auto bundle = log().ProveConsistency(old_size, size);
      ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
      EXPECT_EQ(bundle->proof, *merkle::ConsistencyProof(prefix, old_size));
    }
  }
  ExpectIntact();
}

// ------------------------------------------------------------- tree heads

TEST_F(AuditLogTest, SignedHeadVerifiesWithTheOrgRootOnly) {
  Append(3);
  TreeHead head = Sign();
  EXPECT_EQ(head.tree_size, 3u);
  EXPECT_EQ(head.key_fingerprint, protocol::Fingerprint(org_root()));
  EXPECT_TRUE(VerifyTreeHead(head, org_root()).ok());

  auto heads = log().Heads();
  ASSERT_TRUE(heads.ok());
  ASSERT_EQ(heads->size(), 1u);
  const TreeHead& stored = (*heads)[0].head;
  EXPECT_EQ(stored.tree_size, head.tree_size);
  EXPECT_EQ(stored.root_hash, head.root_hash);
  EXPECT_EQ(stored.signed_at_ms, head.signed_at_ms);
  EXPECT_EQ(stored.signature, head.signature);

  TreeHead later = head;
  later.signed_at_ms += 1;
  EXPECT_EQ(VerifyTreeHead(later, org_root()).code(), Code::kCryptoFailure);
  TreeHead bigger = head;
  bigger.tree_size += 1;
  EXPECT_EQ(VerifyTreeHead(bigger, org_root()).code(), Code::kCryptoFailure);
  auto other = token().GenerateSigningKey("holdfast-other");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(VerifyTreeHead(head, *other).code(), Code::kCryptoFailure);

  AuditVerifyReport report = Verify();
  EXPECT_TRUE(report.intact()) << Join(report.problems);
  EXPECT_EQ(report.entries, 3u);
  ASSERT_TRUE(report.newest_good_head.has_value());
  EXPECT_EQ(report.newest_good_head->head.root_hash, head.root_hash);
}

TEST_F(AuditLogTest, SignsOnlyWithTheRecordedOrgRoot) {
  Append(1);
  Sql("UPDATE settings SET value = '\\x04" + std::string(128, '1') + "'");
  auto refused = log().SignTreeHead(token(), kNow);
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition) << refused.status().ToString();
  Sql("DELETE FROM settings");
  EXPECT_EQ(log().SignTreeHead(token(), kNow).status().code(), Code::kFailedPrecondition);
  auto heads = log().Heads();
  ASSERT_TRUE(heads.ok());
  EXPECT_TRUE(heads->empty());
}

TEST_F(AuditLogTest, UncheckedSignaturesAreReported) {
  Append(1);
  Sign();
  auto report = log().Verify({});
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u) << Join(report->problems);
  EXPECT_NE(report->problems[0].find("not checked"), std::string::npos);
}

// ---------------------------------------------------------------- tampering

// Six entries under head #1, four more under head #2.
class AuditTamperTest : public AuditLogTest {
 protected:
  void SetUp() override {
    AuditLogTest::SetUp();
    if (HasFatalFailure()) return;
    Append(6);
    Sign();
    Append(4);
    Sign();
    ExpectIntact();
  }
};

TEST_F(AuditTamperTest, DetectsAChangedDetail) {
  Sql(R"(UPDATE audit_events SET detail = '{"n":99}' WHERE leaf_index = 3)");
  ExpectProblems({"entry 3 was changed: its fields do not hash to its leaf hash",
                  "tree head #1 (size 6, signed 2026-01-01T00:00:00.006Z): its root does not "
                  "match the log: one of entries 0..5",
                  "tree head #2 (size 10, signed 2026-01-01T00:00:00.010Z): its root does not "
                  "match the log: one of entries 0..9"});
}

TEST_F(AuditTamperTest, DetectsAChangedEntryWithARecomputedLeafHash) {
  Sql(R"(UPDATE audit_events SET actor = 'mallory' WHERE leaf_index = 7;)"
      "UPDATE audit_events SET leaf_hash = " + std::string(kSqlLeafHash) +
      " WHERE leaf_index = 7");
  // The leaf hash now matches the entry; the signed root does not.
  ExpectProblems({"tree head #2 (size 10, signed 2026-01-01T00:00:00.010Z): its root does not "
                  "match the log: one of entries 6..9 was changed, removed, inserted or "
                  "reordered (the first 6 entries match an earlier head)"});
}

TEST_F(AuditTamperTest, DetectsADeletedEntry) {
  Sql("DELETE FROM audit_events WHERE leaf_index = 4");
  ExpectProblems({"entry 4 is missing (removed from the database)",
                  "tree head #1 (size 6, signed 2026-01-01T00:00:00.006Z): its root does not "
                  "match the log",
                  "tree head #2 (size 10, signed 2026-01-01T00:00:00.010Z): it covers 10 "
                  "entries, but the log holds 9"});
}

TEST_F(AuditTamperTest, DetectsSwappedContents) {
  Sql("UPDATE audit_events a SET at = b.at, actor = b.actor, action = b.action,"
      " detail = b.detail FROM audit_events b"
      " WHERE (a.leaf_index, b.leaf_index) IN ((2, 5), (5, 2))");
  ExpectProblems({"entry 2 holds the entry recorded at index 5 (entries reordered)",
                  "entry 5 holds the entry recorded at index 2 (entries reordered)",
                  "tree head #1 (size 6", "tree head #2 (size 10"});
}

TEST_F(AuditTamperTest, DetectsSwappedRows) {
  // Whole rows, leaf hashes included: only their indexes change.
  Sql("UPDATE audit_events SET leaf_index = 100 WHERE leaf_index = 1;"
      "UPDATE audit_events SET leaf_index = 1 WHERE leaf_index = 8;"
      "UPDATE audit_events SET leaf_index = 8 WHERE leaf_index = 100");
  ExpectProblems({"entry 1 holds the entry recorded at index 8 (entries reordered)",
                  "entry 8 holds the entry recorded at index 1 (entries reordered)",
                  "tree head #1 (size 6", "tree head #2 (size 10"});
}

TEST_F(AuditTamperTest, DetectsATruncatedLog) {
  Sql("DELETE FROM audit_events WHERE leaf_index >= 8");
  ExpectProblems({"tree head #2 (size 10, signed 2026-01-01T00:00:00.010Z): it covers 10 "
                  "entries, but entries 8..9 are missing (the log was truncated)"});
  auto refused = log().SignTreeHead(token(), kNow + 100);
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("entries were removed"), std::string::npos)
      << refused.status().ToString();
}

TEST_F(AuditTamperTest, DetectsATruncatedLogThatGrewAgain) {
  Sql("DELETE FROM audit_events WHERE leaf_index >= 8");
  Append(3);  // indexes 8, 9, 10 again, other content
  AuditVerifyReport report = Verify();
  ASSERT_FALSE(report.intact());
  EXPECT_NE(report.problems[0].find("tree head #2 (size 10, signed 2026-01-01T00:00:00.010Z): "
                                    "its root does not match the log: one of entries 6..9"),
            std::string::npos)
      << Join(report.problems);
  auto refused = log().SignTreeHead(token(), kNow + 100);
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("does not extend tree head #2"), std::string::npos)
      << refused.status().ToString();
}

TEST_F(AuditTamperTest, DetectsAChangedTreeHead) {
  Sql("UPDATE audit_tree_heads SET root_hash = sha256('forged') WHERE head_id = 2");
  AuditVerifyReport report = Verify();
  ASSERT_GE(report.problems.size(), 2u) << Join(report.problems);
  EXPECT_NE(report.problems[0].find("tree head #2 (size 10, signed 2026-01-01T00:00:00.010Z): "
                                    "signature does not verify"),
            std::string::npos)
      << Join(report.problems);
  EXPECT_NE(report.problems[1].find("tree head #2 (size 10"), std::string::npos);
  EXPECT_NE(report.problems[1].find("its root does not match the log"), std::string::npos);
  ASSERT_TRUE(report.newest_good_head.has_value());
  EXPECT_EQ(report.newest_good_head->head_id, 1);
}

TEST_F(AuditTamperTest, EntriesAfterTheNewestHeadAreCheckedByTheirLeafHashes) {
  Append(2);
  Sql(R"(UPDATE audit_events SET detail = '{"n":0}' WHERE leaf_index = 11)");
  ExpectProblems({"entry 11 was changed"});
}

// ------------------------------------------------------------------ bundles

std::string Flipped(const std::string& s, size_t at) {
  std::string out = s;
  out[at] = static_cast<char>(out[at] ^ 0x01);
  return out;
}

Status ParseAndVerify(const std::string& json) {
  auto bundle = ParseProofBundle(json);
  if (!bundle.ok()) return bundle.status();
  return std::visit([](const auto& b) { return VerifyBundle(b); }, *bundle);
}

// Every single-bit change of a bundle file is refused.
void ExpectEveryFlipRefused(const std::string& json) {
  ASSERT_TRUE(ParseAndVerify(json).ok()) << ParseAndVerify(json).ToString();
  for (size_t i = 0; i < json.size(); ++i) {
    Status s = ParseAndVerify(Flipped(json, i));
    EXPECT_FALSE(s.ok()) << "flipping byte " << i << " ('" << json[i] << "') went unnoticed in "
                         << json;
  }
}

class AuditBundleTest : public AuditLogTest {
 protected:
  void SetUp() override {
    AuditLogTest::SetUp();
    if (HasFatalFailure()) return;
    Append(3);
    // Exact detail text, escapes and non-ASCII included, is what is proven.
    ASSERT_TRUE(compliance_
                    ->Audit("zoë", "case.create",
                            "{\"title\": \"Acme \\\"Z\\u00fcrich\\\" \xe6\x97\xa5\xf0\x9f\x93\x8e\","
                            " \"tab\":\"\\t\"}")
                    .ok());
    Append(2);
    Sign();  // size 6
    Append(5);
    Sign();  // size 11
  }
};

TEST_F(AuditBundleTest, InclusionBundleVerifiesOfflineAndRefusesAnyFlippedBit) {
  auto bundle = log().ProveInclusion(3);
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  EXPECT_EQ(bundle->head.tree_size, 11u);
  EXPECT_EQ(bundle->entry.actor, "zoë");
  const std::string json = BundleJson(*bundle);
  auto parsed = ParseProofBundle(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const auto& back = std::get<InclusionBundle>(*parsed);
  EXPECT_EQ(back.entry.detail, bundle->entry.detail);
  EXPECT_EQ(back.entry.leaf_hash, bundle->entry.leaf_hash);
  EXPECT_EQ(back.proof, bundle->proof);
  EXPECT_EQ(back.org_root_public, org_root());
  ExpectEveryFlipRefused(json);

  auto older = log().ProveInclusion(5, 6);
  ASSERT_TRUE(older.ok()) << older.status().ToString();
  EXPECT_EQ(older->head.tree_size, 6u);
  EXPECT_TRUE(ParseAndVerify(BundleJson(*older)).ok());
}

TEST_F(AuditBundleTest, ConsistencyBundleVerifiesOfflineAndRefusesAnyFlippedBit) {
  auto bundle = log().ProveConsistency(6, 11);
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  ExpectEveryFlipRefused(BundleJson(*bundle));
}

TEST_F(AuditBundleTest, RefusesWhatNoSignedHeadCovers) {
  Append(1);
  EXPECT_EQ(log().ProveInclusion(11).status().code(), Code::kNotFound);
  EXPECT_EQ(log().ProveInclusion(0, 7).status().code(), Code::kNotFound);
  EXPECT_EQ(log().ProveConsistency(6, 7).status().code(), Code::kNotFound);
  EXPECT_EQ(log().ProveConsistency(11, 6).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(log().ProveConsistency(0, 6).status().code(), Code::kInvalidArgument);
}

TEST_F(AuditBundleTest, ProofsFromATamperedStoreAreRefused) {
  Sql(R"(UPDATE audit_events SET detail = '{"n":99}' WHERE leaf_index = 4)");
  auto bundle = log().ProveInclusion(4);
  EXPECT_EQ(bundle.status().code(), Code::kFailedPrecondition) << bundle.status().ToString();
  Sql("UPDATE audit_tree_nodes SET hash = sha256('forged') WHERE level = 1 AND node_index = 4");
  EXPECT_EQ(log().ProveConsistency(6, 11).status().code(), Code::kFailedPrecondition);
}

TEST_F(AuditBundleTest, RefusesBundlesWithExtraOrMissingMembers) {
  auto bundle = log().ProveInclusion(1);
  ASSERT_TRUE(bundle.ok());
  std::string json = BundleJson(*bundle);
  std::string extra = json;
  extra.insert(1, R"("comment":"trust me",)");
  EXPECT_EQ(ParseProofBundle(extra).status().code(), Code::kInvalidArgument);
  std::string missing = json;
  const size_t at = missing.find(R"("leaf_hash")");
  missing.erase(at, missing.find(',', at) - at + 1);
  EXPECT_EQ(ParseProofBundle(missing).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseProofBundle(json + "{}").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseProofBundle("[]").status().code(), Code::kInvalidArgument);
}

// ---------------------------------------------------------------- migration

// A database at migration 0003 with hash-chained audit events, as the
// releases before 0006 left it; 0006 must turn them into leaves.
class AuditMigrationTest : public testing::PostgresTest {};

TEST_F(AuditMigrationTest, ConvertsTheHashChainOfADatabaseAtMigration3) {
  ASSERT_TRUE(Hsm().status.ok()) << Hsm().status.ToString();
  auto conn = Connection::Open(conninfo());
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  ASSERT_TRUE(conn->Execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                            " name text NOT NULL, sha256 bytea NOT NULL,"
                            " applied_at timestamptz NOT NULL DEFAULT now())")
                  .ok());
  const fs::path dir = fs::path(HOLDFAST_SOURCE_DIR) / "archive" / "migrations";
  for (const char* name : {"0001_initial", "0002_settings", "0003_ingest_indexes"}) {
    std::ifstream in(dir / (std::string(name) + ".sql"), std::ios::binary);
    std::ostringstream sql;
    sql << in.rdbuf();
    ASSERT_FALSE(sql.str().empty()) << name;
    Status applied = conn->Execute(sql.str());
    ASSERT_TRUE(applied.ok()) << name << ": " << applied.ToString();
    ASSERT_TRUE(conn->Execute("INSERT INTO schema_migrations (version, name, sha256) VALUES (" +
                              std::to_string(std::atoi(name)) + ", '" + name + "', '\\x" +
                              ToHex(protocol::Sha256(AsBytes(sql.str()))) + "')")
                    .ok());
  }
  // The hash chain's own columns are dropped, so any well-formed values do.
  const std::vector<AuditEvent> old = {
      {0, 1'700'000'000'000, "operator", "key.org_root.create", R"({"public_key":"04ab"})", {}},
      {1, 1'700'000'000'001, "zoë", "officer.add", R"({"name": "zoë", "role" : "x"})", {}},
      {2, 1'700'000'000'001, "user:bob", "device.register", R"({"s":"a\"b\\c\u00e9"})", {}},
      {3, 1'700'000'123'456, "lena", "case.create", "{}", {}},
      {4, 1'700'000'123'457, "lena", "hold.add", R"([1, 2, {"k": null}])", {}},
  };
  for (const AuditEvent& e : old) {
    const std::string seq = std::to_string(e.index + 1);
    ASSERT_TRUE(conn->Execute("INSERT INTO audit_events (seq, at, actor, action, detail,"
                              " prev_hash, hash) VALUES (" + seq + ", hf_ts(" +
                              std::to_string(e.at_ms) + "), $$" + e.actor + "$$, $$" + e.action +
                              "$$, $$" + e.detail + "$$, sha256('prev" + seq + "'), sha256('" +
                              seq + "'))")
                    .ok());
  }

  Status migrated = Migrate(*conn);
  ASSERT_TRUE(migrated.ok()) << migrated.ToString();
  Compliance compliance(*conn);
  auto trail = compliance.AuditTrail();
  ASSERT_TRUE(trail.ok()) << trail.status().ToString();
  ASSERT_EQ(trail->size(), old.size());
  for (size_t i = 0; i < old.size(); ++i) {
    const AuditEvent& e = (*trail)[i];
    EXPECT_EQ(e.index, old[i].index);
    EXPECT_EQ(e.at_ms, old[i].at_ms);
    EXPECT_EQ(e.actor, old[i].actor);
    EXPECT_EQ(e.action, old[i].action);
    EXPECT_EQ(e.detail, old[i].detail);
    EXPECT_EQ(ToHex(e.leaf_hash), ToHex(AuditLeafHash(old[i]))) << "entry " << i;
  }

  // The migrated subtrees carry on: new entries, a signed head, proofs.
  ASSERT_TRUE(Store(*conn).PutSetting(std::string(kOrgRootPublicKeySetting), Hsm().org_root).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(compliance.Audit("lena", "view", "{}").ok());
  AuditLog log(*conn);
  auto head = log.SignTreeHead(*Hsm().token, kNow);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  trail = compliance.AuditTrail();
  std::vector<Bytes> leaves;
  for (const AuditEvent& e : *trail) leaves.push_back(AuditLeafHash(e));
  EXPECT_EQ(head->tree_size, 9u);
  EXPECT_EQ(head->root_hash, merkle::RootHash(leaves));
  for (uint64_t i = 0; i < 9; ++i) EXPECT_TRUE(log.ProveInclusion(i).ok()) << "entry " << i;
  auto report = log.Verify(Hsm().org_root);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->intact()) << Join(report->problems);
}

}  // namespace
}  // namespace holdfast::archive
