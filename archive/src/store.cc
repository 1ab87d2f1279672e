#include "holdfast/archive/store.h"

#include <algorithm>
#include <functional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "audit.h"
#include "json.h"
#include "pg.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::archive {

using internal::Exec;
using internal::Params;
using internal::PgResult;
using internal::Pipeline;
using internal::Transaction;

namespace {

// Unambiguous to read aloud and to type: no 0/O, no 1/I.
constexpr std::string_view kCodeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
constexpr size_t kCodeLength = 20;
constexpr size_t kCodeGroup = 5;

// Uppercases and drops separators, so "abcde-fghjk ..." matches.
std::string NormaliseCode(std::string_view code) {
  std::string out;
  for (char c : code) {
    if (c == '-' || c == ' ') continue;
    out.push_back((c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c);
  }
  return out;
}

Bytes CodeHash(std::string_view code) { return protocol::Sha256(AsBytes(NormaliseCode(code))); }

void AppendBe32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// SHA-256 over the sorted members, each prefixed by its length.
Bytes MemberSetHash(const std::vector<std::string>& sorted_members) {
  Bytes encoded;
  for (const std::string& m : sorted_members) {
    AppendBe32(encoded, static_cast<uint32_t>(m.size()));
    encoded.insert(encoded.end(), m.begin(), m.end());
  }
  return protocol::Sha256(encoded);
}

DeviceRecord DeviceFromRow(const PgResult& r, int row) {
  DeviceRecord d;
  d.user = r.Text(row, 0);
  d.device_id = r.Bytea(row, 1);
  d.identity_key = r.Bytea(row, 2);
  d.signed_prekey = r.Bytea(row, 3);
  d.registered_at_ms = r.Int(row, 4);
  d.certificate = r.Bytea(row, 5);
  return d;
}

constexpr std::string_view kDeviceColumns =
    "user_name, device_id, identity_key, signed_prekey, hf_ms(registered_at), certificate";

EpochRecord EpochFromRow(const PgResult& r, int row) {
  EpochRecord e;
  e.epoch_id = static_cast<uint32_t>(r.Int(row, 0));
  e.certificate = r.Bytea(row, 1);
  e.public_key = r.Bytea(row, 2);
  e.not_before_ms = r.Int(row, 3);
  e.not_after_ms = r.Int(row, 4);
  return e;
}

constexpr std::string_view kConversationColumns =
    "conversation_id, members, kind = 'group', coalesce(title, ''), coalesce(created_by, ''),"
    " membership_version";

ConversationRecord ConversationFromRow(const PgResult& r, int row) {
  ConversationRecord c;
  c.conversation_id = r.Text(row, 0);
  c.members = r.TextArray(row, 1);
  c.group = r.Bool(row, 2);
  c.title = r.Text(row, 3);
  c.created_by = r.Text(row, 4);
  c.membership_version = r.Int(row, 5);
  return c;
}

void SortUnique(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

bool Contains(const std::vector<std::string>& sorted, const std::string& item) {
  return std::binary_search(sorted.begin(), sorted.end(), item);
}

constexpr std::string_view kEpochColumns =
    "epoch_id, certificate, public_key, hf_ms(not_before), hf_ms(not_after)";

std::string Sql(std::string_view a, std::string_view b, std::string_view c = {}) {
  std::string s(a);
  s += b;
  s += c;
  return s;
}

// The whole batch in one statement. $1..$7 are the envelope columns, one
// element per distinct message id in input order; $8/$9 pair each delivery
// with its envelope's message id, in input order; $10 is the batch's
// distinct epochs. An envelope goes to its epoch's partition
// (retention_epoch = epoch_id), where a message id is unique: envelopes
// whose message id that partition already holds are skipped by ON
// CONFLICT; deliveries are added only for the envelopes this statement
// inserted, and delivery ids are assigned in input order. Result rows:
//   kind 0: envelope_id, message_id, stored_at, epoch of a new envelope
//   kind 1: the same for an envelope stored before this statement's
//           snapshot, from the partitions of the batch's epochs only ($10
//           is a constant of the custom plan, so the others are pruned)
//   kind 2: envelope_id, device_id, delivery_id of a new delivery
// A message id committed by a concurrent transaction after the snapshot is
// skipped by the insert but not seen by the kind-1 lookup; the caller reads
// it back afterwards.
constexpr std::string_view kIngestCtes = R"sql(
WITH ins AS (
  INSERT INTO envelopes (message_id, conversation_id, sender_user, sender_device, epoch_id,
                         retention_epoch, sent_at, envelope)
  SELECT b.message_id, b.conversation_id, b.sender_user, b.sender_device, b.epoch_id,
         b.epoch_id, hf_ts(b.sent_ms), b.envelope
  FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bytea[], $5::int8[], $6::int8[],
              $7::bytea[]) WITH ORDINALITY
       AS b(message_id, conversation_id, sender_user, sender_device, epoch_id, sent_ms,
            envelope, ord)
  ORDER BY b.ord
  ON CONFLICT (message_id, retention_epoch) DO NOTHING
  RETURNING envelope_id, message_id, stored_at, retention_epoch),
dl AS (
  INSERT INTO deliveries (envelope_id, retention_epoch, device_id, created_at)
  SELECT ins.envelope_id, ins.retention_epoch, r.device_id, ins.stored_at
  FROM unnest($8::bytea[], $9::bytea[]) WITH ORDINALITY AS r(message_id, device_id, ord)
  JOIN ins USING (message_id)
  ORDER BY r.ord
  RETURNING envelope_id, device_id, delivery_id)
)sql";

// With an outbox tag: the batch's outbox row ($11 node id, $12 seq), if it
// created any delivery. A data-modifying WITH runs whether or not the
// query reads it.
constexpr std::string_view kOutboxCte = R"sql(,
ob AS (
  INSERT INTO outbox (node_id, seq, delivery_ids)
  SELECT $11, $12, array_agg(delivery_id ORDER BY delivery_id) FROM dl
  HAVING count(*) > 0)
)sql";

constexpr std::string_view kIngestSelect = R"sql(
SELECT 0, envelope_id, message_id, hf_ms(stored_at), retention_epoch FROM ins
UNION ALL
SELECT 1, e.envelope_id, e.message_id, hf_ms(e.stored_at), e.retention_epoch
FROM envelopes e
WHERE e.retention_epoch = ANY ($10::int8[]) AND e.message_id = ANY (ARRAY(
  SELECT m.message_id FROM unnest($1::bytea[]) AS m(message_id)
  WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.message_id = m.message_id)))
UNION ALL
SELECT 2, envelope_id, device_id, delivery_id, 0 FROM dl
)sql";

const std::string& IngestSql(bool outbox) {
  static const std::string plain = Sql(kIngestCtes, kIngestSelect);
  static const std::string with_outbox = Sql(kIngestCtes, kOutboxCte, kIngestSelect);
  return outbox ? with_outbox : plain;
}

// Runs after the ingest statement in the same transaction: notifies only if
// that statement wrote the outbox row.
constexpr std::string_view kOutboxNotifySql =
    "SELECT pg_notify('holdfast_outbox', node_id) FROM outbox WHERE node_id = $1 AND seq = $2";

// Hashes a message id for the batch's lookup table.
struct ViewHash {
  size_t operator()(ByteView v) const {
    return std::hash<std::string_view>()(
        std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
  }
};
struct ViewEqual {
  bool operator()(ByteView a, ByteView b) const {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }
};

// Adds `users` to a conversation; a name that is no user is kNotFound with
// `unknown_user` (the foreign key refuses it).
Status AddMembers(Connection::Impl& c, const std::string& conversation_id,
                  const std::vector<std::string>& users, std::string_view unknown_user) {
  auto added = Exec(c,
                    "INSERT INTO conversation_members (conversation_id, user_name)"
                    " SELECT $1, unnest($2::text[])",
                    Params().Text(conversation_id).TextArray(users));
  if (added.ok()) return Status::Ok();
  if (added.status().code() == Code::kNotFound) return Status::NotFound(std::string(unknown_user));
  return added.status();
}

Status RecordMembershipChange(Connection::Impl& c, const std::string& conversation_id,
                              int64_t version, const std::string& actor,
                              const std::vector<std::string>& added,
                              const std::vector<std::string>& removed) {
  return Exec(c,
              "INSERT INTO conversation_membership_changes"
              " (conversation_id, version, actor, added, removed)"
              " VALUES ($1, $2, $3, $4, $5)",
              Params().Text(conversation_id).Int8(version).Text(actor).TextArray(added)
                  .TextArray(removed))
      .status();
}

}  // namespace

