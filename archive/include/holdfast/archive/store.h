// Typed access to the Holdfast schema. Every method runs on the Connection
// it was given; a Store is as thread-safe as its connection (not at all).
// Methods that write more than one row do so in one transaction.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/archive/database.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::archive {

struct DeviceRecord {
  std::string user;
  Bytes device_id;
  Bytes identity_key;
  Bytes signed_prekey;       // serialised wire SignedPrekey
  int64_t registered_at_ms = 0;
  Bytes certificate;         // serialised countersigned wire DeviceCertificate
};

struct EpochRecord {
  uint32_t epoch_id = 0;
  Bytes certificate;         // serialised wire EpochCertificate
  Bytes public_key;
  int64_t not_before_ms = 0;
  int64_t not_after_ms = 0;
};

// One change of a group's members; version is the group's
// membership_version after it. A group's creation is version 0, with every
// first member added by the creator.
struct MembershipChangeRecord {
  int64_t version = 0;
  std::string actor;
  std::vector<std::string> added;    // sorted
  std::vector<std::string> removed;  // sorted
  int64_t at_ms = 0;
};

struct ConversationRecord {
  std::string conversation_id;
  std::vector<std::string> members;  // sorted; a group's may be empty
  bool group = false;
  std::string title;                 // groups only
  std::string created_by;            // groups only
  int64_t membership_version = 0;    // 0 for direct conversations
};

// Bounds on groups, enforced by CreateGroup and ChangeMembers.
inline constexpr size_t kMaxConversationMembers = 1024;
inline constexpr size_t kMaxGroupTitleBytes = 256;
// How many membership changes a conversation answer carries.
inline constexpr int kRecentMembershipChanges = 64;

// The reasons a device may give for a delivery report. Anything else is
// recorded as "other", so the set of values (and of metric labels) is closed.
inline constexpr std::array<std::string_view, 5> kDeliveryReportReasons = {
    "archive_capsule_mismatch", "bad_signature", "bad_device_certificate", "undecryptable",
    "other"};
// `reported` if it is one of kDeliveryReportReasons, else "other".
std::string_view DeliveryReportReason(std::string_view reported);
inline constexpr size_t kMaxDeliveryReportDetailBytes = 1024;

struct DeliveryReport {
  Bytes reporter_device;               // the reporter's user is that device's
  std::optional<int64_t> delivery_id;  // as reported
  Bytes message_id;                    // as reported; empty if none
  std::string reason;                  // any text; see DeliveryReportReason
  std::string detail;                  // any bytes; see RecordDeliveryReport
};

struct DeliveryReportRecord {
  int64_t report_id = 0;
  Bytes reporter_device;
  std::string reporter_user;
  std::optional<int64_t> delivery_id;
  Bytes message_id;                    // empty if none was reported
  std::optional<int64_t> envelope_id;  // set if delivery_id was the reporter's
  std::string reason;                  // one of kDeliveryReportReasons
  std::string detail;
  int64_t reported_at_ms = 0;
};

// One envelope accepted by the gateway, ready to store.
struct IngestItem {
  Bytes message_id;
  std::string conversation_id;
  std::string sender_user;
  Bytes sender_device;
  uint32_t epoch_id = 0;
  int64_t sent_at_ms = 0;
  Bytes envelope;                    // serialised wire Envelope, exact bytes
  std::vector<Bytes> recipient_devices;  // devices to deliver to
};

struct IngestOutcome {
  int64_t envelope_id = 0;
  int64_t stored_at_ms = 0;
  bool duplicate = false;            // message id was already stored
  // A duplicate whose stored envelope is not byte for byte this item's:
  // this item was NOT stored and must not be acknowledged.
  bool conflict = false;
  // (device_id, delivery_id) for each new delivery row.
  std::vector<std::pair<Bytes, int64_t>> deliveries;
};

struct PendingDelivery {
  int64_t delivery_id = 0;
  Bytes envelope;
  Bytes sender_device;
  Bytes device_id;  // the recipient
};

// Names the outbox row an ingest batch writes (see IngestBatch): the node
// that stores it and that node's next sequence number.
struct OutboxTag {
  std::string node_id;
  int64_t seq = 0;
};

