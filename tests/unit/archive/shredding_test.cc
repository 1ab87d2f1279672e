// Crypto-shredding against real PostgreSQL and SoftHSM2.
#include "holdfast/archive/shredding.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "archive_fixture.h"
#include "enrolled_person.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/disclosure.h"
#include "holdfast/archive/store.h"
#include "holdfast/hsm/token.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "holdfast/testing/softhsm.h"

namespace holdfast::archive {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kJan = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kFeb = 1'769'904'000'000;  // 2026-02-01T00:00:00Z

constexpr std::string_view kPolicy = R"(version: 1
disclosure:
  legal_hold_export:
    require_open_case: true
    require_hold_covering_scope: true
    require_legal_reference: true
    max_custodians: 25
    requester_may_approve: false
    approvals:
      - role: compliance_officer
        count: 2
retention:
  classes:
    standard: {days: 365}
    short: {days: 30}
  default_class: standard
  assign: []
)";
// 365 days after the epoch ends.
constexpr int64_t kRetainedUntil = kFeb + 365 * kDay;

Bytes ToBytes(std::string_view s) {
  ByteView v = AsBytes(s);
  return Bytes(v.begin(), v.end());
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Delegates to a real token but fails to destroy keys, like a crash between
// the re-wrap and the destruction.
class NoDestroyToken final : public hsm::Token {
 public:
  explicit NoDestroyToken(hsm::Token& real) : real_(real) {}
  Result<Bytes> GenerateSigningKey(std::string_view label) override {
    return real_.GenerateSigningKey(label);
  }
  Result<Bytes> GenerateOrgRoot() override { return real_.GenerateOrgRoot(); }
  Result<Bytes> GenerateEpochKey(uint32_t id) override { return real_.GenerateEpochKey(id); }
  Result<Bytes> PublicKey(std::string_view label) override { return real_.PublicKey(label); }
  Result<hsm::KeyInfo> Describe(std::string_view label) override { return real_.Describe(label); }
  Result<std::vector<hsm::KeyInfo>> ListKeys() override { return real_.ListKeys(); }
  Result<Bytes> Sign(std::string_view label, ByteView m) override { return real_.Sign(label, m); }
  Result<Bytes> SignWithOrgRoot(ByteView m) override { return real_.SignWithOrgRoot(m); }
  Result<SecretBytes> DeriveEcdh(uint32_t id, ByteView peer) override {
    return real_.DeriveEcdh(id, peer);
  }
  Result<Bytes> GenerateDeriveKey(std::string_view label) override {
    return real_.GenerateDeriveKey(label);
  }
  Result<SecretBytes> DeriveEcdhWith(std::string_view label, ByteView peer) override {
    return real_.DeriveEcdhWith(label, peer);
  }
  Status DestroyKey(std::string_view) override { return Status::Unavailable("process killed"); }
  Status Ping() override { return real_.Ping(); }

 private:
  hsm::Token& real_;
};

class ShreddingTest : public ArchiveTest {
 protected:
  // A fresh SoftHSM2 per test: keys are destroyed.
  void SetUp() override {
    ArchiveTest::SetUp();
    if (HasFatalFailure()) return;
    auto hsm = testing::TempSoftHsm::Create();
    ASSERT_TRUE(hsm.ok()) << hsm.status().ToString();
    hsm_ = std::move(hsm).value();
    auto token = hsm::Token::Open(
        {hsm_->module_path(), hsm_->token_label(), SecretBytes(AsBytes(hsm_->user_pin()))});
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    token_ = std::move(token).value();
    auto root = token_->GenerateOrgRoot();
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    org_root_ = *root;
    store_.emplace(conn());
    compliance_.emplace(conn());
    ASSERT_TRUE(store_->PutSetting(std::string(kOrgRootPublicKeySetting), org_root_).ok());
    for (uint32_t id : {1u, 2u}) {
      auto pub = token_->GenerateEpochKey(id);
      ASSERT_TRUE(pub.ok()) << pub.status().ToString();
      epoch_public_[id] = *pub;
    }
    // Epoch 1 is January, epoch 2 February.
    ASSERT_TRUE(store_->PutEpoch({1, Bytes{}, epoch_public_[1], kJan, kFeb}).ok());
    ASSERT_TRUE(store_->PutEpoch({2, Bytes{}, epoch_public_[2], kFeb, kFeb + 28 * kDay}).ok());
    auto policy = policy::Policy::Parse(kPolicy, "test-policy.yaml");
    ASSERT_TRUE(policy.ok()) << policy.status().ToString();
    policy_.emplace(std::move(policy).value());

    for (const char* name : {"alice", "bob", "carol"}) AddPerson(name);
    for (const char* officer : {"kim", "ken"}) {
      ASSERT_TRUE(compliance_->AddOfficer({officer, "key_custodian"}, "admin").ok());
    }
    for (const char* officer : {"olga", "oscar"}) {
      ASSERT_TRUE(compliance_->AddOfficer({officer, "compliance_officer"}, "admin").ok());
    }
    ASSERT_TRUE(compliance_->AddOfficer({"lena", "legal_counsel"}, "admin").ok());
    auto case_id = compliance_->CreateCase("Acme v. Widget", "SDNY 26-cv-1", "lena");
    ASSERT_TRUE(case_id.ok());
    case_id_ = *case_id;

    char tmpl[] = "/tmp/holdfast-shred-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    work_ = tmpl;
  }

  void TearDown() override {
    std::error_code ec;
    if (!work_.empty()) fs::remove_all(work_, ec);
    token_.reset();
    hsm_.reset();
  }

  void AddPerson(const std::string& user) {
    auto p = EnrollPerson(*store_, user, kJan);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    people_.emplace(user, std::move(p).value());
  }

  // Seals a message and ingests it. `dishonest` replaces the archive capsule
  // with one for another CEK, as a client hiding a message would.
  void Send(const std::string& from, const std::string& to, const std::string& text,
            int64_t sent_at_ms, uint32_t epoch_id, bool dishonest = false) {
    const Person& sender = people_.at(from);
    const Person& recipient = people_.at(to);
    auto conversation = store_->OpenConversation({from, to});
    ASSERT_TRUE(conversation.ok());
    protocol::SealRequest req;
    req.conversation_id = conversation->conversation_id;
    req.sender_user = from;
    req.sender_device = sender.device_id;
    req.sent_at_ms = sent_at_ms;
    req.epoch_id = epoch_id;
    req.archive_public = epoch_public_[epoch_id];
    req.recipients = {{to, recipient.device_id, recipient.prekey.public_key}};
    req.text = text;
    auto envelope = protocol::SealMessage(req, sender.identity.private_key.view());
    ASSERT_TRUE(envelope.ok()) << envelope.status().ToString();
    auto parsed = protocol::ParseEnvelope(*envelope);
    ASSERT_TRUE(parsed.ok());
    if (dishonest) {
      // A capsule that opens, but under a random ephemeral key: not the
      // deterministic one for the CEK inside.
      const uint8_t be_epoch[4] = {static_cast<uint8_t>(epoch_id >> 24),
                                   static_cast<uint8_t>(epoch_id >> 16),
                                   static_cast<uint8_t>(epoch_id >> 8),
                                   static_cast<uint8_t>(epoch_id)};
      auto sealed = protocol::hpke::Seal(
          protocol::hpke::kArchiveSuite, epoch_public_[epoch_id],
          Concat({AsBytes(protocol::labels::kArchiveCapsuleInfo), ByteView(be_epoch, 4)}),
          AsBytes(parsed->content.header()), Bytes(32, 0x77));
      ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
      protocol::wire::EnvelopeContent content = parsed->content;
      content.mutable_archive()->set_enc(AsString(sealed->enc));
      content.mutable_archive()->set_ct(AsString(sealed->ct));
      envelope->set_content(content.SerializeAsString());
      auto sig = protocol::Ed25519Sign(
          sender.identity.private_key.view(),
          Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(envelope->content())}));
      ASSERT_TRUE(sig.ok());
      envelope->set_signature(AsString(*sig));
    }
    IngestItem item;
    item.message_id = ToBytes(parsed->header.message_id());
    item.conversation_id = conversation->conversation_id;
    item.sender_user = from;
    item.sender_device = sender.device_id;
    item.epoch_id = epoch_id;
    item.sent_at_ms = sent_at_ms;
    item.envelope = ToBytes(envelope->SerializeAsString());
    item.recipient_devices = {recipient.device_id};
    auto stored = store_->IngestBatch({item});
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  }

  // alice is under hold for January. Epoch 1 holds two of her messages and
  // two between bob and carol; epoch 2 one of her messages.
  void Populate() {
    hold_id_ = *compliance_->AddHold(case_id_, "alice", kJan, kFeb, "lena");
    Send("alice", "bob", "held one", kJan + kHour, 1);
    Send("bob", "alice", "held two", kJan + 2 * kHour, 1);
    Send("bob", "carol", "unheld one", kJan + 3 * kHour, 1);
    Send("carol", "bob", "unheld two", kJan + 4 * kHour, 1);
    Send("alice", "bob", "next epoch", kFeb + kHour, 2);
  }

  void Approve() {
    ASSERT_TRUE(RequestShred(conn(), 1, "kim").ok());
    ASSERT_TRUE(ApproveShred(conn(), 1, "ken").ok());
  }

  Result<DeletionCertificate> Shred(hsm::Token& token, int64_t now_ms = kRetainedUntil + kDay) {
    return ShredEpoch(conn(), token, *policy_, 1, "kim", now_ms, work_.string());
  }

  int64_t Envelopes(uint32_t epoch) {
    return Count("SELECT count(*) AS n FROM envelopes WHERE epoch_id = " + std::to_string(epoch));
  }

  bool EpochKeyPresent(uint32_t epoch) {
    auto keys = token_->ListKeys();
    EXPECT_TRUE(keys.ok());
    for (const auto& k : *keys) {
      if (k.label == hsm::EpochKeyLabel(epoch)) return true;
    }
    return false;
  }

  // pkcs11-tool's own view of the token: the labels of its private keys.
  std::string PrivateKeysByPkcs11Tool() {
    std::string cmd = "pkcs11-tool --module " + hsm_->module_path() + " --token-label " +
                      hsm_->token_label() + " --login --pin " + hsm_->user_pin() +
                      " --list-objects --type privkey 2>/dev/null";
    std::string out;
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (pipe == nullptr) return "";
    std::array<char, 256> buf;
    while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
    ::pclose(pipe);
    return out;
  }

  std::vector<std::string> Actions() {
    auto trail = compliance_->AuditTrail();
    EXPECT_TRUE(trail.ok());
    std::vector<std::string> out;
    for (const auto& e : *trail) out.push_back(e.action);
    return out;
  }

  std::unique_ptr<testing::TempSoftHsm> hsm_;
  std::unique_ptr<hsm::Token> token_;
  Bytes org_root_;
  std::map<uint32_t, Bytes> epoch_public_;
  std::optional<Store> store_;
  std::optional<Compliance> compliance_;
  std::optional<policy::Policy> policy_;
  std::map<std::string, Person> people_;
  int64_t case_id_ = 0;
  int64_t hold_id_ = 0;
  fs::path work_;
};

