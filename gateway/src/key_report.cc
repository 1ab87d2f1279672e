#include "holdfast/gateway/key_report.h"

#include <map>
#include <set>
#include <sstream>

#include "holdfast/archive/shredding.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/gateway/json_quote.h"

namespace holdfast::gateway {
namespace {


static_assert(kKeyCustodianRole == archive::kKeyCustodianRole);

std::string Window(const KeyStatus& k) {
  if (!k.not_before_ms && !k.not_after_ms) return "no expiry";
  return FormatUtc(k.not_before_ms.value_or(0), TimePrecision::kSeconds) + " .. " +
         FormatUtc(k.not_after_ms.value_or(0), TimePrecision::kSeconds);
}

std::string Attributes(const KeyStatus& k) {
  if (!k.attributes) return "no private key in token " + k.token;
  const hsm::KeyInfo& a = *k.attributes;
  std::ostringstream out;
  out << "token " << k.token << "  sensitive=" << a.sensitive << " extractable=" << a.extractable
      << " sign=" << a.can_sign << " derive=" << a.can_derive;
  return out.str();
}

std::string Name(const KeyStatus& k) {
  if (k.kind == "org_root") return "org root";
  if (k.kind == "epoch") return "epoch " + std::to_string(k.epoch_id);
  return k.kind;
}

std::string OptionalMs(const std::optional<int64_t>& ms) {
  return ms ? std::to_string(*ms) : "null";
}

std::string OptionalTime(const std::optional<int64_t>& ms) {
  return ms ? JsonQuote(FormatUtc(*ms, TimePrecision::kSeconds)) : "null";
}

std::optional<hsm::KeyInfo> Find(const std::map<std::string, hsm::KeyInfo>& keys, const std::string& label) {
  auto it = keys.find(label);
  if (it == keys.end()) return std::nullopt;
  return it->second;
}

Status ListInto(hsm::Token* token, std::map<std::string, hsm::KeyInfo>& out) {
  if (token == nullptr) return Status::Ok();
  HF_ASSIGN_OR_RETURN(auto keys, token->ListKeys());
  for (auto& k : keys) out.emplace(k.label, std::move(k));
  return Status::Ok();
}

}  // namespace

Result<archive::Officer> AuthorizeCeremony(archive::Compliance& compliance, const std::string& name,
                                           std::string_view ceremony) {
  auto officer = compliance.GetOfficer(name);
  std::string reason;
  if (officer.ok() && officer->role == kKeyCustodianRole) return officer;
  if (officer.ok()) {
    reason = "'" + name + "' is a registered officer with role " + officer->role + ", not " +
             std::string(kKeyCustodianRole);
  } else if (officer.status().code() == Code::kNotFound) {
    reason = "'" + name + "' is not a registered officer (see `officer add --role " +
             std::string(kKeyCustodianRole) + "`)";
  } else {
    return officer.status();
  }
  HF_RETURN_IF_ERROR(compliance.Audit(name, "key.ceremony.denied",
                                      "{\"ceremony\":" + JsonQuote(ceremony) +
                                          ",\"reason\":" + JsonQuote(reason) + "}"));
  return Status::PermissionDenied(reason + "; only a " + std::string(kKeyCustodianRole) +
                                  " may run " + std::string(ceremony));
}

Result<KeyReport> BuildKeyReport(archive::Connection& conn, hsm::Token* archive_token,
                                 hsm::Token* enrollment_token, const Config& config, int64_t now_ms) {
  KeyReport report;
  report.now_ms = now_ms;
  report.tokens_checked = archive_token != nullptr && enrollment_token != nullptr;
  report.rotate_ahead_days = config.keys.rotate_ahead_days;
  std::map<std::string, hsm::KeyInfo> archive_keys, enrollment_keys;
  HF_RETURN_IF_ERROR(ListInto(archive_token, archive_keys));
  HF_RETURN_IF_ERROR(ListInto(enrollment_token, enrollment_keys));
  std::set<std::string> named;  // labels a report line accounts for
  archive::Store store(conn);

  // ---- org root
  Bytes root;
  auto recorded_root = store.GetSetting(std::string(archive::kOrgRootPublicKeySetting));
  if (recorded_root.ok()) {
    root = *recorded_root;
  } else if (recorded_root.status().code() != Code::kNotFound) {
    return recorded_root.status();
  }
  {
    KeyStatus k;
    k.kind = "org_root";
    k.label = std::string(hsm::kOrgRootLabel);
    k.token = config.hsm.token_label;
    k.attributes = Find(archive_keys, k.label);
    k.public_key = root;
    if (k.attributes && root.empty()) k.public_key = k.attributes->public_key;
    if (!report.tokens_checked) {
      k.state = "active";
    } else if (!k.attributes) {
      k.state = "missing";
    } else {
      k.state = (root.empty() || k.attributes->public_key == root) ? "active" : "mismatch";
    }
    named.insert(k.label);
    if (!k.public_key.empty() || k.attributes) report.keys.push_back(std::move(k));
  }

  // ---- enrollment key
  {
    KeyStatus k;
    k.kind = "enrollment";
    k.label = std::string(hsm::kEnrollmentKeyLabel);
    k.token = config.hsm.enrollment_token_label;
    k.attributes = Find(enrollment_keys, k.label);
    auto recorded = store.GetSetting(std::string(archive::kEnrollmentKeyCertificateSetting));
    if (!recorded.ok() && recorded.status().code() != Code::kNotFound) return recorded.status();
    if (recorded.ok()) {
      protocol::wire::EnrollmentKeyCertificate cert;
      protocol::wire::EnrollmentKeyCertificateBody body;
      if (!cert.ParseFromArray(recorded->data(), static_cast<int>(recorded->size())) ||
          !body.ParseFromString(cert.body())) {
        k.state = "invalid";
      } else {
        k.public_key.assign(body.public_key().begin(), body.public_key().end());
        k.not_before_ms = body.not_before_ms();
        k.not_after_ms = body.not_after_ms();
        if (!protocol::VerifyEnrollmentKeyCertificate(cert, root, 0).ok()) {
          k.state = "invalid";
        } else if (report.tokens_checked &&
                   (!k.attributes || k.attributes->public_key != k.public_key)) {
          k.state = "missing";
        } else if (now_ms < body.not_before_ms()) {
          k.state = "pending";
        } else if (now_ms < body.not_after_ms()) {
          k.state = "active";
        } else {
          k.state = "expired";
        }
      }
    } else if (k.attributes) {
      k.state = "uncertified";
      k.public_key = k.attributes->public_key;
    }
    named.insert(k.label);
    if (!k.state.empty()) report.keys.push_back(std::move(k));
  }

  // ---- epochs
  HF_ASSIGN_OR_RETURN(auto epochs, store.ListEpochs());
  std::optional<uint32_t> current;
  auto current_epoch = store.CurrentEpoch(now_ms);
  if (current_epoch.ok()) {
    current = current_epoch->epoch_id;
  } else if (current_epoch.status().code() != Code::kNotFound) {
    return current_epoch.status();
  }
  for (const archive::EpochRecord& e : epochs) {
    KeyStatus k;
    k.kind = "epoch";
    k.epoch_id = e.epoch_id;
    k.label = hsm::EpochKeyLabel(e.epoch_id);
    k.token = config.hsm.token_label;
    k.public_key = e.public_key;
    k.not_before_ms = e.not_before_ms;
    k.not_after_ms = e.not_after_ms;
    k.attributes = Find(archive_keys, k.label);
    const bool present = !report.tokens_checked || k.attributes.has_value();
    if (now_ms >= e.not_after_ms) {
      k.state = present ? "retired" : "shredded";
    } else if (!present) {
      k.state = "missing";
    } else if (now_ms < e.not_before_ms) {
      k.state = "pending";
    } else {
      k.state = current == e.epoch_id ? "current" : "superseded";
    }
    named.insert(k.label);
    report.keys.push_back(std::move(k));
  }

  // ---- keys no certificate names
  auto uncertified = [&](const hsm::KeyInfo& info, const std::string& token) {
    KeyStatus k;
    k.kind = "other";
    k.label = info.label;
    k.token = token;
    k.state = "uncertified";
    k.public_key = info.public_key;
    k.attributes = info;
    report.keys.push_back(std::move(k));
  };
  for (const auto& [label, info] : archive_keys) {
    if (!named.count(label)) uncertified(info, config.hsm.token_label);
  }
  for (const auto& [label, info] : enrollment_keys) {
    if (label != hsm::kEnrollmentKeyLabel) uncertified(info, config.hsm.enrollment_token_label);
  }

  if (config.keys.rotate_ahead_days > 0 && !epochs.empty()) {
    report.next_rotation_ms =
        epochs.back().not_after_ms - int64_t{config.keys.rotate_ahead_days} * 24 * 3600 * 1000;
  }
  return report;
}

std::string RenderKeyReport(const KeyReport& report, bool epochs_only) {
  std::ostringstream out;
  for (const KeyStatus& k : report.keys) {
    if (epochs_only && k.kind != "epoch") continue;
    out << Name(k) << "  " << k.label << "  " << k.state << "  " << Window(k) << "  ";
    if (report.tokens_checked) out << Attributes(k) << "  ";
    out << ToHex(k.public_key) << "\n";
  }
  if (!report.tokens_checked) out << "(the tokens were not opened: key presence not checked)\n";
  if (report.next_rotation_ms) {
    out << "next scheduled rotation: ";
    if (*report.next_rotation_ms <= report.now_ms) {
      out << "due now (at the next `epoch rotate-if-due`)";
    } else {
      out << FormatUtc(*report.next_rotation_ms, TimePrecision::kSeconds);
    }
    out << " (keys.rotate_ahead_days " << report.rotate_ahead_days << " before the newest epoch ends)\n";
  } else if (report.rotate_ahead_days == 0) {
    out << "next scheduled rotation: none (keys.rotate_ahead_days is 0)\n";
  } else {
    out << "next scheduled rotation: none (no epoch yet: run `holdfast-admin init`)\n";
  }
  return out.str();
}

std::string KeyReportJson(const KeyReport& report, bool epochs_only) {
  std::ostringstream out;
  out << "{\"now_ms\":" << report.now_ms << ",\"tokens_checked\":" << (report.tokens_checked ? "true" : "false")
      << ",\"keys\":[";
  bool first = true;
  for (const KeyStatus& k : report.keys) {
    if (epochs_only && k.kind != "epoch") continue;
    if (!first) out << ",";
    first = false;
    out << "{\"kind\":" << JsonQuote(k.kind) << ",\"label\":" << JsonQuote(k.label)
        << ",\"token\":" << JsonQuote(k.token);
    if (k.kind == "epoch") out << ",\"epoch_id\":" << k.epoch_id;
    out << ",\"state\":" << JsonQuote(k.state) << ",\"not_before_ms\":" << OptionalMs(k.not_before_ms)
        << ",\"not_after_ms\":" << OptionalMs(k.not_after_ms) << ",\"not_before\":" << OptionalTime(k.not_before_ms)
        << ",\"not_after\":" << OptionalTime(k.not_after_ms) << ",\"public_key\":" << JsonQuote(ToHex(k.public_key))
        << ",\"fingerprint\":" << (k.public_key.empty() ? "null" : JsonQuote(protocol::Fingerprint(k.public_key)));
    if (k.attributes) {
      const hsm::KeyInfo& a = *k.attributes;
      auto b = [](bool v) { return v ? "true" : "false"; };
      out << ",\"in_token\":true,\"attributes\":{\"sensitive\":" << b(a.sensitive)
          << ",\"extractable\":" << b(a.extractable) << ",\"sign\":" << b(a.can_sign)
          << ",\"derive\":" << b(a.can_derive) << "}";
    } else {
      out << ",\"in_token\":" << (report.tokens_checked ? "false" : "null");
    }
    out << "}";
  }
  out << "],\"rotate_ahead_days\":" << report.rotate_ahead_days
      << ",\"next_rotation_ms\":" << OptionalMs(report.next_rotation_ms)
      << ",\"next_rotation\":" << OptionalTime(report.next_rotation_ms) << "}\n";
  return out.str();
}

}  // namespace holdfast::gateway
