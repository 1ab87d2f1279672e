#include "holdfast/policy/policy.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

namespace holdfast::policy {
namespace {

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kJan = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kFeb = 1'769'904'000'000;  // 2026-02-01T00:00:00Z
constexpr int64_t kMar = kFeb + 28 * kDay;   // 2026-03-01T00:00:00Z

constexpr std::string_view kPolicy = R"(version: 1
disclosure:
  deny:
    - custodians: [ceo, chair]
      reason: board members are disclosed by resolution of the board only
  legal_hold_export:
    require_open_case: true
    require_hold_covering_scope: true
    require_legal_reference: true
    max_custodians: 3
    requester_may_approve: false
    approvals:
      - role: compliance_officer
        count: 2
  lawful_request:
    requester_roles: [legal_counsel]
    max_conversations: 2
    max_range_days: 31
    deny:
      - older_than_days: 365
        reason: beyond retention
      - custodians: [intern]
        older_than_days: 30
    step_up: true
    step_up_max_age_seconds: 300
    approvals:
      - {role: compliance_officer, count: 1}
      - {role: legal_counsel, count: 1}
  supervision_review:
    require_open_case: false
    require_hold_covering_scope: false
    require_legal_reference: false
    requester_may_approve: true
    requester_roles: [supervisor]
    approvals:
      - role: supervisor
        count: 1
      - role: auditor
        count: 1
  history_restore:
    requester_roles: [helpdesk]
    requester_may_be_custodian: true
    require_open_case: false
    require_hold_covering_scope: false
    require_legal_reference: false
    approvals:
      - {role: compliance_officer, count: 1}
retention:
  classes:
    standard: {days: 2557}
    short: {days: 365}
    executive: {days: 3653}
  default_class: standard
  assign:
    - match: {conversation_kind: group}
      class: short
    - match: {users: [ceo, cfo]}
      class: executive
    - match: {users: [trader], conversation_kind: direct}
      class: short
ingest:
  max_envelope_bytes: 1000
  max_recipient_devices: 10
  block_users: [mallory, eve]
)";

Policy MustParse(std::string_view yaml) {
  auto p = Policy::Parse(yaml, "test.yaml");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(p).value();
}

const Policy& P() {
  static const Policy* p = new Policy(MustParse(kPolicy));
  return *p;
}

// Approved now, without step-up.
Approval A(std::string officer, std::string role) {
  return Approval{std::move(officer), std::move(role), kMar, std::nullopt};
}

DisclosureFacts ExportFacts() {
  DisclosureFacts f;
  f.purpose = "legal_hold_export";
  f.custodians = {"alice", "bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.legal_reference = "SDNY 26-cv-1";
  f.requester = "lena";
  f.requester_role = "legal_counsel";
  f.case_open = true;
  f.custodians_under_hold = {"alice", "bob"};
  f.approvals = {A("olga", "compliance_officer"), A("oscar", "compliance_officer")};
  f.now_ms = kMar;
  return f;
}

// Approved at `at` after a step-up `age_s` seconds earlier.
Approval SteppedUp(std::string officer, std::string role, int64_t at, int64_t age_s) {
  return Approval{std::move(officer), std::move(role), at, at - age_s * 1000};
}

DisclosureFacts LawfulFacts() {
  DisclosureFacts f = ExportFacts();
  f.purpose = "lawful_request";
  f.conversations = {"c_1"};
  f.approvals = {SteppedUp("olga", "compliance_officer", kMar, 60),
                 SteppedUp("leo", "legal_counsel", kMar, 299)};
  return f;
}

DisclosureFacts RestoreFacts() {
  DisclosureFacts f;
  f.purpose = "history_restore";
  f.custodians = {"bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.requester = "bob";
  f.approvals = {A("olga", "compliance_officer")};
  f.now_ms = kMar;
  return f;
}

bool HasReason(const std::vector<std::string>& reasons, std::string_view text) {
  for (const std::string& r : reasons) {
    if (r.find(text) != std::string::npos) return true;
  }
  return false;
}

bool HasReason(const Decision& d, std::string_view text) { return HasReason(d.reasons, text); }

template <typename D>
std::string Reasons(const D& d) {
  std::string out = "rule " + d.rule;
  for (const std::string& r : d.reasons) out += "\n  " + r;
  return out;
}

// ------------------------------------------------------------ disclosure

TEST(PolicyTest, AllowsWhenEveryRequirementIsMet) {
  Decision d = P().Decide(ExportFacts());
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export");
  EXPECT_EQ(d.policy_version, P().version());
  EXPECT_TRUE(d.missing.empty());
  EXPECT_TRUE(d.decrypt);
  EXPECT_EQ(d.reasons.front(), "every requirement of disclosure.legal_hold_export is met");
  EXPECT_TRUE(HasReason(d, "2 of 2 approvals from role compliance_officer")) << Reasons(d);
}

TEST(PolicyTest, UnknownPurposeIsDeniedByDefault) {
  DisclosureFacts f = ExportFacts();
  f.purpose = "curiosity";
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "default-deny");
  EXPECT_FALSE(d.decrypt);
  EXPECT_TRUE(HasReason(d, "curiosity")) << Reasons(d);
  // A known purpose the file gives no rule is denied the same way.
  Policy only_export = MustParse("version: 1\ndisclosure:\n  legal_hold_export:\n    approvals: []\n");
  f.purpose = "supervision_review";
  EXPECT_EQ(only_export.Decide(f).rule, "default-deny");
}

TEST(PolicyTest, ClosedCaseIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.case_open = false;
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export.require_open_case");
  EXPECT_EQ(d.reasons, (std::vector<std::string>{"the case is not open"}));
  EXPECT_FALSE(d.decrypt);
}

TEST(PolicyTest, CustodianWithoutHoldIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.custodians_under_hold = {"alice"};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export.require_hold_covering_scope");
  EXPECT_EQ(d.reasons, (std::vector<std::string>{
                           "custodian bob has no active legal hold covering 2026-01-01..2026-02-01"}));
}

TEST(PolicyTest, RangeIsShownToTheMillisecondWhenNeeded) {
  DisclosureFacts f = ExportFacts();
  f.from_ms = kJan + 3'600'000 + 5;
  f.custodians_under_hold.clear();
  Decision d = P().Decide(f);
  EXPECT_TRUE(HasReason(d, "covering 2026-01-01T01:00:00.005Z..2026-02-01")) << Reasons(d);
}

TEST(PolicyTest, MissingLegalReferenceIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.legal_reference.clear();
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export.require_legal_reference");
  EXPECT_TRUE(HasReason(d, "no legal reference")) << Reasons(d);
}

TEST(PolicyTest, TooManyCustodiansIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.custodians = f.custodians_under_hold = {"a", "b", "c"};
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow);
  f.custodians = f.custodians_under_hold = {"a", "b", "c", "d"};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export.max_custodians");
  EXPECT_TRUE(HasReason(d, "4 custodians exceed max_custodians 3")) << Reasons(d);
}

TEST(PolicyTest, ConversationCap) {
  DisclosureFacts f = LawfulFacts();
  f.conversations = {"c_1", "c_2"};
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow) << Reasons(P().Decide(f));
  f.conversations = {"c_1", "c_2", "c_3"};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.lawful_request.max_conversations");
  EXPECT_TRUE(HasReason(d, "3 conversations exceed max_conversations 2")) << Reasons(d);
  // Every conversation of the custodians is more than any cap.
  f.conversations.clear();
  d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_TRUE(HasReason(d, "requires it to list them")) << Reasons(d);
}