TEST_F(ShreddingTest, ShredsUnheldAndKeepsHeldDisclosable) {
  Populate();
  Approve();
  auto cert = Shred(*token_);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_EQ(cert->epoch_id, 1u);
  EXPECT_EQ(cert->envelopes_deleted, 2u);
  EXPECT_EQ(cert->envelopes_rewrapped, 2u);
  EXPECT_EQ(cert->envelopes_retained_unwrapped, 0u);
  EXPECT_EQ(cert->hold_ids, (std::vector<int64_t>{hold_id_}));
  EXPECT_EQ(cert->approvers, (std::vector<std::string>{"kim", "ken"}));
  EXPECT_EQ(cert->policy_version, policy_->version());
  EXPECT_EQ(cert->retention_class, "standard");
  EXPECT_EQ(cert->not_after_ms, kFeb);
  EXPECT_EQ(GetShred(conn(), 1)->state, "completed");

  // The private key is gone; its public key and the other epoch's key stay.
  EXPECT_FALSE(EpochKeyPresent(1));
  EXPECT_TRUE(EpochKeyPresent(2));
  EXPECT_EQ(token_->Describe(hsm::EpochKeyLabel(1)).status().code(), Code::kNotFound);
  auto hold = token_->Describe(hsm::kHoldKeyLabel);
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_TRUE(hold->can_derive);
  EXPECT_FALSE(hold->can_sign);
  EXPECT_FALSE(hold->extractable);
  const std::string listed = PrivateKeysByPkcs11Tool();
  EXPECT_NE(listed.find(hsm::EpochKeyLabel(2)), std::string::npos) << listed;
  EXPECT_EQ(listed.find(hsm::EpochKeyLabel(1)), std::string::npos) << listed;
  EXPECT_NE(listed.find(std::string(hsm::kHoldKeyLabel)), std::string::npos) << listed;

  EXPECT_EQ(Envelopes(1), 2);
  EXPECT_EQ(Envelopes(2), 1);
  // Epoch 1's partitions were dropped; its held envelopes, with their
  // deliveries, moved to the held partitions first.
  EXPECT_EQ(Count("SELECT count(*) AS n FROM pg_class"
                  " WHERE relname IN ('envelopes_e1', 'deliveries_e1')"),
            0);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM envelopes_held WHERE epoch_id = 1"), 2);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM deliveries_held"), 2);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM envelopes_e2"), 1);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM envelopes_default"), 0);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM hold_capsules"), 2);
  EXPECT_EQ(OrphanDeliveries(), 0);

  // The certificate, in the database and on disk, verifies offline.
  const std::string file = ReadFile(work_ / DeletionCertificateFileName(1));
  auto verified = VerifyDeletionCertificate(file, org_root_);
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ(verified->envelopes_deleted, 2u);
  EXPECT_EQ(verified->signed_document.body, cert->signed_document.body);
  EXPECT_TRUE(protocol::EcdsaP256Verify(
                  org_root_,
                  Concat({AsBytes(protocol::labels::kDeletionCertSig),
                          AsBytes(verified->signed_document.body)}),
                  verified->signed_document.signature)
                  .ok());
  std::string tampered = file;
  tampered.replace(tampered.find("envelopes_deleted\\\":2"), 21, "envelopes_deleted\\\":0");
  EXPECT_EQ(VerifyDeletionCertificate(tampered, org_root_).status().code(), Code::kCryptoFailure);
  EXPECT_EQ(VerifyDeletionCertificate(file, epoch_public_[2]).status().code(),
            Code::kCryptoFailure);

  // The held envelopes are still disclosable, through their hold capsules.
  ASSERT_TRUE(compliance_->AddOfficer({"x", "compliance_officer"}, "admin").ok());
  DisclosureRecord request;
  request.case_id = case_id_;
  request.purpose = "legal_hold_export";
  request.custodians = {"alice"};
  request.from_ms = kJan;
  request.to_ms = kFeb;
  request.legal_reference = "SDNY 26-cv-1";
  request.requester = "lena";
  auto id = compliance_->FileDisclosure(request);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(compliance_->RecordApproval(*id, {"olga", "", 0}).ok());
  ASSERT_TRUE(compliance_->RecordApproval(*id, {"oscar", "", 0}).ok());
  auto summary = RunExport(conn(), *token_, *policy_, *id, (work_ / "package").string(), "lena");
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->message_count, 2u);
  EXPECT_EQ(summary->open_failures, 0u);
  const std::string messages = ReadFile(work_ / "package" / "messages.jsonl");
  EXPECT_NE(messages.find("\"held one\""), std::string::npos) << messages;
  EXPECT_NE(messages.find("\"held two\""), std::string::npos) << messages;

  // Rerunning a completed shredding returns its certificate and changes nothing.
  auto again = Shred(*token_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->signed_document.body, cert->signed_document.body);

  auto actions = Actions();
  for (const char* a : {"epoch.shred.request", "epoch.shred.approve", "key.hold.create",
                        "key.hold.certify", "epoch.shred.rewrap", "epoch.shred.destroy_key",
                        "epoch.shred.complete"}) {
    EXPECT_NE(std::find(actions.begin(), actions.end(), a), actions.end()) << a;
  }
  EXPECT_TRUE(compliance_->VerifyAuditChain().ok());
}

