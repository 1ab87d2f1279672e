// The sans-I/O client core: one device's keys and the checks it makes.
// No sockets, no files, no clock: callers pass the time in.
//
// Thread-safety: a Device is a value; concurrent const calls are safe,
// mutation needs external synchronisation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/client/profile.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"

namespace holdfast::client {

// Something the user should be told, shown in the conversation it concerns
// (or, with an empty conversation id, wherever the app shows account events).
struct Notice {
  enum class Kind {
    kArchived,          // first sight of a conversation: the archive notice
    kNewDevice,         // a member (or this user) has a device not seen before
    kDeviceRemoved,     // a device seen before is no longer listed
    kMasterKeyChanged,  // a member's master key differs from the one seen before
    kMembersChanged,    // a group's membership changed
    kResent,            // the message was sealed again for this device (9.11)
    kHistoryRestored,   // the organisation restored the user's history to a device (9.12)
  };
  Kind kind;
  std::string conversation_id;
  std::string user;       // whom it concerns
  Bytes device_id;        // kNewDevice, kDeviceRemoved
  std::string text;       // ready to show
};
std::string_view NoticeKindName(Notice::Kind kind);

// Prekey rotation defaults: a new signed prekey every week, and old private
// prekeys kept 35 days after the gateway confirmed their replacement (the
// gateway's 30-day queue TTL plus margin), then wiped.
inline constexpr int64_t kDefaultPrekeyRotationMs = 7LL * 24 * 3600 * 1000;
inline constexpr int64_t kDefaultPrekeyGraceMs = 35LL * 24 * 3600 * 1000;

// The organisation's prekey policy, as the gateway states it at login.
// Values outside sane bounds (rotation 1 hour to 365 days; grace at least
// the rotation, at most 3650 days) or absent fall back to the defaults, so
// a gateway can neither make a device rotate constantly nor keep old
// private prekeys for ever.
struct PrekeyPolicy {
  int64_t rotation_ms = kDefaultPrekeyRotationMs;
  int64_t grace_ms = kDefaultPrekeyGraceMs;
};
PrekeyPolicy PrekeyPolicyFrom(const wire::Authenticated& authenticated);

// A delivered message after every check passed.
struct ReceivedMessage {
  Bytes message_id;
  std::string conversation_id;
  std::string sender_user;
  Bytes sender_device;
  int64_t sent_at_ms = 0;
  std::string text;
  Bytes resend_of;  // a re-sent message: the original's id; else empty
  // Opened through a capsule a history restore sealed to this device
  // (9.10): the disclosure request's id; 0 for an ordinary message.
  uint64_t restore_request_id = 0;
  std::vector<Notice> notices;  // raised by the sender's device, before the message
};

// Seed layout: identity seed, prekey ikm, then (optionally) master key seed.
inline constexpr size_t kDeviceSeedSize = 64;
inline constexpr size_t kDeviceSeedWithMasterSize = 96;

class Device {
 public:
  // Fresh Ed25519 identity and X25519 prekey (signed at now_ms); not yet
  // registered with any gateway. With `with_master_key` (a user's first
  // device) it also creates the user's master signing key; without, the
  // device needs a certificate from a device that holds it
  // (CertifyNewDevice, then UseCertificate) before it can register.
  static Result<Device> Generate(std::string user, int64_t now_ms, bool with_master_key = true);
  // The same from caller-supplied randomness: the first 32 bytes of `seed`
  // are the Ed25519 identity seed, the next 32 the ikm of RFC 9180
  // DeriveKeyPair for the X25519 prekey, and with kDeviceSeedWithMasterSize
  // bytes the last 32 are the master key's Ed25519 seed. Deterministic
  // (Ed25519 signatures are), so tests can pin keys. `seed` must be secret,
  // uniformly random bytes.
  static Result<Device> FromSeed(std::string user, int64_t now_ms, ByteView seed);
  // Checks that the profile's keys fit together (identity seed, device id,
  // prekey pair and its signature, pinned root key shape).
  static Result<Device> FromProfile(Profile profile);

  const Profile& profile() const { return profile_; }
  const Bytes& identity_public() const { return identity_public_; }
  const Bytes& device_id() const { return profile_.device_id; }
  bool registered() const { return !profile_.device_id.empty(); }
  // This device as other parties see it.
  wire::DeviceInfo Info() const;