// ------------------------------------------------------------ users, devices

Status Store::CreateUser(const std::string& user, const std::string& display_name) {
  return Exec(conn_.impl(), "INSERT INTO users (user_name, display_name) VALUES ($1, $2)",
              Params().Text(user).Text(display_name))
      .status();
}

Result<bool> Store::UserExists(const std::string& user) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), "SELECT 1 FROM users WHERE user_name = $1",
                                   Params().Text(user)));
  return r.rows() > 0;
}

Result<std::string> Store::IssueEnrollmentCode(const std::string& user, int64_t ttl_ms) {
  if (ttl_ms <= 0) return Status::InvalidArgument("enrollment code lifetime must be positive");
  static_assert(256 % kCodeAlphabet.size() == 0, "uniform choice needs a power-of-two alphabet");
  Bytes random = protocol::RandomBytes(kCodeLength);
  std::string code;
  for (size_t i = 0; i < kCodeLength; ++i) {
    if (i > 0 && i % kCodeGroup == 0) code.push_back('-');
    code.push_back(kCodeAlphabet[random[i] % kCodeAlphabet.size()]);
  }
  SecureWipe(random.data(), random.size());
  auto inserted = Exec(conn_.impl(),
                       "INSERT INTO enrollment_codes (code_sha256, user_name, expires_at)"
                       " VALUES ($1, $2, now() + $3 * interval '1 millisecond')",
                       Params().Bytea(CodeHash(code)).Text(user).Int8(ttl_ms));
  if (!inserted.ok()) {
    if (inserted.status().code() == Code::kNotFound) {
      return Status::NotFound("no user " + user);
    }
    return inserted.status();
  }
  return code;
}

namespace {

Status CheckDeviceRequest(const std::string& user, ByteView master_key, const DeviceRecord& device) {
  if (!device.user.empty() && device.user != user) {
    return Status::InvalidArgument("device record names user " + device.user + ", not " + user);
  }
  if (device.device_id.empty() || device.identity_key.empty()) {
    return Status::InvalidArgument("device id and identity key are required");
  }
  if (master_key.size() != protocol::kMasterKeySize) {
    return Status::InvalidArgument("master key must be 32 bytes");
  }
  return Status::Ok();
}

// The part of an enrollment common to every credential, inside the
// caller's transaction: master key rules, countersignature, device row,
// resend requests and audit entry.
Status EnrollDevice(Connection::Impl& c, const std::string& user, ByteView master_key,
                    const DeviceRecord& device, const CountersignFn& countersign,
                    std::string_view credential, RegisterOutcome* outcome, int64_t queue_ttl_ms) {
  // Locked so that two first devices registering at once cannot both set
  // their own master key.
  HF_ASSIGN_OR_RETURN(auto owner, Exec(c, "SELECT master_key FROM users WHERE user_name = $1 FOR UPDATE",
                                       Params().Text(user)));
  if (owner.rows() != 1) return Status::NotFound("no user " + user);
  if (owner.IsNull(0, 0)) {
    HF_RETURN_IF_ERROR(Exec(c, "UPDATE users SET master_key = $2 WHERE user_name = $1",
                            Params().Text(user).Bytea(master_key))
                           .status());
  } else if (owner.Bytea(0, 0) != Bytes(master_key.begin(), master_key.end())) {
    return Status::FailedPrecondition(
        "user " + user +
        " already has another master key: link this device from an existing one, or ask for an "
        "organisation-assisted restore");
  }
  HF_ASSIGN_OR_RETURN(Bytes certificate, countersign());
  Params p;
  p.Bytea(device.device_id).Text(user).Bytea(device.identity_key).Bytea(device.signed_prekey);
  if (device.registered_at_ms != 0) {
    p.Int8(device.registered_at_ms);
  } else {
    p.Null(internal::kInt8Oid);
  }
  p.Bytea(certificate);
  HF_RETURN_IF_ERROR(Exec(c,
                          "INSERT INTO devices (device_id, user_name, identity_key,"
                          " signed_prekey, registered_at, certificate)"
                          " VALUES ($1, $2, $3, $4, coalesce(hf_ts($5), now()), $6)",
                          p)
                         .status());
  // The sender device re-seals; the new device cannot have sent any of them.
  HF_ASSIGN_OR_RETURN(auto resend,
                      Exec(c,
                           "WITH ins AS ("
                           " INSERT INTO resend_requests (envelope_id, message_id, conversation_id,"
                           "  sender_device, target_device)"
                           " SELECT DISTINCT e.envelope_id, e.message_id, e.conversation_id,"
                           "  e.sender_device, $2::bytea"
                           " FROM devices o"
                           " JOIN deliveries d ON d.device_id = o.device_id"
                           " JOIN envelopes e ON e.envelope_id = d.envelope_id AND e.retention_epoch = d.retention_epoch"
                           " WHERE o.user_name = $1 AND o.device_id <> $2"
                           "  AND d.delivered_at IS NULL AND d.expired_at IS NULL"
                           "  AND d.created_at > now() - $3 * interval '1 millisecond'"
                           "  AND e.sender_device <> $2"
                           " ON CONFLICT DO NOTHING"
                           " RETURNING sender_device)"
                           " SELECT sender_device, count(*) FROM ins GROUP BY sender_device"
                           " ORDER BY sender_device",
                           Params().Text(user).Bytea(device.device_id).Int8(queue_ttl_ms)));
  int64_t resend_requests = 0;
  for (int row = 0; row < resend.rows(); ++row) {
    resend_requests += resend.Int(row, 1);
    if (outcome) outcome->resend_senders.push_back(resend.Bytea(row, 0));
  }
  if (outcome) outcome->resend_requests = resend_requests;
  return internal::AppendAudit(c, "user:" + user, "device.register",
                               internal::JsonObject()
                                   .String("user", user)
                                   .String("device_id", ToHex(device.device_id))
                                   .String("identity_key", ToHex(device.identity_key))
                                   .String("master_key", protocol::Fingerprint(master_key))
                                   .String("credential", credential)
                                   .Int("resend_requests", resend_requests)
                                   .str());
}

}  // namespace

Status Store::RegisterDevice(const std::string& user, const std::string& enrollment_code,
                             ByteView master_key, const DeviceRecord& device,
                             const CountersignFn& countersign, RegisterOutcome* outcome,
                             int64_t queue_ttl_ms) {
  HF_RETURN_IF_ERROR(CheckDeviceRequest(user, master_key, device));
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto used,
                      Exec(c,
                           "UPDATE enrollment_codes SET used_at = now(), device_id = $3"
                           " WHERE code_sha256 = $1 AND user_name = $2"
                           " AND used_at IS NULL AND expires_at > now()",
                           Params().Bytea(CodeHash(enrollment_code)).Text(user)
                               .Bytea(device.device_id)));
  if (used.affected() != 1) {
    return Status::PermissionDenied("enrollment code is wrong, used or expired");
  }
  HF_RETURN_IF_ERROR(EnrollDevice(c, user, master_key, device, countersign, "enrollment_code", outcome,
                                  queue_ttl_ms));
  return tx.Commit();
}

