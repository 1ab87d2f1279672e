// holdfast-admin: the operator command line. Key ceremonies, users and
// enrollment codes, officers, cases, legal holds and the disclosure
// workflow. It acts on the database and the HSM named in the same
// configuration file as the gateway.
//
// The acting officer is named with --as and must be registered with
// `officer add`. Whoever runs this tool on the host is trusted to say who
// they are; the admin REST API and console authenticate officers instead.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "holdfast/archive/compliance.h"
#include "holdfast/archive/database.h"
#include "holdfast/archive/disclosure.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "holdfast/gateway/ceremony.h"
#include "holdfast/gateway/config.h"
#include "holdfast/hsm/admin.h"
#include "holdfast/hsm/token.h"
#include "holdfast/policy/policy.h"

namespace {

using namespace holdfast;

constexpr const char* kUsage = R"(usage: holdfast-admin [--config FILE] COMMAND [ARGS]

Keys (HSM):
  hsm init-token                         initialise the token with the PINs in hsm.so_pin_file
                                         and hsm.pin_file (does nothing if it exists)
  init                                   create the org root and first epoch key if missing
  keys list                              keys in the HSM and their attributes
  epoch list                             archive epochs and their validity
  epoch rotate [--as NAME]               create and certify the next epoch key, valid from now
  epoch rotate-if-due [--as NAME]        certify the next epoch when the newest ends within
                                         keys.rotate_ahead_days (run it daily from a timer)

Users:
  user add NAME [--display TEXT]         create a user and print a one-time enrollment code
  user enroll NAME                       print a fresh enrollment code for another device

Compliance (every act is audited; --as names a registered officer):
  officer add NAME --role ROLE [--as NAME]
  case create --title TEXT --reference REF --as NAME
  hold add --case ID --custodian USER [--from DATE] [--to DATE] --as NAME
  disclosure request --case ID --custodian USER[,USER] --reference REF
                     [--purpose legal_hold_export] [--from DATE] [--to DATE] --as NAME
  disclosure approve ID --as NAME
  disclosure show ID
  disclosure export ID --as NAME [--out DIR]
  audit verify                           check the audit hash chain
  audit list                             print the audit trail

DATE is YYYY-MM-DD (UTC, start of day) or Unix milliseconds.
The configuration defaults to $HOLDFAST_CONFIG, then /etc/holdfast/holdfast.yaml.
)";

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;

  std::optional<std::string> Flag(const std::string& name) const {
    auto it = flags.find(name);
    if (it == flags.end()) return std::nullopt;
    return it->second;
  }
};

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      if (s == "--help") {
        a.flags["help"] = "";
        continue;
      }
      if (i + 1 >= argc) throw UsageError("option " + s + " needs a value");
      a.flags[s.substr(2)] = argv[++i];
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

std::string Need(const Args& a, const std::string& flag) {
  auto v = a.Flag(flag);
  if (!v || v->empty()) throw UsageError("missing --" + flag);
  return *v;
}


