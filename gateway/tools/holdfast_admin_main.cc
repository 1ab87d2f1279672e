// holdfast-admin: the operator command line. Key ceremonies, users and
// enrollment codes, officers, cases, legal holds and the disclosure
// workflow. It acts on the database and the HSM named in the same
// configuration file as the gateway; the policy commands read only policy
// and test files.
//
// The acting officer is named with --as and must be registered with
// `officer add`. Whoever runs this tool on the host is trusted to say who
// they are; the admin REST API and console authenticate officers instead.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "holdfast/archive/audit_log.h"
#include "holdfast/archive/audit_tree.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/database.h"
#include "holdfast/archive/disclosure.h"
#include "holdfast/archive/export_package.h"
#include "holdfast/archive/history_restore.h"
#include "holdfast/archive/officer_accounts.h"
#include "holdfast/archive/retention.h"
#include "holdfast/archive/shredding.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "holdfast/gateway/ceremony.h"
#include "holdfast/gateway/config.h"
#include "holdfast/gateway/key_export.h"
#include "holdfast/gateway/json_quote.h"
#include "holdfast/gateway/key_report.h"
#include "holdfast/gateway/officer_auth.h"
#include "holdfast/hsm/admin.h"
#include "holdfast/hsm/token.h"
#include "holdfast/policy/policy.h"
#include "holdfast/policy/suite.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/primitives.h"