TEST(PolicyTest, TimeRangeCap) {
  DisclosureFacts f = LawfulFacts();
  f.to_ms = f.from_ms + 31 * kDay;
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow);
  f.to_ms += 1;  // a started day counts
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.lawful_request.max_range_days");
  EXPECT_TRUE(HasReason(d, "spans 32 days, more than max_range_days 31")) << Reasons(d);
}

TEST(PolicyTest, EmptyScopeIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.custodians.clear();
  f.to_ms = f.from_ms;
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export");
  EXPECT_TRUE(HasReason(d, "names no custodians")) << Reasons(d);
  EXPECT_TRUE(HasReason(d, "is empty")) << Reasons(d);
}

TEST(PolicyTest, EveryUnmetRequirementIsListedAndTheFirstDecides) {
  DisclosureFacts f = ExportFacts();
  f.case_open = false;
  f.legal_reference.clear();
  f.custodians_under_hold.clear();
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export.require_legal_reference");
  EXPECT_EQ(d.reasons.size(), 4u) << Reasons(d);
  EXPECT_TRUE(d.missing.empty());
}

TEST(PolicyTest, MissingApprovalsNeedApproval) {
  DisclosureFacts f = ExportFacts();
  f.approvals = {A("olga", "compliance_officer")};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export.approvals[0]");
  EXPECT_FALSE(d.decrypt);
  EXPECT_TRUE(HasReason(d, "1 of 2 approvals from role compliance_officer")) << Reasons(d);
  EXPECT_EQ(d.missing, (std::vector<std::string>{
                           "1 more approval by compliance_officer (distinct, not the requester)"}));
  f.approvals.clear();
  d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "0 of 2 approvals")) << Reasons(d);
  EXPECT_EQ(d.missing, (std::vector<std::string>{
                           "2 more approvals by compliance_officer (distinct, not the requester)"}));
}

TEST(PolicyTest, OneOfficerCountsOnce) {
  DisclosureFacts f = ExportFacts();
  f.approvals = {A("olga", "compliance_officer"), A("olga", "compliance_officer")};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "1 of 2")) << Reasons(d);
  EXPECT_TRUE(HasReason(d, "officer olga approved more than once and counts once")) << Reasons(d);
}