Status Store::RegisterDirectoryDevice(const DirectoryAccount& account, ByteView master_key,
                                      const DeviceRecord& device, const CountersignFn& countersign,
                                      RegisterOutcome* outcome, int64_t queue_ttl_ms) {
  const std::string& user = account.user;
  HF_RETURN_IF_ERROR(CheckDeviceRequest(user, master_key, device));
  std::vector<std::string> permissions = account.permissions;
  SortUnique(permissions);
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  // xmax = 0 only on a freshly inserted row.
  HF_ASSIGN_OR_RETURN(auto upserted,
                      Exec(c,
                           "INSERT INTO users (user_name, display_name, directory_permissions,"
                           " directory_synced_at) VALUES ($1, $2, $3, now())"
                           " ON CONFLICT (user_name) DO UPDATE SET display_name = EXCLUDED.display_name,"
                           " directory_permissions = EXCLUDED.directory_permissions,"
                           " directory_synced_at = EXCLUDED.directory_synced_at"
                           " RETURNING (xmax = 0)",
                           Params().Text(user).Text(account.display_name).TextArray(permissions)));
  if (upserted.rows() != 1) return Status::Internal("user upsert returned no row");
  if (upserted.Bool(0, 0)) {
    HF_RETURN_IF_ERROR(internal::AppendAudit(c, "user:" + user, "user.create",
                                             internal::JsonObject()
                                                 .String("user", user)
                                                 .String("source", "directory")
                                                 .str()));
  }
  HF_RETURN_IF_ERROR(EnrollDevice(c, user, master_key, device, countersign, "directory", outcome,
                                  queue_ttl_ms));
  return tx.Commit();
}

Result<std::optional<std::vector<std::string>>> Store::DirectoryPermissions(const std::string& user) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT directory_permissions FROM users WHERE user_name = $1",
                                   Params().Text(user)));
  if (r.rows() == 0) return Status::NotFound("no user " + user);
  if (r.IsNull(0, 0)) return std::optional<std::vector<std::string>>();
  return std::optional<std::vector<std::string>>(r.TextArray(0, 0));
}

Result<DeviceRecord> Store::GetDevice(ByteView device_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   Sql("SELECT ", kDeviceColumns,
                                       " FROM devices WHERE device_id = $1"),
                                   Params().Bytea(device_id)));
  if (r.rows() == 0) return Status::NotFound("no device " + ToHex(device_id));
  return DeviceFromRow(r, 0);
}

Status Store::UpdatePrekey(ByteView device_id, ByteView signed_prekey) {
  protocol::wire::SignedPrekey fresh;
  if (!fresh.ParseFromArray(signed_prekey.data(), static_cast<int>(signed_prekey.size()))) {
    return Status::InvalidArgument("prekey does not parse");
  }
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  // Locked so that of two concurrent updates the older cannot win.
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "SELECT signed_prekey FROM devices"
                                   " WHERE device_id = $1 AND revoked_at IS NULL FOR UPDATE",
                                   Params().Bytea(device_id)));
  if (r.rows() == 0) return Status::NotFound("no device " + ToHex(device_id));
  const Bytes stored_bytes = r.Bytea(0, 0);
  protocol::wire::SignedPrekey stored;
  if (!stored.ParseFromArray(stored_bytes.data(), static_cast<int>(stored_bytes.size()))) {
    return Status::Internal("stored prekey of device " + ToHex(device_id) + " does not parse");
  }
  if (fresh.created_at_ms() <= stored.created_at_ms()) {
    return Status::FailedPrecondition("prekey created at " + std::to_string(fresh.created_at_ms()) +
                                      " is not newer than the stored one (" +
                                      std::to_string(stored.created_at_ms()) + ")");
  }
  HF_RETURN_IF_ERROR(Exec(c, "UPDATE devices SET signed_prekey = $2 WHERE device_id = $1",
                          Params().Bytea(device_id).Bytea(signed_prekey))
                         .status());
  return tx.Commit();
}

Result<std::vector<DeviceRecord>> Store::DevicesOfUsers(const std::vector<std::string>& users) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   Sql("SELECT ", kDeviceColumns,
                                       " FROM devices WHERE user_name = ANY($1)"
                                       " AND revoked_at IS NULL"
                                       " ORDER BY user_name, registered_at, device_id"),
                                   Params().TextArray(users)));
  std::vector<DeviceRecord> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(DeviceFromRow(r, i));
  return out;
}

Result<Store::SubmitContext> Store::SubmitContextOf(const std::string& conversation_id,
                                                    uint32_t epoch_id) {
  Connection::Impl& c = conn_.impl();
  std::vector<PgResult> results;
  {
    Pipeline pipe(c);
    HF_RETURN_IF_ERROR(pipe.Send(Sql("SELECT ", kConversationColumns,
                                     " FROM conversations WHERE conversation_id = $1"),
                                 Params().Text(conversation_id)));
    HF_RETURN_IF_ERROR(pipe.Send(Sql("SELECT ", kEpochColumns, " FROM epochs WHERE epoch_id = $1"),
                                 Params().Int8(epoch_id)));
    HF_RETURN_IF_ERROR(pipe.Send(
        Sql("SELECT ", kDeviceColumns,
            " FROM devices WHERE user_name = ANY((SELECT members FROM conversations"
            " WHERE conversation_id = $1)::text[]) AND revoked_at IS NULL"
            " ORDER BY user_name, registered_at, device_id"),
        Params().Text(conversation_id)));
    HF_ASSIGN_OR_RETURN(results, pipe.Finish());
  }
  if (results.size() != 3) return Status::Internal("pipeline lost results");
  SubmitContext out;
  if (results[0].rows() > 0) out.conversation = ConversationFromRow(results[0], 0);
  if (results[1].rows() > 0) out.epoch = EpochFromRow(results[1], 0);
  out.devices.reserve(static_cast<size_t>(results[2].rows()));
  for (int i = 0; i < results[2].rows(); ++i) out.devices.push_back(DeviceFromRow(results[2], i));
  return out;
}

// ------------------------------------------------------------ conversations

Result<ConversationRecord> Store::OpenConversation(std::vector<std::string> members) {
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  if (members.empty()) return Status::InvalidArgument("a conversation needs members");
  Bytes member_set = MemberSetHash(members);
  const Bytes random = protocol::RandomBytes(8);
  std::string new_id = "c_" + ToHex(random);

  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto ins,
                      Exec(c,
                           "INSERT INTO conversations (conversation_id, members, member_set_sha256)"
                           " VALUES ($1, $2, $3) ON CONFLICT (member_set_sha256) DO NOTHING"
                           " RETURNING conversation_id",
                           Params().Text(new_id).TextArray(members).Bytea(member_set)));
  ConversationRecord out;
  if (ins.rows() == 1) {
    auto added = Exec(c,
                      "INSERT INTO conversation_members (conversation_id, user_name)"
                      " SELECT $1, unnest($2::text[])",
                      Params().Text(new_id).TextArray(members));
    if (!added.ok()) {
      if (added.status().code() == Code::kNotFound) {
        return Status::NotFound("a member of the conversation is not a user");
      }
      return added.status();
    }
    out.conversation_id = new_id;
    out.members = std::move(members);
  } else {
    // Created by someone else, possibly a moment ago by a concurrent
    // transaction: this statement's fresh snapshot sees it.
    HF_ASSIGN_OR_RETURN(auto found,
                        Exec(c,
                             "SELECT conversation_id, members FROM conversations"
                             " WHERE member_set_sha256 = $1",
                             Params().Bytea(member_set)));
    if (found.rows() != 1) return Status::Internal("conversation vanished while opening it");
    out.conversation_id = found.Text(0, 0);
    out.members = found.TextArray(0, 1);
  }
  HF_RETURN_IF_ERROR(tx.Commit());
  return out;
}

Result<ConversationRecord> Store::GetConversation(const std::string& conversation_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   Sql("SELECT ", kConversationColumns,
                                       " FROM conversations WHERE conversation_id = $1"),
                                   Params().Text(conversation_id)));
  if (r.rows() == 0) return Status::NotFound("no conversation " + conversation_id);
  return ConversationFromRow(r, 0);
}

