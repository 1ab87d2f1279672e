#include "holdfast/gateway/ceremony.h"

#include <algorithm>
#include <utility>
#include <cstdlib>

#include "holdfast/archive/compliance.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"

namespace holdfast::gateway {
namespace {

// pg_advisory_lock key serialising key ceremonies: "hfkeycer".
constexpr int64_t kCeremonyLock = 0x6866'6b65'7963'6572;

}  // namespace

namespace {

// The PIN from the first source configured: systemd credential,
// environment variable, file.
Result<SecretBytes> ReadPin(const std::string& credential, const std::string& env,
                            const std::string& file) {
  if (!credential.empty()) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir == nullptr || *dir == '\0') {
      return Status::Unavailable("PIN credential " + credential +
                                 " is configured but CREDENTIALS_DIRECTORY is not set (LoadCredential= in the unit)");
    }
    return hsm::ReadPinFile(std::string(dir) + "/" + credential);
  }
  if (!env.empty()) return hsm::ReadPinEnv(env);
  return hsm::ReadPinFile(file);
}

// Opens the token and refuses it unless every Holdfast key in it passes the
// attribute policy for the token's role.
Result<std::unique_ptr<hsm::Token>> OpenCheckedToken(const Config& config, const std::string& label,
                                                     SecretBytes pin, hsm::TokenRole role) {
  hsm::TokenConfig tc;
  tc.module_path = config.hsm.module;
  tc.token_label = label;
  tc.pin = std::move(pin);
  tc.sessions = static_cast<size_t>(std::max(config.hsm.sessions, 1));
  HF_ASSIGN_OR_RETURN(std::unique_ptr<hsm::Token> token, hsm::Token::Open(tc));
  HF_ASSIGN_OR_RETURN(std::vector<hsm::KeyInfo> keys, token->ListKeys());
  HF_RETURN_IF_ERROR(hsm::CheckKeyPolicy(keys, label, role)
                         .WithContext("HSM key attribute policy (see hsm/README.md)"));
  return token;
}

}  // namespace

Result<std::unique_ptr<hsm::Token>> OpenToken(const Config& config) {
  HF_ASSIGN_OR_RETURN(SecretBytes pin,
                      ReadPin(config.hsm.pin_credential, config.hsm.pin_env, config.hsm.pin_file));
  return OpenCheckedToken(config, config.hsm.token_label, std::move(pin), hsm::TokenRole::kArchive);
}

Result<std::unique_ptr<hsm::Token>> OpenEnrollmentToken(const Config& config) {
  HF_ASSIGN_OR_RETURN(SecretBytes pin, ReadPin(config.hsm.enrollment_pin_credential,
                                               config.hsm.enrollment_pin_env, config.hsm.enrollment_pin_file));
  return OpenCheckedToken(config, config.hsm.enrollment_token_label, std::move(pin),
                          hsm::TokenRole::kEnrollment);
}

namespace {

// Holds the ceremony lock for its lifetime; the lock is the session's.
class CeremonyLock {
 public:
  static Result<CeremonyLock> Take(archive::Connection& conn) {
    HF_RETURN_IF_ERROR(conn.Execute("SELECT pg_advisory_lock(" + std::to_string(kCeremonyLock) + ")"));
    return CeremonyLock(conn);
  }
  CeremonyLock(CeremonyLock&& other) noexcept : conn_(std::exchange(other.conn_, nullptr)) {}
  CeremonyLock& operator=(CeremonyLock&&) = delete;
  ~CeremonyLock() {
    if (conn_) (void)conn_->Execute("SELECT pg_advisory_unlock(" + std::to_string(kCeremonyLock) + ")");
  }