  bool holds_master_key() const { return !profile_.master_private.empty(); }
  const Bytes& master_public() const { return profile_.master_public; }

  // ------------------------------------------------------------ enrollment
  // The registration request, with a device certificate signed by the master
  // key at now_ms (or the one installed by UseCertificate).
  // kFailedPrecondition if the device has neither.
  Result<wire::RegisterRequest> MakeRegisterRequest(std::string enrollment_code,
                                                    int64_t now_ms) const;
  // On a device holding the master key: certifies another device of this
  // user, identified by its Ed25519 identity key. The new device registers
  // within the gateway's clock-skew window of now_ms.
  Result<wire::DeviceCertificate> CertifyNewDevice(ByteView identity_public,
                                                   int64_t now_ms) const;
  // On a device without the master key: installs the certificate another
  // device of the user made for it (checked: names this user and identity,
  // master signature valid).
  Status UseCertificate(const wire::DeviceCertificate& certificate);
  // Pins the org root key learnt out of band (an MDM profile, say) before
  // registration, so that AcceptRegistration refuses a gateway that presents
  // another one. Once registered, only the key already pinned is accepted
  // (kFailedPrecondition otherwise).
  Status PinOrgRoot(ByteView org_root_public);
  // Checks the gateway assigned the device id derived from our identity key,
  // pins the org root key (or checks it against the one pinned by
  // PinOrgRoot: kPermissionDenied on a mismatch), and verifies the
  // countersigned device certificate under that root: it must be ours,
  // under our master key. `ca_file` is the trust anchor's file name in the
  // profile directory, or empty.
  Status AcceptRegistration(const wire::RegisterResponse& response, std::string server_url,
                            std::string ca_file);

  // ----------------------------------------------------------------- login
  wire::Hello MakeHello() const;
  Result<wire::Authenticate> AnswerChallenge(const wire::Challenge& challenge) const;

  // --------------------------------------------------------------- prekeys
  bool PrekeyRotationDue(int64_t now_ms, int64_t rotation_ms = kDefaultPrekeyRotationMs) const;
  // Draws a new prekey and keeps it pending until the gateway confirms it;
  // returns the frame to send. While one is pending, returns the same frame
  // again (a retry after a lost answer). `ikm`, if not empty, is 32 bytes of
  // caller-supplied randomness for DeriveKeyPair.
  Result<wire::UpdatePrekey> BeginPrekeyRotation(int64_t now_ms, ByteView ikm = {});
  // The gateway stored the pending prekey: it becomes current and the old
  // one is retired at now_ms (beyond kMaxRetiredPrekeys, the oldest retired
  // one is wiped).
  Status CompletePrekeyRotation(const wire::PrekeyUpdated& confirmation, int64_t now_ms);
  // The gateway refused the pending prekey (stale_prekey): it never stored
  // it, since a resend of the stored one succeeds, so it is wiped and the
  // next BeginPrekeyRotation draws a new one.
  Status AbandonPrekeyRotation();
  // Wipes retired prekeys whose grace period is over; returns how many.
  size_t ExpireRetiredPrekeys(int64_t now_ms, int64_t grace_ms = kDefaultPrekeyGraceMs);

  // -------------------------------------------------------------- messages
  // Verifies every device of the conversation (certificate chain to the
  // pinned root) and records what it lists, returning what changed since
  // this device last looked: the archive notice on first sight, new or
  // removed devices, changed master keys and group membership changes.
  // The first sight of another user records their devices silently; the
  // first sight of a group also tells its history (creation and changes).
  // Refuses, recording nothing, a conversation with a device that fails
  // verification or belongs to a non-member, or with devices of one user
  // under different master keys.
  Result<std::vector<Notice>> ObserveConversation(const wire::ConversationInfo& conversation,
                                                  int64_t now_ms);

  // Verifies the epoch certificate against the pinned org root at now_ms and
  // every listed device, then seals `text` to every device of the
  // conversation except this one (the sender's other devices included) and
  // to the archive epoch key. Refuses a conversation in which some other
  // member has no device or a device belongs to a non-member.
  Result<wire::Envelope> PrepareMessage(const wire::ConversationInfo& conversation,
                                        std::string_view text, int64_t now_ms) const;

