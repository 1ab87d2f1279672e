#include "holdfast/archive/compliance.h"

#include <gtest/gtest.h>

#include <thread>

#include "archive_fixture.h"

namespace holdfast::archive {
namespace {

constexpr int64_t kJan = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kFeb = 1'769'904'000'000;  // 2026-02-01T00:00:00Z

class ComplianceTest : public ArchiveTest {
 protected:
  void SetUp() override {
    ArchiveTest::SetUp();
    if (HasFatalFailure()) return;
    compliance_.emplace(conn());
  }

  Compliance& compliance() { return *compliance_; }

  std::vector<std::string> Actions() {
    auto trail = compliance().AuditTrail();
    EXPECT_TRUE(trail.ok());
    std::vector<std::string> out;
    for (const auto& e : *trail) out.push_back(e.action);
    return out;
  }

  // A case with a hold and a pending request; returns the request id.
  int64_t PendingRequest() {
    auto case_id = compliance().CreateCase("Acme v. Widget", "SDNY 26-cv-1", "lena");
    EXPECT_TRUE(case_id.ok());
    EXPECT_TRUE(compliance().AddHold(*case_id, "bob", kJan, kFeb, "lena").ok());
    DisclosureRecord r;
    r.case_id = *case_id;
    r.purpose = "legal_hold_export";
    r.custodians = {"bob"};
    r.from_ms = kJan;
    r.to_ms = kFeb;
    r.legal_reference = "SDNY 26-cv-1";
    r.requester = "lena";
    auto id = compliance().FileDisclosure(r);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return *id;
  }

