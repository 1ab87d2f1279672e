#include "holdfast/policy/policy.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

#include "holdfast/base/bytes.h"
#include "holdfast/base/time.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::policy {
namespace {

constexpr int kSchemaVersion = 1;

// Thrown only inside this file by the parser and turned into a Status by
// Policy::Parse.
struct PolicyError {
  YAML::Mark mark;
  std::string message;
};

[[noreturn]] void Fail(const YAML::Node& node, std::string message) {
  throw PolicyError{node.Mark(), std::move(message)};
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "'" + node.Scalar() + "'";
    case YAML::NodeType::Null: return "nothing";
    default: return "an undefined value";
  }
}

std::string ScalarOf(const YAML::Node& node, std::string_view what) {
  if (!node.IsScalar()) Fail(node, std::string(what) + " must be a string, not " + Describe(node));
  return node.Scalar();
}

bool BoolOf(const YAML::Node& node, std::string_view what) {
  if (node.IsScalar() && node.Tag() != "!" && node.Scalar() == "true") return true;
  if (node.IsScalar() && node.Tag() != "!" && node.Scalar() == "false") return false;
  Fail(node, std::string(what) + " must be true or false, not " + Describe(node));
}

int IntOf(const YAML::Node& node, std::string_view what, int min) {
  if (node.IsScalar() && node.Tag() != "!") {
    const std::string& s = node.Scalar();
    int value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty() && value >= min) {
      return value;
    }
  }
  Fail(node, std::string(what) + " must be an integer of at least " + std::to_string(min) +
                 ", not " + Describe(node));
}

bool ValidName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// Calls `on_key(key, key_node, value)` for each entry of a mapping, after
// rejecting keys not in `allowed` and duplicate keys.
template <typename OnKey>
void ForEachKey(const YAML::Node& map, std::string_view where,
                std::initializer_list<std::string_view> allowed, OnKey on_key) {
  if (!map.IsMap()) Fail(map, std::string(where) + " must be a mapping, not " + Describe(map));
  std::set<std::string> seen;
  for (const auto& entry : map) {
    const YAML::Node& key_node = entry.first;
    std::string key = ScalarOf(key_node, "a key");
    if (!seen.insert(key).second) Fail(key_node, "duplicate key '" + key + "' in " + std::string(where));
    if (allowed.size() > 0 &&
        std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      Fail(key_node, "unknown key '" + key + "' in " + std::string(where) + " (expected one of: " +
                         list + ")");
    }
    on_key(key, key_node, entry.second);
  }
}

ApprovalRequirement ParseApproval(const YAML::Node& node) {
  ApprovalRequirement req;
  bool has_role = false, has_count = false;
  ForEachKey(node, "an approval requirement", {"role", "count"},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "role") {
                 req.role = ScalarOf(value, "role");
                 if (!ValidName(req.role)) Fail(value, "role must be lower_case_with_underscores");
                 has_role = true;
               } else {
                 req.count = IntOf(value, "count", 1);
                 has_count = true;
               }
             });
  if (!has_role) Fail(node, "approval requirement without a role");
  if (!has_count) Fail(node, "approval requirement without a count");
  return req;
}

PurposeRule ParseRule(const std::string& purpose, const YAML::Node& node) {
  PurposeRule rule;
  rule.purpose = purpose;
  std::string where = "disclosure." + purpose;
  bool has_approvals = false;
  ForEachKey(
      node, where,
      {"require_open_case", "require_hold_covering_scope", "require_legal_reference",
       "max_custodians", "requester_may_approve", "requester_roles", "approvals"},
      [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
        if (key == "require_open_case") {
          rule.require_open_case = BoolOf(value, key);
        } else if (key == "require_hold_covering_scope") {
          rule.require_hold_covering_scope = BoolOf(value, key);
        } else if (key == "require_legal_reference") {
          rule.require_legal_reference = BoolOf(value, key);
        } else if (key == "max_custodians") {
          rule.max_custodians = IntOf(value, key, 1);
        } else if (key == "requester_may_approve") {
          rule.requester_may_approve = BoolOf(value, key);
        } else if (key == "requester_roles") {
          if (!value.IsSequence()) Fail(value, "requester_roles must be a list of roles");
          for (const YAML::Node& r : value) rule.requester_roles.push_back(ScalarOf(r, "a role"));
        } else {
          has_approvals = true;
          if (!value.IsSequence()) Fail(value, "approvals must be a list");
          std::set<std::string> roles;
          for (const YAML::Node& a : value) {
            ApprovalRequirement req = ParseApproval(a);
            if (!roles.insert(req.role).second) {
              Fail(a, "role " + req.role + " appears twice in approvals");
            }
            rule.approvals.push_back(std::move(req));
          }
        }
      });
  // Disclosure without sign-off must be written out, never implied by a
  // forgotten key.
  if (!has_approvals) {
    Fail(node, where + " has no approvals; list the required approvals, or write "
                       "`approvals: []` to allow this purpose without any");
  }
  return rule;
}

