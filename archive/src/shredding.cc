#include "holdfast/archive/shredding.h"

#include <fcntl.h>
#include <unistd.h>

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "audit.h"
#include "hold_capsule.h"
#include "holds.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "holdfast/hsm/token.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "json.h"
#include "pg.h"

namespace holdfast::archive {

using internal::AppendAudit;
using internal::Exec;
using internal::ExecScript;
using internal::JsonObject;
using internal::Params;
using internal::Transaction;

namespace {

namespace hpke = protocol::hpke;
namespace labels = protocol::labels;

constexpr std::string_view kCertificateFormat = "holdfast-deletion-certificate/1";
constexpr std::string_view kHoldKeyCertFormat = "holdfast-hold-key-cert/1";
constexpr int64_t kDayMs = 24 * 3600 * 1000;
// The key ceremony lock of gateway/src/ceremony.cc ("hfkeycer"): shredding
// and epoch creation never overlap.
constexpr int64_t kCeremonyLock = 0x6866'6b65'7963'6572;

// Holds the session-level ceremony lock for its lifetime.
class CeremonyLock {
 public:
  static Result<CeremonyLock> Take(Connection& conn) {
    HF_RETURN_IF_ERROR(conn.Execute("SELECT pg_advisory_lock(" + std::to_string(kCeremonyLock) + ")"));
    return CeremonyLock(conn);
  }
  CeremonyLock(CeremonyLock&& other) noexcept : conn_(std::exchange(other.conn_, nullptr)) {}
  CeremonyLock& operator=(CeremonyLock&&) = delete;
  ~CeremonyLock() {
    if (conn_) {
      (void)conn_->Execute("SELECT pg_advisory_unlock(" + std::to_string(kCeremonyLock) + ")");
    }
  }

 private:
  explicit CeremonyLock(Connection& conn) : conn_(&conn) {}
  Connection* conn_;
};

Status Audit(Connection& conn, const std::string& actor, std::string_view action,
             const std::string& detail) {
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, action, detail));
  return tx.Commit();
}

Bytes SigningInput(std::string_view label, std::string_view body) {
  return Concat({AsBytes(label), AsBytes(body)});
}

Bytes HoldInfo(ByteView message_id) {
  return Concat({AsBytes(labels::kHoldCapsuleInfo), message_id});
}

ByteView View(const std::string& s) { return AsBytes(s); }

Status Malformed(std::string_view what) {
  return Status::InvalidArgument("malformed " + std::string(what));
}

Result<int64_t> IntField(const Poco::JSON::Object& o, const char* name) {
  const Poco::Dynamic::Var v = o.get(name);
  if (!v.isInteger() || !v.isSigned()) return Malformed(std::string("field ") + name);
  return v.convert<Poco::Int64>();
}

Result<std::string> StringField(const Poco::JSON::Object& o, const char* name) {
  const Poco::Dynamic::Var v = o.get(name);
  if (!v.isString()) return Malformed(std::string("field ") + name);
  return v.extract<std::string>();
}

Result<Poco::JSON::Object::Ptr> ParseObject(std::string_view json, std::string_view what) {
  try {
    Poco::JSON::Parser parser;
    Poco::Dynamic::Var v = parser.parse(std::string(json));
    auto object = v.extract<Poco::JSON::Object::Ptr>();
    if (!object) return Malformed(what);
    return object;
  } catch (const Poco::Exception& e) {
    return Malformed(std::string(what) + ": " + e.displayText());
  } catch (const std::exception& e) {
    return Malformed(std::string(what) + ": " + e.what());
  }
}

// ------------------------------------------------------------ holds

struct HeldEnvelopes {
  std::map<int64_t, StoredEnvelope> envelopes;  // by envelope id
  std::vector<int64_t> hold_ids;                // holds that cover at least one
};

// The envelopes of the epoch that an active legal hold covers
// (internal::ForEachHeldEnvelope, the rule the retention sweep uses too).
Result<HeldEnvelopes> HeldEnvelopesOfEpoch(Connection& conn, uint32_t epoch_id) {
  HeldEnvelopes held;
  HF_RETURN_IF_ERROR(internal::ForEachHeldEnvelope(
      conn, std::nullopt, [&](int64_t hold_id, StoredEnvelope&& e) {
        if (e.epoch_id != epoch_id) return Status::Ok();
        if (held.hold_ids.empty() || held.hold_ids.back() != hold_id) {
          held.hold_ids.push_back(hold_id);
        }
        held.envelopes.emplace(e.envelope_id, std::move(e));
        return Status::Ok();
      }));
  return held;
}

Result<std::set<int64_t>> RewrappedOfEpoch(Connection& conn, uint32_t epoch_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn.impl(),
                                   "SELECT h.envelope_id FROM hold_capsules h"
                                   " JOIN envelopes e ON e.envelope_id = h.envelope_id"
                                   " WHERE e.epoch_id = $1 AND e.retention_epoch IN ($1, -1)",
                                   Params().Int8(epoch_id)));
  std::set<int64_t> out;
  for (int i = 0; i < r.rows(); ++i) out.insert(r.Int(i, 0));
  return out;
}

