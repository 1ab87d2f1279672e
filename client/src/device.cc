#include "holdfast/client/device.h"

#include <algorithm>
#include <map>
#include <set>

#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::client {
namespace {

namespace hpke = protocol::hpke;

constexpr size_t kP256PointSize = 65;

ByteView View(const std::string& s) { return AsBytes(s); }

bool IsP256Point(ByteView key) { return key.size() == kP256PointSize && key[0] == 0x04; }

// Whether `user` was seen before, under some master key.
bool KnowsUser(const std::vector<Contact>& contacts, std::string_view user) {
  return std::any_of(contacts.begin(), contacts.end(),
                     [&](const Contact& c) { return c.user == user && !c.master_key.empty(); });
}

// A message from this profile's device, sealed to `recipients` and to the
// archive key of `epoch`; the caller sets the text (and resend_of).
protocol::SealRequest SealRequestFrom(const Profile& profile, const std::string& conversation_id,
                                      const wire::EpochCertificateBody& epoch,
                                      std::vector<protocol::Recipient> recipients, int64_t now_ms) {
  protocol::SealRequest req;
  req.conversation_id = conversation_id;
  req.sender_user = profile.user;
  req.sender_device = profile.device_id;
  req.sent_at_ms = now_ms;
  req.epoch_id = epoch.epoch_id();
  req.archive_public.assign(epoch.public_key().begin(), epoch.public_key().end());
  req.recipients = std::move(recipients);
  return req;
}

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

Contact* FindContact(std::vector<Contact>& contacts, std::string_view user) {
  auto it = std::lower_bound(contacts.begin(), contacts.end(), user,
                             [](const Contact& c, std::string_view u) { return c.user < u; });
  return it != contacts.end() && it->user == user ? &*it : nullptr;
}

Contact& ContactFor(std::vector<Contact>& contacts, const std::string& user, bool& created) {
  auto it = std::lower_bound(contacts.begin(), contacts.end(), user,
                             [](const Contact& c, const std::string& u) { return c.user < u; });
  created = it == contacts.end() || it->user != user;
  if (created) {
    it = contacts.insert(it, Contact{});
    it->user = user;
  }
  return *it;
}

std::string Whose(const std::string& user, const std::string& self) {
  return user == self ? "Your account" : user;
}

// VerifyDevice, and that the organisation that enrolled the device is ours.
Result<protocol::CertifiedDevice> VerifyForProfile(const Profile& profile,
                                                   const wire::DeviceInfo& device) {
  HF_ASSIGN_OR_RETURN(protocol::CertifiedDevice certified,
                      protocol::VerifyDevice(device, profile.org_root_key));
  if (certified.org != profile.org) {
    return Status::PermissionDenied("device certificate: enrolled by org \"" + certified.org +
                                    "\", not \"" + profile.org + "\"");
  }
  return certified;
}

}  // namespace

Result<Device> Device::Generate(std::string user, int64_t now_ms, bool with_master_key) {
  SecretBytes seed(with_master_key ? kDeviceSeedWithMasterSize : kDeviceSeedSize);
  HF_RETURN_IF_ERROR(protocol::RandomBytes(seed.span()));
  return FromSeed(std::move(user), now_ms, seed.view());
}