// Channel notified, with the node id as payload, by every ingest batch that
// writes an outbox row.
inline constexpr std::string_view kOutboxChannel = "holdfast_outbox";

struct OutboxRow {
  std::string node_id;
  int64_t seq = 0;
  std::vector<int64_t> delivery_ids;  // ascending
  int64_t created_at_ms = 0;
};

struct StoredEnvelope {
  int64_t envelope_id = 0;
  Bytes message_id;
  std::string conversation_id;
  std::string sender_user;
  Bytes sender_device;
  uint32_t epoch_id = 0;
  int64_t sent_at_ms = 0;
  int64_t stored_at_ms = 0;
  Bytes envelope;
};

// An envelope's content key sealed to the hold key before its epoch key was
// destroyed (docs/archive.md, "Crypto-shredding").
struct HoldCapsuleRecord {
  int64_t envelope_id = 0;
  std::string hold_key_label;
  Bytes enc;
  Bytes ct;
  int64_t rewrapped_at_ms = 0;
};

// A content key the history restore re-sealed to a device
// (history_restore.h): capsule = enc (32 bytes) || ct (48 bytes) of a device
// capsule for that device.
struct RestoredKeyRecord {
  int64_t request_id = 0;
  int64_t envelope_id = 0;
  Bytes capsule;
};

// "Your history was restored to target_device under request request_id",
// recorded for one device of the user (docs/protocol.md 9.12).
struct RestoreNoticeRecord {
  int64_t notice_id = 0;
  int64_t request_id = 0;
  std::string user;
  Bytes target_device;
  std::vector<std::string> conversations;  // sorted
  int64_t envelope_count = 0;
  int64_t restored_at_ms = 0;
};

// How long a queued delivery waits for its device; a device enrolled later
// gets resend requests only for envelopes queued within this period.
inline constexpr int64_t kQueueTtlMs = 30LL * 24 * 3600 * 1000;

// What RegisterDevice created besides the device.
struct RegisterOutcome {
  int64_t resend_requests = 0;       // resend requests for the new device
  std::vector<Bytes> resend_senders; // distinct sender devices asked to re-seal
};

// An open request that `sender_device` re-seal message `message_id` for
// `target` (docs/protocol.md 9.11).
struct ResendRequestRecord {
  int64_t request_id = 0;
  int64_t envelope_id = 0;
  Bytes message_id;
  std::string conversation_id;
  Bytes sender_device;
  DeviceRecord target;
  int64_t created_at_ms = 0;
};

// Setting under which `holdfast-admin init` records the org root public key.
inline constexpr std::string_view kOrgRootPublicKeySetting = "org_root_public_key";
// Setting holding the serialised wire EnrollmentKeyCertificate (the org
// root's certificate of the enrollment key) written by `holdfast-admin init`.
inline constexpr std::string_view kEnrollmentKeyCertificateSetting = "enrollment_key_certificate";

// Produces the countersigned device certificate to store with a device.
// Called by RegisterDevice inside its transaction; an error aborts the
// registration and is returned as is.
using CountersignFn = std::function<Result<Bytes>()>;

// A user as directory sign-in vouched for it at enrollment.
struct DirectoryAccount {
  std::string user;
  std::string display_name;
  // Granted by the directory's group mapping: "enroll", "create_groups".
  std::vector<std::string> permissions;
};

class Store {
 public:
  explicit Store(Connection& conn) : conn_(conn) {}