// ------------------------------------------------------------ shredding rows

struct ShredRow {
  ShredStatus status;
  std::vector<int64_t> hold_ids;
  std::string policy_version;
  std::string retention_class;
  int retention_days = 0;
  int64_t destroyed_at_ms = 0;
};

Result<std::optional<ShredRow>> ReadShred(Connection::Impl& c, uint32_t epoch_id, bool lock) {
  std::string sql =
      "SELECT requested_by, coalesce(approved_by, ''), state, policy_version, retention_class,"
      " coalesce(retention_days, 0), coalesce(hf_ms(destroyed_at), 0), hold_ids::text"
      " FROM epoch_shreddings WHERE epoch_id = $1";
  if (lock) sql += " FOR UPDATE";
  HF_ASSIGN_OR_RETURN(auto r, Exec(c, sql, Params().Int8(epoch_id)));
  if (r.rows() == 0) return std::optional<ShredRow>();
  ShredRow row;
  row.status = {epoch_id, r.Text(0, 0), r.Text(0, 1), r.Text(0, 2)};
  row.policy_version = r.Text(0, 3);
  row.retention_class = r.Text(0, 4);
  row.retention_days = static_cast<int>(r.Int(0, 5));
  row.destroyed_at_ms = r.Int(0, 6);
  // "{1,2,3}"
  std::string ids = r.Text(0, 7);
  std::string number;
  for (char ch : ids) {
    if (ch >= '0' && ch <= '9') {
      number += ch;
    } else if (!number.empty()) {
      row.hold_ids.push_back(std::stoll(number));
      number.clear();
    }
  }
  return std::optional<ShredRow>(std::move(row));
}

Status RequireCustodian(Connection::Impl& c, const std::string& name) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(c, "SELECT role FROM officers WHERE name = $1",
                                   Params().Text(name)));
  if (r.rows() == 0 || r.Text(0, 0) != kKeyCustodianRole) {
    return Status::PermissionDenied(name + " is not an officer with role " +
                                    std::string(kKeyCustodianRole));
  }
  return Status::Ok();
}

std::string EpochText(uint32_t epoch_id) { return "epoch " + std::to_string(epoch_id); }

// ------------------------------------------------------------ partitions

// Inside the run's last transaction: moves the envelopes in `keep` (and
// their deliveries) to the held partitions, then drops the epoch's
// partitions with everything else in them, and deletes what of the epoch
// the DEFAULT partitions hold. Returns the number of envelopes gone.
Result<int64_t> DropEpochPartitions(Connection::Impl& c, uint32_t epoch_id,
                                    const std::vector<int64_t>& keep) {
  const Params epoch_and_keep = Params().Int8(epoch_id).Int8Array(keep);
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE deliveries SET retention_epoch = -1"
                          " WHERE retention_epoch = $1 AND envelope_id = ANY($2)",
                          epoch_and_keep)
                         .status());
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE envelopes SET retention_epoch = -1"
                          " WHERE retention_epoch = $1 AND envelope_id = ANY($2)",
                          epoch_and_keep)
                         .status());
  HF_ASSIGN_OR_RETURN(auto gone, Exec(c, "SELECT count(*) FROM envelopes WHERE retention_epoch = $1",
                                      Params().Int8(epoch_id)));
  // A report about a shredded envelope stays, without its envelope.
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE delivery_reports SET envelope_id = NULL WHERE envelope_id IN"
                          " (SELECT envelope_id FROM envelopes WHERE retention_epoch = $1)",
                          Params().Int8(epoch_id))
                         .status());
  // Resend requests and restored keys name envelopes the way deliveries
  // do, without a key, and leave with them: a restored content key must not
  // outlive the envelope (and epoch key) it opens.
  for (const char* table : {"resend_requests", "restored_keys"}) {
    HF_RETURN_IF_ERROR(Exec(c,
                            "DELETE FROM " + std::string(table) + " WHERE envelope_id IN"
                            " (SELECT envelope_id FROM envelopes WHERE retention_epoch = $1)",
                            Params().Int8(epoch_id))
                           .status());
  }
  HF_RETURN_IF_ERROR(Exec(c, "DELETE FROM deliveries_default WHERE retention_epoch = $1",
                          Params().Int8(epoch_id))
                         .status());
  HF_RETURN_IF_ERROR(Exec(c, "DELETE FROM envelopes_default WHERE retention_epoch = $1",
                          Params().Int8(epoch_id))
                         .status());
  // Dropping a partition locks its parent exclusively: rather than stall
  // ingest behind a long query, give up; a rerun resumes here.
  HF_RETURN_IF_ERROR(Exec(c, "SET LOCAL lock_timeout = '10s'").status());
  const std::string suffix = "_e" + std::to_string(epoch_id);
  for (const char* table : {"deliveries", "envelopes"}) {
    HF_RETURN_IF_ERROR(ExecScript(c, "DROP TABLE IF EXISTS " + std::string(table) + suffix)
                           .WithContext("dropping the partition " + std::string(table) + suffix));
  }
  return gone.Int(0, 0);
}