TEST(PolicyTest, ApproversAreDistinctAcrossRequirements) {
  // One officer listed in both required roles fills only one requirement.
  DisclosureFacts f;
  f.purpose = "supervision_review";
  f.custodians = {"bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.requester = "sam";
  f.requester_role = "supervisor";
  f.approvals = {A("frank", "supervisor"), A("frank", "auditor")};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval) << Reasons(d);
  EXPECT_EQ(d.rule, "disclosure.supervision_review.approvals[1]");
  EXPECT_EQ(d.missing, (std::vector<std::string>{"1 more approval by auditor (distinct)"}));
  f.approvals.push_back(A("ann", "auditor"));
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow);
}

TEST(PolicyTest, OtherRolesDoNotCount) {
  DisclosureFacts f = ExportFacts();
  f.approvals = {A("olga", "compliance_officer"), A("ann", "auditor")};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "1 of 2")) << Reasons(d);
  EXPECT_TRUE(HasReason(d, "the approval of ann (auditor) does not count")) << Reasons(d);
}

TEST(PolicyTest, RequesterMayNotApprove) {
  DisclosureFacts f = ExportFacts();
  f.requester = "olga";
  f.requester_role = "compliance_officer";
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "1 of 2")) << Reasons(d);
  EXPECT_TRUE(HasReason(d, "the approval of requester olga does not count: the requester may not approve"))
      << Reasons(d);
}

TEST(PolicyTest, CustodianMayNotApprove) {
  DisclosureFacts f = ExportFacts();
  f.custodians = f.custodians_under_hold = {"alice", "oscar"};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "oscar is a custodian of the request")) << Reasons(d);
}

TEST(PolicyTest, RequesterMayApproveWhenTheRuleSaysSo) {
  DisclosureFacts f;
  f.purpose = "supervision_review";
  f.custodians = {"bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.requester = "sam";
  f.requester_role = "supervisor";
  f.approvals = {A("sam", "supervisor"), A("ann", "auditor")};
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
  EXPECT_EQ(d.rule, "disclosure.supervision_review");

  f.approvals = {A("sam", "supervisor")};
  d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "0 of 1 approvals from role auditor")) << Reasons(d);
}

TEST(PolicyTest, RequesterRoleIsChecked) {
  DisclosureFacts f;
  f.purpose = "supervision_review";
  f.custodians = {"bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.requester = "eve";
  f.requester_role = "engineer";
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.supervision_review.requester_roles");
  EXPECT_TRUE(HasReason(d, "requester eve does not hold a requester role (supervisor)"))
      << Reasons(d);
}

TEST(PolicyTest, HistoryRestoreByTheUserOrTheHelpdeskNeverDecrypts) {
  DisclosureFacts f = RestoreFacts();
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
  EXPECT_EQ(d.rule, "disclosure.history_restore");
  EXPECT_FALSE(d.decrypt);

  f.requester = "hank";
  f.requester_role = "helpdesk";
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow);

  f.requester = "alice";  // neither the custodian nor the helpdesk
  f.requester_role = "";
  d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.history_restore.requester_roles");
  EXPECT_TRUE(HasReason(d, "requester alice is neither the only custodian of the request nor "
                           "holds a requester role (helpdesk)"))
      << Reasons(d);

  // Their own and someone else's history together is not their own.
  f = RestoreFacts();
  f.custodians = {"bob", "alice"};
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kDeny);

  // The custodian alone, without any requester role.
  Policy own = MustParse(
      "version: 1\ndisclosure:\n  history_restore:\n    requester_may_be_custodian: true\n"
      "    require_open_case: false\n    require_hold_covering_scope: false\n"
      "    require_legal_reference: false\n    approvals: []\n");
  f = RestoreFacts();
  EXPECT_EQ(own.Decide(f).verdict, Verdict::kAllow);
  f.requester = "hank";
  f.requester_role = "helpdesk";
  d = own.Decide(f);
  EXPECT_EQ(d.rule, "disclosure.history_restore.requester_may_be_custodian");
  EXPECT_TRUE(HasReason(d, "requester hank is not the only custodian of the request")) << Reasons(d);
}

TEST(PolicyTest, StepUpMustBeFresh) {
  DisclosureFacts f = LawfulFacts();
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);

  f.approvals[1] = SteppedUp("leo", "legal_counsel", kMar, 300);  // exactly the limit
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow);

  f.approvals[1] = SteppedUp("leo", "legal_counsel", kMar, 301);
  d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_EQ(d.rule, "disclosure.lawful_request.approvals[1]");
  EXPECT_TRUE(HasReason(d, "the approval of leo does not count: its step-up authentication was "
                           "301 s before the approval, more than step_up_max_age_seconds 300"))
      << Reasons(d);
  EXPECT_EQ(d.missing, (std::vector<std::string>{
                           "1 more approval by legal_counsel (distinct, not the requester, with "
                           "step-up authentication at most 300 s before approving)"}));

  f.approvals[1] = Approval{"leo", "legal_counsel", kMar, std::nullopt};
  d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "the approval of leo does not count: it carries no step-up "
                           "authentication"))
      << Reasons(d);

  f.approvals[1] = SteppedUp("leo", "legal_counsel", kMar, -5);  // after the approval
  d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "is later than the approval")) << Reasons(d);

  // Without step_up the same approvals count.
  f = ExportFacts();
  f.approvals = {{"olga", "compliance_officer", kMar, std::nullopt},
                 {"oscar", "compliance_officer", kMar, kMar - 3'600'000}};
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow);
}