Result<ConversationRecord> Store::CreateGroup(const std::string& creator, const std::string& title,
                                              std::vector<std::string> members) {
  if (creator.empty()) return Status::InvalidArgument("a group needs a creator");
  if (title.size() > kMaxGroupTitleBytes) {
    return Status::InvalidArgument("group title is longer than " +
                                   std::to_string(kMaxGroupTitleBytes) + " bytes");
  }
  members.push_back(creator);
  SortUnique(members);
  if (members.size() > kMaxConversationMembers) {
    return Status::InvalidArgument("a group has at most " +
                                   std::to_string(kMaxConversationMembers) + " members");
  }
  ConversationRecord out;
  out.conversation_id = "g_" + ToHex(protocol::RandomBytes(8));
  out.members = std::move(members);
  out.group = true;
  out.title = title;
  out.created_by = creator;

  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  auto inserted = Exec(c,
                       "INSERT INTO conversations (conversation_id, members, kind, title, created_by)"
                       " VALUES ($1, $2, 'group', $3, $4)",
                       Params().Text(out.conversation_id).TextArray(out.members).Text(title)
                           .Text(creator));
  if (!inserted.ok()) {
    if (inserted.status().code() == Code::kNotFound) return Status::NotFound("no user " + creator);
    return inserted.status();
  }
  HF_RETURN_IF_ERROR(AddMembers(c, out.conversation_id, out.members,
                                "a member of the group is not a user"));
  HF_RETURN_IF_ERROR(RecordMembershipChange(c, out.conversation_id, 0, creator, out.members, {}));
  HF_RETURN_IF_ERROR(internal::AppendAudit(c, "user:" + creator, "group.create",
                                           internal::JsonObject()
                                               .String("conversation_id", out.conversation_id)
                                               .String("title", title)
                                               .Raw("members", internal::JsonStringArray(out.members))
                                               .str()));
  HF_RETURN_IF_ERROR(tx.Commit());
  return out;
}

Result<ConversationRecord> Store::ChangeMembers(const std::string& conversation_id,
                                                const std::string& actor,
                                                std::vector<std::string> add,
                                                std::vector<std::string> remove) {
  SortUnique(add);
  SortUnique(remove);
  if (add.empty() && remove.empty()) return Status::InvalidArgument("no member to add or remove");
  for (const auto& u : add) {
    if (Contains(remove, u)) return Status::InvalidArgument(u + " is both added and removed");
  }
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  // The row lock orders concurrent changes of one group: each sees the
  // members and version the previous one committed.
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   Sql("SELECT ", kConversationColumns,
                                       " FROM conversations WHERE conversation_id = $1 FOR UPDATE"),
                                   Params().Text(conversation_id)));
  if (r.rows() == 0) return Status::NotFound("no conversation " + conversation_id);
  ConversationRecord conv = ConversationFromRow(r, 0);
  if (!conv.group) {
    return Status::FailedPrecondition("the members of a direct conversation cannot change");
  }
  SortUnique(conv.members);
  if (!Contains(conv.members, actor)) {
    return Status::PermissionDenied(actor + " is not a member of " + conversation_id);
  }
  for (const auto& u : remove) {
    if (!Contains(conv.members, u)) return Status::InvalidArgument(u + " is not a member");
    if (u != actor && actor != conv.created_by) {
      return Status::PermissionDenied("only the group's creator may remove other members");
    }
  }
  for (const auto& u : add) {
    if (Contains(conv.members, u)) return Status::InvalidArgument(u + " is already a member");
  }
  std::vector<std::string> members;
  std::set_difference(conv.members.begin(), conv.members.end(), remove.begin(), remove.end(),
                      std::back_inserter(members));
  members.insert(members.end(), add.begin(), add.end());
  std::sort(members.begin(), members.end());
  if (members.size() > kMaxConversationMembers) {
    return Status::InvalidArgument("a group has at most " +
                                   std::to_string(kMaxConversationMembers) + " members");
  }
  conv.members = std::move(members);
  conv.membership_version += 1;

  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE conversations SET members = $2, membership_version = $3"
                          " WHERE conversation_id = $1",
                          Params().Text(conversation_id).TextArray(conv.members)
                              .Int8(conv.membership_version))
                         .status());
  if (!remove.empty()) {
    HF_RETURN_IF_ERROR(Exec(c,
                            "DELETE FROM conversation_members"
                            " WHERE conversation_id = $1 AND user_name = ANY($2)",
                            Params().Text(conversation_id).TextArray(remove))
                           .status());
  }
  if (!add.empty()) {
    HF_RETURN_IF_ERROR(AddMembers(c, conversation_id, add, "a user to add does not exist"));
  }
  HF_RETURN_IF_ERROR(
      RecordMembershipChange(c, conversation_id, conv.membership_version, actor, add, remove));
  HF_RETURN_IF_ERROR(internal::AppendAudit(c, "user:" + actor, "group.change_members",
                                           internal::JsonObject()
                                               .String("conversation_id", conversation_id)
                                               .Int("version", conv.membership_version)
                                               .Raw("added", internal::JsonStringArray(add))
                                               .Raw("removed", internal::JsonStringArray(remove))
                                               .str()));
  HF_RETURN_IF_ERROR(tx.Commit());
  return conv;
}

Result<std::vector<MembershipChangeRecord>> Store::RecentMembershipChanges(
    const std::string& conversation_id, int limit) {
  if (limit <= 0) return Status::InvalidArgument("limit must be positive");
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT version, actor, added, removed, hf_ms(at) FROM ("
                                   " SELECT * FROM conversation_membership_changes"
                                   " WHERE conversation_id = $1 ORDER BY version DESC LIMIT $2)"
                                   " AS recent ORDER BY version",
                                   Params().Text(conversation_id).Int8(limit)));
  std::vector<MembershipChangeRecord> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(MembershipChangeRecord{r.Int(i, 0), r.Text(i, 1), r.TextArray(i, 2),
                                         r.TextArray(i, 3), r.Int(i, 4)});
  }
  return out;
}

// ------------------------------------------------------------------- epochs

Status Store::PutEpoch(const EpochRecord& epoch) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  // Adding a partition locks the envelope and delivery tables exclusively,
  // for a moment once granted. Waiting behind a long query would stall
  // ingest queued behind this lock, so give up instead.
  HF_RETURN_IF_ERROR(Exec(c, "SET LOCAL lock_timeout = '10s'").status());
  HF_RETURN_IF_ERROR(Exec(c, "SELECT hf_create_epoch_partitions($1)", Params().Int8(epoch.epoch_id))
                         .status()
                         .WithContext("creating the partitions of epoch " +
                                      std::to_string(epoch.epoch_id)));
  HF_RETURN_IF_ERROR(Exec(c,
                          "INSERT INTO epochs (epoch_id, certificate, public_key, not_before,"
                          " not_after) VALUES ($1, $2, $3, hf_ts($4), hf_ts($5))",
                          Params()
                              .Int8(epoch.epoch_id)
                              .Bytea(epoch.certificate)
                              .Bytea(epoch.public_key)
                              .Int8(epoch.not_before_ms)
                              .Int8(epoch.not_after_ms))
                         .status());
  return tx.Commit();
}

Result<EpochRecord> Store::CurrentEpoch(int64_t now_ms) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   Sql("SELECT ", kEpochColumns,
                                       " FROM epochs WHERE not_before <= hf_ts($1)"
                                       " AND hf_ts($1) < not_after"
                                       " ORDER BY not_before DESC, epoch_id DESC LIMIT 1"),
                                   Params().Int8(now_ms)));
  if (r.rows() == 0) return Status::NotFound("no archive epoch is valid now");
  return EpochFromRow(r, 0);
}

Result<EpochRecord> Store::GetEpoch(uint32_t epoch_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   Sql("SELECT ", kEpochColumns, " FROM epochs WHERE epoch_id = $1"),
                                   Params().Int8(epoch_id)));
  if (r.rows() == 0) return Status::NotFound("no epoch " + std::to_string(epoch_id));
  return EpochFromRow(r, 0);
}

Result<std::vector<EpochRecord>> Store::ListEpochs() {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   Sql("SELECT ", kEpochColumns, " FROM epochs ORDER BY epoch_id")));
  std::vector<EpochRecord> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(EpochFromRow(r, i));
  return out;
}

// ------------------------------------------------------- ingest and delivery

