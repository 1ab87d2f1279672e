// Disclosure decisions and exports against real PostgreSQL and SoftHSM2.
#include "holdfast/archive/disclosure.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "disclosure_fixture.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/store.h"
#include "holdfast/hsm/token.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "holdfast/testing/softhsm.h"

namespace holdfast::archive {
namespace {

using policy::Verdict;

// Delegates to a real token but cannot sign.
class SignlessToken final : public hsm::Token {
 public:
  explicit SignlessToken(hsm::Token& real) : real_(real) {}
  Result<Bytes> GenerateSigningKey(std::string_view label) override {
    return real_.GenerateSigningKey(label);
  }
  Result<Bytes> GenerateOrgRoot() override { return real_.GenerateOrgRoot(); }
  Result<Bytes> GenerateEpochKey(uint32_t id) override { return real_.GenerateEpochKey(id); }
  Result<Bytes> PublicKey(std::string_view label) override { return real_.PublicKey(label); }
  Result<hsm::KeyInfo> Describe(std::string_view label) override { return real_.Describe(label); }
  Result<std::vector<hsm::KeyInfo>> ListKeys() override { return real_.ListKeys(); }
  Result<Bytes> Sign(std::string_view, ByteView) override {
    return Status::Unavailable("token removed");
  }
  Result<Bytes> SignWithOrgRoot(ByteView) override {
    return Status::Unavailable("token removed");
  }
  Result<SecretBytes> DeriveEcdh(uint32_t id, ByteView peer) override {
    return real_.DeriveEcdh(id, peer);
  }
  Status Ping() override { return real_.Ping(); }

