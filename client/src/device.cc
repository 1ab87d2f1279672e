#include "holdfast/client/device.h"

#include <algorithm>
#include <set>

#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::client {
namespace {

namespace hpke = protocol::hpke;

constexpr size_t kP256PointSize = 65;

ByteView View(const std::string& s) { return AsBytes(s); }

bool IsP256Point(ByteView key) { return key.size() == kP256PointSize && key[0] == 0x04; }

// Verifies the certificate, that it is for our org, and returns its body.
Result<wire::EpochCertificateBody> CheckEpoch(const Profile& profile,
                                              const wire::EpochCertificate& cert,
                                              int64_t now_ms) {
  auto body = protocol::VerifyEpochCertificate(cert, profile.org_root_key, now_ms);
  if (!body.ok()) return body.status().WithContext("epoch certificate");
  if (body->org() != profile.org) {
    return Status::PermissionDenied("epoch certificate is for org \"" + body->org() +
                                    "\", not \"" + profile.org + "\"");
  }
  if (!IsP256Point(View(body->public_key()))) {
    return Status::InvalidArgument("epoch certificate: public key is not a P-256 point");
  }
  return body;
}

}  // namespace

Result<Device> Device::Generate(std::string user, int64_t now_ms) {
  SecretBytes seed(kDeviceSeedSize);
  HF_RETURN_IF_ERROR(protocol::RandomBytes(seed.span()));
  return FromSeed(std::move(user), now_ms, seed.view());
}

Result<Device> Device::FromSeed(std::string user, int64_t now_ms, ByteView seed) {
  if (user.empty()) return Status::InvalidArgument("user name is empty");
  if (seed.size() != kDeviceSeedSize) {
    return Status::InvalidArgument("device seed must be " + std::to_string(kDeviceSeedSize) +
                                   " bytes");
  }
  HF_ASSIGN_OR_RETURN(auto identity, protocol::Ed25519FromSeed(seed.first(32)));
  HF_ASSIGN_OR_RETURN(auto prekey,
                      hpke::DeriveKeyPair(hpke::KemId::kX25519HkdfSha256, seed.subspan(32)));
  HF_ASSIGN_OR_RETURN(auto signed_prekey,
                      protocol::SignPrekey(identity.private_key.view(), prekey.public_key, now_ms));
  Profile p;
  p.user = std::move(user);
  p.identity_private = std::move(identity.private_key);
  p.prekey_private = std::move(prekey.private_key);
  p.prekey = std::move(signed_prekey);
  return Device(std::move(p), std::move(identity.public_key));
}

Result<Device> Device::FromProfile(Profile profile) {
  if (profile.user.empty()) return Status::InvalidArgument("profile: user is empty");
  auto identity = protocol::Ed25519FromSeed(profile.identity_private.view());
  if (!identity.ok()) return identity.status().WithContext("profile: identity key");
  auto prekey_public =
      hpke::PublicKeyFromPrivate(hpke::KemId::kX25519HkdfSha256, profile.prekey_private.view());
  if (!prekey_public.ok()) return prekey_public.status().WithContext("profile: prekey");
  if (*prekey_public != Bytes(profile.prekey.public_key().begin(),
                              profile.prekey.public_key().end())) {
    return Status::InvalidArgument("profile: prekey private and public keys do not match");
  }
  if (Status s = protocol::VerifyPrekey(identity->public_key, profile.prekey); !s.ok()) {
    return s.WithContext("profile: prekey signature");
  }
  if (!profile.org_root_key.empty() && !IsP256Point(profile.org_root_key)) {
    return Status::InvalidArgument("profile: pinned org root key is not a P-256 point");
  }
  if (!profile.device_id.empty()) {
    if (profile.device_id != protocol::DeviceIdFor(identity->public_key)) {
      return Status::InvalidArgument("profile: device id does not match the identity key");
    }
    if (!IsP256Point(profile.org_root_key)) {
      return Status::InvalidArgument("profile: pinned org root key is not a P-256 point");
    }
  }
  return Device(std::move(profile), std::move(identity->public_key));
}

wire::DeviceInfo Device::Info() const {
  wire::DeviceInfo info;
  info.set_user(profile_.user);
  info.set_device_id(AsString(protocol::DeviceIdFor(identity_public_)));
  info.set_identity_key(AsString(identity_public_));
  *info.mutable_prekey() = profile_.prekey;
  return info;
}