 private:
  explicit CeremonyLock(archive::Connection& conn) : conn_(&conn) {}
  archive::Connection* conn_;
};

Result<archive::EpochRecord> CreateEpochLocked(hsm::Token& token, archive::Connection& conn,
                                               const Config& config, const std::string& actor,
                                               int64_t not_before_ms) {
  archive::Store store(conn);
  HF_ASSIGN_OR_RETURN(auto epochs, store.ListEpochs());
  const uint32_t id = epochs.empty() ? 1 : epochs.back().epoch_id + 1;
  // A key left in the HSM by an earlier run that failed before its
  // certificate was stored is certified now instead of blocking rotation.
  auto generated = token.GenerateEpochKey(id);
  if (!generated.ok() && generated.status().code() == Code::kAlreadyExists) {
    generated = token.PublicKey(hsm::EpochKeyLabel(id));
  }
  HF_ASSIGN_OR_RETURN(Bytes pub, std::move(generated));

  protocol::wire::EpochCertificateBody body;
  body.set_version(protocol::labels::kProtocolVersion);
  body.set_epoch_id(id);
  body.set_public_key(AsString(pub));
  body.set_not_before_ms(not_before_ms);
  body.set_not_after_ms(not_before_ms + int64_t{config.keys.epoch_days} * 24 * 3600 * 1000);
  body.set_org(config.org);
  const std::string body_bytes = body.SerializeAsString();
  HF_ASSIGN_OR_RETURN(Bytes sig,
                      token.SignWithOrgRoot(protocol::EpochCertificateSigningInput(AsBytes(body_bytes))));
  protocol::wire::EpochCertificate cert;
  cert.set_body(body_bytes);
  cert.set_signature(AsString(sig));
  const std::string cert_bytes = cert.SerializeAsString();

  archive::EpochRecord rec;
  rec.epoch_id = id;
  rec.certificate.assign(cert_bytes.begin(), cert_bytes.end());
  rec.public_key = pub;
  rec.not_before_ms = body.not_before_ms();
  rec.not_after_ms = body.not_after_ms();
  HF_RETURN_IF_ERROR(store.PutEpoch(rec));
  archive::Compliance compliance(conn);
  HF_RETURN_IF_ERROR(compliance.Audit(
      actor, "key.epoch.create",
      "{\"epoch_id\":" + std::to_string(id) + ",\"label\":\"" + hsm::EpochKeyLabel(id) +
          "\",\"public_key\":\"" + ToHex(pub) + "\",\"not_before_ms\":" +
          std::to_string(rec.not_before_ms) + ",\"not_after_ms\":" + std::to_string(rec.not_after_ms) + "}"));
  return rec;
}

// Creates the enrollment key if the enrollment token has none and makes
// sure a certificate of it by the org root, valid at now_ms, is stored.
Status EnsureEnrollmentKeyLocked(hsm::Token& root, hsm::Token& enrollment, archive::Connection& conn,
                                 const Config& config, const std::string& actor, int64_t now_ms,
                                 InitReport& report) {
  archive::Store store(conn);
  archive::Compliance compliance(conn);
  const std::string setting(archive::kEnrollmentKeyCertificateSetting);
  const std::string label(hsm::kEnrollmentKeyLabel);
  const std::string where = "enrollment token \"" + config.hsm.enrollment_token_label + "\"";

  std::optional<protocol::wire::EnrollmentKeyCertificateBody> stored;
  auto recorded = store.GetSetting(setting);
  if (recorded.ok()) {
    protocol::wire::EnrollmentKeyCertificate cert;
    if (!cert.ParseFromArray(recorded->data(), static_cast<int>(recorded->size()))) {
      return Status::FailedPrecondition("the stored enrollment key certificate does not parse");
    }
    auto body = protocol::VerifyEnrollmentKeyCertificate(cert, report.root_public, 0);
    if (!body.ok()) {
      return Status::FailedPrecondition(
          "the stored enrollment key certificate does not verify under the org root: " +
          body.status().message());
    }
    stored = std::move(body).value();
  } else if (recorded.status().code() != Code::kNotFound) {
    return recorded.status();
  }

  auto existing = enrollment.PublicKey(label);
  if (existing.ok()) {
    report.enrollment_public = *existing;
  } else if (existing.status().code() == Code::kNotFound) {
    // A replaced token must not silently get a certificate for a new key.
    if (stored) {
      return Status::FailedPrecondition("the database holds a certificate of an enrollment key, but the " +
                                        where + " holds no key " + label +
                                        "; refusing to certify another one");
    }
    HF_ASSIGN_OR_RETURN(report.enrollment_public, enrollment.GenerateSigningKey(label));
    report.created_enrollment_key = true;
    HF_RETURN_IF_ERROR(compliance.Audit(actor, "key.enrollment.create",
                                        "{\"label\":\"" + label + "\",\"token\":\"" +
                                            config.hsm.enrollment_token_label + "\",\"public_key\":\"" +
                                            ToHex(report.enrollment_public) + "\"}"));
  } else {
    return existing.status().WithContext(where);
  }

  if (stored) {
    if (stored->public_key() != AsString(report.enrollment_public)) {
      return Status::FailedPrecondition(
          "the database holds a certificate of another enrollment key than the " + where +
          " holds; refusing to continue");
    }
    if (now_ms >= stored->not_before_ms() && now_ms < stored->not_after_ms()) {
      report.enrollment_certificate = *recorded;
      report.enrollment_not_after_ms = stored->not_after_ms();
      return Status::Ok();
    }
  }

  // Only a key that the token keeps to itself and that can do nothing but
  // sign is certified (a key imported by someone else would not be).
  HF_ASSIGN_OR_RETURN(hsm::KeyInfo info, enrollment.Describe(label));
  if (!info.sensitive || info.extractable || !info.can_sign || info.can_derive) {
    return Status::FailedPrecondition(
        "key " + label + " in the " + where +
        " is not sensitive, non-extractable and sign-only; refusing to certify it");
  }
  const int64_t not_after_ms = now_ms + int64_t{config.keys.enrollment_key_days} * 24 * 3600 * 1000;
  const std::string body_bytes =
      protocol::MakeEnrollmentKeyCertificateBody(report.enrollment_public, now_ms, not_after_ms, config.org)
          .SerializeAsString();
  HF_ASSIGN_OR_RETURN(
      Bytes sig, root.SignWithOrgRoot(protocol::EnrollmentKeyCertificateSigningInput(AsBytes(body_bytes))));
  protocol::wire::EnrollmentKeyCertificate cert;
  cert.set_body(body_bytes);
  cert.set_signature(AsString(sig));
  const std::string cert_bytes = cert.SerializeAsString();
  HF_RETURN_IF_ERROR(store.PutSetting(setting, AsBytes(cert_bytes)));
  report.certified_enrollment_key = true;
  report.enrollment_certificate.assign(cert_bytes.begin(), cert_bytes.end());
  report.enrollment_not_after_ms = not_after_ms;
  return compliance.Audit(actor, "key.enrollment.certify",
                          "{\"label\":\"" + label + "\",\"public_key\":\"" + ToHex(report.enrollment_public) +
                              "\",\"fingerprint\":\"" + protocol::Fingerprint(report.enrollment_public) +
                              "\",\"not_before_ms\":" + std::to_string(now_ms) +
                              ",\"not_after_ms\":" + std::to_string(not_after_ms) + "}");
}

}  // namespace