 private:
  hsm::Token& real_;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<Poco::JSON::Object::Ptr> ReadJsonLines(const fs::path& path) {
  std::vector<Poco::JSON::Object::Ptr> out;
  std::istringstream in(ReadFile(path));
  for (std::string line; std::getline(in, line);) {
    Poco::JSON::Parser parser;
    out.push_back(parser.parse(line).extract<Poco::JSON::Object::Ptr>());
  }
  return out;
}


TEST_F(DisclosureTest, FactsComeFromTheDatabase) {
  Approve("olga");
  Approve("lena");  // the requester's own approval is recorded but not counted
  auto facts = DisclosureFactsOf(conn(), request_id_);
  ASSERT_TRUE(facts.ok()) << facts.status().ToString();
  EXPECT_EQ(facts->purpose, "legal_hold_export");
  EXPECT_EQ(facts->custodians, (std::vector<std::string>{"alice"}));
  EXPECT_EQ(facts->requester, "lena");
  EXPECT_EQ(facts->requester_role, "legal_counsel");
  EXPECT_TRUE(facts->case_open);
  EXPECT_EQ(facts->custodians_under_hold, (std::vector<std::string>{"alice"}));
  ASSERT_EQ(facts->approvals.size(), 2u);
  EXPECT_EQ(facts->approvals[0].officer, "olga");
  EXPECT_EQ(facts->approvals[0].role, "compliance_officer");

  auto decision = Decide(conn(), *policy_, request_id_);
  ASSERT_TRUE(decision.ok());
  EXPECT_EQ(decision->verdict, Verdict::kNeedsApproval);
  EXPECT_EQ(decision->policy_version, policy_->version());
  EXPECT_EQ(Decide(conn(), *policy_, request_id_ + 100).status().code(), Code::kNotFound);
}

TEST_F(DisclosureTest, HoldMustCoverTheWholeRange) {
  Sql("UPDATE holds SET from_at = from_at + interval '1 day'");
  Approve("olga");
  Approve("oscar");
  auto decision = Decide(conn(), *policy_, request_id_);
  ASSERT_TRUE(decision.ok());
  EXPECT_EQ(decision->verdict, Verdict::kDeny);
  ASSERT_EQ(decision->reasons.size(), 1u);
  EXPECT_EQ(decision->reasons[0],
            "custodian alice has no active legal hold covering 2026-01-01..2026-02-01");

  Sql("UPDATE holds SET from_at = from_at - interval '1 day', state = 'released'");
  EXPECT_EQ(Decide(conn(), *policy_, request_id_)->verdict, Verdict::kDeny);
  Sql("UPDATE holds SET state = 'active'; UPDATE cases SET state = 'closed'");
  decision = Decide(conn(), *policy_, request_id_);
  EXPECT_EQ(decision->verdict, Verdict::kDeny);
  EXPECT_EQ(decision->reasons, (std::vector<std::string>{"the case is not open"}));
}

TEST_F(DisclosureTest, RefusedExportWritesNothing) {
  Send("alice", "bob", "hello", kJan + kHour);
  Approve("olga");
  fs::path out = work_ / "package";
  auto summary = RunExport(conn(), *token_, *policy_, request_id_, out.string(), "lena");
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(summary.status().message().find("1 of 2 approvals from role compliance_officer"),
            std::string::npos)
      << summary.status().message();
  EXPECT_TRUE(fs::is_empty(work_));
  EXPECT_EQ(compliance_->GetDisclosure(request_id_)->state, "pending");
  EXPECT_EQ(Actions().back(), "disclosure.export_refused");
  EXPECT_TRUE(compliance_->VerifyAuditChain().ok());
}

TEST_F(DisclosureTest, HistoryRestoreNeverExportsPlaintext) {
  Send("alice", "bob", "hello", kJan + kHour);
  auto restore = policy::Policy::Parse(
      "version: 1\ndisclosure:\n  history_restore:\n    requester_may_be_custodian: true\n"
      "    require_open_case: false\n    require_hold_covering_scope: false\n"
      "    require_legal_reference: false\n    approvals: []\n",
      "restore.yaml");
  ASSERT_TRUE(restore.ok()) << restore.status().ToString();
  DisclosureRecord request;
  request.purpose = "history_restore";
  request.custodians = {"alice"};
  request.from_ms = kJan;
  request.to_ms = kFeb;
  request.requester = "alice";
  request.target_device = people_.at("alice").device_id;
  auto id = compliance_->FileDisclosure(request);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto decision = Decide(conn(), *restore, *id);
  ASSERT_TRUE(decision.ok()) << decision.status().ToString();
  EXPECT_EQ(decision->verdict, Verdict::kAllow);
  EXPECT_FALSE(decision->decrypt);

  auto summary = RunExport(conn(), *token_, *restore, *id, (work_ / "package").string(), "alice");
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(summary.status().message().find("never decrypts message bodies"), std::string::npos)
      << summary.status().message();
  EXPECT_TRUE(fs::is_empty(work_));
  EXPECT_EQ(Actions().back(), "disclosure.export_refused");
}

TEST_F(DisclosureTest, ExportsASignedPackage) {
  Send("alice", "bob", "hello bob", kJan + kHour);
  Send("bob", "alice", "hi \"alice\"\n\tüñí ✓", kJan + 2 * kHour + 7);
  Send("alice", "bob", "after the range", kFeb + kHour);
  Approve("olga");
  Approve("oscar");

  fs::path out = work_ / "package";
  auto summary = RunExport(conn(), *token_, *policy_, request_id_, out.string(), "lena");
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->message_count, 2u);
  EXPECT_EQ(summary->signature_failures, 0u);
  EXPECT_EQ(summary->open_failures, 0u);
  EXPECT_EQ(summary->decision.verdict, Verdict::kAllow);

  // Only the package is left, with nothing else beside it.
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(work_)) entries.push_back(e.path().filename());
  EXPECT_EQ(entries, (std::vector<std::string>{"package"}));
  EXPECT_EQ(fs::status(out).permissions() & fs::perms::all, fs::perms::owner_all);