  // Verifies the sender's DeviceInfo (certificate chain included) and that
  // it is the envelope's signer, the epoch certificate against the pinned
  // root (its window must contain the header's sent_at_ms, since queued
  // messages outlive their epoch), then opens the message with the current,
  // pending or a retired prekey. A dishonest archive capsule yields
  // kCryptoFailure with a message starting "archive capsule mismatch".
  // Records the sender's device; a device not seen before yields a notice.
  Result<ReceivedMessage> OpenDelivery(const wire::Deliver& delivery, int64_t now_ms);
  // A history entry (9.10) with the checks of OpenDelivery. An entry with a
  // restored capsule is opened through it instead of the envelope's own
  // capsules (the device was never addressed): the capsule must name this
  // device, and the CEK it holds must reproduce the envelope's archive
  // capsule byte for byte, so the gateway can hand over only the key the
  // sender sealed to the archive. The message is marked restored.
  Result<ReceivedMessage> OpenHistoryEntry(const wire::HistoryEntry& entry, int64_t now_ms);
  // The notices to show for a history restore (9.12): one in each
  // conversation concerned, or one account notice if none is listed.
  std::vector<Notice> RestoreNotices(const wire::HistoryRestored& restored) const;

  // ----------------------------------------------------- resend (9.11)
  // Records a message this device sealed (`envelope`, from PrepareMessage)
  // in the sent log, with the users it was sealed to; drops entries sent
  // more than `retention_ms` before now_ms and the oldest beyond
  // kSentLogLimit.
  Status RecordSent(const wire::Envelope& envelope, std::string_view text, int64_t now_ms,
                    int64_t retention_ms = kDefaultPrekeyGraceMs);
  // Seals a message from the sent log again, under a new message id with
  // resend_of set to the original's, for the request's devices only, after
  // verifying each of them as PrepareMessage does and the epoch certificate
  // at now_ms. A device of a user the original was not sealed to, or of
  // this very device, is kPermissionDenied: a gateway cannot make a device
  // disclose a message to anyone new. A message not in the sent log is
  // kNotFound; the caller still acknowledges the request, which can never
  // be answered.
  Result<wire::Envelope> PrepareResend(const wire::ResendRequest& request, int64_t now_ms) const;

  // ---------------------------------------------------------- local state
  // Records that the archive notice of `conversation_id` was shown; returns
  // false if it had been already.
  bool MarkNoticeShown(std::string_view conversation_id);
  bool NoticeShown(std::string_view conversation_id) const;
  // Records an opened message id; returns false if it was already seen.
  // Remembers the last kSeenMessageIdsLimit ids.
  bool MarkSeen(ByteView message_id);
  bool Seen(ByteView message_id) const;
  // MarkSeen of an opened message's id and, for a re-sent one, of the
  // original's: false if either was seen, so a message arrives once however
  // often it was re-sent.
  bool MarkReceived(const ReceivedMessage& message);

 private:
  // `signer` holds the identity key from profile.identity_private, loaded once.
  // OpenDelivery, through `restored` (a restored capsule) when not null.
  Result<ReceivedMessage> Open(const wire::Deliver& delivery, const wire::DeviceCapsule* restored,
                               int64_t now_ms);

  Device(Profile profile, protocol::Ed25519Signer signer)
      : profile_(std::move(profile)),
        identity_public_(signer.public_key()),
        signer_(std::move(signer)) {}

  // Records a verified device of `user`; notices go to `conversation_id`.
  // `user_known`: the user had been seen before the current observation
  // began; devices of a user seen for the first time are recorded silently.
  void ObserveDevice(const protocol::CertifiedDevice& device, std::string_view conversation_id,
                     int64_t now_ms, bool user_known, std::vector<Notice>& notices);

  Profile profile_;
  Bytes identity_public_;
  protocol::Ed25519Signer signer_;
};

// The report a client sends the gateway when a delivery fails a check that
// points at its sender (archive capsule mismatch, bad signature or device
// certificate); nullopt for failures that do not (malformed frames aside,
// e.g. a missing capsule for this device after it was replaced).
std::optional<wire::ReportDelivery> ReportFor(const wire::Deliver& delivery, const Status& failure);

// The header of a delivered envelope WITHOUT any verification, for labelling
// a rejected delivery in reports. Never treat its fields as authentic.
std::optional<wire::MessageHeader> UnverifiedHeader(const wire::Deliver& delivery);

}  // namespace holdfast::client