int64_t ParseDate(const std::string& s) {
  if (!s.empty() && s.find('-') == std::string::npos) {
    try {
      return std::stoll(s);
    } catch (const std::exception&) {
    }
  }
  std::tm tm{};
  if (strptime(s.c_str(), "%Y-%m-%d", &tm) == nullptr) throw UsageError("bad date '" + s + "'");
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

std::string FormatMs(int64_t ms) { return FormatUtc(ms, TimePrecision::kSeconds); }

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// A JSON string literal for audit details.
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// Reports a failed status and returns the exit code for it.
int Fail(const Status& s) {
  std::cerr << "holdfast-admin: " << s.ToString() << "\n";
  return s.code() == Code::kUnavailable ? 3 : 2;
}

#define CHECK_OK(expr)                 \
  do {                                 \
    ::holdfast::Status s_ = (expr);    \
    if (!s_.ok()) return Fail(s_);     \
  } while (0)

#define ASSIGN_OR_FAIL(lhs, expr)      \
  auto lhs##_r = (expr);               \
  if (!lhs##_r.ok()) return Fail(lhs##_r.status()); \
  auto& lhs = *lhs##_r

// Checks that `name` is a registered officer; returns it.
Result<archive::Officer> Actor(archive::Compliance& c, const Args& a) {
  const std::string name = Need(a, "as");
  auto o = c.GetOfficer(name);
  if (!o.ok() && o.status().code() == Code::kNotFound) {
    return Status::PermissionDenied("'" + name + "' is not a registered officer (see `officer add`)");
  }
  return o;
}

void PrintDecision(const policy::Decision& d) {
  std::cout << "decision: " << policy::VerdictName(d.verdict) << " (rule " << d.rule << ", policy " << d.policy_version << ")\n";
  for (const auto& r : d.reasons) std::cout << "  - " << r << "\n";
}

int Run(const Args& a) {
  if (a.positional.empty() || a.flags.count("help")) {
    std::cout << kUsage;
    return a.positional.empty() && !a.flags.count("help") ? 1 : 0;
  }
  std::string config_path = "/etc/holdfast/holdfast.yaml";
  if (const char* env = std::getenv("HOLDFAST_CONFIG")) config_path = env;
  if (auto c = a.Flag("config")) config_path = *c;
  ASSIGN_OR_FAIL(config, gateway::Config::Load(config_path));
  gateway::ApplyProcessEnvironment(config);

  const std::string cmd = a.positional[0];
  const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
  auto arg = [&](size_t i) -> std::string {
    if (a.positional.size() <= i) throw UsageError("missing argument for '" + cmd + " " + sub + "'");
    return a.positional[i];
  };

  if (cmd == "hsm" && sub == "init-token") {
    ASSIGN_OR_FAIL(so_pin, hsm::ReadPinFile(config.hsm.so_pin_file));
    ASSIGN_OR_FAIL(user_pin, hsm::ReadPinFile(config.hsm.pin_file));
    const Status s = hsm::InitToken(config.hsm.module, config.hsm.token_label, so_pin, user_pin);
    if (s.code() == Code::kAlreadyExists) {
      std::cout << "token " << config.hsm.token_label << " already initialised\n";
      return 0;
    }
    CHECK_OK(s);
    std::cout << "token " << config.hsm.token_label << " initialised\n";
    return 0;
  }

  ASSIGN_OR_FAIL(conn, archive::Connection::Open(config.database.conninfo));
  CHECK_OK(archive::Migrate(conn));
  archive::Store store(conn);
  archive::Compliance compliance(conn);

  if (cmd == "init") {
    ASSIGN_OR_FAIL(token, gateway::OpenToken(config));
    ASSIGN_OR_FAIL(report, gateway::InitializeKeys(*token, conn, config, a.Flag("as").value_or("operator"), NowMs()));
    std::cout << (report.created_root ? "created" : "found") << " org root key " << hsm::kOrgRootLabel
              << " " << ToHex(report.root_public) << "\n";
    std::cout << (report.created_epoch ? "created" : "current") << " archive epoch " << report.epoch.epoch_id
              << " valid " << FormatMs(report.epoch.not_before_ms) << " .. "
              << FormatMs(report.epoch.not_after_ms) << "\n";
    return 0;
  }
  if (cmd == "keys" && sub == "list") {
    ASSIGN_OR_FAIL(token, gateway::OpenToken(config));
    ASSIGN_OR_FAIL(keys, token->ListKeys());
    for (const auto& k : keys) {
      std::cout << k.label << "  sensitive=" << k.sensitive << " extractable=" << k.extractable
                << " sign=" << k.can_sign << " derive=" << k.can_derive << "  " << ToHex(k.public_key) << "\n";
    }
    return 0;
  }
  if (cmd == "epoch" && sub == "list") {
    ASSIGN_OR_FAIL(epochs, store.ListEpochs());
    for (const auto& e : epochs) {
      std::cout << "epoch " << e.epoch_id << "  " << FormatMs(e.not_before_ms) << " .. "
                << FormatMs(e.not_after_ms) << "  " << ToHex(e.public_key) << "\n";
    }
    return 0;
  }
  if (cmd == "epoch" && sub == "rotate") {
    ASSIGN_OR_FAIL(token, gateway::OpenToken(config));
    ASSIGN_OR_FAIL(epoch, gateway::CreateEpoch(*token, conn, config, a.Flag("as").value_or("operator"), NowMs()));
    std::cout << "created archive epoch " << epoch.epoch_id << " valid " << FormatMs(epoch.not_before_ms)
              << " .. " << FormatMs(epoch.not_after_ms) << "\n";
    return 0;
  }
  if (cmd == "epoch" && sub == "rotate-if-due") {
    ASSIGN_OR_FAIL(token, gateway::OpenToken(config));
    ASSIGN_OR_FAIL(epoch, gateway::RotateIfDue(*token, conn, config, a.Flag("as").value_or("operator"), NowMs()));
    if (!epoch) {
      std::cout << "no rotation due\n";
      return 0;
    }
    std::cout << "created archive epoch " << epoch->epoch_id << " valid " << FormatMs(epoch->not_before_ms)
              << " .. " << FormatMs(epoch->not_after_ms) << "\n";
    return 0;
  }
  if (cmd == "user" && (sub == "add" || sub == "enroll")) {
    const std::string name = arg(2);
    const std::string actor = a.Flag("as").value_or("operator");
    if (sub == "add") {
      CHECK_OK(store.CreateUser(name, a.Flag("display").value_or(name)));
      CHECK_OK(compliance.Audit(actor, "user.create", "{\"user\":" + JsonString(name) + "}"));
    }
    ASSIGN_OR_FAIL(code, store.IssueEnrollmentCode(name, int64_t{7} * 24 * 3600 * 1000));
    CHECK_OK(compliance.Audit(actor, "user.enrollment_code.issue", "{\"user\":" + JsonString(name) + "}"));
    std::cout << "enrollment code for " << name << ": " << code << "  (single use, valid 7 days)\n";
    return 0;
  }
  if (cmd == "officer" && sub == "add") {
    archive::Officer o{arg(2), Need(a, "role")};
    CHECK_OK(compliance.AddOfficer(o, a.Flag("as").value_or("operator")));
    std::cout << "officer " << o.name << " (" << o.role << ") added\n";
    return 0;
  }
  if (cmd == "case" && sub == "create") {
    ASSIGN_OR_FAIL(actor, Actor(compliance, a));
    ASSIGN_OR_FAIL(id, compliance.CreateCase(Need(a, "title"), Need(a, "reference"), actor.name));
    std::cout << "case " << id << " opened\n";
    return 0;
  }
  if (cmd == "hold" && sub == "add") {
    ASSIGN_OR_FAIL(actor, Actor(compliance, a));
    const int64_t from = a.Flag("from") ? ParseDate(*a.Flag("from")) : 0;
    const int64_t to = a.Flag("to") ? ParseDate(*a.Flag("to")) : int64_t{253402300799000};  // 9999-12-31
    ASSIGN_OR_FAIL(id, compliance.AddHold(std::stoll(Need(a, "case")), Need(a, "custodian"), from, to, actor.name));
    std::cout << "hold " << id << " placed on " << Need(a, "custodian") << "\n";
    return 0;
  }
  if (cmd == "disclosure") {
    ASSIGN_OR_FAIL(pol, policy::Policy::Load(config.policy_file));
    if (sub == "request") {
      ASSIGN_OR_FAIL(actor, Actor(compliance, a));
      archive::DisclosureRecord r;
      r.case_id = std::stoll(Need(a, "case"));
      r.purpose = a.Flag("purpose").value_or("legal_hold_export");
      r.custodians = SplitList(Need(a, "custodian"));
      r.from_ms = a.Flag("from") ? ParseDate(*a.Flag("from")) : 0;
      r.to_ms = a.Flag("to") ? ParseDate(*a.Flag("to")) : int64_t{253402300799000};
      r.legal_reference = Need(a, "reference");
      r.requester = actor.name;
      r.state = "pending";
      ASSIGN_OR_FAIL(id, compliance.FileDisclosure(r));
      std::cout << "disclosure request " << id << " filed\n";
      ASSIGN_OR_FAIL(decision, archive::Decide(conn, pol, id));
      PrintDecision(decision);
      return 0;
    }
    const int64_t id = std::stoll(arg(2));
    if (sub == "approve") {
      ASSIGN_OR_FAIL(actor, Actor(compliance, a));
      CHECK_OK(compliance.RecordApproval(id, {actor.name, actor.role, NowMs()}));
      std::cout << "approval by " << actor.name << " (" << actor.role << ") recorded\n";
      ASSIGN_OR_FAIL(decision, archive::Decide(conn, pol, id));
      PrintDecision(decision);
      return 0;
    }
    if (sub == "show") {
      ASSIGN_OR_FAIL(r, compliance.GetDisclosure(id));
      std::cout << "request " << r.request_id << " case " << r.case_id << " purpose " << r.purpose
                << " state " << r.state << " requested by " << r.requester << "\n";
      ASSIGN_OR_FAIL(approvals, compliance.ApprovalsOf(id));
      for (const auto& ap : approvals) {
        std::cout << "  approved by " << ap.officer << " (" << ap.role << ") at " << FormatMs(ap.at_ms) << "\n";
      }
      ASSIGN_OR_FAIL(decision, archive::Decide(conn, pol, id));
      PrintDecision(decision);
      return 0;
    }
    if (sub == "export") {
      ASSIGN_OR_FAIL(actor, Actor(compliance, a));
      std::string out;
      if (auto o = a.Flag("out")) {
        out = *o;
      } else {
        std::error_code ec;
        std::filesystem::create_directories(config.export_dir, ec);
        if (ec) return Fail(Status::Unavailable("cannot create " + config.export_dir + ": " + ec.message()));
        std::filesystem::permissions(config.export_dir, std::filesystem::perms::owner_all, ec);
        out = config.export_dir + "/request-" + std::to_string(id);
      }
      ASSIGN_OR_FAIL(token, gateway::OpenToken(config));
      ASSIGN_OR_FAIL(summary, archive::RunExport(conn, *token, pol, id, out, actor.name));
      std::cout << "exported " << summary.message_count << " message(s) to " << summary.out_dir << "\n"
                << "manifest sha256 " << summary.manifest_sha256 << ", signed by the org root\n";
      if (summary.signature_failures || summary.open_failures) {
        std::cout << "warning: " << summary.signature_failures << " message(s) failed signature checks, "
                  << summary.open_failures << " could not be opened; see messages.jsonl\n";
      }
      return 0;
    }
  }
  if (cmd == "audit" && sub == "verify") {
    CHECK_OK(compliance.VerifyAuditChain());
    ASSIGN_OR_FAIL(events, compliance.AuditTrail());
    std::cout << "audit trail intact: " << events.size() << " event(s)";
    if (!events.empty()) std::cout << ", head " << ToHex(events.back().hash);
    std::cout << "\n";
    return 0;
  }
  if (cmd == "audit" && sub == "list") {
    ASSIGN_OR_FAIL(events, compliance.AuditTrail());
    for (const auto& e : events) {
      std::cout << e.seq << "  " << FormatMs(e.at_ms) << "  " << e.actor << "  " << e.action << "  "
                << e.detail << "\n";
    }
    return 0;
  }
  throw UsageError("unknown command '" + cmd + (sub.empty() ? "" : " " + sub) + "'");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "holdfast-admin: " << e.what() << "\n\n" << kUsage;
    return 1;
  } catch (const std::invalid_argument&) {
    std::cerr << "holdfast-admin: expected a number\n";
    return 1;
  } catch (const std::out_of_range&) {
    std::cerr << "holdfast-admin: number out of range\n";
    return 1;
  }
}
