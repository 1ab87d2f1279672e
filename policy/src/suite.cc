#include "holdfast/policy/suite.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>

#include "holdfast/base/time.h"
#include "strict_yaml.h"

namespace holdfast::policy {
namespace {

using internal::BoolOf;
using internal::Fail;
using internal::ForEachKey;
using internal::ForEachKeyMerged;
using internal::IntOf;
using internal::ScalarOf;
using internal::StringListOf;

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool Digits(std::string_view s, size_t pos, size_t n, int64_t& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

// YYYY-MM-DD (midnight UTC) or YYYY-MM-DDTHH:MM:SS[.mmm]Z.
std::optional<int64_t> ParseUtc(std::string_view s) {
  int64_t y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
  if (!Digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2, mo) || s[7] != '-' ||
      !Digits(s, 8, 2, d)) {
    return std::nullopt;
  }
  if (s.size() > 10) {
    if (s.size() < 20 || s[10] != 'T' || !Digits(s, 11, 2, h) || s[13] != ':' ||
        !Digits(s, 14, 2, mi) || s[16] != ':' || !Digits(s, 17, 2, sec)) {
      return std::nullopt;
    }
    size_t z = 19;
    if (s[19] == '.') {
      if (!Digits(s, 20, 3, ms)) return std::nullopt;
      z = 23;
    }
    if (s.size() != z + 1 || s[z] != 'Z') return std::nullopt;
  }
  static constexpr int kMonthDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > kMonthDays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
      h > 23 || mi > 59 || sec > 59) {
    return std::nullopt;
  }
  return ((DaysFromCivil(y, mo, d) * 24 + h) * 60 + mi) * 60'000 + sec * 1000 + ms;
}

int64_t TimeOf(const YAML::Node& node, std::string_view what) {
  const std::string s = ScalarOf(node, what);
  auto ms = ParseUtc(s);
  if (!ms) {
    Fail(node, std::string(what) + " must be a UTC time, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.mmm]Z, not '" +
                   s + "'");
  }
  return *ms;
}

struct CaseNodes {
  std::optional<YAML::Node> input;
  std::string kind;  // "disclosure", "retention" or "ingest"
  std::optional<YAML::Node> expect;
};

Approval ParseApproval(const YAML::Node& node, std::optional<int64_t> now) {
  Approval a;
  bool has_officer = false, has_role = false, has_at = false;
  ForEachKey(node, "an approval", {"officer", "role", "at", "step_up_at"},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "officer") {
                 a.officer = ScalarOf(value, key);
                 has_officer = true;
               } else if (key == "role") {
                 a.role = ScalarOf(value, key);
                 has_role = true;
               } else if (key == "at") {
                 a.at_ms = TimeOf(value, key);
                 has_at = true;
               } else {
                 a.step_up_at_ms = TimeOf(value, key);
               }
             });
  if (!has_officer) Fail(node, "an approval needs an officer");
  if (!has_role) Fail(node, "an approval needs a role");
  if (!has_at) {
    if (!now) Fail(node, "an approval needs `at` when the case has no `now`");
    a.at_ms = *now;
  }
  return a;
}

