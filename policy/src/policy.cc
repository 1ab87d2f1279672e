#include "holdfast/policy/policy.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <limits>

#include "holdfast/base/bytes.h"
#include "holdfast/base/time.h"
#include "holdfast/protocol/primitives.h"
#include "strict_yaml.h"

namespace holdfast::policy {
namespace {

using internal::BoolOf;
using internal::Fail;
using internal::ForEachKey;
using internal::IntOf;
using internal::ScalarOf;
using internal::StringListOf;
using internal::ValidName;

constexpr int kSchemaVersion = 1;
constexpr int64_t kDayMs = 86'400'000;
constexpr std::string_view kHistoryRestore = "history_restore";

// ---------------------------------------------------------------- parsing

std::vector<std::string> RoleListOf(const YAML::Node& node, std::string_view what) {
  std::vector<std::string> roles = StringListOf(node, what, /*allow_empty=*/false);
  for (size_t i = 0; i < roles.size(); ++i) {
    if (!ValidName(roles[i])) Fail(node[i], "role '" + roles[i] + "' must be lower_case_with_underscores");
  }
  return roles;
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
                 req.count = static_cast<int>(IntOf(value, "count", 1, 1000));
                 has_count = true;
               }
             });
  if (!has_role) Fail(node, "approval requirement without a role");
  if (!has_count) Fail(node, "approval requirement without a count");
  return req;
}

std::vector<DenyRule> ParseDenyList(const YAML::Node& node, const std::string& where) {
  if (!node.IsSequence()) Fail(node, where + " must be a list, not " + internal::Describe(node));
  std::vector<DenyRule> rules;
  for (const YAML::Node& item : node) {
    DenyRule rule;
    const std::string here = where + "[" + std::to_string(rules.size()) + "]";
    bool has_condition = false;
    ForEachKey(item, here, {"custodians", "older_than_days", "reason"},
               [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
                 if (key == "custodians") {
                   rule.custodians = StringListOf(value, "custodians", /*allow_empty=*/false);
                   has_condition = true;
                 } else if (key == "older_than_days") {
                   rule.older_than_days = static_cast<int>(IntOf(value, key, 1));
                   has_condition = true;
                 } else {
                   rule.reason = ScalarOf(value, "reason");
                 }
               });
    // A rule without a condition would deny everything, which is what
    // leaving the purpose out already does.
    if (!has_condition) Fail(item, here + " states no condition (custodians or older_than_days)");
    rules.push_back(std::move(rule));
  }
  return rules;
}

