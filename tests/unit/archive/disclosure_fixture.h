// The disclosure tests' fixture: real PostgreSQL (ArchiveTest) and a real
// SoftHSM2 token holding the org root and one epoch key, alice and bob with
// one device each in a direct conversation, three officers, a case with a
// hold on alice and a legal_hold_export request for her January. Also the
// HSM-loss tools: a second PKCS#11 client of the module and a token that
// runs a kill function at its n-th derivation.
#pragma once

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "archive_fixture.h"
#include "enrolled_person.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/disclosure.h"
#include "holdfast/archive/store.h"
#include "holdfast/hsm/token.h"
#include "holdfast/policy/policy.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/testing/softhsm.h"

namespace holdfast::archive {

namespace fs = std::filesystem;

inline constexpr int64_t kHour = 3'600'000;
inline constexpr int64_t kJan = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
inline constexpr int64_t kFeb = 1'769'904'000'000;  // 2026-02-01T00:00:00Z
inline constexpr uint32_t kEpoch = 1;

inline constexpr std::string_view kPolicy = R"(version: 1
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
)";

inline Bytes ToBytes(std::string_view s) {
  ByteView v = AsBytes(s);
  return Bytes(v.begin(), v.end());
}

// A second PKCS#11 client of the module in this process (SoftHSM2 shares
// its state within the process): what another thread or library might do
// to the token under an export or a restore.
class RawModule {
 public:
  RawModule(const std::string& module, const std::string& token_label) {
    library_ = dlopen(module.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library_ == nullptr) return;
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(library_, "C_GetFunctionList"));
    if (get_list == nullptr || get_list(&f_) != CKR_OK) return;
    CK_RV rv = f_->C_Initialize(nullptr);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) return;
    finalize_ = rv == CKR_OK;
    CK_ULONG count = 0;
    f_->C_GetSlotList(CK_TRUE, nullptr, &count);
    std::vector<CK_SLOT_ID> slots(count);
    f_->C_GetSlotList(CK_TRUE, slots.data(), &count);
    for (CK_ULONG i = 0; i < count; ++i) {
      CK_TOKEN_INFO info{};
      if (f_->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
      std::string label(reinterpret_cast<const char*>(info.label), sizeof info.label);
      label.erase(label.find_last_not_of(' ') + 1);
      if (label == token_label) slot_ = slots[i];
    }
  }
  RawModule(const RawModule&) = delete;
  RawModule& operator=(const RawModule&) = delete;
  ~RawModule() {
    if (finalize_) f_->C_Finalize(nullptr);
    if (library_ != nullptr) dlclose(library_);
  }
  bool ok() const { return slot_.has_value(); }

  CK_RV CloseAllSessions() { return f_->C_CloseAllSessions(*slot_); }

  // Logs in with `old_pin` (or finds the process logged in) and sets `new_pin`.
  CK_RV ChangePin(std::string old_pin, std::string new_pin) {
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    CK_RV rv = f_->C_OpenSession(*slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                 &session);
    if (rv != CKR_OK) return rv;
    rv = f_->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(old_pin.data()),
                     old_pin.size());
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
      rv = f_->C_SetPIN(session, reinterpret_cast<CK_UTF8CHAR*>(old_pin.data()), old_pin.size(),
                        reinterpret_cast<CK_UTF8CHAR*>(new_pin.data()), new_pin.size());
    }
    f_->C_CloseSession(session);
    return rv;
  }

 private:
  void* library_ = nullptr;
  CK_FUNCTION_LIST* f_ = nullptr;
  bool finalize_ = false;
  std::optional<CK_SLOT_ID> slot_;
};

// Delegates to a real token; the derivation numbered `at` first runs
// `kill` while no other call is inside the token, as if the connection to
// the HSM dropped between two capsules of the export.
class KillingToken final : public hsm::Token {
 public:
  KillingToken(hsm::Token& real, int at, std::function<void()> kill)
      : real_(real), at_(at), kill_(std::move(kill)) {}
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
    if (++calls_ == at_) {
      std::unique_lock exclusive(mu_);
      kill_();
      killed_ = true;
    }
    std::shared_lock shared(mu_);
    return real_.DeriveEcdh(id, peer);
  }
  Status Ping() override { return real_.Ping(); }
  bool killed() const { return killed_; }

 private:
  hsm::Token& real_;
  const int at_;
  std::function<void()> kill_;
  std::atomic<int> calls_{0};
  std::atomic<bool> killed_{false};
  std::shared_mutex mu_;
};

class DisclosureTest : public ArchiveTest {
 protected:
  static void SetUpTestSuite() {
    ArchiveTest::SetUpTestSuite();
    auto hsm = testing::TempSoftHsm::Create();
    ASSERT_TRUE(hsm.ok()) << hsm.status().ToString();
    hsm_ = std::move(hsm).value().release();
    auto token = hsm::Token::Open(
        {hsm_->module_path(), hsm_->token_label(), SecretBytes(AsBytes(hsm_->user_pin()))});
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    token_ = std::move(token).value().release();
    auto root = token_->GenerateOrgRoot();
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    org_root_ = new Bytes(*root);
    auto epoch = token_->GenerateEpochKey(kEpoch);
    ASSERT_TRUE(epoch.ok()) << epoch.status().ToString();
    epoch_public_ = new Bytes(*epoch);
  }