TEST(PolicyTest, GlobalDenyRulesComeFirst) {
  DisclosureFacts f = ExportFacts();
  f.custodians = f.custodians_under_hold = {"alice", "chair"};
  f.case_open = false;
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.deny[0]");
  EXPECT_EQ(d.reasons.front(),
            "custodian chair is on a deny list: board members are disclosed by resolution of "
            "the board only");
  EXPECT_TRUE(HasReason(d, "the case is not open")) << Reasons(d);
  // They apply to every purpose.
  f = RestoreFacts();
  f.custodians = {"ceo"};
  f.requester = "ceo";
  EXPECT_EQ(P().Decide(f).rule, "disclosure.deny[0]");
}

TEST(PolicyTest, PurposeDenyRules) {
  DisclosureFacts f = LawfulFacts();
  f.from_ms = kMar - 366 * kDay;
  f.to_ms = f.from_ms + kDay;
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.lawful_request.deny[0]");
  EXPECT_EQ(d.reasons.front(),
            "the time range starts 2025-02-28, more than 365 days before now (2026-03-01): "
            "beyond retention");
  f.from_ms = kMar - 365 * kDay;  // exactly 365 days is not older
  f.to_ms = f.from_ms + kDay;
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow) << Reasons(P().Decide(f));

  // A rule with two conditions needs both.
  f = LawfulFacts();
  f.custodians = f.custodians_under_hold = {"intern"};
  f.from_ms = kMar - 20 * kDay;
  f.to_ms = kMar;
  EXPECT_EQ(P().Decide(f).verdict, Verdict::kAllow);
  f.from_ms = kMar - 31 * kDay;
  d = P().Decide(f);
  EXPECT_EQ(d.rule, "disclosure.lawful_request.deny[1]");
  EXPECT_EQ(d.reasons.front(),
            "custodian intern is on a deny list and the time range starts 2026-01-29, more "
            "than 30 days before now (2026-03-01)");
}

TEST(PolicyTest, ExtremeTimesDoNotOverflow) {
  DisclosureFacts f = LawfulFacts();
  f.from_ms = std::numeric_limits<int64_t>::min();
  f.to_ms = std::numeric_limits<int64_t>::max();
  Decision d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.lawful_request.deny[0]");
  EXPECT_TRUE(HasReason(d, "more than max_range_days 31")) << Reasons(d);
  f = LawfulFacts();
  f.now_ms = std::numeric_limits<int64_t>::min();
  f.approvals = {{"olga", "compliance_officer", std::numeric_limits<int64_t>::max(),
                  std::numeric_limits<int64_t>::min()},
                 {"leo", "legal_counsel", std::numeric_limits<int64_t>::min(),
                  std::numeric_limits<int64_t>::min()}};
  d = P().Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval) << Reasons(d);
  EXPECT_EQ(d.rule, "disclosure.lawful_request.approvals[0]");
}

TEST(PolicyTest, AbsentKeysTakeTheStrictDefault) {
  Policy p = MustParse("version: 1\ndisclosure:\n  lawful_request:\n    approvals: []\n");
  ASSERT_EQ(p.rules().size(), 1u);
  const PurposeRule& r = p.rules()[0];
  EXPECT_TRUE(r.require_open_case);
  EXPECT_TRUE(r.require_hold_covering_scope);
  EXPECT_TRUE(r.require_legal_reference);
  EXPECT_FALSE(r.requester_may_approve);
  EXPECT_FALSE(r.requester_may_be_custodian);
  EXPECT_FALSE(r.step_up);
  EXPECT_EQ(r.max_custodians, 0);
  EXPECT_FALSE(p.retention().has_value());
  EXPECT_FALSE(p.ingest().has_value());
  DisclosureFacts f = ExportFacts();
  f.purpose = "lawful_request";
  EXPECT_EQ(p.Decide(f).verdict, Verdict::kAllow);
  f.case_open = false;
  EXPECT_EQ(p.Decide(f).verdict, Verdict::kDeny);
}