PurposeRule ParseRule(const std::string& purpose, const YAML::Node& node) {
  PurposeRule rule;
  rule.purpose = purpose;
  const std::string where = "disclosure." + purpose;
  bool has_approvals = false;
  std::optional<YAML::Node> max_age_key;
  ForEachKey(
      node, where,
      {"deny", "requester_roles", "requester_may_be_custodian", "require_open_case",
       "require_hold_covering_scope", "require_legal_reference", "max_custodians",
       "max_conversations", "max_range_days", "requester_may_approve", "step_up",
       "step_up_max_age_seconds", "approvals"},
      [&](const std::string& key, const YAML::Node& key_node, const YAML::Node& value) {
        if (key == "deny") {
          rule.deny = ParseDenyList(value, where + ".deny");
        } else if (key == "requester_roles") {
          rule.requester_roles = RoleListOf(value, key);
        } else if (key == "requester_may_be_custodian") {
          rule.requester_may_be_custodian = BoolOf(value, key);
        } else if (key == "require_open_case") {
          rule.require_open_case = BoolOf(value, key);
        } else if (key == "require_hold_covering_scope") {
          rule.require_hold_covering_scope = BoolOf(value, key);
        } else if (key == "require_legal_reference") {
          rule.require_legal_reference = BoolOf(value, key);
        } else if (key == "max_custodians") {
          rule.max_custodians = static_cast<int>(IntOf(value, key, 1));
        } else if (key == "max_conversations") {
          rule.max_conversations = static_cast<int>(IntOf(value, key, 1));
        } else if (key == "max_range_days") {
          rule.max_range_days = static_cast<int>(IntOf(value, key, 1));
        } else if (key == "requester_may_approve") {
          rule.requester_may_approve = BoolOf(value, key);
        } else if (key == "step_up") {
          rule.step_up = BoolOf(value, key);
        } else if (key == "step_up_max_age_seconds") {
          rule.step_up_max_age_seconds = static_cast<int>(IntOf(value, key, 1, 86'400));
          max_age_key.emplace(key_node);
        } else {
          has_approvals = true;
          if (!value.IsSequence()) Fail(value, "approvals must be a list");
          for (const YAML::Node& a : value) {
            ApprovalRequirement req = ParseApproval(a);
            for (const ApprovalRequirement& other : rule.approvals) {
              if (other.role == req.role) Fail(a, "role " + req.role + " appears twice in approvals");
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
  if (rule.step_up && rule.step_up_max_age_seconds == 0) {
    Fail(node, where + " has step_up: true but no step_up_max_age_seconds");
  }
  if (!rule.step_up && rule.step_up_max_age_seconds != 0) {
    Fail(*max_age_key, "step_up_max_age_seconds has no effect without step_up: true");
  }
  if (rule.step_up && rule.approvals.empty()) {
    Fail(node, where + " has step_up: true but requires no approvals");
  }
  return rule;
}

void ParseDisclosure(const YAML::Node& node, std::vector<DenyRule>& deny,
                     std::vector<PurposeRule>& rules) {
  ForEachKey(node, "disclosure",
             {"deny", kPurposes[0], kPurposes[1], kPurposes[2], kPurposes[3]},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "deny") {
                 deny = ParseDenyList(value, "disclosure.deny");
               } else {
                 rules.push_back(ParseRule(key, value));
               }
             });
}

RetentionRules ParseRetention(const YAML::Node& node) {
  RetentionRules r;
  std::optional<YAML::Node> default_node;
  bool has_classes = false;
  std::vector<YAML::Node> assign_class_nodes;
  ForEachKey(node, "retention", {"classes", "default_class", "assign"},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "classes") {
                 has_classes = true;
                 ForEachKey(value, "retention.classes", {},
                            [&](const std::string& name, const YAML::Node& name_node,
                                const YAML::Node& spec) {
                              if (!ValidName(name)) {
                                Fail(name_node, "retention class '" + name +
                                                    "' must be lower_case_with_underscores");
                              }
                              RetentionClass c{name, 0};
                              ForEachKey(spec, "retention.classes." + name, {"days"},
                                         [&](const std::string&, const YAML::Node&,
                                             const YAML::Node& days) {
                                           c.days = static_cast<int>(IntOf(days, "days", 1));
                                         });
                              if (c.days == 0) Fail(spec, "retention class " + name + " has no days");
                              r.classes.push_back(std::move(c));
                            });
                 if (r.classes.empty()) Fail(value, "retention.classes must name at least one class");
               } else if (key == "default_class") {
                 r.default_class = ScalarOf(value, key);
                 default_node.emplace(value);
               } else {
                 if (!value.IsSequence()) Fail(value, "retention.assign must be a list");
                 for (const YAML::Node& item : value) {
                   RetentionAssignment a;
                   const std::string here =
                       "retention.assign[" + std::to_string(r.assign.size()) + "]";
                   bool has_match = false, has_class = false;
                   ForEachKey(item, here, {"match", "class"},
                              [&](const std::string& k, const YAML::Node&, const YAML::Node& v) {
                                if (k == "class") {
                                  a.retention_class = ScalarOf(v, "class");
                                  assign_class_nodes.push_back(v);
                                  has_class = true;
                                  return;
                                }
                                has_match = true;
                                bool has_condition = false;
                                ForEachKey(v, here + ".match", {"users", "conversation_kind"},
                                           [&](const std::string& mk, const YAML::Node&,
                                               const YAML::Node& mv) {
                                             has_condition = true;
                                             if (mk == "users") {
                                               a.users = StringListOf(mv, "users", false);
                                               return;
                                             }
                                             const std::string kind = ScalarOf(mv, mk);
                                             if (kind == "direct") {
                                               a.conversation_kind = ConversationKind::kDirect;
                                             } else if (kind == "group") {
                                               a.conversation_kind = ConversationKind::kGroup;
                                             } else {
                                               Fail(mv, "conversation_kind must be direct or group, not " +
                                                            internal::Describe(mv));
                                             }
                                           });
                                if (!has_condition) {
                                  Fail(v, here + ".match states no condition (users or conversation_kind)");
                                }
                              });
                   if (!has_match) Fail(item, here + " has no match");
                   if (!has_class) Fail(item, here + " has no class");
                   r.assign.push_back(std::move(a));
                 }
               }
             });
  if (!has_classes) Fail(node, "retention has no classes");
  if (!default_node) Fail(node, "retention has no default_class");
  auto known = [&](const std::string& name) {
    return std::any_of(r.classes.begin(), r.classes.end(),
                       [&](const RetentionClass& c) { return c.name == name; });
  };
  if (!known(r.default_class)) {
    Fail(*default_node, "default_class '" + r.default_class + "' is not a class in retention.classes");
  }
  for (size_t i = 0; i < r.assign.size(); ++i) {
    if (!known(r.assign[i].retention_class)) {
      Fail(assign_class_nodes[i], "class '" + r.assign[i].retention_class +
                                      "' is not a class in retention.classes");
    }
  }
  return r;
}

IngestRules ParseIngest(const YAML::Node& node) {
  IngestRules r;
  ForEachKey(node, "ingest", {"max_envelope_bytes", "max_recipient_devices", "block_users"},
             [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
               if (key == "max_envelope_bytes") {
                 r.max_envelope_bytes = IntOf(value, key, 1, int64_t{1} << 40);
               } else if (key == "max_recipient_devices") {
                 r.max_recipient_devices = static_cast<int>(IntOf(value, key, 1));
               } else {
                 r.block_users = StringListOf(value, key, /*allow_empty=*/true);
                 std::sort(r.block_users.begin(), r.block_users.end());
               }
             });
  return r;
}

// ------------------------------------------------------------- deciding

std::string FormatTime(int64_t ms) { return FormatUtc(ms, TimePrecision::kShortest); }

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string Join(const std::vector<std::string>& v, std::string_view separator = ", ") {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : std::string(separator)) + s;
  return out;
}

// a - b, clamped to int64 (inputs are untrusted and may be extreme).
int64_t ClampedDiff(int64_t a, int64_t b) {
  int64_t out = 0;
  if (!__builtin_sub_overflow(a, b, &out)) return out;
  return a > b ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

int64_t ClampedAdd(int64_t a, int64_t b) {
  int64_t out = 0;
  if (!__builtin_add_overflow(a, b, &out)) return out;
  return a > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

int64_t CeilDays(int64_t ms) { return ms / kDayMs + (ms % kDayMs > 0 ? 1 : 0); }

std::string Plural(int64_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

// The sentence for a matching deny rule, or nothing if it does not match.
std::optional<std::string> DenyMatch(const DenyRule& rule, const DisclosureFacts& facts) {
  std::vector<std::string> parts;
  if (!rule.custodians.empty()) {
    std::vector<std::string> hit;
    for (const std::string& c : facts.custodians) {
      if (Contains(rule.custodians, c) && !Contains(hit, c)) hit.push_back(c);
    }
    if (hit.empty()) return std::nullopt;
    parts.push_back((hit.size() == 1 ? "custodian " : "custodians ") + Join(hit) +
                    (hit.size() == 1 ? " is" : " are") + " on a deny list");
  }
  if (rule.older_than_days > 0) {
    const int64_t age = ClampedDiff(facts.now_ms, facts.from_ms);
    if (age <= int64_t{rule.older_than_days} * kDayMs) return std::nullopt;
    parts.push_back("the time range starts " + FormatTime(facts.from_ms) + ", more than " +
                    Plural(rule.older_than_days, "day", "days") + " before now (" +
                    FormatTime(facts.now_ms) + ")");
  }
  std::string text;
  for (const std::string& p : parts) text += (text.empty() ? "" : " and ") + p;
  if (!rule.reason.empty()) text += ": " + rule.reason;
  return text;
}

struct Denial {
  std::string rule;
  std::string reason;
};

std::string Qualifiers(const PurposeRule& rule) {
  std::string q = "distinct";
  if (!rule.requester_may_approve) q += ", not the requester";
  if (rule.step_up) {
    q += ", with step-up authentication at most " +
         std::to_string(rule.step_up_max_age_seconds) + " s before approving";
  }
  return q;
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

std::optional<Verdict> VerdictFromName(std::string_view name) {
  if (name == "allow") return Verdict::kAllow;
  if (name == "deny") return Verdict::kDeny;
  if (name == "needs-approval" || name == "needs_approval") return Verdict::kNeedsApproval;
  return std::nullopt;
}

std::string_view ConversationKindName(ConversationKind kind) {
  return kind == ConversationKind::kGroup ? "group" : "direct";
}

Result<Policy> Policy::Load(const std::string& path) {
  HF_ASSIGN_OR_RETURN(std::string text, internal::ReadFileBytes(path, "policy file"));
  return Parse(text, path);
}

Result<Policy> Policy::Parse(std::string_view yaml, const std::string& source_name) {
  Policy p;
  p.version_ = "sha256:" + ToHex(protocol::Sha256(AsBytes(yaml)));
  Status s = internal::Guard(yaml, source_name, [&](const YAML::Node& root) {
    if (!root.IsDefined() || root.IsNull()) Fail(root, "the policy is empty");
    bool has_version = false;
    ForEachKey(root, "the policy", {"version", "disclosure", "retention", "ingest"},
               [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
                 if (key == "version") {
                   if (IntOf(value, "version", 0) != kSchemaVersion) {
                     Fail(value, "unsupported policy version " + value.Scalar() + " (expected " +
                                     std::to_string(kSchemaVersion) + ")");
                   }
                   has_version = true;
                 } else if (key == "disclosure") {
                   ParseDisclosure(value, p.deny_, p.rules_);
                 } else if (key == "retention") {
                   p.retention_ = ParseRetention(value);
                 } else {
                   p.ingest_ = ParseIngest(value);
                 }
               });
    if (!has_version) Fail(root, "the policy has no version");
  });
  if (!s.ok()) return s;
  return p;
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
  const std::string base = "disclosure." + rule->purpose;
  const std::string range = FormatTime(facts.from_ms) + ".." + FormatTime(facts.to_ms);

  // Deny rules first, then every requirement; all are listed, the first
  // one decides.
  std::vector<Denial> denials;
  for (size_t i = 0; i < deny_.size(); ++i) {
    if (auto why = DenyMatch(deny_[i], facts)) {
      denials.push_back({"disclosure.deny[" + std::to_string(i) + "]", *why});
    }
  }
  for (size_t i = 0; i < rule->deny.size(); ++i) {
    if (auto why = DenyMatch(rule->deny[i], facts)) {
      denials.push_back({base + ".deny[" + std::to_string(i) + "]", *why});
    }
  }
  if (facts.custodians.empty()) denials.push_back({base, "the request names no custodians"});
  const bool empty_range = facts.from_ms >= facts.to_ms;
  if (empty_range) denials.push_back({base, "the time range " + range + " is empty"});

  if (!rule->requester_roles.empty() || rule->requester_may_be_custodian) {
    const bool by_role = !facts.requester_role.empty() &&
                         Contains(rule->requester_roles, facts.requester_role);
    const bool by_custody = rule->requester_may_be_custodian && facts.custodians.size() == 1 &&
                            facts.custodians[0] == facts.requester;
    if (!by_role && !by_custody) {
      std::string why = "requester " + facts.requester;
      if (rule->requester_roles.empty()) {
        why += " is not the only custodian of the request";
      } else if (rule->requester_may_be_custodian) {
        why += " is neither the only custodian of the request nor holds a requester role (" +
               Join(rule->requester_roles) + ")";
      } else {
        why += " does not hold a requester role (" + Join(rule->requester_roles) + ")";
      }
      denials.push_back({base + (rule->requester_roles.empty() ? ".requester_may_be_custodian"
                                                               : ".requester_roles"),
                         why});
    }
  }
  if (rule->max_custodians > 0 &&
      facts.custodians.size() > static_cast<size_t>(rule->max_custodians)) {
    denials.push_back({base + ".max_custodians",
                       std::to_string(facts.custodians.size()) +
                           " custodians exceed max_custodians " +
                           std::to_string(rule->max_custodians)});
  }
  if (rule->max_conversations > 0) {
    if (facts.conversations.empty()) {
      denials.push_back({base + ".max_conversations",
                         "the request covers every conversation of its custodians; "
                         "max_conversations " + std::to_string(rule->max_conversations) +
                             " requires it to list them"});
    } else if (facts.conversations.size() > static_cast<size_t>(rule->max_conversations)) {
      denials.push_back({base + ".max_conversations",
                         std::to_string(facts.conversations.size()) +
                             " conversations exceed max_conversations " +
                             std::to_string(rule->max_conversations)});
    }
  }
  if (rule->max_range_days > 0 && !empty_range) {
    const int64_t days = CeilDays(ClampedDiff(facts.to_ms, facts.from_ms));
    if (days > rule->max_range_days) {
      denials.push_back({base + ".max_range_days",
                         "the time range " + range + " spans " + Plural(days, "day", "days") +
                             ", more than max_range_days " +
                             std::to_string(rule->max_range_days)});
    }
  }
  if (rule->require_legal_reference && facts.legal_reference.empty()) {
    denials.push_back({base + ".require_legal_reference", "the request has no legal reference"});
  }
  if (rule->require_open_case && !facts.case_open) {
    denials.push_back({base + ".require_open_case", "the case is not open"});
  }
  if (rule->require_hold_covering_scope) {
    for (const std::string& custodian : facts.custodians) {
      if (!Contains(facts.custodians_under_hold, custodian)) {
        denials.push_back({base + ".require_hold_covering_scope",
                           "custodian " + custodian + " has no active legal hold covering " +
                               range});
      }
    }
  }
  if (!denials.empty()) {
    d.verdict = Verdict::kDeny;
    d.rule = denials.front().rule;
    for (Denial& x : denials) d.reasons.push_back(std::move(x.reason));
    return d;
  }

  // Each officer counts once, with their first approval, toward the
  // requirement of the role they hold; roles are distinct within a rule, so
  // no officer counts toward two requirements.
  std::vector<int> counted(rule->approvals.size(), 0);
  std::vector<std::string> seen, repeated, notes;
  for (const Approval& a : facts.approvals) {
    if (Contains(seen, a.officer)) {
      if (!Contains(repeated, a.officer)) {
        repeated.push_back(a.officer);
        notes.push_back("officer " + a.officer + " approved more than once and counts once");
      }
      continue;
    }
    seen.push_back(a.officer);
    const std::string who = "the approval of " + a.officer;
    auto req = std::find_if(rule->approvals.begin(), rule->approvals.end(),
                            [&](const ApprovalRequirement& r) { return r.role == a.role; });
    if (req == rule->approvals.end()) {
      notes.push_back(who + " (" + (a.role.empty() ? "no role" : a.role) +
                      ") does not count: no approval by that role is required");
      continue;
    }
    if (a.officer == facts.requester && !rule->requester_may_approve) {
      notes.push_back("the approval of requester " + a.officer +
                      " does not count: the requester may not approve");
      continue;
    }
    if (Contains(facts.custodians, a.officer)) {
      notes.push_back(who + " does not count: " + a.officer + " is a custodian of the request");
      continue;
    }
    if (rule->step_up) {
      if (!a.step_up_at_ms) {
        notes.push_back(who + " does not count: it carries no step-up authentication");
        continue;
      }
      if (*a.step_up_at_ms > a.at_ms) {
        notes.push_back(who + " does not count: its step-up authentication (" +
                        FormatUtc(*a.step_up_at_ms, TimePrecision::kSeconds) +
                        ") is later than the approval (" +
                        FormatUtc(a.at_ms, TimePrecision::kSeconds) + ")");
        continue;
      }
      const int64_t age_ms = ClampedDiff(a.at_ms, *a.step_up_at_ms);
      if (age_ms > int64_t{rule->step_up_max_age_seconds} * 1000) {
        const int64_t age_s = age_ms / 1000 + (age_ms % 1000 > 0 ? 1 : 0);
        notes.push_back(who + " does not count: its step-up authentication was " +
                        std::to_string(age_s) + " s before the approval, more than " +
                        "step_up_max_age_seconds " +
                        std::to_string(rule->step_up_max_age_seconds));
        continue;
      }
    }
    ++counted[req - rule->approvals.begin()];
  }

  std::optional<size_t> first_short;
  for (size_t i = 0; i < rule->approvals.size(); ++i) {
    const ApprovalRequirement& req = rule->approvals[i];
    d.reasons.push_back(std::to_string(std::min(counted[i], req.count)) + " of " +
                        std::to_string(req.count) + " approvals from role " + req.role);
    if (counted[i] < req.count) {
      if (!first_short) first_short = i;
      const int more = req.count - counted[i];
      d.missing.push_back(std::to_string(more) + " more " + (more == 1 ? "approval" : "approvals") +
                          " by " + req.role + " (" + Qualifiers(*rule) + ")");
    }
  }
  d.reasons.insert(d.reasons.end(), notes.begin(), notes.end());
  if (first_short) {
    d.verdict = Verdict::kNeedsApproval;
    d.rule = base + ".approvals[" + std::to_string(*first_short) + "]";
    return d;
  }
  d.verdict = Verdict::kAllow;
  d.rule = base;
  d.decrypt = rule->purpose != kHistoryRestore;
  d.reasons.insert(d.reasons.begin(), "every requirement of " + base + " is met");
  return d;
}

Decision Policy::Decide(const IngestFacts& facts) const {
  Decision d;
  d.policy_version = version_;
  d.rule = "ingest";
  if (!ingest_) {
    d.verdict = Verdict::kAllow;
    d.reasons.push_back("the policy has no ingest rules");
    return d;
  }
  std::vector<Denial> denials;
  if (std::binary_search(ingest_->block_users.begin(), ingest_->block_users.end(), facts.sender)) {
    denials.push_back({"ingest.block_users", "sender " + facts.sender + " is blocked"});
  }
  if (ingest_->max_envelope_bytes > 0 &&
      facts.envelope_bytes > static_cast<uint64_t>(ingest_->max_envelope_bytes)) {
    denials.push_back({"ingest.max_envelope_bytes",
                       "the envelope of " + std::to_string(facts.envelope_bytes) +
                           " bytes exceeds max_envelope_bytes " +
                           std::to_string(ingest_->max_envelope_bytes)});
  }
  if (ingest_->max_recipient_devices > 0 &&
      facts.recipient_devices > static_cast<uint64_t>(ingest_->max_recipient_devices)) {
    denials.push_back({"ingest.max_recipient_devices",
                       std::to_string(facts.recipient_devices) +
                           " recipient devices exceed max_recipient_devices " +
                           std::to_string(ingest_->max_recipient_devices)});
  }
  if (denials.empty()) {
    d.verdict = Verdict::kAllow;
    d.reasons.push_back("the message is within every ingest rule");
    return d;
  }
  d.verdict = Verdict::kDeny;
  d.rule = denials.front().rule;
  for (Denial& x : denials) d.reasons.push_back(std::move(x.reason));
  return d;
}

RetentionDecision Policy::RetentionOf(const RetentionFacts& facts) const {
  RetentionDecision d;
  d.policy_version = version_;
  d.held = facts.held;
  if (!retention_) {
    d.rule = "retention";
    d.reasons.push_back(facts.held ? "retain: held"
                                   : "the policy has no retention section: the message is kept");
    return d;
  }
  auto class_of = [&](const std::string& name) -> const RetentionClass& {
    return *std::find_if(retention_->classes.begin(), retention_->classes.end(),
                         [&](const RetentionClass& c) { return c.name == name; });
  };
  // Of every assignment that matches, the longest period applies: keeping a
  // record too long is a cost, deleting it too early a violation.
  std::optional<size_t> chosen;
  std::vector<size_t> matched;
  for (size_t i = 0; i < retention_->assign.size(); ++i) {
    const RetentionAssignment& a = retention_->assign[i];
    if (a.conversation_kind && *a.conversation_kind != facts.conversation_kind) continue;
    if (!a.users.empty() && !Contains(a.users, facts.sender) &&
        std::none_of(facts.members.begin(), facts.members.end(),
                     [&](const std::string& m) { return Contains(a.users, m); })) {
      continue;
    }
    matched.push_back(i);
    if (!chosen || class_of(a.retention_class).days >
                       class_of(retention_->assign[*chosen].retention_class).days) {
      chosen = i;
    }
  }
  const RetentionClass& c =
      class_of(chosen ? retention_->assign[*chosen].retention_class : retention_->default_class);
  d.retention_class = c.name;
  d.days = c.days;
  d.rule = chosen ? "retention.assign[" + std::to_string(*chosen) + "]" : "retention.default_class";
  const int64_t delete_after = ClampedAdd(facts.sent_at_ms, int64_t{c.days} * kDayMs);
  if (facts.held) {
    d.reasons.push_back("retain: held (a legal hold overrides class " + c.name +
                        ", which would delete after " + FormatTime(delete_after) + ")");
  } else {
    d.delete_after_ms = delete_after;
    d.reasons.push_back("class " + c.name + " (" + Plural(c.days, "day", "days") +
                        "): delete after " + FormatTime(delete_after));
  }
  if (chosen) {
    d.reasons.push_back(d.rule + " matches");
    for (size_t i : matched) {
      if (i == *chosen) continue;
      const RetentionClass& other = class_of(retention_->assign[i].retention_class);
      d.reasons.push_back("retention.assign[" + std::to_string(i) + "] also matches (class " +
                          other.name + ", " + Plural(other.days, "day", "days") +
                          "); the longest period applies");
    }
  } else {
    d.reasons.push_back("no assignment matches: the default class applies");
  }
  return d;
}

std::string Policy::Summary() const {
  std::string out = "version " + version_ + "\n";
  auto deny_line = [](const std::string& path, const DenyRule& r) {
    std::string s = "    " + path + ":";
    if (!r.custodians.empty()) s += " custodians " + Join(r.custodians);
    if (r.older_than_days > 0) {
      s += std::string(r.custodians.empty() ? "" : " and") + " older than " +
           Plural(r.older_than_days, "day", "days");
    }
    return s + "\n";
  };
  out += "disclosure:\n";
  for (size_t i = 0; i < deny_.size(); ++i) {
    out += deny_line("deny[" + std::to_string(i) + "]", deny_[i]);
  }
  std::vector<std::string> unruled;
  for (std::string_view p : kPurposes) {
    auto rule = std::find_if(rules_.begin(), rules_.end(),
                             [&](const PurposeRule& r) { return r.purpose == p; });
    if (rule == rules_.end()) {
      unruled.emplace_back(p);
      continue;
    }
    std::vector<std::string> parts;
    std::string who = rule->requester_roles.empty() ? "" : Join(rule->requester_roles);
    if (rule->requester_may_be_custodian) who += (who.empty() ? "" : " or ") + std::string("the custodian");
    parts.push_back("requested by " + (who.empty() ? std::string("anyone") : who));
    std::vector<std::string> needs;
    if (rule->require_open_case) needs.push_back("an open case");
    if (rule->require_hold_covering_scope) needs.push_back("holds covering the scope");
    if (rule->require_legal_reference) needs.push_back("a legal reference");
    if (!needs.empty()) parts.push_back("needs " + Join(needs));
    if (rule->max_custodians > 0) parts.push_back("at most " + Plural(rule->max_custodians, "custodian", "custodians"));
    if (rule->max_conversations > 0) {
      parts.push_back("at most " + Plural(rule->max_conversations, "conversation", "conversations"));
    }
    if (rule->max_range_days > 0) parts.push_back("at most " + Plural(rule->max_range_days, "day", "days"));
    std::vector<std::string> approvals;
    for (const ApprovalRequirement& a : rule->approvals) {
      approvals.push_back(std::to_string(a.count) + " " + a.role);
    }
    parts.push_back(approvals.empty() ? "no approval"
                                      : "approvals " + Join(approvals) + " (" + Qualifiers(*rule) + ")");
    if (rule->purpose == kHistoryRestore) parts.push_back("never decrypts");
    out += "  " + rule->purpose + ": " + Join(parts, "; ") + "\n";
    for (size_t i = 0; i < rule->deny.size(); ++i) {
      out += deny_line("deny[" + std::to_string(i) + "]", rule->deny[i]);
    }
  }
  if (!unruled.empty()) out += "  always denied (no rule): " + Join(unruled) + "\n";
  if (retention_) {
    std::vector<std::string> classes;
    for (const RetentionClass& c : retention_->classes) {
      classes.push_back(c.name + " " + Plural(c.days, "day", "days"));
    }
    out += "retention: classes " + Join(classes) + "; default " + retention_->default_class +
           "; " + Plural(static_cast<int64_t>(retention_->assign.size()), "assignment", "assignments") + "\n";
  } else {
    out += "retention: none (messages are kept)\n";
  }
  if (ingest_) {
    std::vector<std::string> parts;
    if (ingest_->max_envelope_bytes > 0) {
      parts.push_back("envelopes up to " + std::to_string(ingest_->max_envelope_bytes) + " bytes");
    }
    if (ingest_->max_recipient_devices > 0) {
      parts.push_back("up to " + Plural(ingest_->max_recipient_devices, "recipient device", "recipient devices"));
    }
    parts.push_back(ingest_->block_users.empty() ? "no blocked users"
                                                 : "blocked: " + Join(ingest_->block_users));
    out += "ingest: " + Join(parts, "; ") + "\n";
  } else {
    out += "ingest: no rules\n";
  }
  return out;
}

}  // namespace holdfast::policy