wire::RegisterRequest Device::MakeRegisterRequest(std::string enrollment_code) const {
  wire::RegisterRequest r;
  r.set_user(profile_.user);
  r.set_enrollment_code(std::move(enrollment_code));
  r.set_identity_key(AsString(identity_public_));
  *r.mutable_prekey() = profile_.prekey;
  return r;
}

Status Device::PinOrgRoot(ByteView org_root_public) {
  if (!IsP256Point(org_root_public)) {
    return Status::InvalidArgument("org root key is not a P-256 point");
  }
  if (!profile_.org_root_key.empty()) {
    if (ConstantTimeEqual(profile_.org_root_key, org_root_public)) return Status::Ok();
    return Status::FailedPrecondition("a different org root key is already pinned");
  }
  profile_.org_root_key.assign(org_root_public.begin(), org_root_public.end());
  return Status::Ok();
}

Status Device::AcceptRegistration(const wire::RegisterResponse& response, std::string server_url,
                                  std::string ca_file) {
  if (registered()) return Status::AlreadyExists("device is already registered");
  const Bytes expected = protocol::DeviceIdFor(identity_public_);
  if (!ConstantTimeEqual(View(response.device_id()), expected)) {
    return Status::PermissionDenied("gateway assigned device id " +
                                    ToHex(View(response.device_id())) +
                                    ", which is not derived from our identity key");
  }
  if (!IsP256Point(View(response.org_root_key()))) {
    return Status::InvalidArgument("gateway sent an org root key that is not a P-256 point");
  }
  if (response.org().empty()) return Status::InvalidArgument("gateway sent an empty org name");
  if (!profile_.org_root_key.empty() &&
      !ConstantTimeEqual(profile_.org_root_key, View(response.org_root_key()))) {
    return Status::PermissionDenied("gateway sent an org root key other than the pinned one");
  }
  profile_.device_id = expected;
  profile_.org_root_key.assign(response.org_root_key().begin(), response.org_root_key().end());
  profile_.org = response.org();
  profile_.server_url = std::move(server_url);
  profile_.ca_file = std::move(ca_file);
  return Status::Ok();
}

wire::Hello Device::MakeHello() const {
  wire::Hello h;
  h.set_device_id(AsString(profile_.device_id));
  return h;
}

Result<wire::Authenticate> Device::AnswerChallenge(const wire::Challenge& challenge) const {
  if (!registered()) return Status::FailedPrecondition("device is not registered");
  if (challenge.nonce().size() != 32) {
    return Status::InvalidArgument("login challenge nonce is not 32 bytes");
  }
  HF_ASSIGN_OR_RETURN(
      Bytes sig, protocol::Ed25519Sign(profile_.identity_private.view(),
                                       protocol::AuthTranscript(View(challenge.nonce()),
                                                                profile_.device_id)));
  wire::Authenticate a;
  a.set_signature(AsString(sig));
  return a;
}

Result<wire::Envelope> Device::PrepareMessage(const wire::ConversationInfo& conversation,
                                              std::string_view text, int64_t now_ms) const {
  if (!registered()) return Status::FailedPrecondition("device is not registered");
  if (now_ms <= 0) return Status::InvalidArgument("PrepareMessage needs the current time");
  if (conversation.conversation_id().empty()) {
    return Status::InvalidArgument("conversation has no id");
  }
  HF_ASSIGN_OR_RETURN(auto epoch, CheckEpoch(profile_, conversation.epoch(), now_ms));

  std::set<std::string> members(conversation.members().begin(), conversation.members().end());
  std::set<std::string> members_with_devices;
  std::set<std::string> device_ids;
  std::vector<protocol::Recipient> recipients;
  for (const auto& d : conversation.devices()) {
    if (Status s = protocol::VerifyDeviceInfo(d); !s.ok()) {
      return s.WithContext("device " + ToHex(View(d.device_id())) + " of " + d.user());
    }
    if (d.user() != profile_.user && members.count(d.user()) == 0) {
      return Status::PermissionDenied("conversation lists a device of non-member " + d.user());
    }
    if (!device_ids.insert(d.device_id()).second) {
      return Status::InvalidArgument("conversation lists device " + ToHex(View(d.device_id())) +
                                     " twice");
    }
    members_with_devices.insert(d.user());
    if (std::ranges::equal(View(d.device_id()), profile_.device_id)) {
      if (d.user() != profile_.user) {
        return Status::PermissionDenied("conversation lists this device under user " + d.user());
      }
      continue;
    }
    recipients.push_back(protocol::Recipient{
        d.user(), Bytes(d.device_id().begin(), d.device_id().end()),
        Bytes(d.prekey().public_key().begin(), d.prekey().public_key().end())});
  }
  for (const auto& m : members) {
    if (m != profile_.user && members_with_devices.count(m) == 0) {
      return Status::FailedPrecondition("member " + m + " has no registered device");
    }
  }
  if (recipients.empty()) return Status::FailedPrecondition("conversation has no other device");

  protocol::SealRequest req;
  req.conversation_id = conversation.conversation_id();
  req.sender_user = profile_.user;
  req.sender_device = profile_.device_id;
  req.sent_at_ms = now_ms;
  req.epoch_id = epoch.epoch_id();
  req.archive_public.assign(epoch.public_key().begin(), epoch.public_key().end());
  req.recipients = std::move(recipients);
  req.text = std::string(text);
  return protocol::SealMessage(req, profile_.identity_private.view());
}