Result<Device> Device::FromSeed(std::string user, int64_t now_ms, ByteView seed) {
  if (user.empty()) return Status::InvalidArgument("user name is empty");
  if (user.size() > protocol::kMaxNameSize) return Status::InvalidArgument("user name too long");
  if (seed.size() != kDeviceSeedSize && seed.size() != kDeviceSeedWithMasterSize) {
    return Status::InvalidArgument("device seed must be " + std::to_string(kDeviceSeedSize) +
                                   " or " + std::to_string(kDeviceSeedWithMasterSize) + " bytes");
  }
  HF_ASSIGN_OR_RETURN(auto identity, protocol::Ed25519FromSeed(seed.first(32)));
  HF_ASSIGN_OR_RETURN(auto prekey,
                      hpke::DeriveKeyPair(hpke::KemId::kX25519HkdfSha256, seed.subspan(32, 32)));
  HF_ASSIGN_OR_RETURN(auto signed_prekey,
                      protocol::SignPrekey(identity.private_key.view(), prekey.public_key, now_ms));
  Profile p;
  p.user = std::move(user);
  if (seed.size() == kDeviceSeedWithMasterSize) {
    HF_ASSIGN_OR_RETURN(auto master, protocol::Ed25519FromSeed(seed.subspan(64, 32)));
    p.master_private = std::move(master.private_key);
    p.master_public = std::move(master.public_key);
  }
  p.identity_private = std::move(identity.private_key);
  p.prekey_private = std::move(prekey.private_key);
  p.prekey = std::move(signed_prekey);
  HF_ASSIGN_OR_RETURN(auto signer, protocol::Ed25519Signer::Load(p.identity_private.view()));
  return Device(std::move(p), std::move(signer));
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
  if (!profile.master_private.empty()) {
    auto master = protocol::Ed25519FromSeed(profile.master_private.view());
    if (!master.ok()) return master.status().WithContext("profile: master key");
    if (master->public_key != profile.master_public) {
      return Status::InvalidArgument("profile: master private and public keys do not match");
    }
  }
  for (const auto* list : {&profile.pending_prekeys, &profile.retired_prekeys}) {
    for (const StoredPrekey& k : *list) {
      auto pub = hpke::PublicKeyFromPrivate(hpke::KemId::kX25519HkdfSha256,
                                            k.private_key.view());
      if (!pub.ok() || AsString(*pub) != k.prekey.public_key()) {
        return Status::InvalidArgument("profile: a stored prekey's keys do not match");
      }
    }
  }
  if (!profile.device_id.empty()) {
    if (profile.device_id != protocol::DeviceIdFor(identity->public_key)) {
      return Status::InvalidArgument("profile: device id does not match the identity key");
    }
    if (!IsP256Point(profile.org_root_key)) {
      return Status::InvalidArgument("profile: pinned org root key is not a P-256 point");
    }
    auto certified = protocol::VerifyDeviceCertificate(profile.certificate, profile.org_root_key);
    if (!certified.ok()) return certified.status().WithContext("profile");
    if (certified->identity_key != identity->public_key || certified->user != profile.user ||
        certified->master_key != profile.master_public) {
      return Status::InvalidArgument("profile: the device certificate is not this device's");
    }
  }
  HF_ASSIGN_OR_RETURN(auto signer, protocol::Ed25519Signer::Load(profile.identity_private.view()));
  return Device(std::move(profile), std::move(signer));
}

wire::DeviceInfo Device::Info() const {
  wire::DeviceInfo info;
  info.set_user(profile_.user);
  info.set_device_id(AsString(protocol::DeviceIdFor(identity_public_)));
  info.set_identity_key(AsString(identity_public_));
  *info.mutable_prekey() = profile_.prekey;
  if (profile_.certificate.ByteSizeLong() != 0) *info.mutable_certificate() = profile_.certificate;
  return info;
}

Result<wire::RegisterRequest> Device::MakeRegisterRequest(std::string enrollment_code,
                                                          int64_t now_ms) const {
  if (registered()) return Status::AlreadyExists("device is already registered");
  wire::RegisterRequest r;
  if (holds_master_key()) {
    HF_ASSIGN_OR_RETURN(*r.mutable_certificate(),
                        protocol::CertifyDevice(profile_.master_private.view(), profile_.user,
                                                identity_public_, now_ms));
  } else if (!profile_.certificate.body().empty()) {
    *r.mutable_certificate() = profile_.certificate;
  } else {
    return Status::FailedPrecondition(
        "this device has no master key and no certificate: certify it from a device of " +
        profile_.user + " that holds the master key");
  }
  r.set_user(profile_.user);
  r.set_enrollment_code(std::move(enrollment_code));
  r.set_identity_key(AsString(identity_public_));
  *r.mutable_prekey() = profile_.prekey;
  return r;
}

Result<wire::DeviceCertificate> Device::CertifyNewDevice(ByteView identity_public,
                                                         int64_t now_ms) const {
  if (!holds_master_key()) {
    return Status::FailedPrecondition("this device does not hold the master key");
  }
  if (std::ranges::equal(identity_public, identity_public_)) {
    return Status::InvalidArgument("that is this device's own identity key");
  }
  return protocol::CertifyDevice(profile_.master_private.view(), profile_.user, identity_public,
                                 now_ms);
}

