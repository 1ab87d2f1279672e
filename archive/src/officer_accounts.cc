#include "holdfast/archive/officer_accounts.h"

#include "audit.h"
#include "json.h"
#include "pg.h"

namespace holdfast::archive {

using internal::AppendAudit;
using internal::Exec;
using internal::JsonObject;
using internal::Params;
using internal::Transaction;

Result<OfficerCredentials> OfficerAccounts::Get(const std::string& name) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT name, role, coalesce(password_hash, ''),"
                                   " coalesce(totp_secret, ''), totp_last_step, failed_logins,"
                                   " coalesce(hf_ms(locked_until), 0), disabled_at IS NOT NULL"
                                   " FROM officers WHERE name = $1",
                                   Params().Text(name)));
  if (r.rows() == 0) return Status::NotFound("no officer " + name);
  OfficerCredentials c;
  c.name = r.Text(0, 0);
  c.role = r.Text(0, 1);
  c.password_hash = r.Text(0, 2);
  Bytes secret = r.Bytea(0, 3);
  c.totp_secret = SecretBytes(secret);
  SecureWipe(secret.data(), secret.size());
  c.totp_last_step = r.Int(0, 4);
  c.failed_logins = static_cast<int>(r.Int(0, 5));
  c.locked_until_ms = r.Int(0, 6);
  c.disabled = r.Bool(0, 7);
  return c;
}

namespace {

// Updates one officer row and audits it, in one transaction.
Status UpdateOfficer(Connection::Impl& c, const std::string& name, std::string_view sql,
                     Params params, const std::string& actor, std::string_view action) {
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto r, Exec(c, sql, params));
  if (r.affected() == 0) return Status::NotFound("no officer " + name);
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, action, JsonObject().String("officer", name).str()));
  return tx.Commit();
}

}  // namespace

Status OfficerAccounts::SetPassword(const std::string& name, const std::string& argon2id_encoded,
                                    const std::string& actor) {
  if (argon2id_encoded.rfind("$argon2id$", 0) != 0) {
    return Status::InvalidArgument("not an Argon2id encoded hash");
  }
  return UpdateOfficer(conn_.impl(), name,
                       "UPDATE officers SET password_hash = $2, failed_logins = 0,"
                       " locked_until = NULL WHERE name = $1",
                       Params().Text(name).Text(argon2id_encoded), actor, "officer.password.set");
}

Status OfficerAccounts::SetTotpSecret(const std::string& name, ByteView secret,
                                      const std::string& actor) {
  if (secret.size() < 16) return Status::InvalidArgument("a TOTP secret has at least 16 bytes");
  return UpdateOfficer(conn_.impl(), name,
                       "UPDATE officers SET totp_secret = $2, totp_last_step = 0 WHERE name = $1",
                       Params().Text(name).Bytea(secret), actor, "officer.totp.enroll");
}

Status OfficerAccounts::Disable(const std::string& name, const std::string& actor) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "UPDATE officers SET disabled_at = coalesce(disabled_at, now())"
                                   " WHERE name = $1",
                                   Params().Text(name)));
  if (r.affected() == 0) return Status::NotFound("no officer " + name);
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE admin_sessions SET ended_at = now()"
                          " WHERE officer = $1 AND ended_at IS NULL",
                          Params().Text(name))
                         .status());
  HF_RETURN_IF_ERROR(
      AppendAudit(c, actor, "officer.disable", JsonObject().String("officer", name).str()));
  return tx.Commit();
}

Status OfficerAccounts::RecordFailure(const std::string& name, const std::string& address,
                                      const std::string& reason, int max_failures,
                                      int64_t lock_ms) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "UPDATE officers SET failed_logins = failed_logins + 1,"
                                   " locked_until = CASE WHEN failed_logins + 1 >= $2"
                                   "   THEN now() + make_interval(secs => $3 / 1000.0)"
                                   "   ELSE locked_until END"
                                   " WHERE name = $1 RETURNING failed_logins",
                                   Params().Text(name).Int8(max_failures).Int8(lock_ms)));
  JsonObject detail;
  detail.String("officer", name).String("address", address).String("reason", reason);
  if (r.rows() > 0) detail.Int("consecutive_failures", r.Int(0, 0));
  HF_RETURN_IF_ERROR(AppendAudit(c, r.rows() > 0 ? name : "anonymous", "officer.sign_in_failed",
                                 detail.str()));
  return tx.Commit();
}