DisclosureFacts ParseDisclosure(const YAML::Node& node, std::optional<int64_t> now) {
  DisclosureFacts f;
  bool has_purpose = false, has_from = false, has_to = false;
  std::optional<YAML::Node> approvals;
  ForEachKeyMerged(node, "disclosure",
             {"purpose", "requester", "requester_role", "custodians", "conversations", "from",
              "to", "legal_reference", "case_open", "custodians_under_hold", "approvals", "now"},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "purpose") {
                 f.purpose = ScalarOf(value, key);
                 has_purpose = true;
               } else if (key == "requester") {
                 f.requester = ScalarOf(value, key);
               } else if (key == "requester_role") {
                 f.requester_role = ScalarOf(value, key);
               } else if (key == "custodians") {
                 f.custodians = StringListOf(value, key, /*allow_empty=*/true);
               } else if (key == "conversations") {
                 f.conversations = StringListOf(value, key, /*allow_empty=*/true);
               } else if (key == "from") {
                 f.from_ms = TimeOf(value, key);
                 has_from = true;
               } else if (key == "to") {
                 f.to_ms = TimeOf(value, key);
                 has_to = true;
               } else if (key == "legal_reference") {
                 f.legal_reference = ScalarOf(value, key);
               } else if (key == "case_open") {
                 f.case_open = BoolOf(value, key);
               } else if (key == "custodians_under_hold") {
                 f.custodians_under_hold = StringListOf(value, key, /*allow_empty=*/true);
               } else if (key == "approvals") {
                 if (!value.IsSequence()) Fail(value, "approvals must be a list");
                 approvals.emplace(value);
               } else {
                 now = TimeOf(value, key);
               }
             });
  if (!has_purpose) Fail(node, "a disclosure case needs a purpose");
  if (!has_from || !has_to) Fail(node, "a disclosure case needs `from` and `to`");
  if (!now) Fail(node, "a disclosure case needs `now` (in the case or at the top of the file)");
  f.now_ms = *now;
  // Approvals without `at` were given at `now`.
  if (approvals) {
    for (const YAML::Node& a : *approvals) f.approvals.push_back(ParseApproval(a, now));
  }
  return f;
}

RetentionFacts ParseRetention(const YAML::Node& node) {
  RetentionFacts f;
  bool has_sent_at = false;
  ForEachKeyMerged(node, "retention", {"sender", "members", "conversation_kind", "sent_at", "held"},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "sender") {
                 f.sender = ScalarOf(value, key);
               } else if (key == "members") {
                 f.members = StringListOf(value, key, /*allow_empty=*/true);
               } else if (key == "conversation_kind") {
                 const std::string kind = ScalarOf(value, key);
                 if (kind == "group") {
                   f.conversation_kind = ConversationKind::kGroup;
                 } else if (kind != "direct") {
                   Fail(value, "conversation_kind must be direct or group, not '" + kind + "'");
                 }
               } else if (key == "sent_at") {
                 f.sent_at_ms = TimeOf(value, key);
                 has_sent_at = true;
               } else {
                 f.held = BoolOf(value, key);
               }
             });
  if (!has_sent_at) Fail(node, "a retention case needs sent_at");
  return f;
}

IngestFacts ParseIngest(const YAML::Node& node) {
  IngestFacts f;
  ForEachKeyMerged(node, "ingest", {"sender", "envelope_bytes", "recipient_devices"},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "sender") {
                 f.sender = ScalarOf(value, key);
               } else if (key == "envelope_bytes") {
                 f.envelope_bytes = static_cast<uint64_t>(IntOf(value, key, 0, INT64_MAX));
               } else {
                 f.recipient_devices = static_cast<uint64_t>(IntOf(value, key, 0, INT64_MAX));
               }
             });
  return f;
}

void ParseExpect(const YAML::Node& node, const std::string& kind, TestCase& c) {
  std::initializer_list<std::string_view> disclosure = {"outcome", "rule", "missing",
                                                        "reasons_include", "decrypt"};
  std::initializer_list<std::string_view> ingest = {"outcome", "rule", "reasons_include"};
  std::initializer_list<std::string_view> retention = {"class", "rule", "delete_after", "held",
                                                       "reasons_include"};
  const auto& allowed = kind == "disclosure" ? disclosure : kind == "ingest" ? ingest : retention;
  bool any = false;
  ForEachKeyMerged(node, "expect (of a " + kind + " case)", allowed,
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               any = true;
               if (key == "outcome") {
                 const std::string name = ScalarOf(value, key);
                 c.outcome = VerdictFromName(name);
                 if (!c.outcome) {
                   Fail(value, "outcome must be allow, deny or needs-approval, not '" + name + "'");
                 }
               } else if (key == "rule") {
                 c.rule = ScalarOf(value, key);
               } else if (key == "missing") {
                 c.missing = StringListOf(value, key, /*allow_empty=*/true);
               } else if (key == "reasons_include") {
                 c.reasons_include = StringListOf(value, key, /*allow_empty=*/false);
               } else if (key == "decrypt") {
                 c.decrypt = BoolOf(value, key);
               } else if (key == "class") {
                 c.retention_class = ScalarOf(value, key);
               } else if (key == "delete_after") {
                 if (value.IsScalar() && value.Scalar() == "never") {
                   c.delete_after_ms.emplace(std::nullopt);
                 } else {
                   c.delete_after_ms.emplace(TimeOf(value, key));
                 }
               } else {
                 c.held = BoolOf(value, key);
               }
             });
  if (!any) Fail(node, "expect states nothing");
  if (kind != "retention" && !c.outcome) Fail(node, "expect of a " + kind + " case needs an outcome");
}

