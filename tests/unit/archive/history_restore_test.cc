// History restore against real PostgreSQL and SoftHSM2: content keys
// re-sealed to a user's new device, never a body decrypted.
#include "holdfast/archive/history_restore.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "disclosure_fixture.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/labels.h"

namespace holdfast::archive {
namespace {

using policy::Verdict;

// history_restore as deploy/policy.yaml has it, without step-up (which
// approvals recorded through Compliance never carry).
constexpr std::string_view kRestorePolicy = R"(version: 1
disclosure:
  history_restore:
    requester_roles: [helpdesk]
    requester_may_be_custodian: true
    require_open_case: false
    require_hold_covering_scope: false
    require_legal_reference: false
    max_custodians: 1
    approvals:
      - role: compliance_officer
        count: 1
)";

class HistoryRestoreTest : public DisclosureTest {
 protected:
  void SetUp() override {
    DisclosureTest::SetUp();
    if (HasFatalFailure()) return;
    auto policy = policy::Policy::Parse(kRestorePolicy, "restore-policy.yaml");
    ASSERT_TRUE(policy.ok()) << policy.status().ToString();
    restore_policy_.emplace(std::move(policy).value());
    ASSERT_TRUE(compliance_->AddOfficer({"hank", "helpdesk"}, "admin").ok());
    // alice lost her device and enrolled a new one.
    auto fresh = EnrollDevice(*store_, "alice", kFeb);
    ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
    new_device_.emplace(std::move(fresh).value());
  }

  int64_t FileRestore(const Bytes& target) {
    DisclosureRecord request;
    request.purpose = "history_restore";
    request.custodians = {"alice"};
    request.from_ms = kJan;
    request.to_ms = kFeb;
    request.requester = "hank";
    request.target_device = target;
    auto id = compliance_->FileDisclosure(request);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }

  // The restored keys of the new device, by envelope id, for every
  // envelope of alice in January.
  std::vector<RestoredKeyRecord> RestoredKeys() {
    auto envelopes = store_->EnvelopesOfCustodian("alice", kJan, kFeb);
    EXPECT_TRUE(envelopes.ok());
    std::vector<int64_t> ids;
    for (const auto& e : *envelopes) ids.push_back(e.envelope_id);
    auto keys = store_->RestoredKeys(new_device_->device_id, ids);
    EXPECT_TRUE(keys.ok()) << keys.status().ToString();
    return keys.ok() ? *keys : std::vector<RestoredKeyRecord>{};
  }