Result<std::vector<IngestOutcome>> Store::IngestBatch(const std::vector<IngestItem>& items,
                                                      const std::optional<OutboxTag>& outbox) {
  std::vector<IngestOutcome> outcomes(items.size());
  if (items.empty()) return outcomes;
  Connection::Impl& c = conn_.impl();
  if (c.in_transaction) return Status::Internal("IngestBatch inside a transaction");

  // A message id repeated within the batch is stored once, by its first
  // item; first[i] is the index of that item. Repeated recipients of one
  // item get one delivery.
  std::unordered_map<ByteView, size_t, ViewHash, ViewEqual> by_message;
  by_message.reserve(items.size());
  std::vector<size_t> first(items.size());
  internal::ArrayBuilder message_ids(internal::kByteaOid), conversations(internal::kTextOid),
      senders(internal::kTextOid), sender_devices(internal::kByteaOid),
      epochs(internal::kInt8Oid), sent_at(internal::kInt8Oid),
      envelopes(internal::kByteaOid), delivery_messages(internal::kByteaOid),
      delivery_devices(internal::kByteaOid);
  size_t envelope_bytes = 0;
  for (const IngestItem& item : items) envelope_bytes += item.envelope.size() + 4;
  envelopes.Reserve(envelope_bytes);
  std::vector<ByteView> recipients;
  std::unordered_set<ByteView, ViewHash, ViewEqual> seen;
  std::vector<int64_t> batch_epochs;
  for (size_t i = 0; i < items.size(); ++i) {
    const IngestItem& item = items[i];
    auto [it, fresh] = by_message.emplace(ByteView(item.message_id), i);
    first[i] = it->second;
    if (!fresh) continue;
    message_ids.Bytea(item.message_id);
    conversations.Text(item.conversation_id);
    senders.Text(item.sender_user);
    sender_devices.Bytea(item.sender_device);
    epochs.Int8(item.epoch_id);
    if (std::find(batch_epochs.begin(), batch_epochs.end(), item.epoch_id) == batch_epochs.end()) {
      batch_epochs.push_back(item.epoch_id);
    }
    sent_at.Int8(item.sent_at_ms);
    envelopes.Bytea(item.envelope);
    // A linear scan for the usual handful of recipients, a hash set for
    // large groups.
    const bool hashed = item.recipient_devices.size() > 16;
    recipients.clear();
    seen.clear();
    for (const Bytes& d : item.recipient_devices) {
      ByteView device(d);
      bool repeated = hashed ? !seen.insert(device).second
                             : std::any_of(recipients.begin(), recipients.end(),
                                           [&](ByteView r) { return ViewEqual()(r, device); });
      if (repeated) continue;
      if (!hashed) recipients.push_back(device);
      delivery_messages.Bytea(item.message_id);
      delivery_devices.Bytea(device);
    }
  }
  const size_t unique = by_message.size();
  Params params;
  params.Array(std::move(message_ids))
      .Array(std::move(conversations))
      .Array(std::move(senders))
      .Array(std::move(sender_devices))
      .Array(std::move(epochs))
      .Array(std::move(sent_at))
      .Array(std::move(envelopes))
      .Array(std::move(delivery_messages))
      .Array(std::move(delivery_devices))
      .Int8Array(batch_epochs);
  if (outbox) params.Text(outbox->node_id).Int8(outbox->seq);

  // BEGIN, the statement(s) and COMMIT travel in one round trip.
  std::vector<PgResult> results;
  {
    Pipeline pipe(c);
    HF_RETURN_IF_ERROR(pipe.Send("BEGIN"));
    HF_RETURN_IF_ERROR(pipe.Send(IngestSql(outbox.has_value()), params));
    if (outbox) {
      HF_RETURN_IF_ERROR(
          pipe.Send(kOutboxNotifySql, Params().Text(outbox->node_id).Int8(outbox->seq)));
    }
    HF_RETURN_IF_ERROR(pipe.Send("COMMIT"));
    HF_ASSIGN_OR_RETURN(results, pipe.Finish());
  }
  if (results.size() != (outbox ? 4u : 3u)) return Status::Internal("pipeline lost results");
  if (std::string_view(PQcmdStatus(const_cast<PGresult*>(results.back().get()))) != "COMMIT") {
    return Status::Internal("ingest transaction was rolled back");
  }

  // Envelope rows first (the statement lists them before the deliveries).
  const PgResult& r = results[1];
  std::vector<bool> resolved(items.size(), false);
  std::unordered_map<int64_t, size_t> by_envelope;
  by_envelope.reserve(unique);
  auto resolve = [&](ByteView message_id, int64_t envelope_id, int64_t stored_at_ms,
                     bool duplicate) -> Status {
    auto it = by_message.find(message_id);
    if (it == by_message.end() || resolved[it->second]) {
      return Status::Internal("ingest returned an unexpected envelope");
    }
    IngestOutcome& out = outcomes[it->second];
    out.envelope_id = envelope_id;
    out.stored_at_ms = stored_at_ms;
    out.duplicate = duplicate;
    resolved[it->second] = true;
    if (!duplicate) by_envelope.emplace(envelope_id, it->second);
    return Status::Ok();
  };
  // Of a message id stored under several epochs, the copy in the item's own
  // epoch is its duplicate.
  auto same_epoch = [&](ByteView message_id, int64_t retention_epoch) {
    auto it = by_message.find(message_id);
    return it == by_message.end() || items[it->second].epoch_id == retention_epoch;
  };
  size_t found = 0;
  for (int row = 0; row < r.rows(); ++row) {
    int64_t kind = r.Int(row, 0);
    if (kind == 2) continue;
    Bytes message_id = r.Bytea(row, 2);
    if (kind == 1 && !same_epoch(message_id, r.Int(row, 4))) continue;
    HF_RETURN_IF_ERROR(resolve(message_id, r.Int(row, 1), r.Int(row, 3), kind == 1));
    ++found;
  }
  for (int row = 0; row < r.rows(); ++row) {
    if (r.Int(row, 0) != 2) continue;
    auto it = by_envelope.find(r.Int(row, 1));
    if (it == by_envelope.end()) return Status::Internal("ingest returned a stray delivery");
    outcomes[it->second].deliveries.emplace_back(r.Bytea(row, 2), r.Int(row, 3));
  }

  if (found < unique) {
    // Message ids committed by a concurrent transaction after the
    // statement's snapshot was taken: they are stored, so read them back.
    std::vector<Bytes> missing;
    std::vector<int64_t> missing_epochs;
    for (const auto& [message_id, index] : by_message) {
      if (resolved[index]) continue;
      missing.emplace_back(message_id.begin(), message_id.end());
      missing_epochs.push_back(items[index].epoch_id);
    }
    HF_ASSIGN_OR_RETURN(auto stored,
                        Exec(c,
                             "SELECT envelope_id, message_id, hf_ms(stored_at), retention_epoch"
                             " FROM envelopes WHERE retention_epoch = ANY($2)"
                             " AND message_id = ANY($1)",
                             Params().ByteaArray(missing).Int8Array(missing_epochs)));
    for (int row = 0; row < stored.rows(); ++row) {
      Bytes message_id = stored.Bytea(row, 1);
      if (!same_epoch(message_id, stored.Int(row, 3))) continue;
      HF_RETURN_IF_ERROR(resolve(message_id, stored.Int(row, 0), stored.Int(row, 2), true));
      ++found;
    }
    if (found != unique) return Status::Internal("stored envelope not found");
  }

  // A duplicate is only the same message if it is the same envelope; a
  // different envelope under a known message id is a conflict. Duplicates
  // are rare, so their stored bytes are fetched only when there are some.
  std::vector<int64_t> duplicate_envelopes;
  for (size_t i = 0; i < items.size(); ++i) {
    if (first[i] == i && outcomes[i].duplicate) duplicate_envelopes.push_back(outcomes[i].envelope_id);
  }
  if (!duplicate_envelopes.empty()) {
    HF_ASSIGN_OR_RETURN(auto stored, Exec(c,
                                          "SELECT message_id, envelope FROM envelopes"
                                          " WHERE envelope_id = ANY($1)",
                                          Params().Int8Array(duplicate_envelopes)));
    for (int row = 0; row < stored.rows(); ++row) {
      auto it = by_message.find(ByteView(stored.Bytea(row, 0)));
      if (it == by_message.end()) continue;
      outcomes[it->second].conflict = stored.Bytea(row, 1) != items[it->second].envelope;
    }
  }

  for (size_t i = 0; i < items.size(); ++i) {
    if (first[i] != i) {
      // A repeat within the batch: the envelope its first item stored.
      const IngestOutcome& original = outcomes[first[i]];
      outcomes[i].envelope_id = original.envelope_id;
      outcomes[i].stored_at_ms = original.stored_at_ms;
      outcomes[i].duplicate = true;
      outcomes[i].conflict = original.conflict || items[i].envelope != items[first[i]].envelope;
      continue;
    }
    auto& deliveries = outcomes[i].deliveries;
    std::sort(deliveries.begin(), deliveries.end(),
              [](const auto& a, const auto& b) { return a.second < b.second; });
  }
  return outcomes;
}