std::vector<PurposeRule> ParseDocument(const YAML::Node& root) {
  if (!root.IsDefined() || root.IsNull()) Fail(root, "the policy is empty");
  std::vector<PurposeRule> rules;
  bool has_version = false;
  ForEachKey(root, "the policy", {"version", "disclosure"},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "version") {
                 if (IntOf(value, "version", 0) != kSchemaVersion) {
                   Fail(value, "unsupported policy version " + value.Scalar() + " (expected " +
                                   std::to_string(kSchemaVersion) + ")");
                 }
                 has_version = true;
                 return;
               }
               ForEachKey(value, "disclosure", {},
                          [&](const std::string& purpose, const YAML::Node& key_node,
                              const YAML::Node& rule) {
                            if (!ValidName(purpose)) {
                              Fail(key_node, "purpose '" + purpose +
                                                 "' must be lower_case_with_underscores");
                            }
                            rules.push_back(ParseRule(purpose, rule));
                          });
             });
  if (!has_version) Fail(root, "the policy has no version");
  return rules;
}

std::string Sha256Version(std::string_view data) {
  return "sha256:" + ToHex(protocol::Sha256(AsBytes(data)));
}

Status ErrorAt(const std::string& source, const YAML::Mark& mark, const std::string& message) {
  if (mark.is_null()) return Status::InvalidArgument(source + ": " + message);
  return Status::InvalidArgument(source + ":" + std::to_string(mark.line + 1) + ":" +
                                 std::to_string(mark.column + 1) + ": " + message);
}

std::string FormatTime(int64_t ms) { return FormatUtc(ms, TimePrecision::kShortest); }

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kAllow: return "allow";
    case Verdict::kDeny: return "deny";
    case Verdict::kNeedsApproval: return "needs-approval";
  }
  return "deny";
}

Result<Policy> Policy::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read policy file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::NotFound("cannot read policy file " + path);
  return Parse(text.str(), path);
}

Result<Policy> Policy::Parse(std::string_view yaml, const std::string& source_name) {
  Policy policy;
  policy.version_ = Sha256Version(yaml);
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    policy.rules_ = ParseDocument(root);
  } catch (const PolicyError& e) {
    return ErrorAt(source_name, e.mark, e.message);
  } catch (const YAML::Exception& e) {
    return ErrorAt(source_name, e.mark, e.msg);
  }
  return policy;
}

Decision Policy::Decide(const DisclosureFacts& facts) const {
  Decision d;
  d.policy_version = version_;
  auto rule = std::find_if(rules_.begin(), rules_.end(),
                           [&](const PurposeRule& r) { return r.purpose == facts.purpose; });
  if (rule == rules_.end()) {
    d.verdict = Verdict::kDeny;
    d.rule = "default-deny";
    d.reasons.push_back("no rule allows disclosure for purpose '" + facts.purpose + "'");
    return d;
  }
  d.rule = "disclosure." + rule->purpose;
  const std::string range = FormatTime(facts.from_ms) + ".." + FormatTime(facts.to_ms);

  std::vector<std::string> denials;
  if (facts.custodians.empty()) denials.push_back("the request names no custodians");
  if (facts.from_ms >= facts.to_ms) denials.push_back("the time range " + range + " is empty");
  if (rule->max_custodians > 0 &&
      facts.custodians.size() > static_cast<size_t>(rule->max_custodians)) {
    denials.push_back(std::to_string(facts.custodians.size()) +
                      " custodians exceed max_custodians " +
                      std::to_string(rule->max_custodians));
  }
  if (!rule->requester_roles.empty() && !Contains(rule->requester_roles, facts.requester_role)) {
    denials.push_back("requester " + facts.requester + " does not hold a requester role (" +
                      Join(rule->requester_roles) + ")");
  }
  if (rule->require_legal_reference && facts.legal_reference.empty()) {
    denials.push_back("the request has no legal reference");
  }
  if (rule->require_open_case && !facts.case_open) denials.push_back("the case is not open");
  if (rule->require_hold_covering_scope) {
    for (const std::string& custodian : facts.custodians) {
      if (!Contains(facts.custodians_under_hold, custodian)) {
        denials.push_back("custodian " + custodian + " has no active legal hold covering " +
                          range);
      }
    }
  }
  if (!denials.empty()) {
    d.verdict = Verdict::kDeny;
    d.reasons = std::move(denials);
    return d;
  }

  // Each officer counts once, for the role they hold.
  std::vector<Approval> distinct;
  for (const Approval& a : facts.approvals) {
    bool seen = std::any_of(distinct.begin(), distinct.end(),
                            [&](const Approval& b) { return b.officer == a.officer; });
    if (!seen) distinct.push_back(a);
  }
  bool short_of_approvals = false;
  bool requester_excluded = false;
  for (const ApprovalRequirement& req : rule->approvals) {
    int count = 0;
    for (const Approval& a : distinct) {
      if (a.role != req.role) continue;
      if (a.officer == facts.requester && !rule->requester_may_approve) {
        requester_excluded = true;
        continue;
      }
      ++count;
    }
    if (count < req.count) short_of_approvals = true;
    d.reasons.push_back(std::to_string(std::min(count, req.count)) + " of " +
                        std::to_string(req.count) + " approvals from role " + req.role);
  }
  if (requester_excluded) {
    d.reasons.push_back("the approval of requester " + facts.requester +
                        " does not count: the requester may not approve");
  }
  if (short_of_approvals) {
    d.verdict = Verdict::kNeedsApproval;
    return d;
  }
  d.verdict = Verdict::kAllow;
  d.reasons.insert(d.reasons.begin(), "every requirement of " + d.rule + " is met");
  return d;
}

}  // namespace holdfast::policy