  std::optional<policy::Policy> restore_policy_;
  std::optional<Person> new_device_;
};

TEST_F(HistoryRestoreTest, FilingNeedsATargetDeviceForThisPurposeOnly) {
  DisclosureRecord request;
  request.purpose = "history_restore";
  request.custodians = {"alice"};
  request.from_ms = kJan;
  request.to_ms = kFeb;
  request.requester = "hank";
  EXPECT_EQ(compliance_->FileDisclosure(request).status().code(), Code::kInvalidArgument);
  request.purpose = "lawful_request";
  request.target_device = new_device_->device_id;
  EXPECT_EQ(compliance_->FileDisclosure(request).status().code(), Code::kInvalidArgument);
  request.purpose = "history_restore";
  auto id = compliance_->FileDisclosure(request);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(compliance_->GetDisclosure(*id)->target_device, new_device_->device_id);
}

TEST_F(HistoryRestoreTest, RefusedBeforeApprovalAndAudited) {
  Send("alice", "bob", "hello", kJan + kHour);
  const int64_t id = FileRestore(new_device_->device_id);
  auto summary = RunHistoryRestore(conn(), *token_, *restore_policy_, id, "hank");
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(summary.status().message().find("needs-approval"), std::string::npos)
      << summary.status().message();
  EXPECT_EQ(Actions().back(), "disclosure.restore_refused");
  EXPECT_TRUE(RestoredKeys().empty());
  EXPECT_EQ(compliance_->GetDisclosure(id)->state, "pending");
}

TEST_F(HistoryRestoreTest, OtherPurposesAreNotRestored) {
  Approve("olga");
  Approve("oscar");
  auto summary = RunHistoryRestore(conn(), *token_, *policy_, request_id_, "lena");
  EXPECT_EQ(summary.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(summary.status().message().find("not a history restore"), std::string::npos);
}

TEST_F(HistoryRestoreTest, SealsEveryKeyToTheNewDeviceAndNothingElse) {
  std::vector<protocol::wire::Envelope> sent = {
      Send("alice", "bob", "hello bob", kJan + kHour),
      Send("bob", "alice", "hi alice", kJan + 2 * kHour),
  };
  Send("alice", "bob", "after the range", kFeb + kHour);
  const int64_t id = FileRestore(new_device_->device_id);
  ASSERT_TRUE(compliance_->RecordApproval(id, {"olga", "", 0}).ok());

  auto summary = RunHistoryRestore(conn(), *token_, *restore_policy_, id, "olga", 4);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->envelopes, 2u);
  EXPECT_EQ(summary->restored, 2u);
  EXPECT_EQ(summary->skipped, 0u);
  EXPECT_EQ(summary->notified_devices, 2u);  // the old device and the new one
  EXPECT_EQ(summary->decision.verdict, Verdict::kAllow);
  EXPECT_EQ(compliance_->GetDisclosure(id)->state, "exported");

  auto keys = RestoredKeys();
  ASSERT_EQ(keys.size(), 2u);
  auto stored = store_->EnvelopesOfCustodian("alice", kJan, kFeb);
  ASSERT_TRUE(stored.ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(keys[i].request_id, id);
    ASSERT_EQ(keys[i].envelope_id, (*stored)[i].envelope_id);
    ASSERT_EQ(keys[i].capsule.size(), 80u);
    auto parsed = protocol::ParseEnvelope(sent[i]);
    ASSERT_TRUE(parsed.ok());
    const ByteView header = AsBytes(parsed->content.header());
    // An ordinary device capsule for the new device's prekey...
    ByteView capsule(keys[i].capsule);
    auto cek = protocol::hpke::Open(protocol::hpke::kDeviceSuite,
                                    new_device_->prekey.private_key.view(), capsule.subspan(0, 32),
                                    AsBytes(protocol::labels::kDeviceCapsuleInfo), header,
                                    capsule.subspan(32));
    ASSERT_TRUE(cek.ok()) << cek.status().ToString();
    // ...holding the CEK the archive capsule was made from.
    auto archive = protocol::ComputeArchiveCapsule(
        cek->view(), AsBytes(parsed->header.message_id()), kEpoch, *epoch_public_, header);
    ASSERT_TRUE(archive.ok());
    EXPECT_EQ(archive->SerializeAsString(), parsed->content.archive().SerializeAsString());
    // The old device's key cannot open it.
    EXPECT_FALSE(protocol::hpke::Open(protocol::hpke::kDeviceSuite,
                                      people_.at("alice").prekey.private_key.view(),
                                      capsule.subspan(0, 32),
                                      AsBytes(protocol::labels::kDeviceCapsuleInfo), header,
                                      capsule.subspan(32))
                     .ok());
    // And the client's opening path takes it like a capsule of the envelope.
    protocol::wire::DeviceCapsule carried;
    carried.set_user("alice");
    carried.set_device_id(AsString(new_device_->device_id));
    carried.set_enc(std::string(reinterpret_cast<const char*>(capsule.data()), 32));
    carried.set_ct(std::string(reinterpret_cast<const char*>(capsule.data()) + 32, 48));
    const Person& sender = people_.at(parsed->header.sender_user());
    auto opened = protocol::OpenMessageWithCapsule(
        *parsed, sender.identity.public_key, carried, new_device_->device_id,
        {new_device_->prekey.private_key.view()}, *epoch_public_);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    EXPECT_EQ(opened->text, i == 0 ? "hello bob" : "hi alice");
  }

  // Nothing was written to the filesystem, and no text reached the
  // database or the audit trail.
  EXPECT_TRUE(fs::is_empty(work_));
  std::vector<std::string> actions = Actions();
  ASSERT_GE(actions.size(), 2u);
  EXPECT_EQ(actions[actions.size() - 2], "disclosure.restore_started");
  EXPECT_EQ(actions.back(), "disclosure.restore");
  auto trail = compliance_->AuditTrail();
  ASSERT_TRUE(trail.ok());
  for (const auto& e : *trail) {
    EXPECT_EQ(e.detail.find("hello bob"), std::string::npos) << e.detail;
    EXPECT_EQ(e.detail.find("hi alice"), std::string::npos) << e.detail;
  }
  EXPECT_NE(trail->back().detail.find(ToHex(new_device_->device_id)), std::string::npos);
  EXPECT_TRUE(compliance_->VerifyAuditChain().ok());

  // Both of alice's devices have the notice; bob's has none.
  for (const Bytes& device : {people_.at("alice").device_id, new_device_->device_id}) {
    auto notices = store_->OpenRestoreNotices(device, 0, 10);
    ASSERT_TRUE(notices.ok());
    ASSERT_EQ(notices->size(), 1u);
    EXPECT_EQ((*notices)[0].request_id, id);
    EXPECT_EQ((*notices)[0].target_device, new_device_->device_id);
    EXPECT_EQ((*notices)[0].conversations, (std::vector<std::string>{conversation_}));
    EXPECT_EQ((*notices)[0].envelope_count, 2);
  }
  EXPECT_TRUE(store_->OpenRestoreNotices(people_.at("bob").device_id, 0, 10)->empty());
  auto notices = store_->OpenRestoreNotices(new_device_->device_id, 0, 10);
  EXPECT_EQ(*store_->AckRestoreNotices(new_device_->device_id, {(*notices)[0].notice_id}), 1);
  EXPECT_TRUE(store_->OpenRestoreNotices(new_device_->device_id, 0, 10)->empty());
}

TEST_F(HistoryRestoreTest, WrongTargetDevicesAreRefused) {
  Send("alice", "bob", "hello", kJan + kHour);
  Bytes unknown(16, 0x42);
  Sql("UPDATE devices SET revoked_at = now() WHERE device_id = '\\x" +
      ToHex(people_.at("alice").device_id) + "'");
  struct Case {
    Bytes target;
    std::string reason;
  };
  for (const Case& c : {Case{people_.at("bob").device_id, "is not a device of alice"},
                        Case{unknown, "is not enrolled"},
                        Case{people_.at("alice").device_id, "is revoked"}}) {
    const int64_t id = FileRestore(c.target);
    ASSERT_TRUE(compliance_->RecordApproval(id, {"olga", "", 0}).ok());
    auto summary = RunHistoryRestore(conn(), *token_, *restore_policy_, id, "olga");
    ASSERT_FALSE(summary.ok());
    EXPECT_EQ(summary.status().code(), Code::kFailedPrecondition);
    EXPECT_NE(summary.status().message().find(c.reason), std::string::npos)
        << summary.status().message();
    EXPECT_EQ(Actions().back(), "disclosure.restore_refused");
    auto trail = compliance_->AuditTrail();
    EXPECT_NE(trail->back().detail.find(c.reason), std::string::npos) << trail->back().detail;
    EXPECT_EQ(compliance_->GetDisclosure(id)->state, "pending");
  }
  EXPECT_TRUE(RestoredKeys().empty());
}

// The HSM is lost mid-restore (PIN changed, sessions closed), after the
// first batch was stored: the restore fails closed and is audited, no
// notice goes out; once the HSM is back a rerun continues from the stored
// batch, and a run after completion is refused.
TEST_F(HistoryRestoreTest, FailsClosedWithoutTheHsmAndAResumedRunCompletes) {
  constexpr int kMessages = 300;  // more than one batch of 256
  for (int i = 0; i < kMessages; ++i) {
    Send(i % 2 ? "bob" : "alice", i % 2 ? "alice" : "bob", "m" + std::to_string(i),
         kJan + i * 1000);
  }
  const int64_t id = FileRestore(new_device_->device_id);
  ASSERT_TRUE(compliance_->RecordApproval(id, {"olga", "", 0}).ok());
  RawModule raw(hsm_->module_path(), hsm_->token_label());
  ASSERT_TRUE(raw.ok());
  const std::string pin = hsm_->user_pin();
  KillingToken token(*token_, 270, [&] {
    ASSERT_EQ(raw.ChangePin(pin, "changed-elsewhere"), CKR_OK);
    ASSERT_EQ(raw.CloseAllSessions(), CKR_OK);
  });
  auto summary = RunHistoryRestore(conn(), token, *restore_policy_, id, "olga", 2);
  ASSERT_TRUE(token.killed());
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), Code::kUnavailable) << summary.status().ToString();
  std::vector<std::string> actions = Actions();
  ASSERT_GE(actions.size(), 2u);
  EXPECT_EQ(actions[actions.size() - 2], "disclosure.restore_started");
  EXPECT_EQ(actions.back(), "disclosure.restore_failed");
  EXPECT_NE(compliance_->GetDisclosure(id)->state, "exported");
  EXPECT_EQ(RestoredKeys().size(), 256u);  // the first batch, committed
  EXPECT_TRUE(store_->OpenRestoreNotices(new_device_->device_id, 0, 10)->empty());
  const std::vector<RestoredKeyRecord> first = RestoredKeys();

  ASSERT_EQ(raw.ChangePin("changed-elsewhere", pin), CKR_OK);
  auto again = RunHistoryRestore(conn(), *token_, *restore_policy_, id, "olga", 4);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->envelopes, static_cast<uint64_t>(kMessages));
  EXPECT_EQ(again->restored, static_cast<uint64_t>(kMessages));
  const std::vector<RestoredKeyRecord> all = RestoredKeys();
  ASSERT_EQ(all.size(), static_cast<size_t>(kMessages));
  // The keys stored before the failure were kept, not sealed again.
  std::set<std::pair<int64_t, Bytes>> kept;
  for (const auto& k : all) kept.emplace(k.envelope_id, k.capsule);
  for (const auto& k : first) EXPECT_EQ(kept.count({k.envelope_id, k.capsule}), 1u);
  EXPECT_EQ(Actions().back(), "disclosure.restore");

  auto once_more = RunHistoryRestore(conn(), *token_, *restore_policy_, id, "olga");
  EXPECT_EQ(once_more.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(RestoredKeys().size(), static_cast<size_t>(kMessages));
  EXPECT_EQ(store_->OpenRestoreNotices(new_device_->device_id, 0, 10)->size(), 1u);
}

}  // namespace
}  // namespace holdfast::archive
