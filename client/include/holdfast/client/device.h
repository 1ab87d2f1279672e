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

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/client/profile.h"
#include "holdfast/protocol/envelope.h"

namespace holdfast::client {

// A delivered message after every check passed.
struct ReceivedMessage {
  Bytes message_id;
  std::string conversation_id;
  std::string sender_user;
  Bytes sender_device;
  int64_t sent_at_ms = 0;
  std::string text;
};

inline constexpr size_t kDeviceSeedSize = 64;

class Device {
 public:
  // Fresh Ed25519 identity and X25519 prekey (signed at now_ms); not yet
  // registered with any gateway.
  static Result<Device> Generate(std::string user, int64_t now_ms);
  // The same from caller-supplied randomness: the first 32 bytes of `seed`
  // are the Ed25519 identity seed, the next 32 the ikm of RFC 9180
  // DeriveKeyPair for the X25519 prekey. Deterministic (Ed25519 signatures
  // are), so tests can pin keys. `seed` must be kDeviceSeedSize secret,
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

  // ------------------------------------------------------------ enrollment
  wire::RegisterRequest MakeRegisterRequest(std::string enrollment_code) const;
  // Pins the org root key learnt out of band (an MDM profile, say) before
  // registration, so that AcceptRegistration refuses a gateway that presents
  // another one. Once registered, only the key already pinned is accepted
  // (kFailedPrecondition otherwise).
  Status PinOrgRoot(ByteView org_root_public);
  // Checks the gateway assigned the device id derived from our identity key
  // and pins the org root key (or checks it against the one pinned by
  // PinOrgRoot: kPermissionDenied on a mismatch). `ca_file` is the trust
  // anchor's file name in the profile directory, or empty.
  Status AcceptRegistration(const wire::RegisterResponse& response, std::string server_url,
                            std::string ca_file);

  // ----------------------------------------------------------------- login
  wire::Hello MakeHello() const;
  Result<wire::Authenticate> AnswerChallenge(const wire::Challenge& challenge) const;

  // -------------------------------------------------------------- messages
  // Verifies the epoch certificate against the pinned org root at now_ms and
  // every listed device, then seals `text` to every device of the
  // conversation except this one (the sender's other devices included) and
  // to the archive epoch key. Refuses a conversation in which some other
  // member has no device or a device belongs to a non-member.
  Result<wire::Envelope> PrepareMessage(const wire::ConversationInfo& conversation,
                                        std::string_view text, int64_t now_ms) const;

  // Verifies the sender's DeviceInfo and that it is the envelope's signer,
  // the epoch certificate against the pinned root (its window must contain
  // the header's sent_at_ms, since queued messages outlive their epoch),
  // then opens the message. A dishonest archive capsule yields
  // kCryptoFailure with a message starting "archive capsule mismatch".
  Result<ReceivedMessage> OpenDelivery(const wire::Deliver& delivery) const;

  // ---------------------------------------------------------- local state
  // Records that the archive notice of `conversation_id` was shown; returns
  // false if it had been already.
  bool MarkNoticeShown(std::string_view conversation_id);
  bool NoticeShown(std::string_view conversation_id) const;
  // Records an opened message id; returns false if it was already seen.
  // Remembers the last kSeenMessageIdsLimit ids.
  bool MarkSeen(ByteView message_id);
  bool Seen(ByteView message_id) const;

 private:
  Device(Profile profile, Bytes identity_public)
      : profile_(std::move(profile)), identity_public_(std::move(identity_public)) {}

  Profile profile_;
  Bytes identity_public_;
};

// The header of a delivered envelope WITHOUT any verification, for labelling
// a rejected delivery in reports. Never treat its fields as authentic.
std::optional<wire::MessageHeader> UnverifiedHeader(const wire::Deliver& delivery);

}  // namespace holdfast::client