Result<std::vector<PendingDelivery>> Store::PendingDeliveries(ByteView device_id, int limit,
                                                              int64_t queue_ttl_ms) {
  if (limit <= 0) return Status::InvalidArgument("limit must be positive");
  if (queue_ttl_ms <= 0) return Status::InvalidArgument("queue TTL must be positive");
  // created_at as well as expired_at: between two expiry sweeps a delivery
  // past the TTL is not yet marked.
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT d.delivery_id, e.envelope, e.sender_device"
                                   " FROM deliveries d JOIN envelopes e"
                                   " ON e.envelope_id = d.envelope_id"
                                   " AND e.retention_epoch = d.retention_epoch"
                                   " WHERE d.device_id = $1 AND d.delivered_at IS NULL"
                                   " AND d.expired_at IS NULL"
                                   " AND d.created_at > now() - $3 * interval '1 millisecond'"
                                   " ORDER BY d.delivery_id LIMIT $2",
                                   Params().Bytea(device_id).Int8(limit).Int8(queue_ttl_ms)));
  std::vector<PendingDelivery> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(PendingDelivery{r.Int(i, 0), r.Bytea(i, 1), r.Bytea(i, 2),
                                  Bytes(device_id.begin(), device_id.end())});
  }
  return out;
}

Result<uint64_t> Store::CountPendingDeliveries(ByteView device_id, int64_t queue_ttl_ms) {
  if (queue_ttl_ms <= 0) return Status::InvalidArgument("queue TTL must be positive");
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT count(*) FROM deliveries"
                                   " WHERE device_id = $1 AND delivered_at IS NULL"
                                   " AND expired_at IS NULL"
                                   " AND created_at > now() - $2 * interval '1 millisecond'",
                                   Params().Bytea(device_id).Int8(queue_ttl_ms)));
  return static_cast<uint64_t>(r.Int(0, 0));
}

Result<uint64_t> Store::ExpireDeliveries(int64_t queue_ttl_ms, int limit) {
  if (limit <= 0) return Status::InvalidArgument("limit must be positive");
  if (queue_ttl_ms <= 0) return Status::InvalidArgument("queue TTL must be positive");
  // The outer conditions are rechecked on a row a concurrent ack changed.
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), R"sql(
WITH due AS (
  SELECT delivery_id, retention_epoch FROM deliveries
  WHERE delivered_at IS NULL AND expired_at IS NULL
    AND created_at <= now() - $1 * interval '1 millisecond'
  ORDER BY created_at LIMIT $2)
UPDATE deliveries d SET expired_at = now() FROM due
WHERE d.delivery_id = due.delivery_id AND d.retention_epoch = due.retention_epoch
  AND d.delivered_at IS NULL AND d.expired_at IS NULL
)sql",
                                   Params().Int8(queue_ttl_ms).Int8(limit)));
  return static_cast<uint64_t>(r.affected());
}

Result<uint64_t> Store::CountQueuedDeliveries(int64_t queue_ttl_ms) {
  if (queue_ttl_ms <= 0) return Status::InvalidArgument("queue TTL must be positive");
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT count(*) FROM deliveries"
                                   " WHERE delivered_at IS NULL AND expired_at IS NULL"
                                   " AND created_at > now() - $1 * interval '1 millisecond'",
                                   Params().Int8(queue_ttl_ms)));
  return static_cast<uint64_t>(r.Int(0, 0));
}

Status Store::AckDeliveries(ByteView device_id, const std::vector<int64_t>& delivery_ids) {
  if (delivery_ids.empty()) return Status::Ok();
  return Exec(conn_.impl(),
              "UPDATE deliveries SET delivered_at = now()"
              " WHERE device_id = $1 AND delivery_id = ANY($2) AND delivered_at IS NULL",
              Params().Bytea(device_id).Int8Array(delivery_ids))
      .status();
}

// ------------------------------------------------------------ resend requests

namespace {

constexpr std::string_view kResendColumns =
    "r.request_id, r.envelope_id, r.message_id, r.conversation_id, r.sender_device,"
    " hf_ms(r.created_at), t.user_name, t.device_id, t.identity_key, t.signed_prekey,"
    " hf_ms(t.registered_at), t.certificate";

std::vector<ResendRequestRecord> ResendFromRows(const PgResult& r) {
  std::vector<ResendRequestRecord> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    ResendRequestRecord q;
    q.request_id = r.Int(i, 0);
    q.envelope_id = r.Int(i, 1);
    q.message_id = r.Bytea(i, 2);
    q.conversation_id = r.Text(i, 3);
    q.sender_device = r.Bytea(i, 4);
    q.created_at_ms = r.Int(i, 5);
    q.target.user = r.Text(i, 6);
    q.target.device_id = r.Bytea(i, 7);
    q.target.identity_key = r.Bytea(i, 8);
    q.target.signed_prekey = r.Bytea(i, 9);
    q.target.registered_at_ms = r.Int(i, 10);
    q.target.certificate = r.Bytea(i, 11);
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace

Result<std::vector<ResendRequestRecord>> Store::OpenResendRequests(ByteView sender_device,
                                                                   int64_t after_request_id,
                                                                   int limit, int64_t ttl_ms) {
  if (limit <= 0) return Status::InvalidArgument("limit must be positive");
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   Sql("SELECT ", kResendColumns,
                                       " FROM resend_requests r"
                                       " JOIN devices t ON t.device_id = r.target_device"
                                       " WHERE r.sender_device = $1 AND r.done_at IS NULL"
                                       " AND r.request_id > $2 AND t.revoked_at IS NULL"
                                       " AND r.created_at > now() - $4 * interval '1 millisecond'"
                                       " ORDER BY r.request_id LIMIT $3"),
                                   Params().Bytea(sender_device).Int8(after_request_id)
                                       .Int8(limit).Int8(ttl_ms)));
  return ResendFromRows(r);
}

Result<std::vector<ResendRequestRecord>> Store::OpenResendRequestsFor(ByteView sender_device,
                                                                      ByteView message_id,
                                                                      int64_t ttl_ms) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   Sql("SELECT ", kResendColumns,
                                       " FROM resend_requests r"
                                       " JOIN devices t ON t.device_id = r.target_device"
                                       " WHERE r.sender_device = $1 AND r.message_id = $2"
                                       " AND r.done_at IS NULL AND t.revoked_at IS NULL"
                                       " AND r.created_at > now() - $3 * interval '1 millisecond'"
                                       " ORDER BY r.request_id"),
                                   Params().Bytea(sender_device).Bytea(message_id).Int8(ttl_ms)));
  return ResendFromRows(r);
}

Result<int64_t> Store::CloseResendRequests(ByteView sender_device,
                                           const std::vector<int64_t>& request_ids) {
  if (request_ids.empty()) return int64_t{0};
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "UPDATE resend_requests SET done_at = now()"
                                   " WHERE sender_device = $1 AND request_id = ANY($2)"
                                   " AND done_at IS NULL",
                                   Params().Bytea(sender_device).Int8Array(request_ids)));
  return static_cast<int64_t>(r.affected());
}

Result<std::vector<RestoredKeyRecord>> Store::RestoredKeys(
    ByteView device_id, const std::vector<int64_t>& envelope_ids) {
  std::vector<RestoredKeyRecord> out;
  if (envelope_ids.empty()) return out;
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT request_id, envelope_id, capsule FROM restored_keys"
                                   " WHERE device_id = $1 AND envelope_id = ANY($2)"
                                   " ORDER BY envelope_id",
                                   Params().Bytea(device_id).Int8Array(envelope_ids)));
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(RestoredKeyRecord{r.Int(i, 0), r.Int(i, 1), r.Bytea(i, 2)});
  }
  return out;
}