// ------------------------------------------------------------ hold capsules

Result<hpke::Sealed> SealHoldCapsule(ByteView hold_public, const protocol::ParsedEnvelope& parsed,
                                     ByteView cek) {
  return hpke::Seal(hpke::kArchiveSuite, hold_public, HoldInfo(View(parsed.header.message_id())),
                    View(parsed.content.header()), cek);
}

// Recovers the CEK of a held envelope through the epoch key (never decrypting
// the body), seals it to the hold key and opens the new capsule again through
// the hold key in the token before returning it.
Result<HoldCapsuleRecord> Rewrap(hsm::Token& token, const StoredEnvelope& stored,
                                 ByteView epoch_public, ByteView hold_public) {
  HF_ASSIGN_OR_RETURN(protocol::ParsedEnvelope parsed, protocol::ParseEnvelope(stored.envelope));
  if (parsed.header.epoch_id() != stored.epoch_id) {
    return Status::CryptoFailure("the envelope names epoch " +
                                 std::to_string(parsed.header.epoch_id()));
  }
  HF_ASSIGN_OR_RETURN(SecretBytes dh,
                      token.DeriveEcdh(stored.epoch_id, View(parsed.content.archive().enc())));
  HF_ASSIGN_OR_RETURN(SecretBytes cek, protocol::RecoverArchiveCek(parsed, dh.view(), epoch_public));
  HF_ASSIGN_OR_RETURN(hpke::Sealed sealed, SealHoldCapsule(hold_public, parsed, cek.view()));
  HoldCapsuleRecord capsule{stored.envelope_id, std::string(hsm::kHoldKeyLabel),
                            std::move(sealed.enc), std::move(sealed.ct), 0};
  HF_ASSIGN_OR_RETURN(SecretBytes reopened, internal::OpenHoldCapsule(token, parsed, capsule));
  if (!ConstantTimeEqual(reopened.view(), cek.view())) {
    return Status::Internal("the hold capsule does not open to the content key");
  }
  return capsule;
}

// ------------------------------------------------------------ certificates

Result<Bytes> SignChecked(hsm::Token& token, std::string_view label, const std::string& body,
                          ByteView org_root) {
  const Bytes input = SigningInput(label, body);
  HF_ASSIGN_OR_RETURN(Bytes signature, token.SignWithOrgRoot(input));
  HF_RETURN_IF_ERROR(protocol::EcdsaP256Verify(org_root, input, signature));
  return signature;
}

Result<DeletionCertificate> ParseCertificateBody(const SignedDocument& doc) {
  HF_ASSIGN_OR_RETURN(Poco::JSON::Object::Ptr o, ParseObject(doc.body, "deletion certificate"));
  HF_ASSIGN_OR_RETURN(std::string format, StringField(*o, "format"));
  if (format != kCertificateFormat) return Malformed("deletion certificate: format " + format);
  DeletionCertificate cert;
  HF_ASSIGN_OR_RETURN(int64_t epoch_id, IntField(*o, "epoch_id"));
  if (epoch_id < 0 || epoch_id > UINT32_MAX) return Malformed("deletion certificate: epoch_id");
  cert.epoch_id = static_cast<uint32_t>(epoch_id);
  HF_ASSIGN_OR_RETURN(cert.not_before_ms, IntField(*o, "not_before_ms"));
  HF_ASSIGN_OR_RETURN(cert.not_after_ms, IntField(*o, "not_after_ms"));
  HF_ASSIGN_OR_RETURN(int64_t deleted, IntField(*o, "envelopes_deleted"));
  HF_ASSIGN_OR_RETURN(int64_t rewrapped, IntField(*o, "envelopes_rewrapped"));
  HF_ASSIGN_OR_RETURN(int64_t retained, IntField(*o, "envelopes_retained_unwrapped"));
  if (deleted < 0 || rewrapped < 0 || retained < 0) return Malformed("deletion certificate: counts");
  cert.envelopes_deleted = static_cast<uint64_t>(deleted);
  cert.envelopes_rewrapped = static_cast<uint64_t>(rewrapped);
  cert.envelopes_retained_unwrapped = static_cast<uint64_t>(retained);
  HF_ASSIGN_OR_RETURN(cert.destroyed_at_ms, IntField(*o, "destroyed_at_ms"));
  HF_ASSIGN_OR_RETURN(cert.policy_version, StringField(*o, "policy_version"));
  HF_ASSIGN_OR_RETURN(cert.retention_class, StringField(*o, "retention_class"));
  HF_ASSIGN_OR_RETURN(int64_t days, IntField(*o, "retention_days"));
  cert.retention_days = static_cast<int>(days);
  HF_ASSIGN_OR_RETURN(std::string root_hex, StringField(*o, "org_root_public_key"));
  auto root = FromHex(root_hex);
  if (!root) return Malformed("deletion certificate: org_root_public_key");
  cert.org_root_public = *std::move(root);
  auto holds = o->getArray("hold_ids");
  auto approvers = o->getArray("approvers");
  if (!holds || !approvers) return Malformed("deletion certificate: hold_ids or approvers");
  for (size_t i = 0; i < holds->size(); ++i) {
    const Poco::Dynamic::Var v = holds->get(static_cast<unsigned>(i));
    if (!v.isInteger()) return Malformed("deletion certificate: hold_ids");
    cert.hold_ids.push_back(v.convert<Poco::Int64>());
  }
  for (size_t i = 0; i < approvers->size(); ++i) {
    const Poco::Dynamic::Var v = approvers->get(static_cast<unsigned>(i));
    if (!v.isString()) return Malformed("deletion certificate: approvers");
    cert.approvers.push_back(v.extract<std::string>());
  }
  cert.signed_document = doc;
  return cert;
}