  auto lines = ReadJsonLines(out / "messages.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]->getValue<std::string>("text"), "hello bob");
  EXPECT_EQ(lines[0]->getValue<std::string>("sender_user"), "alice");
  EXPECT_EQ(lines[0]->getValue<std::string>("sender_device"), ToHex(people_.at("alice").device_id));
  EXPECT_EQ(lines[0]->getValue<std::string>("conversation_id"), conversation_);
  EXPECT_EQ(lines[0]->getValue<std::string>("sent_at"), "2026-01-01T01:00:00.000Z");
  EXPECT_EQ(lines[0]->getValue<int>("epoch_id"), 1);
  EXPECT_TRUE(lines[0]->getValue<bool>("signature_valid"));
  EXPECT_EQ(lines[0]->getValue<std::string>("message_id").size(), 32u);
  EXPECT_EQ(lines[1]->getValue<std::string>("text"), "hi \"alice\"\n\tüñí ✓");
  EXPECT_EQ(lines[1]->getValue<std::string>("sent_at"), "2026-01-01T02:00:00.007Z");

  std::string manifest_text = ReadFile(out / "manifest.json");
  Poco::JSON::Parser parser;
  auto manifest = parser.parse(manifest_text).extract<Poco::JSON::Object::Ptr>();
  EXPECT_EQ(manifest->getValue<int64_t>("request_id"), request_id_);
  EXPECT_EQ(manifest->getValue<int64_t>("case_id"), case_id_);
  EXPECT_EQ(manifest->getValue<std::string>("purpose"), "legal_hold_export");
  EXPECT_EQ(manifest->getValue<std::string>("policy_version"), policy_->version());
  EXPECT_EQ(manifest->getValue<std::string>("decision_rule"), "disclosure.legal_hold_export");
  EXPECT_EQ(manifest->getValue<int>("message_count"), 2);
  EXPECT_EQ(manifest->getArray("approvals")->size(), 2u);
  auto file = manifest->getArray("files")->getObject(0);
  std::string messages = ReadFile(out / "messages.jsonl");
  EXPECT_EQ(file->getValue<std::string>("name"), "messages.jsonl");
  EXPECT_EQ(file->getValue<std::string>("sha256"), ToHex(protocol::Sha256(AsBytes(messages))));
  EXPECT_EQ(file->getValue<uint64_t>("bytes"), messages.size());
  EXPECT_EQ(summary->manifest_sha256, ToHex(protocol::Sha256(AsBytes(manifest_text))));

  std::string sig_hex = ReadFile(out / "manifest.sig");
  ASSERT_FALSE(sig_hex.empty());
  sig_hex.pop_back();
  auto sig = FromHex(sig_hex);
  ASSERT_TRUE(sig.has_value());
  EXPECT_EQ(*sig, summary->manifest_signature);
  Bytes signed_bytes =
      Concat({AsBytes(protocol::labels::kManifestSig), AsBytes(manifest_text)});
  EXPECT_TRUE(protocol::EcdsaP256Verify(*org_root_, signed_bytes, *sig).ok());
  manifest_text[10] ^= 1;
  EXPECT_FALSE(protocol::EcdsaP256Verify(
                   *org_root_, Concat({AsBytes(protocol::labels::kManifestSig),
                                       AsBytes(manifest_text)}), *sig)
                   .ok());

  auto request = compliance_->GetDisclosure(request_id_);
  EXPECT_EQ(request->state, "exported");
  EXPECT_EQ(request->policy_version, policy_->version());
  auto trail = compliance_->AuditTrail();
  EXPECT_EQ(trail->back().action, "disclosure.export");
  ASSERT_GE(trail->size(), 2u);
  // Decryption started only after its start was on the record.
  EXPECT_EQ((*trail)[trail->size() - 2].action, "disclosure.export_started");
  EXPECT_NE(trail->back().detail.find(summary->manifest_sha256), std::string::npos);
  EXPECT_NE(trail->back().detail.find("\"message_count\":2"), std::string::npos);
  EXPECT_TRUE(compliance_->VerifyAuditChain().ok());

  // An exported request does not export again.
  auto again = RunExport(conn(), *token_, *policy_, request_id_, (work_ / "again").string(), "lena");
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition);
  EXPECT_FALSE(fs::exists(work_ / "again"));
}

TEST_F(DisclosureTest, BadSignatureIsReportedNotHidden) {
  Send("alice", "bob", "genuine", kJan + kHour);
  Send("alice", "bob", "forged", kJan + 2 * kHour, /*corrupt_signature=*/true);
  Approve("olga");
  Approve("oscar");
  fs::path out = work_ / "package";
  auto summary = RunExport(conn(), *token_, *policy_, request_id_, out.string(), "lena");
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->message_count, 2u);
  EXPECT_EQ(summary->signature_failures, 1u);
  auto lines = ReadJsonLines(out / "messages.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(lines[0]->getValue<bool>("signature_valid"));
  EXPECT_FALSE(lines[1]->getValue<bool>("signature_valid"));
  EXPECT_EQ(lines[1]->getValue<std::string>("text"), "forged");
}

TEST_F(DisclosureTest, ExistingOutputIsNotOverwritten) {
  Send("alice", "bob", "hello", kJan + kHour);
  Approve("olga");
  Approve("oscar");
  fs::path out = work_ / "package";
  fs::create_directory(out);
  auto summary = RunExport(conn(), *token_, *policy_, request_id_, out.string(), "lena");
  EXPECT_EQ(summary.status().code(), Code::kAlreadyExists);
  EXPECT_TRUE(fs::is_empty(out));
  EXPECT_EQ(compliance_->GetDisclosure(request_id_)->state, "pending");
  auto missing_parent =
      RunExport(conn(), *token_, *policy_, request_id_, (work_ / "a" / "b").string(), "lena");
  EXPECT_EQ(missing_parent.status().code(), Code::kNotFound);
}

TEST_F(DisclosureTest, DeniedRequestIsNotExported) {
  Send("alice", "bob", "hello", kJan + kHour);
  Approve("olga");
  Approve("oscar");
  Sql("UPDATE disclosure_requests SET state = 'denied'");
  auto summary =
      RunExport(conn(), *token_, *policy_, request_id_, (work_ / "package").string(), "lena");
  EXPECT_EQ(summary.status().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(fs::is_empty(work_));
}

TEST_F(DisclosureTest, FailureMidwayLeavesNoPackage) {
  Send("alice", "bob", "hello", kJan + kHour);
  Approve("olga");
  Approve("oscar");
  // Messages and manifest are written before signing fails.
  SignlessToken token(*token_);
  auto summary =
      RunExport(conn(), token, *policy_, request_id_, (work_ / "package").string(), "lena");
  EXPECT_EQ(summary.status().code(), Code::kUnavailable) << summary.status().ToString();
  EXPECT_TRUE(fs::is_empty(work_));
  EXPECT_EQ(compliance_->GetDisclosure(request_id_)->state, "pending");
  // The attempt stays on the record even though nothing was exported.
  std::vector<std::string> actions = Actions();
  ASSERT_GE(actions.size(), 2u);
  EXPECT_EQ(actions[actions.size() - 2], "disclosure.export_started");
  EXPECT_EQ(actions.back(), "disclosure.export_failed");
}


// The HSM connection is cut in the middle of an export. The token's pool
// opens new sessions and logs in again, so the export may survive; if it
// does, the package is complete and every message opened; if not, nothing
// is left and the failure is audited. Never a partial package that looks
// complete.
TEST_F(DisclosureTest, ExportSurvivesOrFailsClosedWhenSessionsAreKilled) {
  constexpr int kMessages = 40;
  for (int i = 0; i < kMessages; ++i) {
    Send(i % 2 ? "bob" : "alice", i % 2 ? "alice" : "bob", "m" + std::to_string(i), kJan + i * 1000);
  }
  Approve("olga");
  Approve("oscar");
  RawModule raw(hsm_->module_path(), hsm_->token_label());
  ASSERT_TRUE(raw.ok());
  KillingToken token(*token_, kMessages / 3, [&] { ASSERT_EQ(raw.CloseAllSessions(), CKR_OK); });

  fs::path out = work_ / "package";
  auto summary = RunExport(conn(), token, *policy_, request_id_, out.string(), "lena", 4);
  ASSERT_TRUE(token.killed());
  if (summary.ok()) {
    EXPECT_EQ(summary->message_count, static_cast<uint64_t>(kMessages));
    EXPECT_EQ(summary->open_failures, 0u);
    EXPECT_TRUE(fs::exists(out / "manifest.sig"));
    auto lines = ReadJsonLines(out / "messages.jsonl");
    ASSERT_EQ(lines.size(), static_cast<size_t>(kMessages));
    for (int i = 0; i < kMessages; ++i) {
      EXPECT_EQ(lines[i]->getValue<std::string>("text"), "m" + std::to_string(i));
    }
    EXPECT_EQ(Actions().back(), "disclosure.export");
  } else {
    EXPECT_EQ(summary.status().code(), Code::kUnavailable) << summary.status().ToString();
    EXPECT_TRUE(fs::is_empty(work_));
    EXPECT_EQ(Actions().back(), "disclosure.export_failed");
  }
}

// The token becomes unusable for good mid-export (its PIN changes and
// every session closes): the export fails closed with a clear error and an
// audit entry, and succeeds once the token is back.
TEST_F(DisclosureTest, ExportFailsClosedWhenTheTokenIsLostAndWorksWhenItIsBack) {
  constexpr int kMessages = 40;
  for (int i = 0; i < kMessages; ++i) {
    Send("alice", "bob", "m" + std::to_string(i), kJan + i * 1000);
  }
  Approve("olga");
  Approve("oscar");
  RawModule raw(hsm_->module_path(), hsm_->token_label());
  ASSERT_TRUE(raw.ok());
  const std::string pin = hsm_->user_pin();
  KillingToken token(*token_, kMessages / 2, [&] {
    ASSERT_EQ(raw.ChangePin(pin, "changed-elsewhere"), CKR_OK);
    ASSERT_EQ(raw.CloseAllSessions(), CKR_OK);
  });

  fs::path out = work_ / "package";
  auto summary = RunExport(conn(), token, *policy_, request_id_, out.string(), "lena", 4);
  ASSERT_TRUE(token.killed());
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), Code::kUnavailable) << summary.status().ToString();
  EXPECT_NE(summary.status().message().find("C_Login: CKR_PIN_INCORRECT"), std::string::npos)
      << summary.status().ToString();
  EXPECT_NE(summary.status().message().find("no package was written"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(work_));
  EXPECT_EQ(compliance_->GetDisclosure(request_id_)->state, "pending");
  std::vector<std::string> actions = Actions();
  ASSERT_GE(actions.size(), 2u);
  EXPECT_EQ(actions[actions.size() - 2], "disclosure.export_started");
  EXPECT_EQ(actions.back(), "disclosure.export_failed");

  // The HSM is back (PIN restored): the same token logs in again on its
  // next call and the export completes.
  ASSERT_EQ(raw.ChangePin("changed-elsewhere", pin), CKR_OK);
  auto again = RunExport(conn(), *token_, *policy_, request_id_, out.string(), "lena", 4);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->message_count, static_cast<uint64_t>(kMessages));
  EXPECT_EQ(again->open_failures, 0u);
  EXPECT_TRUE(fs::exists(out / "manifest.sig"));
}


}  // namespace
}  // namespace holdfast::archive