TEST(PolicyTest, MissingApprovalsIsAnError) {
  auto p = Policy::Parse("version: 1\ndisclosure:\n  lawful_request:\n    max_custodians: 3\n", "p.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("p.yaml:4:"), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find("approvals: []"), std::string::npos) << p.status().message();
}

TEST(PolicyTest, VerdictNames) {
  for (Verdict v : {Verdict::kAllow, Verdict::kDeny, Verdict::kNeedsApproval}) {
    EXPECT_EQ(VerdictFromName(VerdictName(v)), v);
  }
  EXPECT_EQ(VerdictName(Verdict::kAllow), "allow");
  EXPECT_EQ(VerdictName(Verdict::kDeny), "deny");
  EXPECT_EQ(VerdictName(Verdict::kNeedsApproval), "needs-approval");
  EXPECT_EQ(VerdictFromName("needs_approval"), Verdict::kNeedsApproval);
  EXPECT_EQ(VerdictFromName("Allow"), std::nullopt);
}

TEST(PolicyTest, VersionIsTheHashOfTheBytes) {
  const Policy& a = P();
  EXPECT_EQ(a.version().rfind("sha256:", 0), 0u);
  EXPECT_EQ(a.version().size(), 7u + 64u);
  EXPECT_EQ(MustParse(kPolicy).version(), a.version());
  // A change that does not even alter the meaning changes the version.
  std::string edited = std::string(kPolicy) + "# reviewed\n";
  EXPECT_NE(MustParse(edited).version(), a.version());
  // sha256 of "version: 1\n".
  EXPECT_EQ(MustParse("version: 1\n").version(),
            "sha256:09bfcc6a14b83e2192b8673677725c84883ee9cd0c70e45c9ec09daa8f2b2847");
  // Every kind of decision carries it.
  EXPECT_EQ(a.Decide(IngestFacts{"alice", 1, 1}).policy_version, a.version());
  EXPECT_EQ(a.RetentionOf(RetentionFacts{"alice", {}, ConversationKind::kDirect, kJan, false})
                .policy_version,
            a.version());
}

TEST(PolicyTest, LoadReadsAFile) {
  std::string dir = ::testing::TempDir();
  std::string path = dir + "/policy_test.yaml";
  {
    std::ofstream out(path, std::ios::binary);
    out << kPolicy;
  }
  auto p = Policy::Load(path);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->version(), P().version());
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << "\n";
  }
  EXPECT_NE(Policy::Load(path)->version(), p->version());
  std::filesystem::remove(path);
  EXPECT_EQ(Policy::Load(path).status().code(), Code::kNotFound);
  EXPECT_EQ(Policy::Load(dir).status().code(), Code::kNotFound);
}

TEST(PolicyTest, DefaultDeployPolicyLoads) {
  auto p = Policy::Load(std::string(HOLDFAST_SOURCE_DIR) + "/deploy/policy.yaml");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  DisclosureFacts f = ExportFacts();
  f.custodians = f.custodians_under_hold = {"bob"};
  Decision d = p->Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
  EXPECT_EQ(p->rules().size(), std::size(kPurposes));
  ASSERT_TRUE(p->retention().has_value());
  ASSERT_TRUE(p->ingest().has_value());
}

TEST(PolicyTest, SummaryNamesEveryRule) {
  const std::string s = P().Summary();
  for (std::string_view want :
       {std::string_view("version sha256:"), std::string_view("deny[0]: custodians ceo, chair"),
        std::string_view("legal_hold_export: requested by anyone; needs an open case, holds "
                         "covering the scope, a legal reference; at most 3 custodians; approvals "
                         "2 compliance_officer (distinct, not the requester)"),
        std::string_view("history_restore: requested by helpdesk or the custodian"),
        std::string_view("never decrypts"), std::string_view("default standard"),
        std::string_view("blocked: eve, mallory")}) {
    EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
  }
  const std::string bare = MustParse("version: 1\n").Summary();
  EXPECT_NE(bare.find("always denied (no rule): legal_hold_export, lawful_request, "
                      "history_restore, supervision_review"),
            std::string::npos)
      << bare;
  EXPECT_NE(bare.find("retention: none"), std::string::npos) << bare;
  EXPECT_NE(bare.find("ingest: no rules"), std::string::npos) << bare;
}

// ------------------------------------------------------------- retention

RetentionFacts Message(std::string sender, std::vector<std::string> members,
                       ConversationKind kind = ConversationKind::kDirect) {
  return RetentionFacts{std::move(sender), std::move(members), kind, kJan, false};
}

TEST(RetentionTest, DefaultClass) {
  RetentionDecision r = P().RetentionOf(Message("alice", {"alice", "bob"}));
  EXPECT_EQ(r.retention_class, "standard");
  EXPECT_EQ(r.days, 2557);
  EXPECT_EQ(r.rule, "retention.default_class");
  ASSERT_TRUE(r.delete_after_ms.has_value());
  EXPECT_EQ(*r.delete_after_ms, kJan + 2557 * kDay);
  EXPECT_FALSE(r.held);
  EXPECT_EQ(r.reasons.front(), "class standard (2557 days): delete after 2033-01-01");
}

TEST(RetentionTest, AssignmentByUserAndConversationKind) {
  RetentionDecision r = P().RetentionOf(Message("bob", {"bob", "alice"}, ConversationKind::kGroup));
  EXPECT_EQ(r.retention_class, "short");
  EXPECT_EQ(r.rule, "retention.assign[0]");
  EXPECT_EQ(*r.delete_after_ms, kJan + 365 * kDay);

  // The sender, or any member.
  EXPECT_EQ(P().RetentionOf(Message("cfo", {"alice"})).rule, "retention.assign[1]");
  EXPECT_EQ(P().RetentionOf(Message("alice", {"alice", "ceo"})).retention_class, "executive");

  // Both conditions of assign[2] must hold.
  EXPECT_EQ(P().RetentionOf(Message("trader", {"trader", "bob"})).rule, "retention.assign[2]");
  EXPECT_EQ(P().RetentionOf(Message("alice", {"alice", "trader"})).rule, "retention.assign[2]");
  EXPECT_EQ(P().RetentionOf(Message("trader", {}, ConversationKind::kGroup)).rule,
            "retention.assign[0]");
}