Status WriteFile0600(const std::filesystem::path& path, const std::string& data) {
  const std::filesystem::path temp = path.string() + ".partial";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Internal("creating " + temp.string() + ": " + std::strerror(errno));
  std::string_view rest = data;
  while (!rest.empty()) {
    ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Status::Internal("writing " + temp.string() + ": " + std::strerror(errno));
      ::close(fd);
      return s;
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return Status::Internal("writing " + temp.string() + ": " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) return Status::Internal("renaming to " + path.string() + ": " + ec.message());
  return Status::Ok();
}

// The longest retention class of the policy: applying it to the whole epoch
// never deletes an envelope before its own class allows (classifying each
// envelope would need its conversation's members for every row).
Result<policy::RetentionClass> LongestClass(const policy::Policy& policy) {
  if (!policy.retention() || policy.retention()->classes.empty()) {
    return Status::FailedPrecondition("policy " + policy.version() +
                                      " has no retention classes; nothing may be shredded");
  }
  const auto& classes = policy.retention()->classes;
  return *std::max_element(classes.begin(), classes.end(),
                           [](const auto& a, const auto& b) { return a.days < b.days; });
}

}  // namespace

// ------------------------------------------------------------ internal

namespace internal {

Result<SecretBytes> OpenHoldCapsule(hsm::Token& token, const protocol::ParsedEnvelope& parsed,
                                    const HoldCapsuleRecord& capsule) {
  HF_ASSIGN_OR_RETURN(Bytes hold_public, token.PublicKey(capsule.hold_key_label));
  HF_ASSIGN_OR_RETURN(SecretBytes dh, token.DeriveEcdhWith(capsule.hold_key_label, capsule.enc));
  auto context = hpke::SetupBaseReceiverWithDh(hpke::kArchiveSuite, capsule.enc, dh.view(),
                                               hold_public,
                                               HoldInfo(View(parsed.header.message_id())));
  if (!context.ok()) return context.status().WithContext("hold capsule");
  auto cek = context->Open(View(parsed.content.header()), capsule.ct);
  if (!cek.ok()) return cek.status().WithContext("hold capsule");
  if (cek->size() != protocol::kCekSize) {
    return Status::CryptoFailure("hold capsule: CEK is not 32 bytes");
  }
  return cek;
}

Result<SecretBytes> CekOfShredded(Store& store, hsm::Token& token,
                                  const protocol::ParsedEnvelope& parsed) {
  HF_ASSIGN_OR_RETURN(std::optional<HoldCapsuleRecord> capsule,
                      store.HoldCapsuleOf(View(parsed.header.message_id())));
  if (!capsule) {
    return Status::FailedPrecondition(EpochText(parsed.content.archive().epoch_id()) +
                                      " key was destroyed and the envelope has no hold capsule");
  }
  return OpenHoldCapsule(token, parsed, *capsule);
}

Result<protocol::OpenedMessage> OpenArchived(Store& store, hsm::Token& token,
                                             const protocol::ParsedEnvelope& parsed,
                                             ByteView epoch_public) {
  const uint32_t epoch_id = parsed.content.archive().epoch_id();
  auto dh = token.DeriveEcdh(epoch_id, View(parsed.content.archive().enc()));
  if (dh.ok()) return protocol::OpenWithArchiveDh(parsed, dh->view(), epoch_public);
  if (dh.status().code() != Code::kNotFound) return dh.status();
  HF_ASSIGN_OR_RETURN(SecretBytes cek, CekOfShredded(store, token, parsed));
  return protocol::OpenWithCek(parsed, cek.view(), epoch_public);
}

Result<SecretBytes> RecoverArchivedCek(Store& store, hsm::Token& token,
                                       const protocol::ParsedEnvelope& parsed,
                                       ByteView epoch_public) {
  const uint32_t epoch_id = parsed.content.archive().epoch_id();
  auto dh = token.DeriveEcdh(epoch_id, View(parsed.content.archive().enc()));
  if (dh.ok()) return protocol::RecoverArchiveCek(parsed, dh->view(), epoch_public);
  if (dh.status().code() != Code::kNotFound) return dh.status();
  HF_ASSIGN_OR_RETURN(SecretBytes cek, CekOfShredded(store, token, parsed));
  HF_RETURN_IF_ERROR(protocol::VerifyArchiveCapsule(parsed, cek.view(), epoch_public));
  return cek;
}

}  // namespace internal

