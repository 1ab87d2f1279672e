// Typed access to the Holdfast schema. Every method runs on the Connection
// it was given; a Store is as thread-safe as its connection (not at all).
// Methods that write more than one row do so in one transaction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
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
};

struct EpochRecord {
  uint32_t epoch_id = 0;
  Bytes certificate;         // serialised wire EpochCertificate
  Bytes public_key;
  int64_t not_before_ms = 0;
  int64_t not_after_ms = 0;
};

struct ConversationRecord {
  std::string conversation_id;
  std::vector<std::string> members;  // sorted
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

// Setting under which `holdfast-admin init` records the org root public key.
inline constexpr std::string_view kOrgRootPublicKeySetting = "org_root_public_key";

class Store {
 public:
  explicit Store(Connection& conn) : conn_(conn) {}

  // ---- users and devices
  Status CreateUser(const std::string& user, const std::string& display_name);
  Result<bool> UserExists(const std::string& user);
  // Issues a one-time enrollment code for the user (stored as SHA-256 only);
  // returns the code. Valid for `ttl_ms`.
  Result<std::string> IssueEnrollmentCode(const std::string& user, int64_t ttl_ms);
  // Consumes the code, registers the device and audits it in one transaction.
  // kPermissionDenied if the code is wrong, used or expired.
  Status RegisterDevice(const std::string& user, const std::string& enrollment_code,
                        const DeviceRecord& device);
  Result<DeviceRecord> GetDevice(ByteView device_id);
  Result<std::vector<DeviceRecord>> DevicesOfUsers(const std::vector<std::string>& users);

  // ---- conversations
  // Returns the conversation whose member set is exactly `members` (the
  // creator included), creating it if needed.
  Result<ConversationRecord> OpenConversation(std::vector<std::string> members);
  Result<ConversationRecord> GetConversation(const std::string& conversation_id);

  // ---- epochs
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
  Result<std::vector<IngestOutcome>> IngestBatch(const std::vector<IngestItem>& items);
  Result<std::vector<PendingDelivery>> PendingDeliveries(ByteView device_id, int limit);
  Result<uint64_t> CountPendingDeliveries(ByteView device_id);
  // Marks deliveries done; ids not belonging to the device are ignored.
  Status AckDeliveries(ByteView device_id, const std::vector<int64_t>& delivery_ids);
  Result<uint64_t> CountEnvelopes();

  // ---- settings: small named values written by key ceremonies
  Status PutSetting(const std::string& name, ByteView value);
  Result<Bytes> GetSetting(const std::string& name);

  // ---- compliance
  // Envelopes sent by or delivered to `user`, with sent_at in
  // [from_ms, to_ms), in storage order.
  Result<std::vector<StoredEnvelope>> EnvelopesOfCustodian(const std::string& user,
                                                           int64_t from_ms, int64_t to_ms);

 private:
  Connection& conn_;
};

}  // namespace holdfast::archive