  // ---- users and devices
  Status CreateUser(const std::string& user, const std::string& display_name);
  Result<bool> UserExists(const std::string& user);
  // Issues a one-time enrollment code for the user (stored as SHA-256 only);
  // returns the code. Valid for `ttl_ms`.
  Result<std::string> IssueEnrollmentCode(const std::string& user, int64_t ttl_ms);
  // In one transaction: consumes the code, records `master_key` (32 bytes,
  // Ed25519) as the user's if the user has none yet, calls `countersign`,
  // stores the device with the certificate it returned (device.certificate
  // is ignored) and audits it. Nothing is stored, and the code stays usable,
  // if any step fails:
  //   kPermissionDenied   the code is wrong, used or expired; countersign is
  //                       not called.
  //   kFailedPrecondition the user already has another master key; neither
  //                       is countersign called.
  //   anything countersign returns.
  // In the same transaction it creates a resend request for every envelope
  // with a delivery to another device of the user that is undelivered and
  // was queued within `queue_ttl_ms`, asking its sender device (never the
  // new one) to re-seal it for the new device; `outcome`, if given, tells
  // how many and for which senders.
  Status RegisterDevice(const std::string& user, const std::string& enrollment_code,
                        ByteView master_key, const DeviceRecord& device,
                        const CountersignFn& countersign, RegisterOutcome* outcome = nullptr,
                        int64_t queue_ttl_ms = kQueueTtlMs);
  // RegisterDevice for a user the directory authenticated instead of a
  // code: in the same transaction, creates the user (audited "user.create")
  // if new, and records the account's display name and permissions, which
  // replace those of any earlier directory enrollment. A local account of
  // the same name becomes a directory account. Resend requests and errors
  // as RegisterDevice's, without kPermissionDenied.
  Status RegisterDirectoryDevice(const DirectoryAccount& account, ByteView master_key,
                                 const DeviceRecord& device, const CountersignFn& countersign,
                                 RegisterOutcome* outcome = nullptr,
                                 int64_t queue_ttl_ms = kQueueTtlMs);
  // The permissions recorded at the user's latest directory enrollment;
  // nullopt for a local account. kNotFound if there is no such user.
  Result<std::optional<std::vector<std::string>>> DirectoryPermissions(const std::string& user);
  Result<DeviceRecord> GetDevice(ByteView device_id);
  // Replaces the signed prekey (a serialised wire SignedPrekey) of a device
  // that is not revoked. kFailedPrecondition unless its created_at_ms is
  // later than the stored prekey's; kNotFound for an unknown or revoked
  // device. The signature is the caller's to check.
  Status UpdatePrekey(ByteView device_id, ByteView signed_prekey);
  Result<std::vector<DeviceRecord>> DevicesOfUsers(const std::vector<std::string>& users);

  // What checking a submitted envelope reads, in one round trip: the
  // conversation, the epoch `epoch_id` and the unrevoked devices of the
  // conversation's members (as DevicesOfUsers). Unknown conversation or
  // epoch: nullopt (and no devices for the former).
  struct SubmitContext {
    std::optional<ConversationRecord> conversation;
    std::optional<EpochRecord> epoch;
    std::vector<DeviceRecord> devices;
  };
  Result<SubmitContext> SubmitContextOf(const std::string& conversation_id, uint32_t epoch_id);

  // ---- conversations
  // Returns the conversation whose member set is exactly `members` (the
  // creator included), creating it if needed.
  Result<ConversationRecord> OpenConversation(std::vector<std::string> members);
  Result<ConversationRecord> GetConversation(const std::string& conversation_id);
  // A new group of `creator` and `members` (duplicates ignored), audited as
  // "group.create". kNotFound if a member is not a user, kInvalidArgument
  // past kMaxConversationMembers or kMaxGroupTitleBytes.
  Result<ConversationRecord> CreateGroup(const std::string& creator, const std::string& title,
                                         std::vector<std::string> members);
  // Adds and removes members of a group as `actor`, in one transaction that
  // locks the group row, bumps membership_version, records the change and
  // audits it as "group.change_members". Any member may add; only the
  // creator may remove others; anyone may remove themself.
  //   kNotFound           no such conversation, or a user to add does not exist
  //   kFailedPrecondition a direct conversation (its members never change)
  //   kPermissionDenied   actor is not a member, or removes someone else
  //                       without being the creator
  //   kInvalidArgument    nothing to change, a user both added and removed,
  //                       adding a member, removing a non-member, or more
  //                       than kMaxConversationMembers
  Result<ConversationRecord> ChangeMembers(const std::string& conversation_id,
                                           const std::string& actor,
                                           std::vector<std::string> add,
                                           std::vector<std::string> remove);
  // The last `limit` membership changes of a conversation, oldest first
  // (none for a direct conversation).
  Result<std::vector<MembershipChangeRecord>> RecentMembershipChanges(
      const std::string& conversation_id, int limit = kRecentMembershipChanges);