// One ceremony at a time across processes (a timer and an operator may
// rotate together): the decision and the creation happen under one lock.
Result<archive::EpochRecord> CreateEpoch(hsm::Token& token, archive::Connection& conn,
                                         const Config& config, const std::string& actor,
                                         int64_t not_before_ms) {
  HF_ASSIGN_OR_RETURN(CeremonyLock lock, CeremonyLock::Take(conn));
  return CreateEpochLocked(token, conn, config, actor, not_before_ms);
}

Result<std::optional<archive::EpochRecord>> RotateIfDue(hsm::Token& token, archive::Connection& conn,
                                                        const Config& config, const std::string& actor,
                                                        int64_t now_ms) {
  if (config.keys.rotate_ahead_days == 0) return std::optional<archive::EpochRecord>();
  HF_ASSIGN_OR_RETURN(CeremonyLock lock, CeremonyLock::Take(conn));
  archive::Store store(conn);
  HF_ASSIGN_OR_RETURN(auto epochs, store.ListEpochs());
  if (epochs.empty()) return std::optional<archive::EpochRecord>();
  const int64_t ends = epochs.back().not_after_ms;
  const int64_t ahead_ms = int64_t{config.keys.rotate_ahead_days} * 24 * 3600 * 1000;
  if (ends - now_ms > ahead_ms) return std::optional<archive::EpochRecord>();
  HF_ASSIGN_OR_RETURN(auto next, CreateEpochLocked(token, conn, config, actor, std::max(ends, now_ms)));
  return std::optional<archive::EpochRecord>(std::move(next));
}

Result<InitReport> InitializeKeys(hsm::Token& token, hsm::Token& enrollment, archive::Connection& conn,
                                  const Config& config, const std::string& actor, int64_t now_ms) {
  InitReport report;
  archive::Store store(conn);
  archive::Compliance compliance(conn);
  auto existing = token.PublicKey(hsm::kOrgRootLabel);
  if (existing.ok()) {
    report.root_public = *existing;
  } else if (existing.status().code() == Code::kNotFound) {
    HF_ASSIGN_OR_RETURN(report.root_public, token.GenerateOrgRoot());
    report.created_root = true;
    HF_RETURN_IF_ERROR(compliance.Audit(actor, "key.org_root.create",
                                        "{\"label\":\"" + std::string(hsm::kOrgRootLabel) +
                                            "\",\"public_key\":\"" + ToHex(report.root_public) + "\"}"));
  } else {
    return existing.status();
  }
  auto recorded = store.GetSetting(std::string(archive::kOrgRootPublicKeySetting));
  if (recorded.ok() && *recorded != report.root_public) {
    return Status::FailedPrecondition(
        "the database records a different org root key than the HSM holds; refusing to continue");
  }
  if (!recorded.ok()) {
    if (recorded.status().code() != Code::kNotFound) return recorded.status();
    HF_RETURN_IF_ERROR(store.PutSetting(std::string(archive::kOrgRootPublicKeySetting), report.root_public));
  }
  {
    HF_ASSIGN_OR_RETURN(CeremonyLock lock, CeremonyLock::Take(conn));
    HF_RETURN_IF_ERROR(EnsureEnrollmentKeyLocked(token, enrollment, conn, config, actor, now_ms, report));
  }
  auto current = store.CurrentEpoch(now_ms);
  if (current.ok()) {
    report.epoch = *current;
    return report;
  }
  if (current.status().code() != Code::kNotFound) return current.status();
  HF_ASSIGN_OR_RETURN(report.epoch, CreateEpoch(token, conn, config, actor, now_ms));
  report.created_epoch = true;
  return report;
}

}  // namespace holdfast::gateway