  static void TearDownTestSuite() {
    delete token_;
    delete hsm_;
    delete org_root_;
    delete epoch_public_;
  }

  void SetUp() override {
    ASSERT_NE(token_, nullptr);
    ArchiveTest::SetUp();
    if (HasFatalFailure()) return;
    store_.emplace(conn());
    compliance_.emplace(conn());
    auto policy = policy::Policy::Parse(kPolicy, "test-policy.yaml");
    ASSERT_TRUE(policy.ok()) << policy.status().ToString();
    policy_.emplace(std::move(policy).value());

    ASSERT_TRUE(store_->PutEpoch({kEpoch, Bytes{}, *epoch_public_, kJan - 24 * kHour,
                                  kFeb + 24 * kHour})
                    .ok());
    for (const char* name : {"alice", "bob"}) AddPerson(name);
    auto conversation = store_->OpenConversation({"alice", "bob"});
    ASSERT_TRUE(conversation.ok());
    conversation_ = conversation->conversation_id;

    for (const char* officer : {"olga", "oscar"}) {
      ASSERT_TRUE(compliance_->AddOfficer({officer, "compliance_officer"}, "admin").ok());
    }
    ASSERT_TRUE(compliance_->AddOfficer({"lena", "legal_counsel"}, "admin").ok());
    auto case_id = compliance_->CreateCase("Acme v. Widget", "SDNY 26-cv-1", "lena");
    ASSERT_TRUE(case_id.ok());
    case_id_ = *case_id;
    ASSERT_TRUE(compliance_->AddHold(case_id_, "alice", kJan, kFeb, "lena").ok());
    DisclosureRecord request;
    request.case_id = case_id_;
    request.purpose = "legal_hold_export";
    request.custodians = {"alice"};
    request.from_ms = kJan;
    request.to_ms = kFeb;
    request.legal_reference = "SDNY 26-cv-1";
    request.requester = "lena";
    auto id = compliance_->FileDisclosure(request);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    request_id_ = *id;

    char tmpl[] = "/tmp/holdfast-export-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    work_ = tmpl;
  }

  void TearDown() override {
    std::error_code ec;
    if (!work_.empty()) fs::remove_all(work_, ec);
  }

  void AddPerson(const std::string& user) {
    auto p = EnrollPerson(*store_, user, kJan);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    people_.emplace(user, std::move(p).value());
  }

  // Seals a message from `from` to the other person and ingests it.
  protocol::wire::Envelope Send(const std::string& from, const std::string& to,
                                const std::string& text, int64_t sent_at_ms,
                                bool corrupt_signature = false) {
    const Person& sender = people_.at(from);
    const Person& recipient = people_.at(to);
    protocol::SealRequest req;
    req.conversation_id = conversation_;
    req.sender_user = from;
    req.sender_device = sender.device_id;
    req.sent_at_ms = sent_at_ms;
    req.epoch_id = kEpoch;
    req.archive_public = *epoch_public_;
    req.recipients = {{to, recipient.device_id, recipient.prekey.public_key}};
    req.text = text;
    auto envelope = protocol::SealMessage(req, sender.identity.private_key.view());
    EXPECT_TRUE(envelope.ok()) << envelope.status().ToString();
    if (corrupt_signature) {
      std::string sig = envelope->signature();
      sig[0] = static_cast<char>(sig[0] ^ 1);
      envelope->set_signature(sig);
    }
    auto parsed = protocol::ParseEnvelope(*envelope);
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    IngestItem item;
    item.message_id = ToBytes(parsed->header.message_id());
    item.conversation_id = conversation_;
    item.sender_user = from;
    item.sender_device = sender.device_id;
    item.epoch_id = kEpoch;
    item.sent_at_ms = sent_at_ms;
    item.envelope = ToBytes(envelope->SerializeAsString());
    item.recipient_devices = {recipient.device_id};
    auto stored = store_->IngestBatch({item});
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    return *envelope;
  }

  void Approve(const std::string& officer) {
    Status s = compliance_->RecordApproval(request_id_, {officer, "", 0});
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  std::vector<std::string> Actions() {
    auto trail = compliance_->AuditTrail();
    EXPECT_TRUE(trail.ok());
    std::vector<std::string> out;
    for (const auto& e : *trail) out.push_back(e.action);
    return out;
  }

  static testing::TempSoftHsm* hsm_;
  static hsm::Token* token_;
  static Bytes* org_root_;
  static Bytes* epoch_public_;

  std::optional<Store> store_;
  std::optional<Compliance> compliance_;
  std::optional<policy::Policy> policy_;
  std::map<std::string, Person> people_;
  std::string conversation_;
  int64_t case_id_ = 0;
  int64_t request_id_ = 0;
  fs::path work_;
};

inline testing::TempSoftHsm* DisclosureTest::hsm_ = nullptr;
inline hsm::Token* DisclosureTest::token_ = nullptr;
inline Bytes* DisclosureTest::org_root_ = nullptr;
inline Bytes* DisclosureTest::epoch_public_ = nullptr;

}  // namespace holdfast::archive