  // ---- epochs
  // Stores the epoch and creates the partitions of its envelopes and
  // deliveries, in one transaction. Fails after waiting 10 s for the lock
  // on those tables (a long query holds it); the caller may retry.
  Status PutEpoch(const EpochRecord& epoch);
  // The epoch whose validity window contains now_ms, latest first.
  Result<EpochRecord> CurrentEpoch(int64_t now_ms);
  Result<EpochRecord> GetEpoch(uint32_t epoch_id);
  // Every epoch, by id ascending.
  Result<std::vector<EpochRecord>> ListEpochs();

  // ---- ingest and delivery
  // Stores every item and its delivery rows in one transaction, then
  // commits. Duplicate message ids return the stored envelope and add no
  // deliveries. Either every item is durable on return or none is.
  // With an outbox tag, the same transaction (and round trip) also writes
  // the outbox row (tag.node_id, tag.seq, the new delivery ids) and
  // notifies kOutboxChannel, if the batch created any delivery.
  Result<std::vector<IngestOutcome>> IngestBatch(const std::vector<IngestItem>& items,
                                                 const std::optional<OutboxTag>& outbox = {});
  // Deliveries to the device neither acknowledged nor expired and created
  // less than queue_ttl_ms ago, oldest first; and their number.
  Result<std::vector<PendingDelivery>> PendingDeliveries(ByteView device_id, int limit,
                                                         int64_t queue_ttl_ms);
  Result<uint64_t> CountPendingDeliveries(ByteView device_id, int64_t queue_ttl_ms);
  // Marks up to `limit` of the oldest deliveries that were not acknowledged
  // within queue_ttl_ms as expired (never offered again; the envelope stays
  // archived); returns how many.
  Result<uint64_t> ExpireDeliveries(int64_t queue_ttl_ms, int limit);
  // Deliveries to any device still offered: the queue's depth.
  Result<uint64_t> CountQueuedDeliveries(int64_t queue_ttl_ms);
  // Marks deliveries done; ids not belonging to the device are ignored.
  Status AckDeliveries(ByteView device_id, const std::vector<int64_t>& delivery_ids);
  Result<uint64_t> CountEnvelopes();
  // Of `delivery_ids`, the undelivered ones addressed to one of `devices`,
  // by delivery id, each with its recipient device.
  Result<std::vector<PendingDelivery>> UndeliveredAmong(const std::vector<int64_t>& delivery_ids,
                                                        const std::vector<Bytes>& devices);
  // (device, delivery id) of each delivery of the envelope, stored under
  // `epoch_id`, that is neither acknowledged nor expired.
  Result<std::vector<std::pair<Bytes, int64_t>>> UndeliveredOfEnvelope(int64_t envelope_id,
                                                                       uint32_t epoch_id);

  // ---- multi-node delivery (the outbox; docs/archive.md)
  // Takes the session-level advisory lock of a gateway node id on this
  // connection and keeps it until the connection ends; false if another
  // session holds it.
  Result<bool> TryLockNode(const std::string& node_id);
  // The highest outbox seq of a node, 0 if it has no row.
  Result<int64_t> LastOutboxSeq(const std::string& node_id);
  // The highest outbox seq of every node with a row.
  Result<std::vector<std::pair<std::string, int64_t>>> LastOutboxSeqs();
  // Outbox rows of nodes other than `except_node`, each with a seq above
  // that node's entry in `after` (or above 0 for a node not listed), by
  // node and seq; at most `limit`.
  Result<std::vector<OutboxRow>> OutboxRowsAfter(
      const std::vector<std::pair<std::string, int64_t>>& after, const std::string& except_node,
      int limit);
  // Deletes outbox rows older than max_age_ms, except each node's newest;
  // returns how many.
  Result<uint64_t> PruneOutbox(int64_t max_age_ms);