TEST_F(ShreddingTest, RefusesBeforeRetentionEnds) {
  Populate();
  Approve();
  auto cert = Shred(*token_, kRetainedUntil - 1);
  EXPECT_EQ(cert.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(cert.status().message().find("retained until"), std::string::npos)
      << cert.status().message();
  EXPECT_TRUE(EpochKeyPresent(1));
  EXPECT_EQ(Envelopes(1), 4);
  EXPECT_EQ(Actions().back(), "epoch.shred.refused");
  EXPECT_EQ(GetShred(conn(), 1)->state, "approved");
}

TEST_F(ShreddingTest, NeedsTwoDistinctCustodians) {
  Populate();
  EXPECT_EQ(RequestShred(conn(), 1, "olga").code(), Code::kPermissionDenied);
  EXPECT_EQ(RequestShred(conn(), 9, "kim").code(), Code::kNotFound);
  ASSERT_TRUE(RequestShred(conn(), 1, "kim").ok());
  EXPECT_EQ(RequestShred(conn(), 1, "ken").code(), Code::kAlreadyExists);
  // Not yet approved.
  auto cert = Shred(*token_);
  EXPECT_EQ(cert.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(cert.status().message().find("second key custodian"), std::string::npos);
  // The requester cannot approve, nor can a non-custodian.
  EXPECT_EQ(ApproveShred(conn(), 1, "kim").code(), Code::kPermissionDenied);
  EXPECT_EQ(ApproveShred(conn(), 1, "oscar").code(), Code::kPermissionDenied);
  ASSERT_TRUE(ApproveShred(conn(), 1, "ken").ok());
  EXPECT_EQ(ApproveShred(conn(), 1, "ken").code(), Code::kFailedPrecondition);
  // Only the two custodians run it.
  EXPECT_EQ(ShredEpoch(conn(), *token_, *policy_, 1, "olga", kRetainedUntil + kDay, "")
                .status()
                .code(),
            Code::kPermissionDenied);
  EXPECT_TRUE(EpochKeyPresent(1));
  EXPECT_EQ(Envelopes(1), 4);
}

TEST_F(ShreddingTest, DishonestHeldCapsuleBlocksEverything) {
  Populate();
  Send("alice", "carol", "hidden", kJan + 5 * kHour, 1, /*dishonest=*/true);
  Approve();
  auto cert = Shred(*token_);
  ASSERT_EQ(cert.status().code(), Code::kFailedPrecondition) << cert.status().ToString();
  EXPECT_NE(cert.status().message().find("cannot be re-wrapped"), std::string::npos)
      << cert.status().message();
  EXPECT_NE(cert.status().message().find("archive capsule mismatch"), std::string::npos)
      << cert.status().message();
  EXPECT_TRUE(EpochKeyPresent(1));
  EXPECT_EQ(Envelopes(1), 5);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM hold_capsules"), 0);
  EXPECT_EQ(GetShred(conn(), 1)->state, "approved");
  EXPECT_EQ(Actions().back(), "epoch.shred.blocked");
  EXPECT_FALSE(fs::exists(work_ / DeletionCertificateFileName(1)));
}

TEST_F(ShreddingTest, ResumesAfterACrashBeforeDestruction) {
  Populate();
  Approve();
  NoDestroyToken crashing(*token_);
  auto first = Shred(crashing);
  EXPECT_EQ(first.status().code(), Code::kUnavailable) << first.status().ToString();
  EXPECT_EQ(GetShred(conn(), 1)->state, "rewrapped");
  EXPECT_TRUE(EpochKeyPresent(1));
  EXPECT_EQ(Envelopes(1), 4);
  EXPECT_EQ(Count("SELECT count(*) AS n FROM hold_capsules"), 2);

  // A hold placed in between is honoured by the rerun.
  // (carol's hold covers "unheld two" but not "unheld one".)
  ASSERT_TRUE(compliance_->AddHold(case_id_, "carol", kJan + 3 * kHour + 1, kFeb, "lena").ok());
  auto cert = Shred(*token_);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_EQ(cert->envelopes_rewrapped, 3u);
  EXPECT_EQ(cert->envelopes_deleted, 1u);
  EXPECT_EQ(cert->hold_ids.size(), 2u);
  EXPECT_FALSE(EpochKeyPresent(1));
  EXPECT_EQ(Envelopes(1), 3);
  EXPECT_TRUE(VerifyDeletionCertificate(ReadFile(work_ / DeletionCertificateFileName(1)),
                                        org_root_)
                  .ok());
}

TEST_F(ShreddingTest, FinishesAfterACrashPastDestruction) {
  Populate();
  Approve();
  NoDestroyToken crashing(*token_);
  ASSERT_EQ(Shred(crashing).status().code(), Code::kUnavailable);
  // The key went, but the crash came before that was recorded.
  ASSERT_TRUE(token_->DestroyKey(hsm::EpochKeyLabel(1)).ok());
  auto cert = Shred(*token_);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_EQ(cert->envelopes_deleted, 2u);
  EXPECT_EQ(cert->envelopes_rewrapped, 2u);
  auto trail = compliance_->AuditTrail();
  bool recorded_absent = false;
  for (const auto& e : *trail) {
    if (e.action == "epoch.shred.destroy_key") {
      recorded_absent = e.detail.find("\"already_absent\":true") != std::string::npos;
    }
  }
  EXPECT_TRUE(recorded_absent);
}

}  // namespace
}  // namespace holdfast::archive