Result<std::vector<RestoreNoticeRecord>> Store::OpenRestoreNotices(ByteView device_id,
                                                                   int64_t after_notice_id,
                                                                   int limit) {
  if (limit <= 0) return Status::InvalidArgument("limit must be positive");
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT notice_id, request_id, user_name, target_device,"
                                   " conversations, envelope_count, hf_ms(created_at)"
                                   " FROM restore_notices"
                                   " WHERE device_id = $1 AND acked_at IS NULL AND notice_id > $2"
                                   " ORDER BY notice_id LIMIT $3",
                                   Params().Bytea(device_id).Int8(after_notice_id).Int8(limit)));
  std::vector<RestoreNoticeRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    RestoreNoticeRecord n;
    n.notice_id = r.Int(i, 0);
    n.request_id = r.Int(i, 1);
    n.user = r.Text(i, 2);
    n.target_device = r.Bytea(i, 3);
    n.conversations = r.TextArray(i, 4);
    std::sort(n.conversations.begin(), n.conversations.end());
    n.envelope_count = r.Int(i, 5);
    n.restored_at_ms = r.Int(i, 6);
    out.push_back(std::move(n));
  }
  return out;
}

Result<int64_t> Store::AckRestoreNotices(ByteView device_id,
                                         const std::vector<int64_t>& notice_ids) {
  if (notice_ids.empty()) return int64_t{0};
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "UPDATE restore_notices SET acked_at = now()"
                                   " WHERE device_id = $1 AND notice_id = ANY($2)"
                                   " AND acked_at IS NULL",
                                   Params().Bytea(device_id).Int8Array(notice_ids)));
  return r.affected();
}

Result<std::vector<Bytes>> Store::DevicesToNotifyOfRestore(int64_t request_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT device_id FROM restore_notices"
                                   " WHERE request_id = $1 AND acked_at IS NULL"
                                   " ORDER BY device_id",
                                   Params().Int8(request_id)));
  std::vector<Bytes> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Bytea(i, 0));
  return out;
}

Result<uint64_t> Store::CountEnvelopes() {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), "SELECT count(*) FROM envelopes"));
  return static_cast<uint64_t>(r.Int(0, 0));
}

Result<std::vector<PendingDelivery>> Store::UndeliveredAmong(
    const std::vector<int64_t>& delivery_ids, const std::vector<Bytes>& devices) {
  std::vector<PendingDelivery> out;
  if (delivery_ids.empty() || devices.empty()) return out;
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT d.delivery_id, e.envelope, e.sender_device, d.device_id"
                                   " FROM deliveries d JOIN envelopes e USING (envelope_id)"
                                   " WHERE d.delivery_id = ANY($1) AND d.device_id = ANY($2)"
                                   " AND d.delivered_at IS NULL ORDER BY d.delivery_id",
                                   Params().Int8Array(delivery_ids).ByteaArray(devices)));
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(PendingDelivery{r.Int(i, 0), r.Bytea(i, 1), r.Bytea(i, 2), r.Bytea(i, 3)});
  }
  return out;
}

Result<std::vector<std::pair<Bytes, int64_t>>> Store::UndeliveredOfEnvelope(int64_t envelope_id,
                                                                            uint32_t epoch_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT device_id, delivery_id FROM deliveries"
                                   " WHERE envelope_id = $1 AND retention_epoch = $2"
                                   " AND delivered_at IS NULL AND expired_at IS NULL"
                                   " ORDER BY delivery_id",
                                   Params().Int8(envelope_id).Int8(epoch_id)));
  std::vector<std::pair<Bytes, int64_t>> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Bytea(i, 0), r.Int(i, 1));
  return out;
}

// ------------------------------------------------------------------- outbox

Result<bool> Store::TryLockNode(const std::string& node_id) {
  // One 64-bit key per node id, in the key space of session locks.
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT pg_try_advisory_lock(hashtextextended("
                                   "'holdfast node ' || $1, 0))",
                                   Params().Text(node_id)));
  return r.Bool(0, 0);
}

Result<int64_t> Store::LastOutboxSeq(const std::string& node_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT coalesce(max(seq), 0) FROM outbox WHERE node_id = $1",
                                   Params().Text(node_id)));
  return r.Int(0, 0);
}

Result<std::vector<std::pair<std::string, int64_t>>> Store::LastOutboxSeqs() {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT node_id, max(seq) FROM outbox GROUP BY node_id"));
  std::vector<std::pair<std::string, int64_t>> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Text(i, 0), r.Int(i, 1));
  return out;
}

Result<std::vector<OutboxRow>> Store::OutboxRowsAfter(
    const std::vector<std::pair<std::string, int64_t>>& after, const std::string& except_node,
    int limit) {
  if (limit <= 0) return Status::InvalidArgument("limit must be positive");
  std::vector<std::string> nodes;
  std::vector<int64_t> seqs;
  for (const auto& [node, seq] : after) {
    nodes.push_back(node);
    seqs.push_back(seq);
  }
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT o.node_id, o.seq, o.delivery_ids, hf_ms(o.created_at)"
                                   " FROM outbox o"
                                   " LEFT JOIN unnest($1::text[], $2::int8[]) AS s(node, seq)"
                                   "  ON s.node = o.node_id"
                                   " WHERE o.node_id <> $3 AND o.seq > coalesce(s.seq, 0)"
                                   " ORDER BY o.node_id, o.seq LIMIT $4",
                                   Params().TextArray(nodes).Int8Array(seqs).Text(except_node)
                                       .Int8(limit)));
  std::vector<OutboxRow> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(OutboxRow{r.Text(i, 0), r.Int(i, 1), r.Int8Array(i, 2), r.Int(i, 3)});
  }
  return out;
}

Result<uint64_t> Store::PruneOutbox(int64_t max_age_ms) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "DELETE FROM outbox o"
                                   " WHERE o.created_at < now() - $1 * interval '1 millisecond'"
                                   " AND o.seq < (SELECT max(m.seq) FROM outbox m"
                                   "              WHERE m.node_id = o.node_id)",
                                   Params().Int8(max_age_ms)));
  return static_cast<uint64_t>(r.affected());
}

// --------------------------------------------------------- delivery reports

std::string_view DeliveryReportReason(std::string_view reported) {
  for (std::string_view known : kDeliveryReportReasons) {
    if (reported == known) return known;
  }
  return "other";
}

Result<int64_t> Store::RecordDeliveryReport(const DeliveryReport& report) {
  if (report.message_id.size() > 64) {
    return Status::InvalidArgument("reported message id is longer than 64 bytes");
  }
  const std::string_view reason = DeliveryReportReason(report.reason);
  const std::string detail = internal::SanitizeUtf8(report.detail, kMaxDeliveryReportDetailBytes);
  Params p;
  p.Bytea(report.reporter_device);
  if (report.delivery_id) {
    p.Int8(*report.delivery_id);
  } else {
    p.Null(internal::kInt8Oid);
  }
  if (!report.message_id.empty()) {
    p.Bytea(report.message_id);
  } else {
    p.Null(internal::kByteaOid);
  }
  p.Text(reason).Text(detail);

  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  // The reporter's user and the envelope come from the database: a device
  // vouches only for what it reports, and names no envelope through a
  // delivery to another device.
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "INSERT INTO delivery_reports (reporter_device, reporter_user,"
                                   " delivery_id, message_id, envelope_id, reason, detail)"
                                   " SELECT v.device_id, v.user_name, $2, $3,"
                                   "  (SELECT d.envelope_id FROM deliveries d"
                                   "   WHERE d.delivery_id = $2 AND d.device_id = v.device_id),"
                                   "  $4, $5"
                                   " FROM devices v WHERE v.device_id = $1"
                                   " RETURNING report_id, reporter_user, envelope_id",
                                   p));
  if (r.rows() != 1) return Status::NotFound("no device " + ToHex(report.reporter_device));
  const int64_t report_id = r.Int(0, 0);
  internal::JsonObject audit;
  audit.Int("report_id", report_id).String("device_id", ToHex(report.reporter_device));
  if (report.delivery_id) audit.Int("delivery_id", *report.delivery_id);
  if (!report.message_id.empty()) audit.String("message_id", ToHex(report.message_id));
  if (!r.IsNull(0, 2)) audit.Int("envelope_id", r.Int(0, 2));
  audit.String("reason", reason).String("detail", detail);
  HF_RETURN_IF_ERROR(
      internal::AppendAudit(c, "user:" + r.Text(0, 1), "delivery.report", audit.str()));
  HF_RETURN_IF_ERROR(tx.Commit());
  return report_id;
}