  // ---- history sync
  // One page of `user`'s history in a conversation: the envelopes the user
  // sent or that were queued for one of the user's devices (what the user's
  // devices were addressed, so a member added later never sees earlier
  // messages), newest first by (sent_at, envelope_id), strictly before
  // `before` (a zero cursor starts at the newest). At most `limit` entries.
  // kNotFound if the conversation does not exist or the user never was a
  // member of it (the two are not told apart).
  struct HistoryCursor {
    int64_t sent_at_ms = 0;
    int64_t envelope_id = 0;
  };
  Result<std::vector<StoredEnvelope>> ConversationHistory(const std::string& user,
                                                          const std::string& conversation_id,
                                                          HistoryCursor before, int limit);

  // ---- history restore (history_restore.h; docs/protocol.md 9.10, 9.12)
  // The restored keys of `device_id` among `envelope_ids`, by envelope id.
  Result<std::vector<RestoredKeyRecord>> RestoredKeys(ByteView device_id,
                                                      const std::vector<int64_t>& envelope_ids);
  // Notices of `device_id` not yet acknowledged, with notice_id >
  // after_notice_id, by notice id, at most `limit`.
  Result<std::vector<RestoreNoticeRecord>> OpenRestoreNotices(ByteView device_id,
                                                              int64_t after_notice_id, int limit);
  // Acknowledges notices of `device_id`; other devices' ids and notices
  // acknowledged before are ignored. Returns how many it acknowledged.
  Result<int64_t> AckRestoreNotices(ByteView device_id, const std::vector<int64_t>& notice_ids);
  // The devices with an unacknowledged notice of restore request `request_id`.
  Result<std::vector<Bytes>> DevicesToNotifyOfRestore(int64_t request_id);

  // ---- resend requests (docs/protocol.md 9.11)
  // Open requests of `sender_device` with request_id > after_request_id,
  // created within `ttl_ms`, whose target device is not revoked; by
  // request id, at most `limit`.
  Result<std::vector<ResendRequestRecord>> OpenResendRequests(ByteView sender_device,
                                                              int64_t after_request_id, int limit,
                                                              int64_t ttl_ms = kQueueTtlMs);
  // The open requests (as OpenResendRequests) of `sender_device` for one
  // original message.
  Result<std::vector<ResendRequestRecord>> OpenResendRequestsFor(ByteView sender_device,
                                                                 ByteView message_id,
                                                                 int64_t ttl_ms = kQueueTtlMs);
  // Closes requests; ids not belonging to the sender device, or already
  // closed, are ignored. Returns how many it closed.
  Result<int64_t> CloseResendRequests(ByteView sender_device,
                                      const std::vector<int64_t>& request_ids);

  // ---- delivery reports
  // Records the report and audits it as "delivery.report", in one
  // transaction; returns its report id. The reason is stored as
  // DeliveryReportReason(reason); the detail with invalid UTF-8 and NUL
  // replaced by U+FFFD, cut to kMaxDeliveryReportDetailBytes at a character
  // boundary. kInvalidArgument for a message id longer than 64 bytes.
  Result<int64_t> RecordDeliveryReport(const DeliveryReport& report);
  // Reports made at or after since_ms, oldest first.
  Result<std::vector<DeliveryReportRecord>> DeliveryReportsSince(int64_t since_ms);

  // ---- settings: small named values written by key ceremonies
  Status PutSetting(const std::string& name, ByteView value);
  Result<Bytes> GetSetting(const std::string& name);

  // ---- compliance
  // Envelopes with sent_at in [from_ms, to_ms) that `user` sent, that were
  // queued for one of the user's devices, or that were stored in a
  // conversation while the user was a member of it; in storage order.
  Result<std::vector<StoredEnvelope>> EnvelopesOfCustodian(const std::string& user,
                                                           int64_t from_ms, int64_t to_ms);

  // ---- crypto-shredding (shredding.h)
  // The hold capsule of the envelope with this message id, if it has one.
  Result<std::optional<HoldCapsuleRecord>> HoldCapsuleOf(ByteView message_id);

 private:
  Connection& conn_;
};

}  // namespace holdfast::archive