namespace {

using namespace holdfast;
using gateway::JsonQuote;

constexpr const char* kUsage = R"(usage: holdfast-admin [--config FILE] COMMAND [ARGS]

Keys (HSM):
  hsm init-token                         initialise the archive token (hsm.token_label, user PIN
                                         in hsm.pin_file) and the enrollment token
                                         (hsm.enrollment_token_label, hsm.enrollment_pin_file),
                                         both with the SO PIN in hsm.so_pin_file; a token that
                                         exists is left alone
  init --as NAME                         create the org root, first epoch key and enrollment key
                                         if missing, and certify the enrollment key
  keys list [--json]                     every key: state, validity, token attributes; and the
                                         next scheduled epoch rotation
  keys export DIR --as NAME              write the org root public key (PEM, hex), the enrollment
                                         key and epoch certificates, README.txt and SHA256SUMS
  epoch list [--json]                    archive epochs, their state and validity
  epoch rotate --as NAME                 create and certify the next epoch key, valid from now
  epoch rotate-if-due [--as NAME]        certify the next epoch when the newest ends within
                                         keys.rotate_ahead_days (run it daily from a timer;
                                         without --as it is audited as system:epoch-rotate)
  epoch shred-request EPOCH --as NAME    a key custodian asks to crypto-shred an epoch past its
                                         retention period
  epoch shred-approve EPOCH --as NAME    a second, distinct key custodian approves
  epoch shred EPOCH --as NAME            either of the two runs (or resumes) it: re-wrap held
                                         envelopes to the hold key, destroy the epoch key,
                                         delete the rest, write a signed deletion certificate
                                         to export_dir
  epoch shred-verify FILE --org-root HEX check a deletion certificate offline
  verify-cert FILE --org-root KEYFILE [--signature SIGFILE]
                                         check offline (no configuration, database or HSM) an
                                         epoch, enrollment key or device certificate, or an
                                         export manifest.json (with manifest.sig), under the org
                                         root key in KEYFILE (PEM or hex)
  The ceremonies (init, epoch rotate, keys export) need --as naming an officer with the role
  key_custodian; a refusal is audited as key.ceremony.denied.

Users:
  user add NAME [--display TEXT]         create a user and print a one-time enrollment code
  user enroll NAME                       print a fresh enrollment code for another device

Compliance (every act is audited; --as names a registered officer):
  officer add NAME --role ROLE [--as NAME]
  officer set-password NAME [--as NAME]  read the officer's admin API password from standard
                                         input (at least 12 characters; stored as Argon2id)
  officer totp NAME [--as NAME]          enroll a new TOTP second factor: prints the secret
                                         (base32) and an otpauth:// URI for an authenticator app
  officer disable NAME [--as NAME]       the officer can no longer sign in; sessions end
  case create --title TEXT --reference REF --as NAME
  hold add --case ID --custodian USER [--from DATE] [--to DATE] --as NAME
  disclosure request --case ID --custodian USER[,USER] --reference REF
                     [--purpose legal_hold_export] [--from DATE] [--to DATE] --as NAME
  disclosure request --purpose history_restore --custodian USER --target-device HEX
                     [--from DATE] [--to DATE] --as NAME
  disclosure approve ID --as NAME
  disclosure show ID
  disclosure export ID --as NAME [--out DIR]
  disclosure restore ID --as NAME        history_restore: re-seal the custodian's message
                                         keys to the target device; decrypts no body
  export verify DIR [--org-root HEX|KEYFILE]
                                         check an export package offline (no configuration,
                                         database or HSM): its signature, every file it lists,
                                         and that it holds nothing else; exit status 1 if not
                                         intact
  reports list [--since DATE]            delivery reports: messages a device received and
                                         rejected (bad signature, archive capsule mismatch, ...)

Worker (holds the archive token; run one or more beside the gateway):
  worker [--once] [--sign-every MINUTES] run the export jobs officers queue through the admin
                                         API, resuming any whose worker stopped, and sign the
                                         audit tree head every MINUTES (60) and when asked;
                                         --once: do what is waiting, then exit

Retention (per-class deletion; legal holds win):
  retention sweep [--dry-run] [--as NAME]
                                         delete every envelope whose retention class has run
                                         out and that no active hold covers; a table per class
                                         (daily from a timer, audited as system:retention
                                         unless --as names an officer)
  retention report                       what a sweep would delete now, per class, and what
                                         holds keep (the same as sweep --dry-run)

Audit log (an RFC 6962 Merkle tree; tree heads signed by the org root in the HSM):
  audit list                             print every entry
  audit heads                            print the signed tree heads
  audit sign-head                        sign the current tree head (hourly from a timer)
  audit verify [--org-root HEX]          recompute every entry and root, check each signed
                                         head and the consistency between successive heads
  audit proof --index N [--head SIZE]    print an inclusion proof bundle (JSON) for entry N in
                                         the newest signed head (or the one of SIZE entries)
  audit consistency --from A --to B      print a consistency proof bundle between the signed
                                         heads of A and B entries
  audit verify-proof FILE [--org-root HEX]
                                         check a proof bundle offline: no configuration,
                                         database or HSM needed

Policy (no database or HSM needed):
  policy show                            the configured policy's version and a summary
  policy check [FILE]                    load FILE (default: the configured policy_file); an
                                         invalid one is reported as file:line:column
  policy test [--policy FILE] TESTS...   run the cases of each TESTS file against the policy it
                                         names (or FILE): PASS/FAIL per case, exit status 1 if
                                         any case fails

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
      if (s == "--help" || s == "--json" || s == "--once" || s == "--dry-run") {
        a.flags[s.substr(2)] = "";
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

// Reports a failed status and returns the exit code for it.
int Fail(const Status& s) {
  std::cerr << "holdfast-admin: " << s.ToString() << "\n";
  return s.code() == Code::kUnavailable ? 3 : 2;
}

// A failed HSM step (token open, attribute policy, key use), written to the
// audit trail as hsm.failure so that it is visible where ceremonies and
// disclosures are, and passed on. Best effort: the database may be what is
// down. With only_unavailable, only a kUnavailable failure counts (the
// step also fails for reasons that are not the HSM's).
template <typename T>
Result<T> AuditHsm(archive::Compliance& compliance, const std::string& operation, Result<T> result,
                   bool only_unavailable = false) {
  if (!result.ok() && (!only_unavailable || result.status().code() == Code::kUnavailable)) {
    (void)compliance.Audit("holdfast-admin", "hsm.failure",
                           "{\"operation\":" + JsonQuote(operation) +
                               ",\"error\":" + JsonQuote(result.status().ToString()) + "}");
  }
  return result;
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

// A non-negative decimal count (an index or a tree size).
uint64_t ParseCount(const std::string& s, const std::string& what) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) {
    throw UsageError(what + " must be a non-negative number, not '" + s + "'");
  }
  return std::stoull(s);
}

// The key given with --org-root, or none.
std::optional<Bytes> OrgRootFlag(const Args& a) {
  auto hex = a.Flag("org-root");
  if (!hex) return std::nullopt;
  auto key = FromHex(*hex);
  if (!key || key->size() != 65) throw UsageError("--org-root must be 65 bytes in hex (04...)");
  return key;
}

std::string HeadLine(const archive::TreeHead& h) {
  return "size " + std::to_string(h.tree_size) + ", root " + ToHex(h.root_hash) + ", signed " +
         FormatUtc(h.signed_at_ms, TimePrecision::kMillis);
}

// `audit verify-proof`: reads only the file.
int VerifyProofFile(const Args& a) {
  if (a.positional.size() < 3) throw UsageError("missing FILE for 'audit verify-proof'");
  const std::string path = a.positional[2];
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(Status::NotFound("cannot read " + path));
  std::ostringstream text;
  text << in.rdbuf();
  ASSIGN_OR_FAIL(bundle, archive::ParseProofBundle(text.str()));
  CHECK_OK(std::visit([](const auto& b) { return archive::VerifyBundle(b); }, bundle));
  const Bytes& key = std::visit([](const auto& b) -> const Bytes& { return b.org_root_public; }, bundle);
  const std::optional<Bytes> pinned = OrgRootFlag(a);
  if (pinned && *pinned != key) {
    return Fail(Status::CryptoFailure("the bundle is signed by org root key " + protocol::Fingerprint(key) +
                                      ", not by the key given with --org-root (" +
                                      protocol::Fingerprint(*pinned) + ")"));
  }
  if (const auto* inclusion = std::get_if<archive::InclusionBundle>(&bundle)) {
    const archive::AuditEvent& e = inclusion->entry;
    std::cout << "inclusion proof verified: entry " << e.index << " (" << FormatMs(e.at_ms) << ", " << e.actor
              << ", " << e.action << ") is in the audit log of " << inclusion->head.tree_size << " entries\n"
              << "  detail: " << e.detail << "\n"
              << "  tree head: " << HeadLine(inclusion->head) << "\n";
  } else {
    const auto& consistency = std::get<archive::ConsistencyBundle>(bundle);
    std::cout << "consistency proof verified: the audit log of " << consistency.new_head.tree_size
              << " entries extends the log of " << consistency.old_head.tree_size << " entries\n"
              << "  old tree head: " << HeadLine(consistency.old_head) << "\n"
              << "  new tree head: " << HeadLine(consistency.new_head) << "\n";
  }
  std::cout << "  signed by org root key " << protocol::Fingerprint(key) << ": " << ToHex(key) << "\n";
  if (!pinned) std::cout << "compare that key with the org root public key you recorded, or pass --org-root\n";
  return 0;
}

// `verify-cert`: reads only the files.
// `epoch shred-verify`: reads only the file.
int VerifyDeletionCertificateFile(const Args& a) {
  if (a.positional.size() < 3) throw UsageError("missing FILE for 'epoch shred-verify'");
  const std::optional<Bytes> org_root = OrgRootFlag(a);
  if (!org_root) throw UsageError("missing --org-root");
  std::ifstream in(a.positional[2], std::ios::binary);
  if (!in) return Fail(Status::NotFound("cannot read " + a.positional[2]));
  std::ostringstream text;
  text << in.rdbuf();
  ASSIGN_OR_FAIL(cert, archive::VerifyDeletionCertificate(text.str(), *org_root));
  std::cout << "deletion certificate verified: epoch " << cert.epoch_id << " (" << FormatMs(cert.not_before_ms)
            << " .. " << FormatMs(cert.not_after_ms) << ") shredded, key destroyed "
            << FormatMs(cert.destroyed_at_ms) << "\n"
            << "  envelopes deleted " << cert.envelopes_deleted << ", re-wrapped for legal hold "
            << cert.envelopes_rewrapped << ", retained unreadable " << cert.envelopes_retained_unwrapped << "\n"
            << "  approvers:";
  for (const auto& name : cert.approvers) std::cout << " " << name;
  std::cout << "\n  holds:";
  for (int64_t id : cert.hold_ids) std::cout << " " << id;
  std::cout << "\n  policy " << cert.policy_version << ", retention class " << cert.retention_class << " ("
            << cert.retention_days << " days)\n"
            << "  signed by org root key " << protocol::Fingerprint(*org_root) << "\n";
  return 0;
}

int VerifyCertFile(const Args& a) {
  if (a.positional.size() < 2) throw UsageError("missing FILE for 'verify-cert'");
  const std::string key_path = Need(a, "org-root");
  std::ifstream in(key_path, std::ios::binary);
  if (!in) return Fail(Status::NotFound("cannot read " + key_path));
  std::ostringstream text;
  text << in.rdbuf();
  ASSIGN_OR_FAIL(org_root, gateway::ParseOrgRootKey(text.str()));
  ASSIGN_OR_FAIL(verified, gateway::VerifySignedFile(a.positional[1], org_root, a.Flag("signature"), NowMs()));
  for (const auto& line : verified.facts) std::cout << line << "\n";
  std::cout << "org root key " << protocol::Fingerprint(org_root) << " (from " << key_path
            << "): compare it with the key recorded at the key ceremony\n";
  return 0;
}

// `export verify`: reads only the package and the key file, if any.
int VerifyExportPackage(const Args& a) {
  if (a.positional.size() < 3) throw UsageError("missing DIR for 'export verify'");
  Bytes pinned;
  if (auto flag = a.Flag("org-root")) {
    std::string text = *flag;  // hex, or a file holding PEM or hex
    std::error_code ec;
    if (std::filesystem::is_regular_file(*flag, ec)) {
      std::ifstream in(*flag, std::ios::binary);
      std::ostringstream content;
      content << in.rdbuf();
      if (!in) return Fail(Status::NotFound("cannot read " + *flag));
      text = content.str();
    }
    ASSIGN_OR_FAIL(key, gateway::ParseOrgRootKey(text));
    pinned = key;
  }
  ASSIGN_OR_FAIL(report, archive::VerifyPackage(a.positional[2], pinned));
  for (const auto& line : report.checked) std::cout << "ok       " << line << "\n";
  for (const auto& line : report.problems) std::cout << "PROBLEM  " << line << "\n";
  if (!report.intact()) {
    std::cout << "export package NOT intact: " << report.problems.size() << " problem(s)\n";
    return 1;
  }
  std::cout << "export package intact: request " << report.request_id << ", " << report.message_count
            << " message(s), signed by org root key " << report.org_root_public_key
            << (pinned.empty() ? " (named by the package itself: compare it with your copy, or pass --org-root)"
                               : " (given with --org-root)")
            << "\n";
  return 0;
}

// Prints a bundle once it has verified as the JSON an auditor will read.
int PrintBundle(const std::string& json) {
  auto parsed = archive::ParseProofBundle(json);
  Status s = parsed.ok() ? std::visit([](const auto& b) { return archive::VerifyBundle(b); }, *parsed)
                         : parsed.status();
  if (!s.ok()) return Fail(s.WithContext("the encoded bundle does not verify"));
  std::cout << json;
  return 0;
}

void PrintDecision(const policy::Decision& d) {
  std::cout << "decision: " << policy::VerdictName(d.verdict) << " (rule " << d.rule << ", policy " << d.policy_version << ")\n";
  for (const auto& r : d.reasons) std::cout << "  - " << r << "\n";
  for (const auto& m : d.missing) std::cout << "  missing: " << m << "\n";
}

int PolicyCheck(const std::string& path) {
  ASSIGN_OR_FAIL(pol, policy::Policy::Load(path));
  std::cout << path << ": valid policy, version " << pol.version() << "\n";
  return 0;
}

// `policy test`: reads only the test files and the policies they name.
int PolicyTest(const Args& a) {
  if (a.positional.size() < 3) throw UsageError("missing TESTS file for 'policy test'");
  int passed = 0, failed = 0;
  for (size_t i = 2; i < a.positional.size(); ++i) {
    ASSIGN_OR_FAIL(suite, policy::LoadTestSuite(a.positional[i]));
    const std::string policy_path = a.Flag("policy").value_or(suite.policy_path);
    if (policy_path.empty()) {
      return Fail(Status::InvalidArgument(suite.source + " names no policy: add `policy: FILE` or pass --policy"));
    }
    ASSIGN_OR_FAIL(pol, policy::Policy::Load(policy_path));
    std::cout << suite.source << ": " << suite.cases.size() << " case(s) against " << policy_path << " ("
              << pol.version() << ")\n";
    for (const policy::TestCase& c : suite.cases) {
      const policy::CaseResult r = policy::RunCase(pol, c);
      if (r.passed) {
        ++passed;
        std::cout << "PASS  " << c.name << "\n";
        continue;
      }
      ++failed;
      std::cout << "FAIL  " << c.name << " (" << suite.source << ":" << c.line << ")\n";
      for (const auto& f : r.failures) std::cout << "      " << f << "\n";
      for (const auto& g : r.got) std::cout << "      " << g << "\n";
    }
  }
  std::cout << std::string(80, '-') << "\n" << "PASS: " << passed << "/" << passed + failed << "\n";
  if (failed > 0) std::cout << "FAIL: " << failed << "/" << passed + failed << "\n";
  return failed > 0 ? 1 : 0;
}


std::atomic<bool> g_stop{false};

// `worker`: export jobs and tree head signing, the two things that need the
// archive token and that the gateway, which never logs in to it, asks for.
int RunWorker(const Args& a, const gateway::Config& config, archive::Connection& conn,
              archive::Compliance& compliance) {
  const bool once = a.flags.count("once") > 0;
  const int64_t sign_every_ms =
      int64_t{60} * 1000 * (a.Flag("sign-every") ? ParseCount(*a.Flag("sign-every"), "--sign-every") : 60);
  std::signal(SIGTERM, [](int) { g_stop = true; });
  std::signal(SIGINT, [](int) { g_stop = true; });
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string worker = std::string(host) + ":" + std::to_string(::getpid());
  ASSIGN_OR_FAIL(token, AuditHsm(compliance, "worker", gateway::OpenToken(config)));
  ASSIGN_OR_FAIL(listener, archive::Connection::Open(config.database.conninfo));
  CHECK_OK(listener.Listen("holdfast_jobs"));
  std::error_code ec;
  std::filesystem::create_directories(config.export_dir, ec);
  std::cout << "worker " << worker << " ready" << std::endl;
  int64_t next_sign_ms = 0;
  bool sign_asked = false;
  while (!g_stop) {
    for (;;) {
      ASSIGN_OR_FAIL(job, archive::ClaimJob(conn, worker, 60'000));
      if (!job) break;
      ASSIGN_OR_FAIL(pol, policy::Policy::Load(config.policy_file));
      auto summary = AuditHsm(compliance, "disclosure export",
                              archive::RunJob(conn, *token, pol, *job, worker,
                                              static_cast<size_t>(config.hsm.sessions), config.org),
                              /*only_unavailable=*/true);
      if (summary.ok() && summary->out_dir.empty()) {
        std::cout << "job " << *job << ": restored " << summary->message_count << " message key(s)"
                  << std::endl;
      } else if (summary.ok()) {
        std::cout << "job " << *job << ": exported " << summary->message_count << " message(s) to "
                  << summary->out_dir << std::endl;
      } else {
        std::cout << "job " << *job << ": " << summary.status().ToString() << std::endl;
      }
    }
    if (sign_asked || NowMs() >= next_sign_ms) {
      archive::AuditLog log(conn);
      ASSIGN_OR_FAIL(size, log.Size());
      ASSIGN_OR_FAIL(heads, log.Heads());
      if (size > 0 && (heads.empty() || heads.back().head.tree_size < size)) {
        auto head = log.SignTreeHead(*token, NowMs());
        if (head.ok()) {
          std::cout << "signed tree head: " << HeadLine(*head) << std::endl;
        } else {
          std::cout << "signing the tree head: " << head.status().ToString() << std::endl;
        }
      }
      next_sign_ms = NowMs() + sign_every_ms;
      sign_asked = false;
    }
    if (once) break;
    auto notes = listener.AwaitNotifications(std::chrono::seconds(2));
    if (!notes.ok()) return Fail(notes.status().WithContext("listening for jobs"));
    for (const std::string& payload : *notes) sign_asked |= payload == "sign_head";
  }
  return 0;
}

// `retention sweep` and `retention report`: one line per class.
std::string RenderRetention(const archive::RetentionSweepReport& r) {
  std::ostringstream out;
  out << (r.dry_run ? "retention report (dry run, nothing deleted)" : "retention sweep") << " under policy "
      << r.policy_version << "\n";
  if (r.classes.empty()) {
    out << "the policy has no retention section: every message is kept\n";
    return out.str();
  }
  out << "examined " << r.examined << " envelope(s) sent before " << FormatMs(r.examined_before_ms)
      << (r.resumed ? " (continuing an interrupted sweep)" : "") << "\n";
  char line[160];
  std::snprintf(line, sizeof line, "%-24s %6s %14s %13s\n", "class", "days",
                r.dry_run ? "would delete" : "deleted", "kept by hold");
  out << line;
  for (const auto& c : r.classes) {
    std::snprintf(line, sizeof line, "%-24s %6d %14llu %13llu\n", c.retention_class.c_str(), c.days,
                  static_cast<unsigned long long>(c.deleted), static_cast<unsigned long long>(c.kept_by_hold));
    out << line;
  }
  std::snprintf(line, sizeof line, "%-24s %6s %14llu %13llu\n", "total", "", static_cast<unsigned long long>(r.deleted),
                static_cast<unsigned long long>(r.kept_by_hold));
  out << line;
  if (!r.hold_ids.empty()) {
    out << "kept by hold(s):";
    for (int64_t id : r.hold_ids) out << " " << id;
    out << "\n";
  }
  if (r.unclassified > 0) out << r.unclassified << " envelope(s) of unknown conversations kept\n";
  if (!r.dry_run) {
    out << r.deliveries_deleted << " deliveries deleted\n";
    if (r.sweep_id != 0) out << "recorded as sweep " << r.sweep_id << " (audit: retention.sweep)\n";
  }
  return out.str();
}

int Run(const Args& a) {
  if (a.positional.empty() || a.flags.count("help")) {
    std::cout << kUsage;
    return a.positional.empty() && !a.flags.count("help") ? 1 : 0;
  }
  if (a.positional[0] == "audit" && a.positional.size() > 1 && a.positional[1] == "verify-proof") {
    return VerifyProofFile(a);
  }
  if (a.positional[0] == "verify-cert") return VerifyCertFile(a);
  if (a.positional[0] == "export" && a.positional.size() > 1 && a.positional[1] == "verify") {
    return VerifyExportPackage(a);
  }
  if (a.positional[0] == "epoch" && a.positional.size() > 1 && a.positional[1] == "shred-verify") {
    return VerifyDeletionCertificateFile(a);
  }
  if (a.positional[0] == "policy") {
    const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
    if (sub == "test") return PolicyTest(a);
    if (sub == "check" && a.positional.size() > 2) return PolicyCheck(a.positional[2]);
    if (sub != "check" && sub != "show") throw UsageError("unknown command 'policy " + sub + "'");
  }
  std::string config_path = "/etc/holdfast/holdfast.yaml";
  if (const char* env = std::getenv("HOLDFAST_CONFIG")) config_path = env;
  if (auto c = a.Flag("config")) config_path = *c;
  ASSIGN_OR_FAIL(config, gateway::Config::Load(config_path));
  gateway::ApplyProcessEnvironment(config);
  if (a.positional[0] == "policy" && a.positional.size() > 1 && a.positional[1] == "check") {
    return PolicyCheck(config.policy_file);
  }
  if (a.positional[0] == "policy" && a.positional.size() > 1 && a.positional[1] == "show") {
    ASSIGN_OR_FAIL(pol, policy::Policy::Load(config.policy_file));
    std::cout << "policy " << config.policy_file << "\n" << pol.Summary();
    return 0;
  }

  const std::string cmd = a.positional[0];
  const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
  auto arg = [&](size_t i) -> std::string {
    if (a.positional.size() <= i) throw UsageError("missing argument for '" + cmd + " " + sub + "'");
    return a.positional[i];
  };

  if (cmd == "hsm" && sub == "init-token") {
    ASSIGN_OR_FAIL(so_pin, hsm::ReadPinFile(config.hsm.so_pin_file));
    ASSIGN_OR_FAIL(user_pin, hsm::ReadPinFile(config.hsm.pin_file));
    ASSIGN_OR_FAIL(enrollment_pin, hsm::ReadPinFile(config.hsm.enrollment_pin_file));
    const std::pair<const std::string&, const SecretBytes&> tokens[] = {
        {config.hsm.token_label, user_pin}, {config.hsm.enrollment_token_label, enrollment_pin}};
    for (const auto& [label, pin] : tokens) {
      const Status s = hsm::InitToken(config.hsm.module, label, so_pin, pin);
      if (s.code() == Code::kAlreadyExists) {
        std::cout << "token " << label << " already initialised\n";
        continue;
      }
      CHECK_OK(s);
      std::cout << "token " << label << " initialised\n";
    }
    return 0;
  }

  ASSIGN_OR_FAIL(conn, archive::Connection::Open(config.database.conninfo));
  CHECK_OK(archive::Migrate(conn));
  archive::Store store(conn);
  archive::Compliance compliance(conn);

  if (cmd == "init") {
    ASSIGN_OR_FAIL(custodian, gateway::AuthorizeCeremony(compliance, Need(a, "as"), "init"));
    ASSIGN_OR_FAIL(token, AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config)));
    ASSIGN_OR_FAIL(enrollment, AuditHsm(compliance, cmd + " " + sub, gateway::OpenEnrollmentToken(config)));
    ASSIGN_OR_FAIL(report, gateway::InitializeKeys(*token, *enrollment, conn, config, custodian.name, NowMs()));
    std::cout << (report.created_root ? "created" : "found") << " org root key " << hsm::kOrgRootLabel
              << " " << ToHex(report.root_public) << "\n";
    std::cout << (report.created_epoch ? "created" : "current") << " archive epoch " << report.epoch.epoch_id
              << " valid " << FormatMs(report.epoch.not_before_ms) << " .. "
              << FormatMs(report.epoch.not_after_ms) << "\n";
    std::cout << (report.created_enrollment_key ? "created" : "found") << " enrollment key "
              << hsm::kEnrollmentKeyLabel << " in token " << config.hsm.enrollment_token_label << " "
              << ToHex(report.enrollment_public) << "\n";
    std::cout << (report.certified_enrollment_key ? "certified" : "certificate current") << " until "
              << FormatMs(report.enrollment_not_after_ms) << "\n";
    return 0;
  }
  if ((cmd == "keys" && sub == "list") || (cmd == "epoch" && sub == "list")) {
    // Key presence needs both tokens; `epoch list` does without them.
    auto token = AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config));
    Result<std::unique_ptr<hsm::Token>> enrollment =
        token.ok() ? AuditHsm(compliance, cmd + " " + sub, gateway::OpenEnrollmentToken(config)) : Result<std::unique_ptr<hsm::Token>>(token.status());
    if (!enrollment.ok()) {
      if (cmd == "keys") return Fail(enrollment.status());
      std::cerr << "holdfast-admin: " << enrollment.status().ToString() << "\n";
    }
    ASSIGN_OR_FAIL(report, gateway::BuildKeyReport(conn, enrollment.ok() ? token->get() : nullptr,
                                                   enrollment.ok() ? enrollment->get() : nullptr, config,
                                                   NowMs()));
    const bool epochs_only = cmd == "epoch";
    std::cout << (a.flags.count("json") ? gateway::KeyReportJson(report, epochs_only)
                                        : gateway::RenderKeyReport(report, epochs_only));
    return 0;
  }
  if (cmd == "keys" && sub == "export") {
    const std::string dir = arg(2);
    ASSIGN_OR_FAIL(custodian, gateway::AuthorizeCeremony(compliance, Need(a, "as"), "keys export"));
    ASSIGN_OR_FAIL(token, AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config)));
    ASSIGN_OR_FAIL(summary, gateway::ExportPublicKeys(conn, *token, config, dir, custodian.name));
    for (const auto& f : summary.files) std::cout << f.sha256 << "  " << f.name << "\n";
    std::cout << "exported " << summary.files.size() << " file(s) to " << summary.out_dir
              << "; org root key " << protocol::Fingerprint(summary.org_root) << "\n";
    return 0;
  }
  if (cmd == "epoch" && sub == "rotate") {
    ASSIGN_OR_FAIL(custodian, gateway::AuthorizeCeremony(compliance, Need(a, "as"), "epoch rotate"));
    ASSIGN_OR_FAIL(token, AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config)));
    ASSIGN_OR_FAIL(epoch, gateway::CreateEpoch(*token, conn, config, custodian.name, NowMs()));
    std::cout << "created archive epoch " << epoch.epoch_id << " valid " << FormatMs(epoch.not_before_ms)
              << " .. " << FormatMs(epoch.not_after_ms) << "\n";
    return 0;
  }
  if (cmd == "epoch" && sub == "rotate-if-due") {
    std::string actor(gateway::kRotationTimerActor);
    if (a.Flag("as")) {
      ASSIGN_OR_FAIL(custodian, gateway::AuthorizeCeremony(compliance, Need(a, "as"), "epoch rotate-if-due"));
      actor = custodian.name;
    }
    ASSIGN_OR_FAIL(token, AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config)));
    ASSIGN_OR_FAIL(epoch, gateway::RotateIfDue(*token, conn, config, actor, NowMs()));
    if (!epoch) {
      std::cout << "no rotation due\n";
      return 0;
    }
    std::cout << "created archive epoch " << epoch->epoch_id << " valid " << FormatMs(epoch->not_before_ms)
              << " .. " << FormatMs(epoch->not_after_ms) << "\n";
    return 0;
  }
  if (cmd == "epoch" && (sub == "shred-request" || sub == "shred-approve" || sub == "shred")) {
    const uint32_t epoch_id = static_cast<uint32_t>(ParseCount(arg(2), "EPOCH"));
    const std::string custodian = Need(a, "as");
    if (sub == "shred-request") {
      CHECK_OK(archive::RequestShred(conn, epoch_id, custodian));
      std::cout << "shredding of epoch " << epoch_id << " requested by " << custodian
                << "; a second key custodian must run `epoch shred-approve " << epoch_id << "`\n";
      return 0;
    }
    if (sub == "shred-approve") {
      CHECK_OK(archive::ApproveShred(conn, epoch_id, custodian));
      std::cout << "shredding of epoch " << epoch_id << " approved by " << custodian << "\n";
      return 0;
    }
    ASSIGN_OR_FAIL(pol, policy::Policy::Load(config.policy_file));
    std::error_code ec;
    std::filesystem::create_directories(config.export_dir, ec);
    if (ec) return Fail(Status::Unavailable("cannot create " + config.export_dir + ": " + ec.message()));
    ASSIGN_OR_FAIL(token, AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config)));
    ASSIGN_OR_FAIL(cert, archive::ShredEpoch(conn, *token, pol, epoch_id, custodian, NowMs(), config.export_dir));
    std::cout << "epoch " << epoch_id << " shredded: key " << hsm::EpochKeyLabel(epoch_id) << " destroyed "
              << FormatMs(cert.destroyed_at_ms) << ", " << cert.envelopes_deleted << " envelope(s) deleted, "
              << cert.envelopes_rewrapped << " re-wrapped for legal hold\n"
              << "deletion certificate: " << config.export_dir << "/"
              << archive::DeletionCertificateFileName(epoch_id) << "\n";
    return 0;
  }
  if (cmd == "retention" && (sub == "sweep" || sub == "report")) {
    ASSIGN_OR_FAIL(pol, policy::Policy::Load(config.policy_file));
    archive::RetentionSweepOptions options;
    options.dry_run = sub == "report" || a.flags.count("dry-run") > 0;
    if (a.Flag("as")) {
      ASSIGN_OR_FAIL(officer, Actor(compliance, a));
      options.actor = officer.name;
    }
    ASSIGN_OR_FAIL(report, archive::SweepRetention(conn, pol, NowMs(), options));
    std::cout << RenderRetention(report);
    return 0;
  }
  if (cmd == "user" && (sub == "add" || sub == "enroll")) {
    const std::string name = arg(2);
    const std::string actor = a.Flag("as").value_or("operator");
    if (sub == "add") {
      CHECK_OK(store.CreateUser(name, a.Flag("display").value_or(name)));
      CHECK_OK(compliance.Audit(actor, "user.create", "{\"user\":" + JsonQuote(name) + "}"));
    }
    ASSIGN_OR_FAIL(code, store.IssueEnrollmentCode(name, int64_t{7} * 24 * 3600 * 1000));
    CHECK_OK(compliance.Audit(actor, "user.enrollment_code.issue", "{\"user\":" + JsonQuote(name) + "}"));
    std::cout << "enrollment code for " << name << ": " << code << "  (single use, valid 7 days)\n";
    return 0;
  }
  if (cmd == "officer" && (sub == "set-password" || sub == "totp" || sub == "disable")) {
    const std::string name = arg(2);
    const std::string actor = a.Flag("as").value_or("operator");
    archive::OfficerAccounts accounts(conn);
    if (sub == "set-password") {
      std::string password;
      std::getline(std::cin, password);
      ASSIGN_OR_FAIL(hash, gateway::HashPassword(password));
      SecureWipe(password.data(), password.size());
      CHECK_OK(accounts.SetPassword(name, hash, actor));
      std::cout << "password of " << name << " set\n";
      return 0;
    }
    if (sub == "disable") {
      CHECK_OK(accounts.Disable(name, actor));
      std::cout << "officer " << name << " disabled; their sessions ended\n";
      return 0;
    }
    SecretBytes secret(protocol::RandomBytes(20));
    CHECK_OK(accounts.SetTotpSecret(name, secret.view(), actor));
    std::cout << "TOTP secret for " << name << ": " << gateway::Base32(secret.view()) << "\n"
              << gateway::TotpUri(config.org, name, secret.view()) << "\n";
    return 0;
  }
  if (cmd == "worker") return RunWorker(a, config, conn, compliance);
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
      r.purpose = a.Flag("purpose").value_or("legal_hold_export");
      // A history restore names the device instead of a case and reference.
      const bool restore = r.purpose == archive::kHistoryRestorePurpose;
      r.case_id = restore && !a.Flag("case") ? 0 : std::stoll(Need(a, "case"));
      if (restore) {
        auto device = FromHex(Need(a, "target-device"));
        if (!device) return Fail(Status::InvalidArgument("--target-device must be hex"));
        r.target_device = *device;
      }
      r.custodians = SplitList(Need(a, "custodian"));
      r.from_ms = a.Flag("from") ? ParseDate(*a.Flag("from")) : 0;
      r.to_ms = a.Flag("to") ? ParseDate(*a.Flag("to")) : int64_t{253402300799000};
      r.legal_reference = restore ? a.Flag("reference").value_or("") : Need(a, "reference");
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
      archive::ApprovalRecord approval;
      approval.officer = actor.name;
      approval.role = actor.role;
      approval.at_ms = NowMs();
      CHECK_OK(compliance.RecordApproval(id, approval));
      std::cout << "approval by " << actor.name << " (" << actor.role << ") recorded\n";
      ASSIGN_OR_FAIL(decision, archive::Decide(conn, pol, id));
      PrintDecision(decision);
      return 0;
    }
    if (sub == "show") {
      ASSIGN_OR_FAIL(r, compliance.GetDisclosure(id));
      std::cout << "request " << r.request_id << " case " << r.case_id << " purpose " << r.purpose
                << " state " << r.state << " requested by " << r.requester << "\n";
      if (!r.target_device.empty()) std::cout << "  target device " << ToHex(r.target_device) << "\n";
      ASSIGN_OR_FAIL(approvals, compliance.ApprovalsOf(id));
      for (const auto& ap : approvals) {
        std::cout << "  approved by " << ap.officer << " (" << ap.role << ") at " << FormatMs(ap.at_ms) << "\n";
      }
      ASSIGN_OR_FAIL(decision, archive::Decide(conn, pol, id));
      PrintDecision(decision);
      return 0;
    }
    if (sub == "restore") {
      ASSIGN_OR_FAIL(actor, Actor(compliance, a));
      ASSIGN_OR_FAIL(token, AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config)));
      ASSIGN_OR_FAIL(summary, AuditHsm(compliance, "disclosure restore",
                                       archive::RunHistoryRestore(conn, *token, pol, id, actor.name,
                                                                  static_cast<size_t>(config.hsm.sessions)),
                                       /*only_unavailable=*/true));
      std::cout << "restored " << summary.restored << " of " << summary.envelopes << " message(s) of "
                << summary.custodian << " to device " << ToHex(summary.target_device) << "\n"
                << "notices recorded for " << summary.notified_devices << " device(s)\n";
      if (summary.skipped) {
        std::cout << "warning: " << summary.skipped
                  << " message(s) could not be restored; see the disclosure.restore audit event\n";
      }
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
      ASSIGN_OR_FAIL(token, AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config)));
      ASSIGN_OR_FAIL(summary, AuditHsm(compliance, "disclosure export",
                                            archive::RunExport(conn, *token, pol, id, out, actor.name,
                                                               static_cast<size_t>(config.hsm.sessions),
                                                               config.org),
                                            /*only_unavailable=*/true));
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
    std::optional<Bytes> org_root = OrgRootFlag(a);
    std::string key_source = "given with --org-root";
    if (!org_root) {
      auto recorded = store.GetSetting(std::string(archive::kOrgRootPublicKeySetting));
      if (!recorded.ok() && recorded.status().code() != Code::kNotFound) return Fail(recorded.status());
      org_root = recorded.ok() ? *recorded : Bytes();
      key_source = "as recorded in the database: compare it with your record, or pass --org-root";
    }
    ASSIGN_OR_FAIL(report, archive::AuditLog(conn).Verify(*org_root));
    if (!report.intact()) {
      std::cerr << "holdfast-admin: the audit log does NOT verify (" << report.entries << " entries, "
                << report.heads.size() << " signed tree head(s)):\n";
      for (const auto& p : report.problems) std::cerr << "  - " << p << "\n";
      return 2;
    }
    std::cout << "audit log intact: " << report.entries << " entries, " << report.heads.size()
              << " signed tree head(s)\n";
    if (report.newest_good_head) {
      const archive::TreeHead& h = report.newest_good_head->head;
      std::cout << "newest signed head: " << HeadLine(h) << "\n"
                << "signed by org root key " << h.key_fingerprint << " (" << key_source << ")\n";
      if (report.entries > h.tree_size) {
        std::cout << report.entries - h.tree_size << " newer entries are not yet covered by a signed head\n";
      }
    } else if (report.entries > 0) {
      std::cout << "no tree head is signed yet: run `holdfast-admin audit sign-head`\n";
    }
    return 0;
  }
  if (cmd == "audit" && sub == "sign-head") {
    ASSIGN_OR_FAIL(token, AuditHsm(compliance, cmd + " " + sub, gateway::OpenToken(config)));
    ASSIGN_OR_FAIL(head, archive::AuditLog(conn).SignTreeHead(*token, NowMs()));
    std::cout << "signed tree head: " << HeadLine(head) << "\n";
    return 0;
  }
  if (cmd == "audit" && sub == "heads") {
    ASSIGN_OR_FAIL(heads, archive::AuditLog(conn).Heads());
    for (const auto& h : heads) {
      std::cout << "#" << h.head_id << "  " << HeadLine(h.head) << "  key " << h.head.key_fingerprint << "\n";
    }
    return 0;
  }
  if (cmd == "audit" && sub == "proof") {
    const uint64_t index = ParseCount(Need(a, "index"), "--index");
    std::optional<uint64_t> head;
    if (auto h = a.Flag("head")) head = ParseCount(*h, "--head");
    ASSIGN_OR_FAIL(bundle, archive::AuditLog(conn).ProveInclusion(index, head));
    return PrintBundle(archive::BundleJson(bundle));
  }
  if (cmd == "audit" && sub == "consistency") {
    ASSIGN_OR_FAIL(bundle, archive::AuditLog(conn).ProveConsistency(ParseCount(Need(a, "from"), "--from"),
                                                                     ParseCount(Need(a, "to"), "--to")));
    return PrintBundle(archive::BundleJson(bundle));
  }
  if (cmd == "audit" && sub == "list") {
    ASSIGN_OR_FAIL(events, compliance.AuditTrail());
    for (const auto& e : events) {
      std::cout << e.index << "  " << FormatMs(e.at_ms) << "  " << e.actor << "  " << e.action << "  "
                << e.detail << "\n";
    }
    return 0;
  }
  if (cmd == "reports" && sub == "list") {
    const int64_t since = a.Flag("since") ? ParseDate(*a.Flag("since")) : 0;
    ASSIGN_OR_FAIL(reports, store.DeliveryReportsSince(since));
    for (const auto& r : reports) {
      std::cout << "report " << r.report_id << "  " << FormatMs(r.reported_at_ms) << "  "
                << r.reason << "  by " << r.reporter_user << " device "
                << ToHex(r.reporter_device);
      if (r.delivery_id) std::cout << "  delivery " << *r.delivery_id;
      if (!r.message_id.empty()) std::cout << "  message " << ToHex(r.message_id);
      std::cout << "  envelope " << (r.envelope_id ? std::to_string(*r.envelope_id) : "-");
      if (!r.detail.empty()) std::cout << "  detail " << JsonQuote(r.detail);
      std::cout << "\n";
    }
    std::cout << reports.size() << " report(s)\n";
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