Result<std::vector<DeliveryReportRecord>> Store::DeliveryReportsSince(int64_t since_ms) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT report_id, reporter_device, reporter_user, delivery_id,"
                                   " message_id, envelope_id, reason, detail, hf_ms(reported_at)"
                                   " FROM delivery_reports WHERE reported_at >= hf_ts($1)"
                                   " ORDER BY report_id",
                                   Params().Int8(since_ms)));
  std::vector<DeliveryReportRecord> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    DeliveryReportRecord rec;
    rec.report_id = r.Int(i, 0);
    rec.reporter_device = r.Bytea(i, 1);
    rec.reporter_user = r.Text(i, 2);
    if (!r.IsNull(i, 3)) rec.delivery_id = r.Int(i, 3);
    if (!r.IsNull(i, 4)) rec.message_id = r.Bytea(i, 4);
    if (!r.IsNull(i, 5)) rec.envelope_id = r.Int(i, 5);
    rec.reason = r.Text(i, 6);
    rec.detail = r.Text(i, 7);
    rec.reported_at_ms = r.Int(i, 8);
    out.push_back(std::move(rec));
  }
  return out;
}

// ----------------------------------------------------------------- settings

Status Store::PutSetting(const std::string& name, ByteView value) {
  return Exec(conn_.impl(),
              "INSERT INTO settings (name, value) VALUES ($1, $2)"
              " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()",
              Params().Text(name).Bytea(value))
      .status();
}

Result<Bytes> Store::GetSetting(const std::string& name) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), "SELECT value FROM settings WHERE name = $1",
                                   Params().Text(name)));
  if (r.rows() == 0) return Status::NotFound("no setting " + name);
  return r.Bytea(0, 0);
}

// --------------------------------------------------------------- compliance

namespace {

// Rows of (envelope_id, message_id, conversation_id, sender_user,
// sender_device, epoch_id, sent_at ms, stored_at ms, envelope).
std::vector<StoredEnvelope> StoredEnvelopes(const PgResult& r) {
  std::vector<StoredEnvelope> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    StoredEnvelope e;
    e.envelope_id = r.Int(i, 0);
    e.message_id = r.Bytea(i, 1);
    e.conversation_id = r.Text(i, 2);
    e.sender_user = r.Text(i, 3);
    e.sender_device = r.Bytea(i, 4);
    e.epoch_id = static_cast<uint32_t>(r.Int(i, 5));
    e.sent_at_ms = r.Int(i, 6);
    e.stored_at_ms = r.Int(i, 7);
    e.envelope = r.Bytea(i, 8);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

Result<std::vector<StoredEnvelope>> Store::EnvelopesOfCustodian(const std::string& user,
                                                                int64_t from_ms, int64_t to_ms) {
  // Sent by the user, addressed to a direct conversation the user is a
  // member of, stored in a group while the user was a member of it, or
  // queued for one of the user's devices. A group membership lasts from the
  // change that added the user to the next change that names them; both
  // ends and stored_at are the database's clock.
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), R"sql(
SELECT e.envelope_id, e.message_id, e.conversation_id, e.sender_user, e.sender_device,
       e.epoch_id, hf_ms(e.sent_at), hf_ms(e.stored_at), e.envelope
FROM envelopes e
WHERE e.envelope_id IN (
  SELECT envelope_id FROM envelopes
  WHERE sender_user = $1 AND sent_at >= hf_ts($2) AND sent_at < hf_ts($3)
  UNION
  SELECT x.envelope_id FROM conversation_members m
  JOIN conversations c ON c.conversation_id = m.conversation_id AND c.kind = 'direct'
  JOIN envelopes x ON x.conversation_id = m.conversation_id
  WHERE m.user_name = $1 AND x.sent_at >= hf_ts($2) AND x.sent_at < hf_ts($3)
  UNION
  SELECT g.envelope_id FROM (
    SELECT conversation_id, added @> ARRAY[$1] AS joined, at AS from_at,
           lead(at) OVER (PARTITION BY conversation_id ORDER BY version) AS to_at
    FROM conversation_membership_changes
    WHERE added @> ARRAY[$1] OR removed @> ARRAY[$1]) p
  JOIN envelopes g ON g.conversation_id = p.conversation_id
  WHERE p.joined AND g.stored_at >= p.from_at AND (p.to_at IS NULL OR g.stored_at < p.to_at)
    AND g.sent_at >= hf_ts($2) AND g.sent_at < hf_ts($3)
  UNION
  SELECT d.envelope_id FROM devices v
  JOIN deliveries d ON d.device_id = v.device_id
  JOIN envelopes y ON y.envelope_id = d.envelope_id AND y.retention_epoch = d.retention_epoch
  WHERE v.user_name = $1 AND y.sent_at >= hf_ts($2) AND y.sent_at < hf_ts($3))
ORDER BY e.envelope_id
)sql",
                                   Params().Text(user).Int8(from_ms).Int8(to_ms)));
  return StoredEnvelopes(r);
}

Result<std::vector<StoredEnvelope>> Store::ConversationHistory(const std::string& user,
                                                             const std::string& conversation_id,
                                                             HistoryCursor before, int limit) {
  if (limit <= 0) return Status::InvalidArgument("history page limit must be positive");
  // Current members, and anyone a group change ever added: a former member
  // keeps the history of their membership.
  HF_ASSIGN_OR_RETURN(auto member, Exec(conn_.impl(), R"sql(
SELECT EXISTS (SELECT 1 FROM conversation_members
               WHERE conversation_id = $1 AND user_name = $2)
    OR EXISTS (SELECT 1 FROM conversation_membership_changes
               WHERE conversation_id = $1 AND added @> ARRAY[$2])
)sql",
                                        Params().Text(conversation_id).Text(user)));
  if (member.rows() != 1 || !member.Bool(0, 0)) {
    return Status::NotFound("no conversation " + conversation_id + " of " + user);
  }
  const bool from_newest = before.sent_at_ms == 0 && before.envelope_id == 0;
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), R"sql(
SELECT e.envelope_id, e.message_id, e.conversation_id, e.sender_user, e.sender_device,
       e.epoch_id, hf_ms(e.sent_at), hf_ms(e.stored_at), e.envelope
FROM envelopes e
WHERE e.conversation_id = $1
  AND ($3 OR (e.sent_at, e.envelope_id) < (hf_ts($4), $5))
  AND (e.sender_user = $2
       OR EXISTS (SELECT 1 FROM devices v
                  JOIN deliveries d ON d.device_id = v.device_id AND d.envelope_id = e.envelope_id
                  WHERE v.user_name = $2))
ORDER BY e.sent_at DESC, e.envelope_id DESC
LIMIT $6
)sql",
                                   Params()
                                       .Text(conversation_id)
                                       .Text(user)
                                       .Bool(from_newest)
                                       .Int8(before.sent_at_ms)
                                       .Int8(before.envelope_id)
                                       .Int8(limit)));
  return StoredEnvelopes(r);
}

Result<std::optional<HoldCapsuleRecord>> Store::HoldCapsuleOf(ByteView message_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT h.envelope_id, h.hold_key_label, h.enc, h.ct,"
                                   " hf_ms(h.rewrapped_at) FROM hold_capsules h"
                                   " JOIN envelopes e ON e.envelope_id = h.envelope_id"
                                   " WHERE e.message_id = $1",
                                   Params().Bytea(message_id)));
  if (r.rows() == 0) return std::optional<HoldCapsuleRecord>();
  return std::optional<HoldCapsuleRecord>(
      HoldCapsuleRecord{r.Int(0, 0), r.Text(0, 1), r.Bytea(0, 2), r.Bytea(0, 3), r.Int(0, 4)});
}

}  // namespace holdfast::archive