TestCase ParseCase(const YAML::Node& node, std::optional<int64_t> now) {
  TestCase c;
  c.line = node.Mark().line + 1;
  CaseNodes nodes;
  bool has_name = false;
  ForEachKey(node, "a case", {"name", "disclosure", "retention", "ingest", "expect"},
             [&](const std::string& key, const YAML::Node& key_node, const YAML::Node& value) {
               if (key == "name") {
                 c.name = ScalarOf(value, key);
                 if (c.name.empty()) Fail(value, "a case name must not be empty");
                 has_name = true;
               } else if (key == "expect") {
                 nodes.expect.emplace(value);
               } else {
                 if (nodes.input) {
                   Fail(key_node, "a case has one input, not both " + nodes.kind + " and " + key);
                 }
                 nodes.input.emplace(value);
                 nodes.kind = key;
               }
             });
  if (!has_name) Fail(node, "a case needs a name");
  if (!nodes.input) Fail(node, "case '" + c.name + "' has no input (disclosure, retention or ingest)");
  if (!nodes.expect) Fail(node, "case '" + c.name + "' has no expect");
  if (nodes.kind == "disclosure") {
    c.input = ParseDisclosure(*nodes.input, now);
  } else if (nodes.kind == "retention") {
    c.input = ParseRetention(*nodes.input);
  } else {
    c.input = ParseIngest(*nodes.input);
  }
  ParseExpect(*nodes.expect, nodes.kind, c);
  return c;
}

std::string Quoted(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", \"" : "\"") + v[i] + "\"";
  return out + "]";
}

void CheckDecision(const Decision& d, const TestCase& t, CaseResult& r) {
  r.got.push_back("got " + std::string(VerdictName(d.verdict)) + " (rule " + d.rule + ")");
  for (const std::string& reason : d.reasons) r.got.push_back("  reason: " + reason);
  for (const std::string& m : d.missing) r.got.push_back("  missing: " + m);
  if (t.outcome && *t.outcome != d.verdict) {
    r.failures.push_back("outcome: want " + std::string(VerdictName(*t.outcome)) + ", got " +
                         std::string(VerdictName(d.verdict)));
  }
  if (t.rule && *t.rule != d.rule) {
    r.failures.push_back("rule: want " + *t.rule + ", got " + d.rule);
  }
  if (t.missing && *t.missing != d.missing) {
    r.failures.push_back("missing: want " + Quoted(*t.missing) + ", got " + Quoted(d.missing));
  }
  if (t.decrypt && *t.decrypt != d.decrypt) {
    r.failures.push_back(std::string("decrypt: want ") + (*t.decrypt ? "true" : "false") +
                         ", got " + (d.decrypt ? "true" : "false"));
  }
}

void CheckReasons(const std::vector<std::string>& reasons, const TestCase& t, CaseResult& r) {
  for (const std::string& want : t.reasons_include) {
    if (std::none_of(reasons.begin(), reasons.end(),
                     [&](const std::string& got) { return got.find(want) != std::string::npos; })) {
      r.failures.push_back("reasons: none contains \"" + want + "\"");
    }
  }
}