Result<ReceivedMessage> Device::OpenDelivery(const wire::Deliver& delivery) const {
  if (!registered()) return Status::FailedPrecondition("device is not registered");
  const wire::DeviceInfo& sender = delivery.sender();
  if (Status s = protocol::VerifyDeviceInfo(sender); !s.ok()) {
    return s.WithContext("sender device");
  }
  HF_ASSIGN_OR_RETURN(auto parsed, protocol::ParseEnvelope(delivery.envelope()));
  const wire::MessageHeader& h = parsed.header;
  if (h.sender_device() != sender.device_id()) {
    return Status::PermissionDenied("envelope names sender device " +
                                    ToHex(View(h.sender_device())) + " but was delivered as from " +
                                    ToHex(View(sender.device_id())));
  }
  if (h.sender_user() != sender.user()) {
    return Status::PermissionDenied("envelope names sender " + h.sender_user() +
                                    " but the device belongs to " + sender.user());
  }
  HF_ASSIGN_OR_RETURN(auto epoch, CheckEpoch(profile_, delivery.epoch(), /*now_ms=*/0));
  if (epoch.epoch_id() != h.epoch_id()) {
    return Status::PermissionDenied("delivered epoch certificate is for epoch " +
                                    std::to_string(epoch.epoch_id()) + ", envelope uses " +
                                    std::to_string(h.epoch_id()));
  }
  if (h.sent_at_ms() < epoch.not_before_ms() || h.sent_at_ms() >= epoch.not_after_ms()) {
    return Status::PermissionDenied("message time lies outside its archive epoch");
  }
  HF_ASSIGN_OR_RETURN(
      auto opened,
      protocol::OpenMessage(parsed, View(sender.identity_key()), profile_.device_id,
                            profile_.prekey_private.view(), View(epoch.public_key())));
  ReceivedMessage m;
  m.message_id.assign(opened.header.message_id().begin(), opened.header.message_id().end());
  m.conversation_id = opened.header.conversation_id();
  m.sender_user = opened.header.sender_user();
  m.sender_device.assign(opened.header.sender_device().begin(),
                         opened.header.sender_device().end());
  m.sent_at_ms = opened.header.sent_at_ms();
  m.text = std::move(opened.text);
  return m;
}

bool Device::MarkNoticeShown(std::string_view conversation_id) {
  if (NoticeShown(conversation_id)) return false;
  profile_.notices_shown.emplace_back(conversation_id);
  return true;
}

bool Device::NoticeShown(std::string_view conversation_id) const {
  return std::find(profile_.notices_shown.begin(), profile_.notices_shown.end(),
                   conversation_id) != profile_.notices_shown.end();
}

bool Device::MarkSeen(ByteView message_id) {
  if (Seen(message_id)) return false;
  profile_.seen_message_ids.emplace_back(message_id.begin(), message_id.end());
  while (profile_.seen_message_ids.size() > kSeenMessageIdsLimit) {
    profile_.seen_message_ids.pop_front();
  }
  return true;
}

bool Device::Seen(ByteView message_id) const {
  return std::any_of(profile_.seen_message_ids.begin(), profile_.seen_message_ids.end(),
                     [&](const Bytes& id) {
                       return std::equal(id.begin(), id.end(), message_id.begin(),
                                         message_id.end());
                     });
}

std::optional<wire::MessageHeader> UnverifiedHeader(const wire::Deliver& delivery) {
  wire::EnvelopeContent content;
  wire::MessageHeader header;
  if (!content.ParseFromString(delivery.envelope().content()) ||
      !header.ParseFromString(content.header())) {
    return std::nullopt;
  }
  return header;
}

}  // namespace holdfast::client