Status Device::UseCertificate(const wire::DeviceCertificate& certificate) {
  if (registered()) return Status::AlreadyExists("device is already registered");
  if (holds_master_key()) {
    return Status::FailedPrecondition("this device holds a master key of its own");
  }
  auto body = protocol::CheckCertificateRequest(certificate, profile_.user, identity_public_);
  if (!body.ok()) return body.status();
  profile_.certificate = certificate;
  profile_.master_public.assign(body->master_key().begin(), body->master_key().end());
  return Status::Ok();
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
  auto certified = protocol::VerifyDeviceCertificate(response.certificate(),
                                                     View(response.org_root_key()));
  if (!certified.ok()) return certified.status().WithContext("registration");
  if (certified->identity_key != identity_public_ || certified->user != profile_.user) {
    return Status::PermissionDenied("gateway returned a certificate for another device");
  }
  if (certified->org != response.org()) {
    return Status::PermissionDenied("gateway returned a certificate enrolled by another org");
  }
  // master_public is set by key generation or by UseCertificate.
  if (certified->master_key != profile_.master_public) {
    return Status::PermissionDenied("gateway returned a certificate under another master key");
  }
  profile_.certificate = response.certificate();
  profile_.master_public = certified->master_key;
  // This device is the first of its own user it knows of, so that another
  // device added to the account later raises a notice.
  bool created = false;
  Contact& self = ContactFor(profile_.contacts, profile_.user, created);
  self.master_key = certified->master_key;
  self.devices = {Contact::Device{expected, certified->issued_at_ms}};
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
    if (auto v = VerifyForProfile(profile_, d); !v.ok()) {
      return v.status().WithContext("device " + ToHex(View(d.device_id())) + " of " + d.user());
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

  protocol::SealRequest req = SealRequestFrom(profile_, conversation.conversation_id(), epoch,
                                              std::move(recipients), now_ms);
  req.text = std::string(text);
  return protocol::SealMessage(req, signer_);
}

Result<ReceivedMessage> Device::OpenDelivery(const wire::Deliver& delivery, int64_t now_ms) {
  return Open(delivery, nullptr, now_ms);
}

Result<ReceivedMessage> Device::OpenHistoryEntry(const wire::HistoryEntry& entry, int64_t now_ms) {
  wire::Deliver d;
  *d.mutable_envelope() = entry.envelope();
  if (entry.has_sender()) *d.mutable_sender() = entry.sender();
  if (entry.has_epoch()) *d.mutable_epoch() = entry.epoch();
  if (!entry.has_restored_capsule()) return Open(d, nullptr, now_ms);
  HF_ASSIGN_OR_RETURN(ReceivedMessage m, Open(d, &entry.restored_capsule(), now_ms));
  m.restore_request_id = entry.restore_request_id();
  return m;
}

std::vector<Notice> Device::RestoreNotices(const wire::HistoryRestored& restored) const {
  const Bytes target(restored.target_device().begin(), restored.target_device().end());
  const std::string where = target == profile_.device_id ? "this device" : "device " + ToHex(target);
  const std::string whose = restored.user() == profile_.user ? "Your" : restored.user() + "'s";
  const std::string text = whose + " history (" + std::to_string(restored.envelope_count()) +
                           " message(s)) was restored to " + where +
                           " by the organisation under disclosure request " +
                           std::to_string(restored.request_id());
  std::vector<Notice> out;
  for (const auto& c : restored.conversation_ids()) {
    out.push_back(Notice{Notice::Kind::kHistoryRestored, c, restored.user(), target, text});
  }
  if (out.empty()) {
    out.push_back(Notice{Notice::Kind::kHistoryRestored, {}, restored.user(), target, text});
  }
  return out;
}

Result<ReceivedMessage> Device::Open(const wire::Deliver& delivery,
                                     const wire::DeviceCapsule* restored, int64_t now_ms) {
  if (!registered()) return Status::FailedPrecondition("device is not registered");
  const wire::DeviceInfo& sender = delivery.sender();
  auto certified = VerifyForProfile(profile_, sender);
  if (!certified.ok()) return certified.status().WithContext("sender device");
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
  // Newest first: most deliveries are sealed to the current prekey.
  std::vector<ByteView> prekeys{profile_.prekey_private.view()};
  for (const auto& k : profile_.pending_prekeys) prekeys.push_back(k.private_key.view());
  for (auto it = profile_.retired_prekeys.rbegin(); it != profile_.retired_prekeys.rend(); ++it) {
    prekeys.push_back(it->private_key.view());
  }
  HF_ASSIGN_OR_RETURN(auto opened,
                      restored != nullptr
                          ? protocol::OpenMessageWithCapsule(parsed, View(sender.identity_key()),
                                                             *restored, profile_.device_id,
                                                             prekeys, View(epoch.public_key()))
                          : protocol::OpenMessage(parsed, View(sender.identity_key()),
                                                  profile_.device_id, prekeys,
                                                  View(epoch.public_key())));
  ReceivedMessage m;
  m.message_id.assign(opened.header.message_id().begin(), opened.header.message_id().end());
  m.conversation_id = opened.header.conversation_id();
  m.sender_user = opened.header.sender_user();
  m.sender_device.assign(opened.header.sender_device().begin(),
                         opened.header.sender_device().end());
  m.sent_at_ms = opened.header.sent_at_ms();
  m.text = std::move(opened.text);
  m.resend_of.assign(opened.header.resend_of().begin(), opened.header.resend_of().end());
  ObserveDevice(*certified, m.conversation_id, now_ms, KnowsUser(profile_.contacts, m.sender_user),
                m.notices);
  if (!m.resend_of.empty()) {
    m.notices.push_back(Notice{Notice::Kind::kResent, m.conversation_id, m.sender_user, {},
                               Whose(m.sender_user, profile_.user) +
                                   " sent this message before this device was enrolled; "
                                   "their device sealed it again for this device"});
  }
  return m;
}

// ----------------------------------------------------------------- resend

Status Device::RecordSent(const wire::Envelope& envelope, std::string_view text, int64_t now_ms,
                          int64_t retention_ms) {
  HF_ASSIGN_OR_RETURN(auto parsed, protocol::ParseEnvelope(envelope));
  const wire::MessageHeader& h = parsed.header;
  if (h.sender_device() != AsString(profile_.device_id)) {
    return Status::InvalidArgument("sent log: the envelope is not this device's");
  }
  SentMessage m;
  m.message_id.assign(h.message_id().begin(), h.message_id().end());
  m.conversation_id = h.conversation_id();
  m.text = std::string(text);
  m.sent_at_ms = h.sent_at_ms();
  std::set<std::string> users{profile_.user};
  for (const auto& c : parsed.content.devices()) users.insert(c.user());
  m.users.assign(users.begin(), users.end());
  auto& log = profile_.sent_log;
  std::erase_if(log, [&](const SentMessage& e) {
    return e.sent_at_ms < now_ms - retention_ms || e.message_id == m.message_id;
  });
  log.push_back(std::move(m));
  while (log.size() > kSentLogLimit) log.pop_front();
  return Status::Ok();
}

Result<wire::Envelope> Device::PrepareResend(const wire::ResendRequest& request,
                                             int64_t now_ms) const {
  if (!registered()) return Status::FailedPrecondition("device is not registered");
  if (now_ms <= 0) return Status::InvalidArgument("PrepareResend needs the current time");
  const auto& log = profile_.sent_log;
  auto original = std::find_if(log.begin(), log.end(), [&](const SentMessage& e) {
    return AsString(e.message_id) == request.message_id();
  });
  if (original == log.end()) {
    return Status::NotFound("message " + ToHex(View(request.message_id())) +
                            " is not in this device's sent log");
  }
  if (request.conversation_id() != original->conversation_id) {
    return Status::PermissionDenied("resend request names conversation " +
                                    request.conversation_id() + ", the message was sent to " +
                                    original->conversation_id);
  }
  if (request.devices().empty()) return Status::InvalidArgument("resend request names no device");
  HF_ASSIGN_OR_RETURN(auto epoch, CheckEpoch(profile_, request.epoch(), now_ms));
  std::set<std::string> device_ids;
  std::vector<protocol::Recipient> recipients;
  for (const auto& d : request.devices()) {
    if (auto v = VerifyForProfile(profile_, d); !v.ok()) {
      return v.status().WithContext("device " + ToHex(View(d.device_id())) + " of " + d.user());
    }
    if (!std::binary_search(original->users.begin(), original->users.end(), d.user())) {
      return Status::PermissionDenied("resend request names a device of " + d.user() +
                                      ", to whom the message was not sent");
    }
    if (std::ranges::equal(View(d.device_id()), profile_.device_id)) {
      return Status::PermissionDenied("resend request names this device");
    }
    if (!device_ids.insert(d.device_id()).second) {
      return Status::InvalidArgument("resend request lists device " +
                                     ToHex(View(d.device_id())) + " twice");
    }
    recipients.push_back(protocol::Recipient{
        d.user(), Bytes(d.device_id().begin(), d.device_id().end()),
        Bytes(d.prekey().public_key().begin(), d.prekey().public_key().end())});
  }
  protocol::SealRequest req = SealRequestFrom(profile_, original->conversation_id, epoch,
                                              std::move(recipients), now_ms);
  req.text = original->text;
  req.resend_of = original->message_id;
  return protocol::SealMessage(req, signer_);
}

// ---------------------------------------------------------------- prekeys

bool Device::PrekeyRotationDue(int64_t now_ms, int64_t rotation_ms) const {
  return profile_.pending_prekeys.empty() && now_ms - profile_.prekey.created_at_ms() >= rotation_ms;
}

Result<wire::UpdatePrekey> Device::BeginPrekeyRotation(int64_t now_ms, ByteView ikm) {
  if (!registered()) return Status::FailedPrecondition("device is not registered");
  wire::UpdatePrekey update;
  if (!profile_.pending_prekeys.empty()) {
    *update.mutable_prekey() = profile_.pending_prekeys.front().prekey;
    return update;
  }
  if (now_ms <= profile_.prekey.created_at_ms()) {
    return Status::InvalidArgument("a new prekey must be newer than the current one");
  }
  SecretBytes drawn(32);
  if (ikm.empty()) {
    HF_RETURN_IF_ERROR(protocol::RandomBytes(drawn.span()));
    ikm = drawn.view();
  }
  if (ikm.size() != 32) return Status::InvalidArgument("prekey ikm must be 32 bytes");
  HF_ASSIGN_OR_RETURN(auto pair, hpke::DeriveKeyPair(hpke::KemId::kX25519HkdfSha256, ikm));
  StoredPrekey pending;
  HF_ASSIGN_OR_RETURN(pending.prekey, protocol::SignPrekey(profile_.identity_private.view(),
                                                           pair.public_key, now_ms));
  pending.private_key = std::move(pair.private_key);
  *update.mutable_prekey() = pending.prekey;
  profile_.pending_prekeys.push_back(std::move(pending));
  return update;
}

Status Device::CompletePrekeyRotation(const wire::PrekeyUpdated& confirmation, int64_t now_ms) {
  if (profile_.pending_prekeys.empty()) {
    return Status::FailedPrecondition("no prekey rotation is pending");
  }
  StoredPrekey& pending = profile_.pending_prekeys.front();
  if (confirmation.created_at_ms() != pending.prekey.created_at_ms()) {
    return Status::InvalidArgument("the gateway confirmed another prekey");
  }
  StoredPrekey retired;
  retired.prekey = std::move(profile_.prekey);
  retired.private_key = std::move(profile_.prekey_private);
  retired.retired_at_ms = now_ms;
  profile_.prekey = std::move(pending.prekey);
  profile_.prekey_private = std::move(pending.private_key);
  profile_.pending_prekeys.clear();
  profile_.retired_prekeys.push_back(std::move(retired));
  // A profile with more would not load again.
  if (profile_.retired_prekeys.size() > kMaxRetiredPrekeys) {
    profile_.retired_prekeys.erase(profile_.retired_prekeys.begin());
  }
  return Status::Ok();
}

Status Device::AbandonPrekeyRotation() {
  if (profile_.pending_prekeys.empty()) {
    return Status::FailedPrecondition("no prekey rotation is pending");
  }
  profile_.pending_prekeys.clear();  // SecretBytes wipe themselves
  return Status::Ok();
}

size_t Device::ExpireRetiredPrekeys(int64_t now_ms, int64_t grace_ms) {
  // SecretBytes wipes itself when erased.
  return std::erase_if(profile_.retired_prekeys, [&](const StoredPrekey& k) {
    return now_ms - k.retired_at_ms >= grace_ms;
  });
}

// ---------------------------------------------------------------- notices

PrekeyPolicy PrekeyPolicyFrom(const wire::Authenticated& authenticated) {
  constexpr int64_t kHourMs = 3600LL * 1000;
  constexpr int64_t kDayMs = 24 * kHourMs;
  PrekeyPolicy p;
  const int64_t rotation = authenticated.prekey_rotation_ms();
  if (rotation >= kHourMs && rotation <= 365 * kDayMs) p.rotation_ms = rotation;
  const int64_t grace = authenticated.prekey_grace_ms();
  if (grace >= p.rotation_ms && grace <= 3650 * kDayMs) {
    p.grace_ms = grace;
  } else if (p.grace_ms < p.rotation_ms) {
    p.grace_ms = p.rotation_ms;
  }
  return p;
}

std::string_view NoticeKindName(Notice::Kind kind) {
  switch (kind) {
    case Notice::Kind::kArchived: return "archived";
    case Notice::Kind::kNewDevice: return "new_device";
    case Notice::Kind::kDeviceRemoved: return "device_removed";
    case Notice::Kind::kMasterKeyChanged: return "master_key_changed";
    case Notice::Kind::kMembersChanged: return "members_changed";
    case Notice::Kind::kResent: return "resent";
    case Notice::Kind::kHistoryRestored: return "history_restored";
  }
  return "unknown";
}

void Device::ObserveDevice(const protocol::CertifiedDevice& device,
                           std::string_view conversation_id, int64_t now_ms, bool user_known,
                           std::vector<Notice>& notices) {
  bool created = false;
  Contact& c = ContactFor(profile_.contacts, device.user, created);
  if (!created && !c.master_key.empty() && c.master_key != device.master_key) {
    notices.push_back(Notice{
        Notice::Kind::kMasterKeyChanged, std::string(conversation_id), device.user, {},
        Whose(device.user, profile_.user) + " has a new master key (fingerprint " +
            protocol::Fingerprint(device.master_key) +
            "), certified by the organisation. This happens after an organisation-assisted "
            "restore; if you did not expect it, check with " + device.user + "."});
    c.devices.clear();
  }
  const bool first_sight = !user_known;
  c.master_key = device.master_key;
  auto it = std::lower_bound(c.devices.begin(), c.devices.end(), device.device_id,
                             [](const Contact::Device& d, const Bytes& id) {
                               return d.device_id < id;
                             });
  if (it != c.devices.end() && it->device_id == device.device_id) return;
  c.devices.insert(it, Contact::Device{device.device_id, now_ms});
  if (first_sight || device.device_id == profile_.device_id) return;
  notices.push_back(Notice{
      Notice::Kind::kNewDevice, std::string(conversation_id), device.user, device.device_id,
      Whose(device.user, profile_.user) + " added a device (fingerprint " +
          protocol::Fingerprint(device.identity_key) + "), certified " +
          (device.user == profile_.user ? "by your master key" : "by their master key") +
          " and the organisation."});
}

Result<std::vector<Notice>> Device::ObserveConversation(
    const wire::ConversationInfo& conversation, int64_t now_ms) {
  if (!registered()) return Status::FailedPrecondition("device is not registered");
  const std::string& id = conversation.conversation_id();
  if (id.empty()) return Status::InvalidArgument("conversation has no id");
  HF_RETURN_IF_ERROR(CheckEpoch(profile_, conversation.epoch(), now_ms).status());
  std::set<std::string> members(conversation.members().begin(), conversation.members().end());
  if (!members.count(profile_.user)) {
    return Status::PermissionDenied("conversation does not list this user as a member");
  }
  // Verify everything before recording anything.
  std::vector<protocol::CertifiedDevice> devices;
  std::map<std::string, Bytes> master_keys;
  for (const auto& d : conversation.devices()) {
    auto v = VerifyForProfile(profile_, d);
    if (!v.ok()) {
      return v.status().WithContext("device " + ToHex(View(d.device_id())) + " of " + d.user());
    }
    if (!members.count(v->user)) {
      return Status::PermissionDenied("conversation lists a device of non-member " + v->user);
    }
    // A user has one master key; recording a listing that mixes two would
    // flip the recorded key, with its notices, at every observation.
    auto [known_master, inserted] = master_keys.emplace(v->user, v->master_key);
    if (!inserted && known_master->second != v->master_key) {
      return Status::PermissionDenied("conversation lists devices of " + v->user +
                                      " under different master keys");
    }
    devices.push_back(std::move(*v));
  }

  // Decided before recording: the second device of a user first seen here
  // is as silent as the first.
  std::set<std::string> known_users;
  for (const auto& d : devices) {
    if (KnowsUser(profile_.contacts, d.user)) known_users.insert(d.user);
  }

  std::vector<Notice> notices;
  auto known = std::find_if(profile_.conversations.begin(), profile_.conversations.end(),
                            [&](const KnownConversation& k) { return k.conversation_id == id; });
  // A group's history is told on first sight too (how it was created and
  // changed since, as far as `changes` reaches); later, only what is new.
  const bool first_sight = known == profile_.conversations.end();
  const uint64_t seen_version = first_sight ? 0 : known->membership_version;
  if (first_sight && MarkNoticeShown(id)) {
    notices.push_back(Notice{Notice::Kind::kArchived, id, {}, {}, conversation.archive_notice()});
  }
  if (conversation.group() && (first_sight || conversation.membership_version() > seen_version)) {
    for (const auto& change : conversation.changes()) {
      if (!first_sight && change.version() <= seen_version) continue;
      std::string text = change.actor();
      if (change.version() == 0) {
        text += " created the group \"" + conversation.title() + "\" with";
        for (const auto& a : change.added()) {
          if (a != change.actor()) text += " " + a;
        }
      } else {
        if (change.added_size()) text += " added";
        for (const auto& a : change.added()) text += " " + a;
        if (change.removed_size()) text += change.added_size() ? ", removed" : " removed";
        for (const auto& r : change.removed()) text += " " + r;
      }
      notices.push_back(Notice{Notice::Kind::kMembersChanged, id, change.actor(), {}, text});
    }
  }
  if (first_sight) {
    profile_.conversations.push_back(KnownConversation{id, conversation.membership_version(),
                                                       {members.begin(), members.end()}});
  } else if (conversation.membership_version() > seen_version) {
    known->membership_version = conversation.membership_version();
    known->members.assign(members.begin(), members.end());
  }

  for (const auto& d : devices) {
    ObserveDevice(d, id, now_ms, known_users.count(d.user) != 0, notices);
  }
  // Devices this device knew of that the conversation no longer lists.
  for (const auto& m : members) {
    Contact* c = FindContact(profile_.contacts, m);
    if (c == nullptr) continue;
    std::erase_if(c->devices, [&](const Contact::Device& known_device) {
      const bool listed = std::any_of(devices.begin(), devices.end(), [&](const auto& d) {
        return d.user == m && d.device_id == known_device.device_id;
      });
      if (!listed) {
        notices.push_back(Notice{Notice::Kind::kDeviceRemoved, id, m, known_device.device_id,
                                 Whose(m, profile_.user) + " no longer uses a device seen before."});
      }
      return !listed;
    });
  }
  return notices;
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

bool Device::MarkReceived(const ReceivedMessage& message) {
  if (Seen(message.message_id) || (!message.resend_of.empty() && Seen(message.resend_of))) {
    return false;
  }
  MarkSeen(message.message_id);
  if (!message.resend_of.empty()) MarkSeen(message.resend_of);
  return true;
}

bool Device::Seen(ByteView message_id) const {
  return std::any_of(profile_.seen_message_ids.begin(), profile_.seen_message_ids.end(),
                     [&](const Bytes& id) {
                       return std::equal(id.begin(), id.end(), message_id.begin(),
                                         message_id.end());
                     });
}

std::optional<wire::ReportDelivery> ReportFor(const wire::Deliver& delivery,
                                             const Status& failure) {
  std::string reason;
  const std::string& m = failure.message();
  if (m.find("archive capsule mismatch") != std::string::npos) {
    reason = "archive_capsule_mismatch";
  } else if (m.find("device certificate") != std::string::npos) {
    reason = "bad_device_certificate";
  } else if (failure.code() == Code::kCryptoFailure && m.find("signature") != std::string::npos) {
    reason = "bad_signature";
  } else if (failure.code() == Code::kCryptoFailure) {
    reason = "undecryptable";
  } else {
    return std::nullopt;
  }
  wire::ReportDelivery report;
  report.set_delivery_id(delivery.delivery_id());
  // The gateway refuses a report whose message id is not 16 bytes, and an
  // unverified header may carry any.
  if (auto header = UnverifiedHeader(delivery);
      header && header->message_id().size() == protocol::kMessageIdSize) {
    report.set_message_id(header->message_id());
  }
  report.set_reason(reason);
  report.set_detail(m.substr(0, 1024));
  return report;
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