// ------------------------------------------------------------ public

std::string DeletionCertificateFileName(uint32_t epoch_id) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "epoch-%06u.deletion-certificate.json",
                static_cast<unsigned>(epoch_id));
  return buffer;
}

std::string SignedDocumentJson(const SignedDocument& doc) {
  return JsonObject().String("body", doc.body).String("signature", ToHex(doc.signature)).str() +
         "\n";
}

Result<SignedDocument> ParseSignedDocument(std::string_view json) {
  HF_ASSIGN_OR_RETURN(Poco::JSON::Object::Ptr o, ParseObject(json, "signed document"));
  if (o->size() != 2) return Malformed("signed document: members other than body and signature");
  SignedDocument doc;
  HF_ASSIGN_OR_RETURN(doc.body, StringField(*o, "body"));
  HF_ASSIGN_OR_RETURN(std::string sig_hex, StringField(*o, "signature"));
  auto sig = FromHex(sig_hex);
  if (!sig || sig->size() != 64) return Malformed("signed document: signature");
  doc.signature = *std::move(sig);
  return doc;
}

Result<DeletionCertificate> VerifyDeletionCertificate(std::string_view file_json,
                                                      ByteView org_root_public) {
  HF_ASSIGN_OR_RETURN(SignedDocument doc, ParseSignedDocument(file_json));
  Status verified = protocol::EcdsaP256Verify(
      org_root_public, SigningInput(labels::kDeletionCertSig, doc.body), doc.signature);
  if (!verified.ok()) {
    return Status::CryptoFailure("the deletion certificate is not signed by org root key " +
                                 protocol::Fingerprint(org_root_public));
  }
  HF_ASSIGN_OR_RETURN(DeletionCertificate cert, ParseCertificateBody(doc));
  if (!ConstantTimeEqual(cert.org_root_public, org_root_public)) {
    return Status::CryptoFailure("the deletion certificate names another org root key");
  }
  return cert;
}

Status RequestShred(Connection& conn, uint32_t epoch_id, const std::string& custodian) {
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(RequireCustodian(c, custodian));
  HF_ASSIGN_OR_RETURN(auto epoch, Exec(c, "SELECT 1 FROM epochs WHERE epoch_id = $1",
                                       Params().Int8(epoch_id)));
  if (epoch.rows() == 0) return Status::NotFound("no " + EpochText(epoch_id));
  auto inserted = Exec(c, "INSERT INTO epoch_shreddings (epoch_id, requested_by) VALUES ($1, $2)",
                       Params().Int8(epoch_id).Text(custodian));
  if (!inserted.ok()) {
    if (inserted.status().code() == Code::kAlreadyExists) {
      return Status::AlreadyExists("the shredding of " + EpochText(epoch_id) +
                                   " was already requested");
    }
    return inserted.status();
  }
  HF_RETURN_IF_ERROR(AppendAudit(c, custodian, "epoch.shred.request",
                                 JsonObject().Int("epoch_id", epoch_id).str()));
  return tx.Commit();
}

Status ApproveShred(Connection& conn, uint32_t epoch_id, const std::string& custodian) {
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(RequireCustodian(c, custodian));
  HF_ASSIGN_OR_RETURN(std::optional<ShredRow> row, ReadShred(c, epoch_id, /*lock=*/true));
  if (!row) return Status::NotFound("no shredding of " + EpochText(epoch_id) + " was requested");
  if (row->status.requested_by == custodian) {
    return Status::PermissionDenied(custodian + " requested the shredding of " +
                                    EpochText(epoch_id) +
                                    "; a second key custodian must approve it");
  }
  if (row->status.state != "requested") {
    return Status::FailedPrecondition("the shredding of " + EpochText(epoch_id) + " is " +
                                      row->status.state + ", not awaiting approval");
  }
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE epoch_shreddings SET approved_by = $2, approved_at = now(),"
                          " state = 'approved' WHERE epoch_id = $1",
                          Params().Int8(epoch_id).Text(custodian))
                         .status());
  HF_RETURN_IF_ERROR(AppendAudit(c, custodian, "epoch.shred.approve",
                                 JsonObject()
                                     .Int("epoch_id", epoch_id)
                                     .String("requested_by", row->status.requested_by)
                                     .str()));
  return tx.Commit();
}

Result<ShredStatus> GetShred(Connection& conn, uint32_t epoch_id) {
  HF_ASSIGN_OR_RETURN(std::optional<ShredRow> row, ReadShred(conn.impl(), epoch_id, false));
  if (!row) return Status::NotFound("no shredding of " + EpochText(epoch_id) + " was requested");
  return row->status;
}