  std::optional<Compliance> compliance_;
};

TEST_F(ComplianceTest, Officers) {
  ASSERT_TRUE(compliance().AddOfficer({"olga", "compliance_officer"}, "admin").ok());
  EXPECT_EQ(compliance().AddOfficer({"olga", "auditor"}, "admin").code(), Code::kAlreadyExists);
  EXPECT_EQ(compliance().AddOfficer({"", "auditor"}, "admin").code(), Code::kInvalidArgument);
  auto olga = compliance().GetOfficer("olga");
  ASSERT_TRUE(olga.ok());
  EXPECT_EQ(olga->role, "compliance_officer");
  EXPECT_EQ(compliance().GetOfficer("nobody").status().code(), Code::kNotFound);
  EXPECT_EQ(Actions(), (std::vector<std::string>{"officer.add"}));
}

TEST_F(ComplianceTest, CasesAndHolds) {
  auto case_id = compliance().CreateCase("Acme v. Widget", "SDNY 26-cv-1", "lena");
  ASSERT_TRUE(case_id.ok()) << case_id.status().ToString();
  auto kase = compliance().GetCase(*case_id);
  ASSERT_TRUE(kase.ok());
  EXPECT_EQ(kase->title, "Acme v. Widget");
  EXPECT_EQ(kase->legal_reference, "SDNY 26-cv-1");
  EXPECT_EQ(kase->opened_by, "lena");
  EXPECT_EQ(kase->state, "open");
  EXPECT_EQ(compliance().GetCase(*case_id + 100).status().code(), Code::kNotFound);

  auto hold = compliance().AddHold(*case_id, "bob", kJan, kFeb, "lena");
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_EQ(compliance().AddHold(*case_id, "bob", kFeb, kJan, "lena").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(compliance().AddHold(*case_id + 100, "bob", kJan, kFeb, "lena").status().code(),
            Code::kNotFound);
  auto holds = compliance().HoldsOfCase(*case_id);
  ASSERT_TRUE(holds.ok());
  ASSERT_EQ(holds->size(), 1u);
  EXPECT_EQ((*holds)[0].hold_id, *hold);
  EXPECT_EQ((*holds)[0].custodian, "bob");
  EXPECT_EQ((*holds)[0].from_ms, kJan);
  EXPECT_EQ((*holds)[0].to_ms, kFeb);
  EXPECT_EQ((*holds)[0].state, "active");

  Sql("UPDATE cases SET state = 'closed'");
  EXPECT_EQ(compliance().AddHold(*case_id, "carol", kJan, kFeb, "lena").status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(Actions(), (std::vector<std::string>{"case.create", "hold.add"}));
}

TEST_F(ComplianceTest, DisclosureRequestLifecycle) {
  ASSERT_TRUE(compliance().AddOfficer({"olga", "compliance_officer"}, "admin").ok());
  ASSERT_TRUE(compliance().AddOfficer({"oscar", "compliance_officer"}, "admin").ok());
  int64_t id = PendingRequest();
  auto req = compliance().GetDisclosure(id);
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  EXPECT_EQ(req->purpose, "legal_hold_export");
  EXPECT_EQ(req->custodians, (std::vector<std::string>{"bob"}));
  EXPECT_EQ(req->from_ms, kJan);
  EXPECT_EQ(req->to_ms, kFeb);
  EXPECT_EQ(req->requester, "lena");
  EXPECT_EQ(req->state, "pending");
  EXPECT_EQ(compliance().GetDisclosure(id + 100).status().code(), Code::kNotFound);

  ASSERT_TRUE(compliance().RecordApproval(id, {"olga", "", kJan + 5}).ok());
  EXPECT_EQ(compliance().RecordApproval(id, {"olga", "", 0}).code(), Code::kAlreadyExists);
  EXPECT_EQ(compliance().RecordApproval(id, {"mallory", "", 0}).code(), Code::kPermissionDenied);
  EXPECT_EQ(compliance().RecordApproval(id, {"oscar", "auditor", 0}).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(compliance().RecordApproval(id + 100, {"oscar", "", 0}).code(), Code::kNotFound);
  ASSERT_TRUE(compliance().RecordApproval(id, {"oscar", "compliance_officer", 0}).ok());
  auto approvals = compliance().ApprovalsOf(id);
  ASSERT_TRUE(approvals.ok());
  ASSERT_EQ(approvals->size(), 2u);
  EXPECT_EQ((*approvals)[0].officer, "olga");
  EXPECT_EQ((*approvals)[0].role, "compliance_officer");
  EXPECT_EQ((*approvals)[0].at_ms, kJan + 5);

  EXPECT_EQ(compliance().SetDisclosureState(id, "exported", "r", "v", "system").code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(compliance().SetDisclosureState(id, "bogus", "r", "v", "system").code(),
            Code::kInvalidArgument);
  ASSERT_TRUE(compliance()
                  .SetDisclosureState(id, "approved", "disclosure.legal_hold_export",
                                      "sha256:ab", "system")
                  .ok());
  EXPECT_EQ(compliance().RecordApproval(id, {"olga2", "", 0}).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(compliance().SetDisclosureState(id, "exported", "r", "v", "system").ok());
  EXPECT_EQ(compliance().SetDisclosureState(id, "pending", "r", "v", "system").code(),
            Code::kFailedPrecondition);
  req = compliance().GetDisclosure(id);
  EXPECT_EQ(req->state, "exported");
  EXPECT_EQ(req->decision_rule, "r");

  EXPECT_EQ(Actions(), (std::vector<std::string>{
                           "officer.add", "officer.add", "case.create", "hold.add",
                           "disclosure.file", "disclosure.approve", "disclosure.approve",
                           "disclosure.state", "disclosure.state"}));
  EXPECT_TRUE(compliance().VerifyAuditChain().ok());
}

TEST_F(ComplianceTest, FileDisclosureValidates) {
  DisclosureRecord r;
  r.purpose = "lawful_request";
  r.custodians = {"bob"};
  r.from_ms = kJan;
  r.to_ms = kFeb;
  r.requester = "lena";
  EXPECT_TRUE(compliance().FileDisclosure(r).ok());  // no case
  r.case_id = 4242;
  EXPECT_EQ(compliance().FileDisclosure(r).status().code(), Code::kNotFound);
  r.case_id = 0;
  r.custodians.clear();
  EXPECT_EQ(compliance().FileDisclosure(r).status().code(), Code::kInvalidArgument);
  r.custodians = {"bob"};
  r.to_ms = r.from_ms;
  EXPECT_EQ(compliance().FileDisclosure(r).status().code(), Code::kInvalidArgument);
}

TEST_F(ComplianceTest, AuditEntries) {
  ASSERT_TRUE(compliance().Audit("lena", "login", R"({"ip":"10.0.0.1"})").ok());
  ASSERT_TRUE(compliance().Audit("lena", "view", "").ok());
  EXPECT_EQ(compliance().Audit("lena", "bad", "{not json").code(), Code::kInvalidArgument);
  EXPECT_EQ(compliance().Audit("", "anon", "{}").code(), Code::kInvalidArgument);
  auto trail = compliance().AuditTrail();
  ASSERT_TRUE(trail.ok());
  ASSERT_EQ(trail->size(), 2u);
  EXPECT_EQ((*trail)[0].index, 0u);
  EXPECT_EQ((*trail)[1].index, 1u);
  EXPECT_EQ((*trail)[0].detail, R"({"ip":"10.0.0.1"})");
  EXPECT_EQ((*trail)[1].detail, "{}");
  for (const AuditEvent& e : *trail) EXPECT_EQ(e.leaf_hash, AuditLeafHash(e));
  EXPECT_LE((*trail)[0].at_ms, (*trail)[1].at_ms);
  EXPECT_TRUE(compliance().VerifyAuditChain().ok());
}

TEST_F(ComplianceTest, ConcurrentAppendsKeepOneLog) {
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  std::vector<Status> failures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
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
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : failures) EXPECT_TRUE(s.ok()) << s.ToString();
  auto trail = compliance().AuditTrail();
  ASSERT_EQ(trail->size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(trail->back().index, static_cast<uint64_t>(kThreads * kEach - 1));
  EXPECT_TRUE(compliance().VerifyAuditChain().ok());
}

// audit_log_test.cc covers tampering in detail; VerifyAuditChain reports it.
TEST_F(ComplianceTest, VerifyAuditChainReportsAChangedEntry) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(compliance().Audit("lena", "view", R"({"n":)" + std::to_string(i) + "}").ok());
  }
  ASSERT_TRUE(compliance().VerifyAuditChain().ok());
  Sql(R"(UPDATE audit_events SET detail = '{"n":99}' WHERE leaf_index = 3)");
  Status s = compliance().VerifyAuditChain();
  ASSERT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("entry 3 was changed"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace holdfast::archive