TEST(RetentionTest, TheLongestMatchingPeriodApplies) {
  RetentionDecision r =
      P().RetentionOf(Message("ceo", {"ceo", "alice", "bob"}, ConversationKind::kGroup));
  EXPECT_EQ(r.retention_class, "executive");
  EXPECT_EQ(r.rule, "retention.assign[1]");
  EXPECT_TRUE(HasReason(r.reasons,
                        "retention.assign[0] also matches (class short, 365 days); the longest "
                        "period applies"))
      << Reasons(r);
}

TEST(RetentionTest, HoldsOverrideRetention) {
  RetentionFacts m = Message("alice", {"alice", "bob"}, ConversationKind::kGroup);
  m.held = true;
  RetentionDecision r = P().RetentionOf(m);
  EXPECT_TRUE(r.held);
  EXPECT_FALSE(r.delete_after_ms.has_value());
  EXPECT_EQ(r.retention_class, "short");
  EXPECT_EQ(r.reasons.front(),
            "retain: held (a legal hold overrides class short, which would delete after "
            "2027-01-01)");
}

TEST(RetentionTest, WithoutRetentionRulesEverythingIsKept) {
  Policy p = MustParse("version: 1\n");
  RetentionDecision r = p.RetentionOf(Message("alice", {}));
  EXPECT_EQ(r.retention_class, "");
  EXPECT_EQ(r.rule, "retention");
  EXPECT_FALSE(r.delete_after_ms.has_value());
}

TEST(RetentionTest, ExtremeTimesClamp) {
  RetentionFacts m = Message("alice", {});
  m.sent_at_ms = std::numeric_limits<int64_t>::max() - 1;
  EXPECT_EQ(*P().RetentionOf(m).delete_after_ms, std::numeric_limits<int64_t>::max());
}

// ---------------------------------------------------------------- ingest

TEST(IngestTest, WithinTheLimitsIsAllowed) {
  Decision d = P().Decide(IngestFacts{"alice", 1000, 10});
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
  EXPECT_EQ(d.rule, "ingest");
  EXPECT_FALSE(d.reasons.empty());
}

TEST(IngestTest, BlockedUsersMayNotSend) {
  Decision d = P().Decide(IngestFacts{"mallory", 10, 1});
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "ingest.block_users");
  EXPECT_EQ(d.reasons, (std::vector<std::string>{"sender mallory is blocked"}));
  EXPECT_EQ(P().Decide(IngestFacts{"eve", 10, 1}).verdict, Verdict::kDeny);
  EXPECT_EQ(P().Decide(IngestFacts{"mallor", 10, 1}).verdict, Verdict::kAllow);
}

TEST(IngestTest, SizeAndFanOutLimits) {
  Decision d = P().Decide(IngestFacts{"alice", 1001, 10});
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "ingest.max_envelope_bytes");
  EXPECT_EQ(d.reasons, (std::vector<std::string>{
                           "the envelope of 1001 bytes exceeds max_envelope_bytes 1000"}));
  d = P().Decide(IngestFacts{"alice", 1000, 11});
  EXPECT_EQ(d.rule, "ingest.max_recipient_devices");
  EXPECT_EQ(d.reasons, (std::vector<std::string>{
                           "11 recipient devices exceed max_recipient_devices 10"}));
  // Every breach is listed; the first decides.
  d = P().Decide(IngestFacts{"eve", UINT64_MAX, UINT64_MAX});
  EXPECT_EQ(d.rule, "ingest.block_users");
  EXPECT_EQ(d.reasons.size(), 3u) << Reasons(d);
}

TEST(IngestTest, WithoutIngestRulesEverythingIsAllowed) {
  Decision d = MustParse("version: 1\n").Decide(IngestFacts{"mallory", UINT64_MAX, UINT64_MAX});
  EXPECT_EQ(d.verdict, Verdict::kAllow);
  EXPECT_EQ(d.rule, "ingest");
}

// --------------------------------------------------------------- parsing

struct BadPolicy {
  const char* name;
  const char* yaml;
  const char* where;    // "line:column" expected in the message
  const char* message;  // expected substring
};

class MalformedPolicyTest : public ::testing::TestWithParam<BadPolicy> {};

TEST_P(MalformedPolicyTest, IsRejectedWithPosition) {
  const BadPolicy& bad = GetParam();
  auto p = Policy::Parse(bad.yaml, "bad.yaml");
  ASSERT_FALSE(p.ok()) << bad.name;
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find(std::string("bad.yaml:") + bad.where + ": "),
            std::string::npos)
      << p.status().message();
  EXPECT_NE(p.status().message().find(bad.message), std::string::npos) << p.status().message();
}