Result<Bytes> EnsureHoldKey(Connection& conn, hsm::Token& token, const std::string& actor,
                            int64_t now_ms) {
  Store store(conn);
  const std::string label(hsm::kHoldKeyLabel);
  HF_ASSIGN_OR_RETURN(Bytes org_root, token.PublicKey(hsm::kOrgRootLabel));

  std::optional<Bytes> certified;
  auto recorded = store.GetSetting(std::string(kHoldKeyCertificateSetting));
  if (recorded.ok()) {
    HF_ASSIGN_OR_RETURN(SignedDocument doc, ParseSignedDocument(AsString(*recorded)));
    if (!protocol::EcdsaP256Verify(org_root, SigningInput(labels::kHoldKeyCertSig, doc.body),
                                   doc.signature)
             .ok()) {
      return Status::FailedPrecondition(
          "the stored hold key certificate does not verify under the org root");
    }
    HF_ASSIGN_OR_RETURN(Poco::JSON::Object::Ptr o, ParseObject(doc.body, "hold key certificate"));
    HF_ASSIGN_OR_RETURN(std::string hex, StringField(*o, "public_key"));
    auto key = FromHex(hex);
    if (!key) return Malformed("hold key certificate: public_key");
    certified = *std::move(key);
  } else if (recorded.status().code() != Code::kNotFound) {
    return recorded.status();
  }

  Bytes hold_public;
  auto existing = token.PublicKey(label);
  if (existing.ok()) {
    hold_public = *std::move(existing);
  } else if (existing.status().code() == Code::kNotFound) {
    // Hold capsules sealed to a lost key cannot be opened; a new key must not
    // silently take its place.
    if (certified) {
      return Status::FailedPrecondition("a hold key is certified but the token holds no key " +
                                        label + "; refusing to certify another one");
    }
    HF_ASSIGN_OR_RETURN(hold_public, token.GenerateDeriveKey(label));
    HF_RETURN_IF_ERROR(Audit(conn, actor, "key.hold.create",
                             JsonObject()
                                 .String("label", label)
                                 .String("public_key", ToHex(hold_public))
                                 .str()));
  } else {
    return existing.status();
  }

  if (certified) {
    if (*certified != hold_public) {
      return Status::FailedPrecondition(
          "the stored hold key certificate is for another key than the token holds");
    }
    return hold_public;
  }
  HF_ASSIGN_OR_RETURN(hsm::KeyInfo info, token.Describe(label));
  if (!info.sensitive || info.extractable || info.can_sign || !info.can_derive) {
    return Status::FailedPrecondition("key " + label +
                                      " is not sensitive, non-extractable and derive-only;"
                                      " refusing to certify it");
  }
  const std::string body = JsonObject()
                               .String("format", kHoldKeyCertFormat)
                               .String("label", label)
                               .String("public_key", ToHex(hold_public))
                               .String("fingerprint", protocol::Fingerprint(hold_public))
                               .Int("created_at_ms", now_ms)
                               .str();
  HF_ASSIGN_OR_RETURN(Bytes signature, SignChecked(token, labels::kHoldKeyCertSig, body, org_root));
  const std::string doc = SignedDocumentJson({body, signature});
  HF_RETURN_IF_ERROR(store.PutSetting(std::string(kHoldKeyCertificateSetting), AsBytes(doc)));
  HF_RETURN_IF_ERROR(Audit(conn, actor, "key.hold.certify",
                           JsonObject()
                               .String("label", label)
                               .String("public_key", ToHex(hold_public))
                               .String("fingerprint", protocol::Fingerprint(hold_public))
                               .str()));
  return hold_public;
}