Result<bool> OfficerAccounts::UseTotpStep(const std::string& name, int64_t step) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "UPDATE officers SET totp_last_step = $2"
                                   " WHERE name = $1 AND totp_last_step < $2",
                                   Params().Text(name).Int8(step)));
  return r.affected() == 1;
}

Status OfficerAccounts::OpenSession(ByteView token_sha256, const std::string& name,
                                    const std::string& address) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE officers SET failed_logins = 0, locked_until = NULL"
                          " WHERE name = $1",
                          Params().Text(name))
                         .status());
  // A sign-in counts as a step-up: the officer has just given a code.
  HF_RETURN_IF_ERROR(Exec(c,
                          "INSERT INTO admin_sessions (token_sha256, officer, address, step_up_at)"
                          " VALUES ($1, $2, $3, now())",
                          Params().Bytea(token_sha256).Text(name).Text(address))
                         .status());
  HF_RETURN_IF_ERROR(AppendAudit(c, name, "officer.sign_in",
                                 JsonObject().String("address", address).str()));
  return tx.Commit();
}

Result<AdminSession> OfficerAccounts::Resume(ByteView token_sha256, int64_t idle_ms,
                                             int64_t absolute_ms) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "SELECT s.officer, o.role, hf_ms(s.created_at),"
                                   " hf_ms(s.last_seen_at), coalesce(hf_ms(s.step_up_at), 0),"
                                   " s.ended_at IS NOT NULL OR o.disabled_at IS NOT NULL,"
                                   " s.last_seen_at < now() - make_interval(secs => $2 / 1000.0)"
                                   " OR s.created_at < now() - make_interval(secs => $3 / 1000.0)"
                                   " FROM admin_sessions s JOIN officers o ON o.name = s.officer"
                                   " WHERE s.token_sha256 = $1",
                                   Params().Bytea(token_sha256).Int8(idle_ms).Int8(absolute_ms)));
  if (r.rows() == 0 || r.Bool(0, 5)) return Status::NotFound("no such session");
  if (r.Bool(0, 6)) {
    HF_RETURN_IF_ERROR(Exec(c, "UPDATE admin_sessions SET ended_at = now() WHERE token_sha256 = $1",
                            Params().Bytea(token_sha256))
                           .status());
    return Status::NotFound("the session expired");
  }
  HF_RETURN_IF_ERROR(Exec(c, "UPDATE admin_sessions SET last_seen_at = now() WHERE token_sha256 = $1",
                          Params().Bytea(token_sha256))
                         .status());
  AdminSession s;
  s.officer = r.Text(0, 0);
  s.role = r.Text(0, 1);
  s.created_at_ms = r.Int(0, 2);
  s.last_seen_at_ms = r.Int(0, 3);
  s.step_up_at_ms = r.Int(0, 4);
  return s;
}

Status OfficerAccounts::StepUp(ByteView token_sha256) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "UPDATE admin_sessions SET step_up_at = now()"
                                   " WHERE token_sha256 = $1 AND ended_at IS NULL"
                                   " RETURNING officer",
                                   Params().Bytea(token_sha256)));
  if (r.rows() == 0) return Status::NotFound("no such session");
  HF_RETURN_IF_ERROR(AppendAudit(c, r.Text(0, 0), "officer.step_up", "{}"));
  return tx.Commit();
}

Status OfficerAccounts::EndSession(ByteView token_sha256, const std::string& actor) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "UPDATE admin_sessions SET ended_at = now()"
                                   " WHERE token_sha256 = $1 AND ended_at IS NULL",
                                   Params().Bytea(token_sha256)));
  if (r.affected() == 0) return Status::NotFound("no such session");
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, "officer.sign_out", "{}"));
  return tx.Commit();
}

}  // namespace holdfast::archive