std::string TimeOrNever(const std::optional<int64_t>& ms) {
  return ms ? FormatUtc(*ms, TimePrecision::kShortest) : "never";
}

}  // namespace

Result<TestSuite> ParseTestSuite(std::string_view yaml, const std::string& source_name) {
  TestSuite suite;
  suite.source = source_name;
  Status s = internal::Guard(yaml, source_name, [&](const YAML::Node& root) {
    if (!root.IsDefined() || root.IsNull()) Fail(root, "the test file is empty");
    std::optional<int64_t> now;
    if (root.IsMap() && root["now"]) now = TimeOf(root["now"], "now");
    bool has_cases = false;
    ForEachKey(root, "the test file", {"policy", "now", "cases"},
               [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
                 if (key == "policy") {
                   suite.policy_path = ScalarOf(value, key);
                   if (suite.policy_path.empty()) Fail(value, "policy must name a file");
                 } else if (key == "cases") {
                   has_cases = true;
                   if (!value.IsSequence() || value.size() == 0) {
                     Fail(value, "cases must be a non-empty list");
                   }
                   for (const YAML::Node& item : value) {
                     TestCase c = ParseCase(item, now);
                     for (const TestCase& other : suite.cases) {
                       if (other.name == c.name) {
                         Fail(item, "case '" + c.name + "' is already defined at line " +
                                        std::to_string(other.line));
                       }
                     }
                     suite.cases.push_back(std::move(c));
                   }
                 }
               });
    if (!has_cases) Fail(root, "the test file has no cases");
  });
  if (!s.ok()) return s;
  return suite;
}

Result<TestSuite> LoadTestSuite(const std::string& path) {
  HF_ASSIGN_OR_RETURN(std::string text, internal::ReadFileBytes(path, "policy test file"));
  HF_ASSIGN_OR_RETURN(TestSuite suite, ParseTestSuite(text, path));
  if (!suite.policy_path.empty() && std::filesystem::path(suite.policy_path).is_relative()) {
    suite.policy_path =
        (std::filesystem::path(path).parent_path() / suite.policy_path).lexically_normal().string();
  }
  return suite;
}

CaseResult RunCase(const Policy& policy, const TestCase& t) {
  CaseResult r;
  if (const auto* facts = std::get_if<DisclosureFacts>(&t.input)) {
    const Decision d = policy.Decide(*facts);
    CheckDecision(d, t, r);
    CheckReasons(d.reasons, t, r);
  } else if (const auto* facts = std::get_if<IngestFacts>(&t.input)) {
    const Decision d = policy.Decide(*facts);
    CheckDecision(d, t, r);
    CheckReasons(d.reasons, t, r);
  } else {
    const RetentionDecision d = policy.RetentionOf(std::get<RetentionFacts>(t.input));
    r.got.push_back("got class " + (d.retention_class.empty() ? "(none)" : d.retention_class) +
                    " (rule " + d.rule + "), held " + (d.held ? "true" : "false") +
                    ", delete after " + TimeOrNever(d.delete_after_ms));
    for (const std::string& reason : d.reasons) r.got.push_back("  reason: " + reason);
    if (t.retention_class && *t.retention_class != d.retention_class) {
      r.failures.push_back("class: want " + *t.retention_class + ", got " + d.retention_class);
    }
    if (t.rule && *t.rule != d.rule) r.failures.push_back("rule: want " + *t.rule + ", got " + d.rule);
    if (t.held && *t.held != d.held) {
      r.failures.push_back(std::string("held: want ") + (*t.held ? "true" : "false") + ", got " +
                           (d.held ? "true" : "false"));
    }
    if (t.delete_after_ms && *t.delete_after_ms != d.delete_after_ms) {
      r.failures.push_back("delete_after: want " + TimeOrNever(*t.delete_after_ms) + ", got " +
                           TimeOrNever(d.delete_after_ms));
    }
    CheckReasons(d.reasons, t, r);
  }
  r.passed = r.failures.empty();
  return r;
}

}  // namespace holdfast::policy