Result<DeletionCertificate> ShredEpoch(Connection& conn, hsm::Token& token,
                                       const policy::Policy& policy, uint32_t epoch_id,
                                       const std::string& actor, int64_t now_ms,
                                       const std::string& export_dir) {
  HF_ASSIGN_OR_RETURN(CeremonyLock lock, CeremonyLock::Take(conn));
  Connection::Impl& c = conn.impl();
  Store store(conn);
  const std::string what = EpochText(epoch_id);
  const std::string key_label = hsm::EpochKeyLabel(epoch_id);

  HF_ASSIGN_OR_RETURN(std::optional<ShredRow> row, ReadShred(c, epoch_id, false));
  if (!row) return Status::FailedPrecondition("no shredding of " + what + " was requested");
  if (row->status.state == "requested") {
    return Status::FailedPrecondition("the shredding of " + what +
                                      " needs the approval of a second key custodian");
  }
  if (actor != row->status.requested_by && actor != row->status.approved_by) {
    return Status::PermissionDenied("only " + row->status.requested_by + " or " +
                                    row->status.approved_by + " may run the shredding of " + what);
  }
  HF_ASSIGN_OR_RETURN(EpochRecord epoch, store.GetEpoch(epoch_id));
  HF_ASSIGN_OR_RETURN(Bytes org_root, token.PublicKey(hsm::kOrgRootLabel));

  // 1 and 2: while the key may still exist.
  if (row->status.state == "approved" || row->status.state == "rewrapped") {
    HF_ASSIGN_OR_RETURN(policy::RetentionClass longest, LongestClass(policy));
    const int64_t deadline = epoch.not_after_ms + int64_t{longest.days} * kDayMs;
    if (now_ms < deadline) {
      const std::string reason = what + " is retained until " +
                                 FormatUtc(deadline, TimePrecision::kSeconds) + " (class " +
                                 longest.name + ", " + std::to_string(longest.days) +
                                 " days after the epoch ends)";
      HF_RETURN_IF_ERROR(Audit(conn, actor, "epoch.shred.refused",
                               JsonObject().Int("epoch_id", epoch_id).String("reason", reason).str()));
      return Status::FailedPrecondition(reason);
    }
    auto key = token.Describe(key_label);
    const bool key_present = key.ok();
    if (!key_present && key.status().code() != Code::kNotFound) return key.status();
    if (!key_present && row->status.state == "approved") {
      return Status::FailedPrecondition("the token holds no key " + key_label +
                                        " and the shredding has not destroyed it");
    }
    if (key_present) {
      HF_ASSIGN_OR_RETURN(HeldEnvelopes held, HeldEnvelopesOfEpoch(conn, epoch_id));
      HF_ASSIGN_OR_RETURN(std::set<int64_t> done, RewrappedOfEpoch(conn, epoch_id));
      std::vector<HoldCapsuleRecord> capsules;
      Bytes hold_public;
      for (const auto& [id, stored] : held.envelopes) {
        if (done.count(id)) continue;
        if (hold_public.empty()) {
          HF_ASSIGN_OR_RETURN(hold_public, EnsureHoldKey(conn, token, actor, now_ms));
        }
        auto capsule = Rewrap(token, stored, epoch.public_key, hold_public);
        if (!capsule.ok()) {
          const std::string reason = "envelope " + std::to_string(id) + " (message " +
                                     ToHex(stored.message_id) +
                                     ") is under legal hold and cannot be re-wrapped: " +
                                     capsule.status().message();
          HF_RETURN_IF_ERROR(Audit(conn, actor, "epoch.shred.blocked",
                                   JsonObject()
                                       .Int("epoch_id", epoch_id)
                                       .Int("envelope_id", id)
                                       .String("reason", reason)
                                       .str()));
          return Status::FailedPrecondition(reason + "; nothing was destroyed or deleted");
        }
        capsules.push_back(*std::move(capsule));
      }
      HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
      HF_ASSIGN_OR_RETURN(std::optional<ShredRow> locked, ReadShred(c, epoch_id, true));
      if (!locked || (locked->status.state != "approved" && locked->status.state != "rewrapped")) {
        return Status::FailedPrecondition("the shredding of " + what + " changed state");
      }
      for (const HoldCapsuleRecord& capsule : capsules) {
        HF_RETURN_IF_ERROR(Exec(c,
                                "INSERT INTO hold_capsules (envelope_id, hold_key_label, enc, ct)"
                                " VALUES ($1, $2, $3, $4)",
                                Params()
                                    .Int8(capsule.envelope_id)
                                    .Text(capsule.hold_key_label)
                                    .Bytea(capsule.enc)
                                    .Bytea(capsule.ct))
                               .status());
      }
      // Holds that ever covered the epoch stay named, across reruns.
      std::set<int64_t> hold_ids(locked->hold_ids.begin(), locked->hold_ids.end());
      hold_ids.insert(held.hold_ids.begin(), held.hold_ids.end());
      row->hold_ids.assign(hold_ids.begin(), hold_ids.end());
      HF_RETURN_IF_ERROR(Exec(c,
                              "UPDATE epoch_shreddings SET state = 'rewrapped',"
                              " policy_version = $2, retention_class = $3, retention_days = $4,"
                              " hold_ids = $5 WHERE epoch_id = $1",
                              Params()
                                  .Int8(epoch_id)
                                  .Text(policy.version())
                                  .Text(longest.name)
                                  .Int4(longest.days)
                                  .Int8Array(row->hold_ids))
                             .status());
      HF_RETURN_IF_ERROR(AppendAudit(c, actor, "epoch.shred.rewrap",
                                     JsonObject()
                                         .Int("epoch_id", epoch_id)
                                         .Int("rewrapped", static_cast<int64_t>(capsules.size()))
                                         .Int("held", static_cast<int64_t>(held.envelopes.size()))
                                         .Raw("hold_ids", internal::JsonInt64Array(row->hold_ids))
                                         .String("policy_version", policy.version())
                                         .str()));
      HF_RETURN_IF_ERROR(tx.Commit());
      row->status.state = "rewrapped";
      row->policy_version = policy.version();
      row->retention_class = longest.name;
      row->retention_days = longest.days;
    }
    // Without the key (a crash after C_DestroyObject, before it was
    // recorded), the state is already "rewrapped": go on to record it.
  }

  // 3: destroy the epoch private key; its public key object stays.
  if (row->status.state == "rewrapped") {
    Status destroyed = token.DestroyKey(key_label);
    const bool already_absent = destroyed.code() == Code::kNotFound;
    if (!destroyed.ok() && !already_absent) return destroyed.WithContext("destroying " + key_label);
    HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
    HF_RETURN_IF_ERROR(Exec(c,
                            "UPDATE epoch_shreddings SET state = 'key_destroyed',"
                            " destroyed_at = hf_ts($2) WHERE epoch_id = $1 AND state = 'rewrapped'",
                            Params().Int8(epoch_id).Int8(now_ms))
                           .status());
    HF_RETURN_IF_ERROR(AppendAudit(c, actor, "epoch.shred.destroy_key",
                                   JsonObject()
                                       .Int("epoch_id", epoch_id)
                                       .String("label", key_label)
                                       .Bool("already_absent", already_absent)
                                       .str()));
    HF_RETURN_IF_ERROR(tx.Commit());
    row->status.state = "key_destroyed";
    row->destroyed_at_ms = now_ms;
  }

  // 4: delete what no hold keeps, and certify.
  if (row->status.state == "key_destroyed") {
    HF_ASSIGN_OR_RETURN(HeldEnvelopes held, HeldEnvelopesOfEpoch(conn, epoch_id));
    HF_ASSIGN_OR_RETURN(std::set<int64_t> rewrapped, RewrappedOfEpoch(conn, epoch_id));
    std::vector<int64_t> keep;
    uint64_t retained_unwrapped = 0;
    for (const auto& [id, stored] : held.envelopes) {
      keep.push_back(id);
      if (!rewrapped.count(id)) ++retained_unwrapped;
    }
    HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
    HF_ASSIGN_OR_RETURN(std::optional<ShredRow> locked, ReadShred(c, epoch_id, true));
    if (!locked || locked->status.state != "key_destroyed") {
      return Status::FailedPrecondition("the shredding of " + what + " changed state");
    }
    keep.insert(keep.end(), rewrapped.begin(), rewrapped.end());
    HF_ASSIGN_OR_RETURN(const int64_t deleted, DropEpochPartitions(c, epoch_id, keep));
    std::vector<std::string> approvers = {locked->status.requested_by, locked->status.approved_by};
    const std::string body =
        JsonObject()
            .String("format", kCertificateFormat)
            .Int("epoch_id", epoch_id)
            .Int("not_before_ms", epoch.not_before_ms)
            .Int("not_after_ms", epoch.not_after_ms)
            .String("epoch_public_key", ToHex(epoch.public_key))
            .Int("envelopes_deleted", deleted)
            .Int("envelopes_rewrapped", static_cast<int64_t>(rewrapped.size()))
            .Int("envelopes_retained_unwrapped", static_cast<int64_t>(retained_unwrapped))
            .Raw("hold_ids", internal::JsonInt64Array(locked->hold_ids))
            .Int("destroyed_at_ms", locked->destroyed_at_ms)
            .Raw("approvers", internal::JsonStringArray(approvers))
            .String("executed_by", actor)
            .String("policy_version", locked->policy_version)
            .String("retention_class", locked->retention_class)
            .Int("retention_days", locked->retention_days)
            .String("org_root_public_key", ToHex(org_root))
            .str();
    HF_ASSIGN_OR_RETURN(Bytes signature,
                        SignChecked(token, labels::kDeletionCertSig, body, org_root));
    HF_RETURN_IF_ERROR(Exec(c,
                            "INSERT INTO deletion_certificates (epoch_id, body, signature)"
                            " VALUES ($1, $2, $3)",
                            Params().Int8(epoch_id).Text(body).Bytea(signature))
                           .status());
    HF_RETURN_IF_ERROR(Exec(c,
                            "UPDATE epoch_shreddings SET state = 'completed' WHERE epoch_id = $1",
                            Params().Int8(epoch_id))
                           .status());
    HF_RETURN_IF_ERROR(AppendAudit(
        c, actor, "epoch.shred.complete",
        JsonObject()
            .Int("epoch_id", epoch_id)
            .Int("envelopes_deleted", deleted)
            .Int("envelopes_rewrapped", static_cast<int64_t>(rewrapped.size()))
            .Int("envelopes_retained_unwrapped", static_cast<int64_t>(retained_unwrapped))
            .String("certificate_sha256", ToHex(protocol::Sha256(AsBytes(body))))
            .str()));
    HF_RETURN_IF_ERROR(tx.Commit());
    row->status.state = "completed";
  }

  if (row->status.state != "completed") {
    return Status::Internal("the shredding of " + what + " is in state " + row->status.state);
  }
  HF_ASSIGN_OR_RETURN(auto stored, Exec(c,
                                        "SELECT body, signature FROM deletion_certificates"
                                        " WHERE epoch_id = $1",
                                        Params().Int8(epoch_id)));
  if (stored.rows() == 0) return Status::Internal("the shredding of " + what + " has no certificate");
  SignedDocument doc{stored.Text(0, 0), stored.Bytea(0, 1)};
  const std::string file = SignedDocumentJson(doc);
  HF_ASSIGN_OR_RETURN(DeletionCertificate cert, VerifyDeletionCertificate(file, org_root));
  if (!export_dir.empty()) {
    HF_RETURN_IF_ERROR(WriteFile0600(
        std::filesystem::path(export_dir) / DeletionCertificateFileName(epoch_id), file));
  }
  return cert;
}

}  // namespace holdfast::archive