#define RULE "version: 1\ndisclosure:\n  lawful_request:\n"

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedPolicyTest,
    ::testing::Values(
        // YAML itself.
        BadPolicy{"syntax", "version: 1\ndisclosure: [unclosed\n", "3:1", "end of sequence"},
        BadPolicy{"bad_indent", "version: 1\n  disclosure: {}\n", "2:13", "illegal map value"},
        BadPolicy{"duplicate_key", "version: 1\nversion: 1\n", "2:1", "duplicate key 'version'"},
        BadPolicy{"top_not_map", "- a\n", "1:1", "must be a mapping"},
        BadPolicy{"wrong_version", "version: 2\n", "1:10", "unsupported policy version 2"},
        BadPolicy{"no_version", "disclosure: {}\n", "1:1", "has no version"},
        BadPolicy{"unknown_top_key", "version: 1\nextra: 2\n", "2:1", "unknown key 'extra'"},
        // Disclosure.
        BadPolicy{"unknown_purpose", "version: 1\ndisclosure:\n  user_history_restore: {}\n", "3:3",
                  "unknown key 'user_history_restore' in disclosure (expected one of: deny, "
                  "legal_hold_export, lawful_request, history_restore, supervision_review)"},
        BadPolicy{"rule_not_map", RULE "    [1]\n", "4:5", "must be a mapping"},
        BadPolicy{"unknown_rule_key", RULE "    requre_open_case: true\n", "4:5",
                  "unknown key 'requre_open_case'"},
        BadPolicy{"unknown_approval_key", RULE "    approvals:\n      - role: a\n        cnt: 1\n",
                  "6:9", "unknown key 'cnt'"},
        BadPolicy{"not_bool", RULE "    require_open_case: yes\n", "4:24", "must be true or false"},
        BadPolicy{"quoted_bool", RULE "    require_open_case: \"true\"\n", "4:24",
                  "must be true or false"},
        BadPolicy{"bad_count", RULE "    approvals:\n      - role: a\n        count: 0\n", "6:16",
                  "from 1 to 1000"},
        BadPolicy{"missing_count", RULE "    approvals:\n      - role: a\n", "5:9",
                  "without a count"},
        BadPolicy{"role_not_a_name", RULE "    approvals:\n      - {role: Compliance, count: 1}\n",
                  "5:16", "lower_case_with_underscores"},
        BadPolicy{"duplicate_role",
                  RULE "    approvals:\n      - {role: a, count: 1}\n      - {role: a, count: 2}\n",
                  "6:9", "appears twice"},
        BadPolicy{"approvals_not_list", RULE "    approvals: {role: a}\n", "4:16",
                  "approvals must be a list"},
        BadPolicy{"negative_cap", RULE "    max_custodians: -1\n    approvals: []\n", "4:21",
                  "max_custodians must be an integer of at least 1, not '-1'"},
        BadPolicy{"cap_not_int", RULE "    max_range_days: 30d\n    approvals: []\n", "4:21",
                  "max_range_days must be an integer"},
        BadPolicy{"zero_conversations", RULE "    max_conversations: 0\n    approvals: []\n", "4:24",
                  "at least 1"},
        BadPolicy{"requester_roles_not_list", RULE "    requester_roles: helpdesk\n    approvals: []\n",
                  "4:22", "requester_roles must be a list"},
        BadPolicy{"requester_roles_empty", RULE "    requester_roles: []\n    approvals: []\n", "4:22",
                  "must not be empty"},
        BadPolicy{"requester_role_twice",
                  RULE "    requester_roles: [a, a]\n    approvals: []\n", "4:26", "'a' appears twice"},
        BadPolicy{"step_up_without_age",
                  RULE "    step_up: true\n    approvals: [{role: a, count: 1}]\n", "4:5",
                  "has step_up: true but no step_up_max_age_seconds"},
        BadPolicy{"age_without_step_up",
                  RULE "    step_up_max_age_seconds: 300\n    approvals: [{role: a, count: 1}]\n",
                  "4:5", "has no effect without step_up: true"},
        BadPolicy{"step_up_without_approvals",
                  RULE "    step_up: true\n    step_up_max_age_seconds: 300\n    approvals: []\n",
                  "4:5", "requires no approvals"},
        BadPolicy{"step_up_age_too_long",
                  RULE "    step_up: true\n    step_up_max_age_seconds: 86401\n    approvals: []\n",
                  "5:30", "from 1 to 86400"},
        BadPolicy{"deny_without_condition",
                  RULE "    deny:\n      - reason: no\n    approvals: []\n", "5:9",
                  "disclosure.lawful_request.deny[0] states no condition"},
        BadPolicy{"deny_empty_custodians",
                  "version: 1\ndisclosure:\n  deny:\n    - custodians: []\n", "4:19",
                  "custodians must not be empty"},
        BadPolicy{"deny_unknown_key",
                  "version: 1\ndisclosure:\n  deny:\n    - {custodians: [a], requesters: [b]}\n",
                  "4:25", "unknown key 'requesters' in disclosure.deny[0]"},
        BadPolicy{"deny_not_list", "version: 1\ndisclosure:\n  deny: {custodians: [a]}\n", "3:9",
                  "disclosure.deny must be a list"},
        BadPolicy{"deny_zero_days",
                  RULE "    deny: [{older_than_days: 0}]\n    approvals: []\n", "4:30",
                  "older_than_days must be an integer of at least 1"},
        BadPolicy{"deny_custodian_null", "version: 1\ndisclosure:\n  deny:\n    - custodians: [~]\n",
                  "4:20", "must be a string, not nothing"},
        // Retention.
        BadPolicy{"retention_unknown_key", "version: 1\nretention:\n  clases: {}\n", "3:3",
                  "unknown key 'clases' in retention"},
        BadPolicy{"retention_no_classes", "version: 1\nretention:\n  default_class: a\n", "3:3",
                  "retention has no classes"},
        BadPolicy{"retention_empty_classes",
                  "version: 1\nretention:\n  classes: {}\n  default_class: a\n", "3:12",
                  "must name at least one class"},
        BadPolicy{"retention_no_default", "version: 1\nretention:\n  classes: {a: {days: 1}}\n",
                  "3:3", "retention has no default_class"},
        BadPolicy{"retention_zero_days",
                  "version: 1\nretention:\n  classes:\n    a: {days: 0}\n  default_class: a\n", "4:15",
                  "days must be an integer of at least 1"},
        BadPolicy{"retention_class_not_map",
                  "version: 1\nretention:\n  classes:\n    a: 2555\n  default_class: a\n", "4:8",
                  "retention.classes.a must be a mapping"},
        BadPolicy{"retention_class_without_days",
                  "version: 1\nretention:\n  classes:\n    a: {}\n  default_class: a\n", "4:8",
                  "retention class a has no days"},
        BadPolicy{"retention_bad_class_name",
                  "version: 1\nretention:\n  classes:\n    Long-Term: {days: 1}\n  default_class: a\n",
                  "4:5", "must be lower_case_with_underscores"},
        BadPolicy{"retention_unknown_default",
                  "version: 1\nretention:\n  default_class: b\n  classes: {a: {days: 1}}\n", "3:18",
                  "default_class 'b' is not a class in retention.classes"},
        BadPolicy{"retention_unknown_assigned_class",
                  "version: 1\nretention:\n  classes: {a: {days: 1}}\n  default_class: a\n"
                  "  assign:\n    - {match: {users: [x]}, class: c}\n",
                  "6:36", "class 'c' is not a class in retention.classes"},
        BadPolicy{"retention_match_unknown_key",
                  "version: 1\nretention:\n  classes: {a: {days: 1}}\n  default_class: a\n"
                  "  assign:\n    - {match: {senders: [x]}, class: a}\n",
                  "6:16", "unknown key 'senders' in retention.assign[0].match"},
        BadPolicy{"retention_match_empty",
                  "version: 1\nretention:\n  classes: {a: {days: 1}}\n  default_class: a\n"
                  "  assign:\n    - {match: {}, class: a}\n",
                  "6:15", "retention.assign[0].match states no condition"},
        BadPolicy{"retention_bad_kind",
                  "version: 1\nretention:\n  classes: {a: {days: 1}}\n  default_class: a\n"
                  "  assign:\n    - {match: {conversation_kind: channel}, class: a}\n",
                  "6:35", "conversation_kind must be direct or group, not 'channel'"},
        BadPolicy{"retention_assign_without_class",
                  "version: 1\nretention:\n  classes: {a: {days: 1}}\n  default_class: a\n"
                  "  assign:\n    - {match: {users: [x]}}\n",
                  "6:7", "retention.assign[0] has no class"},
        // Ingest.
        BadPolicy{"ingest_unknown_key", "version: 1\ningest:\n  max_bytes: 10\n", "3:3",
                  "unknown key 'max_bytes' in ingest"},
        BadPolicy{"ingest_zero_bytes", "version: 1\ningest:\n  max_envelope_bytes: 0\n", "3:23",
                  "max_envelope_bytes must be an integer from 1 to"},
        BadPolicy{"ingest_block_not_list", "version: 1\ningest:\n  block_users: mallory\n", "3:16",
                  "block_users must be a list"},
        BadPolicy{"ingest_block_twice", "version: 1\ningest:\n  block_users: [a, b, a]\n", "3:23",
                  "'a' appears twice in block_users"}),
    [](const ::testing::TestParamInfo<BadPolicy>& info) { return std::string(info.param.name); });

#undef RULE

TEST(PolicyTest, EmptyDocumentIsRejected) {
  auto p = Policy::Parse("", "empty.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("empty.yaml"), std::string::npos);
  EXPECT_NE(p.status().message().find("the policy is empty"), std::string::npos);
}

}  // namespace
}  // namespace holdfast::policy
