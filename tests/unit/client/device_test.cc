#include "holdfast/client/device.h"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <limits>

#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "test_org.h"

namespace holdfast::client {
namespace {

using testing::OrgRoot;
using testing::P256Key;

constexpr int64_t kNow = 1'714'564'800'000;  // 2024-05-01T12:00:00Z
constexpr int64_t kDay = 86'400'000;
constexpr int64_t kEnrolled = kNow - kDay;
constexpr uint32_t kEpochId = 7;

// Registers `d` at `at_ms`, with `root` playing the gateway.
void Register(Device& d, const OrgRoot& root, int64_t at_ms = kEnrolled) {
  auto request = d.MakeRegisterRequest("CODE", at_ms);
  ASSERT_TRUE(request.ok()) << request.status().ToString();
  Status s = d.AcceptRegistration(root.Register(*request), "wss://127.0.0.1:8443/v1", "ca.pem");
  ASSERT_TRUE(s.ok()) << s.ToString();
}

// A user's first device, which creates the user's master key.
Device Enrol(const std::string& user, const OrgRoot& root) {
  auto d = Device::Generate(user, kEnrolled);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  Register(*d, root);
  return std::move(d).value();
}

// A further device of `first`'s user, certified by the master key `first` holds.
Device EnrolAnother(const Device& first, const OrgRoot& root) {
  auto d = Device::Generate(first.profile().user, kEnrolled, /*with_master_key=*/false);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  auto cert = first.CertifyNewDevice(d->identity_public(), kEnrolled);
  EXPECT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_TRUE(d->UseCertificate(*cert).ok());
  Register(*d, root);
  return std::move(d).value();
}

// A countersigned certificate naming `identity` as a device of `user`, under
// a master key of its own.
wire::DeviceCertificate ForeignCertificate(const OrgRoot& root, const std::string& user,
                                           ByteView identity) {
  auto master = protocol::Ed25519Generate();
  EXPECT_TRUE(master.ok());
  auto cert = protocol::CertifyDevice(master->private_key.view(), user, identity, kEnrolled);
  EXPECT_TRUE(cert.ok()) << cert.status().ToString();
  return root.Countersign(*cert);
}

void FlipLastByte(std::string& s) {
  ASSERT_FALSE(s.empty());
  s.back() ^= 1;
}

std::vector<Notice::Kind> Kinds(const std::vector<Notice>& notices) {
  std::vector<Notice::Kind> out;
  for (const auto& n : notices) out.push_back(n.kind);
  return out;
}

// The whole profile, private keys included, as bytes to compare.
std::string Snapshot(const Device& d) {
  auto text = EncodeProfile(d.profile(), KeyStore::InsecurePlaintext());
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : std::string();
}

class DeviceTest : public ::testing::Test {
 protected:
  DeviceTest()
      : alice_(Enrol("alice", root_)),
        alice_phone_(EnrolAnother(alice_, root_)),
        bob_(Enrol("bob", root_)) {
    auto archive = protocol::hpke::GenerateKeyPair(protocol::hpke::KemId::kP256HkdfSha256);
    EXPECT_TRUE(archive.ok());
    archive_public_ = archive->public_key;
  }

  wire::EpochCertificateBody EpochBody() const {
    wire::EpochCertificateBody b;
    b.set_version(1);
    b.set_epoch_id(kEpochId);
    b.set_public_key(AsString(archive_public_));
    b.set_not_before_ms(kNow - 10 * kDay);
    b.set_not_after_ms(kNow + 20 * kDay);
    b.set_org("acme");
    return b;
  }

  wire::ConversationInfo Conversation(const wire::EpochCertificate& epoch) const {
    wire::ConversationInfo c;
    c.set_conversation_id("c-alice-bob");
    c.add_members("alice");
    c.add_members("bob");
    *c.add_devices() = alice_.Info();
    *c.add_devices() = alice_phone_.Info();
    *c.add_devices() = bob_.Info();
    *c.mutable_epoch() = epoch;
    c.set_archive_notice("Messages are archived.");
    return c;
  }
  wire::ConversationInfo Conversation() const { return Conversation(root_.Certify(EpochBody())); }

  // A conversation `id` of `members` listing exactly `devices`.
  wire::ConversationInfo Listing(const std::string& id, const std::vector<std::string>& members,
                                 const std::vector<const Device*>& devices) const {
    wire::ConversationInfo c;
    c.set_conversation_id(id);
    for (const auto& m : members) c.add_members(m);
    for (const Device* d : devices) *c.add_devices() = d->Info();
    *c.mutable_epoch() = root_.Certify(EpochBody());
    c.set_archive_notice("Messages are archived.");
    return c;
  }

  wire::Deliver Delivery(const wire::Envelope& envelope, const Device& sender) const {
    return Delivery(envelope, sender.Info());
  }
  wire::Deliver Delivery(const wire::Envelope& envelope, const wire::DeviceInfo& sender) const {
    wire::Deliver d;
    d.set_delivery_id(42);
    *d.mutable_envelope() = envelope;
    *d.mutable_sender() = sender;
    *d.mutable_epoch() = root_.Certify(EpochBody());
    d.set_archive_notice("Messages are archived.");
    return d;
  }

  // Ways to spoil a DeviceInfo's certificate. `sibling` is another device of
  // the same user, `stranger` a device of another user.
  struct Breaker {
    std::string name;
    std::function<void(wire::DeviceInfo&)> apply;
  };
  std::vector<Breaker> Breakers(const Device& sibling, const Device& stranger) const {
    const wire::DeviceCertificate sibling_cert = sibling.profile().certificate;
    const wire::DeviceCertificate stranger_cert = stranger.profile().certificate;
    return {
        {"missing", [](wire::DeviceInfo& d) { d.clear_certificate(); }},
        {"bad master signature",
         [](wire::DeviceInfo& d) {
           FlipLastByte(*d.mutable_certificate()->mutable_master_signature());
         }},
        {"bad org signature",
         [](wire::DeviceInfo& d) {
           FlipLastByte(*d.mutable_certificate()->mutable_org_signature());
         }},
        {"not countersigned",
         [](wire::DeviceInfo& d) {
           d.mutable_certificate()->clear_org_signature();
           d.mutable_certificate()->clear_enrollment_key();
         }},
        {"countersigned by an enrollment key of another root",
         [this](wire::DeviceInfo& d) {
           *d.mutable_certificate() =
               testing::Countersign(d.certificate(), impostor_.enrollment_key(),
                                    impostor_.enrollment_certificate());
         }},
        {"countersigned by a key the root did not certify",
         [this](wire::DeviceInfo& d) {
           *d.mutable_certificate() =
               testing::Countersign(d.certificate(), rogue_, root_.enrollment_certificate());
         }},
        {"countersigned by an enrollment key our root certified for another org",
         [this](wire::DeviceInfo& d) {
           *d.mutable_certificate() = testing::Countersign(
               d.certificate(), rogue_,
               root_.CertifyEnrollmentKey(rogue_.public_key(), 0,
                                          std::numeric_limits<int64_t>::max(), "globex"));
         }},
        {"another device of the same user",
         [sibling_cert](wire::DeviceInfo& d) { *d.mutable_certificate() = sibling_cert; }},
        {"a device of another user",
         [stranger_cert](wire::DeviceInfo& d) { *d.mutable_certificate() = stranger_cert; }},
        {"this identity under another user",
         [this](wire::DeviceInfo& d) {
           *d.mutable_certificate() = ForeignCertificate(root_, "carol", AsBytes(d.identity_key()));
         }},
    };
  }

  OrgRoot root_;
  OrgRoot impostor_;
  P256Key rogue_;
  Device alice_, alice_phone_, bob_;
  Bytes archive_public_;
};

// ------------------------------------------------------------ registration

TEST_F(DeviceTest, RegistrationChecksDeviceId) {
  auto d = Device::Generate("carol", kNow);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->registered());
  auto request = d->MakeRegisterRequest("CODE", kNow);
  ASSERT_TRUE(request.ok()) << request.status().ToString();
  wire::RegisterResponse r = root_.Register(*request);
  r.set_device_id(AsString(protocol::DeviceIdFor(bob_.identity_public())));
  Status s = d->AcceptRegistration(r, "wss://localhost/v1", "ca.pem");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_FALSE(d->registered());

  r.set_device_id(AsString(protocol::DeviceIdFor(d->identity_public())));
  r.set_org_root_key("short");
  EXPECT_FALSE(d->AcceptRegistration(r, "wss://localhost/v1", "ca.pem").ok());
  EXPECT_FALSE(d->registered());

  s = d->AcceptRegistration(root_.Register(*request), "wss://localhost/v1", "ca.pem");
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(d->registered());
  EXPECT_EQ(d->MakeRegisterRequest("CODE", kNow).status().code(), Code::kAlreadyExists);
}

TEST_F(DeviceTest, RegisterRequestCarriesMasterSignedCertificate) {
  auto d = Device::Generate("carol", kNow);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(d->holds_master_key());
  auto r = d->MakeRegisterRequest("CODE-1", kNow + 5);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->user(), "carol");
  EXPECT_EQ(r->enrollment_code(), "CODE-1");
  EXPECT_EQ(r->identity_key(), AsString(d->identity_public()));
  EXPECT_TRUE(protocol::VerifyPrekey(AsBytes(r->identity_key()), r->prekey()).ok());
  EXPECT_TRUE(protocol::VerifyDeviceInfo(d->Info()).ok());

  // Signed by the master key at the time given, not yet countersigned.
  auto body = protocol::CheckCertificateRequest(r->certificate(), "carol", d->identity_public());
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(body->master_key(), AsString(d->master_public()));
  EXPECT_EQ(body->issued_at_ms(), kNow + 5);
  EXPECT_TRUE(r->certificate().org_signature().empty());
  EXPECT_FALSE(r->certificate().has_enrollment_key());
}

TEST_F(DeviceTest, RegisterRequestNeedsMasterKeyOrCertificate) {
  auto d = Device::Generate("alice", kNow, /*with_master_key=*/false);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->holds_master_key());
  auto r = d->MakeRegisterRequest("CODE", kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
}

TEST_F(DeviceTest, RegistrationRefusesCertificatesThatAreNotOurs) {
  auto d = Device::Generate("carol", kNow);
  ASSERT_TRUE(d.ok());
  auto request = d->MakeRegisterRequest("CODE", kNow);
  ASSERT_TRUE(request.ok());
  const wire::DeviceCertificate& ours = request->certificate();
  auto other = Device::Generate("carol", kNow);
  ASSERT_TRUE(other.ok());
  auto other_request = other->MakeRegisterRequest("CODE", kNow);
  ASSERT_TRUE(other_request.ok());
  auto master = protocol::Ed25519Generate();
  ASSERT_TRUE(master.ok());
  auto under_other_master =
      protocol::CertifyDevice(master->private_key.view(), "carol", d->identity_public(), kNow);
  ASSERT_TRUE(under_other_master.ok());
  // issued_at_ms = 0 must not read as "no time to check".
  auto issued_at_zero = protocol::CertifyDevice(d->profile().master_private.view(), "carol",
                                                d->identity_public(), 0);
  ASSERT_TRUE(issued_at_zero.ok());

  struct Case {
    std::string name;
    wire::DeviceCertificate certificate;
    Code code;
  };
  const std::vector<Case> cases = {
      {"another identity", root_.Countersign(other_request->certificate()),
       Code::kPermissionDenied},
      {"another user", ForeignCertificate(root_, "dave", d->identity_public()),
       Code::kPermissionDenied},
      {"another master key", root_.Countersign(*under_other_master), Code::kPermissionDenied},
      {"enrollment key certified by another root",
       testing::Countersign(ours, impostor_.enrollment_key(), impostor_.enrollment_certificate()),
       Code::kCryptoFailure},
      {"enrollment key the root did not certify",
       testing::Countersign(ours, rogue_, root_.enrollment_certificate()), Code::kCryptoFailure},
      {"enrollment key certificate expired at issued_at",
       testing::Countersign(ours, root_.enrollment_key(),
                            root_.CertifyEnrollmentKey(root_.enrollment_key().public_key(),
                                                       kNow - 10 * kDay, kNow)),
       Code::kFailedPrecondition},
      {"enrollment key certificate not yet valid at issued_at",
       testing::Countersign(ours, root_.enrollment_key(),
                            root_.CertifyEnrollmentKey(root_.enrollment_key().public_key(),
                                                       kNow + 1, kNow + 10 * kDay)),
       Code::kFailedPrecondition},
      {"issued at time 0, outside the enrollment key's window",
       testing::Countersign(*issued_at_zero, root_.enrollment_key(),
                            root_.CertifyEnrollmentKey(root_.enrollment_key().public_key(),
                                                       kNow - 10 * kDay, kNow + 10 * kDay)),
       Code::kFailedPrecondition},
      {"not countersigned", ours, Code::kInvalidArgument},
  };
  for (const Case& c : cases) {
    wire::RegisterResponse r = root_.Register(*request);
    *r.mutable_certificate() = c.certificate;
    Status s = d->AcceptRegistration(r, "wss://localhost/v1", "ca.pem");
    EXPECT_EQ(s.code(), c.code) << c.name << ": " << s.ToString();
    EXPECT_FALSE(d->registered()) << c.name;
    EXPECT_TRUE(d->profile().org_root_key.empty()) << c.name;
  }
  // The window's first millisecond is inside it.
  wire::RegisterResponse r = root_.Register(*request);
  *r.mutable_certificate() = testing::Countersign(
      ours, root_.enrollment_key(),
      root_.CertifyEnrollmentKey(root_.enrollment_key().public_key(), kNow, kNow + 1));
  Status s = d->AcceptRegistration(r, "wss://localhost/v1", "ca.pem");
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(d->registered());
  EXPECT_EQ(d->profile().certificate.SerializeAsString(), r.certificate().SerializeAsString());
}

TEST_F(DeviceTest, PinnedRootRefusesAnotherGateway) {
  auto d = Device::Generate("carol", kNow);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(d->PinOrgRoot(root_.public_key()).ok());
  auto request = d->MakeRegisterRequest("CODE", kNow);
  ASSERT_TRUE(request.ok());
  // A gateway with its own root and a consistent chain under it.
  EXPECT_EQ(d->AcceptRegistration(impostor_.Register(*request), "wss://x/v1", "").code(),
            Code::kPermissionDenied);
  EXPECT_TRUE(d->AcceptRegistration(root_.Register(*request), "wss://x/v1", "").ok());
  EXPECT_EQ(d->PinOrgRoot(impostor_.public_key()).code(), Code::kFailedPrecondition);
}

// ---------------------------------------------------------- second device

TEST_F(DeviceTest, SecondDeviceRegistersUnderTheSameMasterKey) {
  EXPECT_TRUE(alice_.holds_master_key());
  EXPECT_FALSE(alice_phone_.holds_master_key());
  EXPECT_TRUE(alice_phone_.registered());
  EXPECT_EQ(alice_phone_.master_public(), alice_.master_public());
  auto certified =
      protocol::VerifyDeviceCertificate(alice_phone_.profile().certificate, root_.public_key());
  ASSERT_TRUE(certified.ok()) << certified.status().ToString();
  EXPECT_EQ(certified->user, "alice");
  EXPECT_EQ(certified->identity_key, alice_phone_.identity_public());
  EXPECT_EQ(certified->master_key, alice_.master_public());

  // Step by step, with what each side refuses on the way.
  auto tablet = Device::Generate("alice", kNow, /*with_master_key=*/false);
  ASSERT_TRUE(tablet.ok());
  EXPECT_EQ(alice_phone_.CertifyNewDevice(tablet->identity_public(), kNow).status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(alice_.CertifyNewDevice(alice_.identity_public(), kNow).status().code(),
            Code::kInvalidArgument);

  auto for_phone = alice_.CertifyNewDevice(alice_phone_.identity_public(), kNow);
  ASSERT_TRUE(for_phone.ok());
  EXPECT_EQ(tablet->UseCertificate(*for_phone).code(), Code::kInvalidArgument)
      << "a certificate for another identity";
  auto from_bob = bob_.CertifyNewDevice(tablet->identity_public(), kNow);
  ASSERT_TRUE(from_bob.ok());
  EXPECT_EQ(tablet->UseCertificate(*from_bob).code(), Code::kInvalidArgument)
      << "a certificate for another user";
  auto cert = alice_.CertifyNewDevice(tablet->identity_public(), kNow);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  wire::DeviceCertificate forged = *cert;
  FlipLastByte(*forged.mutable_master_signature());
  EXPECT_EQ(tablet->UseCertificate(forged).code(), Code::kCryptoFailure);
  EXPECT_EQ(tablet->MakeRegisterRequest("CODE", kNow).status().code(),
            Code::kFailedPrecondition)
      << "a refused certificate is not installed";
  auto first_device = Device::Generate("alice", kNow);
  ASSERT_TRUE(first_device.ok());
  EXPECT_EQ(first_device->UseCertificate(*cert).code(), Code::kFailedPrecondition)
      << "a device with a master key of its own";
  EXPECT_EQ(alice_phone_.UseCertificate(*cert).code(), Code::kAlreadyExists);

  ASSERT_TRUE(tablet->UseCertificate(*cert).ok());
  EXPECT_EQ(tablet->master_public(), alice_.master_public());
  auto request = tablet->MakeRegisterRequest("CODE", kNow);
  ASSERT_TRUE(request.ok()) << request.status().ToString();
  EXPECT_EQ(request->certificate().SerializeAsString(), cert->SerializeAsString());
  Status s = tablet->AcceptRegistration(root_.Register(*request), "wss://x/v1", "ca.pem");
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(tablet->holds_master_key());

  // The new device sends; bob and alice's first device accept it.
  wire::ConversationInfo c = Conversation();
  *c.add_devices() = tablet->Info();
  auto envelope = tablet->PrepareMessage(c, "from the tablet", kNow);
  ASSERT_TRUE(envelope.ok()) << envelope.status().ToString();
  for (Device* to : {&bob_, &alice_}) {
    auto got = to->OpenDelivery(Delivery(*envelope, *tablet), kNow);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->text, "from the tablet");
  }
}

TEST_F(DeviceTest, SecondDeviceRefusesRegistrationUnderAnotherMasterKey) {
  auto tablet = Device::Generate("alice", kNow, /*with_master_key=*/false);
  ASSERT_TRUE(tablet.ok());
  auto cert = alice_.CertifyNewDevice(tablet->identity_public(), kNow);
  ASSERT_TRUE(cert.ok());
  ASSERT_TRUE(tablet->UseCertificate(*cert).ok());
  auto request = tablet->MakeRegisterRequest("CODE", kNow);
  ASSERT_TRUE(request.ok());
  // The gateway swaps in a certificate under a master key of its choosing.
  wire::RegisterResponse r = root_.Register(*request);
  *r.mutable_certificate() = ForeignCertificate(root_, "alice", tablet->identity_public());
  EXPECT_EQ(tablet->AcceptRegistration(r, "wss://x/v1", "").code(), Code::kPermissionDenied);
  EXPECT_FALSE(tablet->registered());
}

// ------------------------------------------------------------------ login

TEST_F(DeviceTest, AnswersLoginChallenge) {
  wire::Challenge c;
  c.set_nonce(AsString(protocol::RandomBytes(32)));
  auto a = alice_.AnswerChallenge(c);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(protocol::Ed25519Verify(alice_.identity_public(),
                                      protocol::AuthTranscript(AsBytes(c.nonce()),
                                                               alice_.device_id()),
                                      AsBytes(a->signature()))
                  .ok());
  EXPECT_EQ(alice_.MakeHello().device_id(), AsString(alice_.device_id()));
  c.set_nonce("short");
  EXPECT_FALSE(alice_.AnswerChallenge(c).ok());
}

// --------------------------------------------------------------- messages

TEST_F(DeviceTest, AliceToBob) {
  auto envelope = alice_.PrepareMessage(Conversation(), "hello bob", kNow);
  ASSERT_TRUE(envelope.ok()) << envelope.status().ToString();

  auto parsed = protocol::ParseEnvelope(*envelope);
  ASSERT_TRUE(parsed.ok());
  // Bob and Alice's other device; never the sending device itself.
  ASSERT_EQ(parsed->content.devices_size(), 2);
  for (const auto& c : parsed->content.devices()) {
    EXPECT_NE(c.device_id(), AsString(alice_.device_id()));
  }
  EXPECT_EQ(parsed->header.epoch_id(), kEpochId);
  EXPECT_EQ(parsed->header.sent_at_ms(), kNow);

  auto got = bob_.OpenDelivery(Delivery(*envelope, alice_), kNow);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->text, "hello bob");
  EXPECT_EQ(got->sender_user, "alice");
  EXPECT_EQ(got->sender_device, alice_.device_id());
  EXPECT_EQ(got->conversation_id, "c-alice-bob");
  EXPECT_EQ(got->sent_at_ms, kNow);
  EXPECT_EQ(AsString(got->message_id), parsed->header.message_id());
  EXPECT_TRUE(got->notices.empty()) << "first sight of alice is silent";

  auto mine = alice_phone_.OpenDelivery(Delivery(*envelope, alice_), kNow);
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  EXPECT_EQ(mine->text, "hello bob");

  EXPECT_FALSE(alice_.OpenDelivery(Delivery(*envelope, alice_), kNow).ok());
}

TEST_F(DeviceTest, EpochCertificateFromAnotherKeyRefused) {
  auto forged = impostor_.Certify(EpochBody());
  auto envelope = alice_.PrepareMessage(Conversation(forged), "hi", kNow);
  ASSERT_FALSE(envelope.ok());
  EXPECT_EQ(envelope.status().code(), Code::kCryptoFailure) << envelope.status().ToString();

  auto good = alice_.PrepareMessage(Conversation(), "hi", kNow);
  ASSERT_TRUE(good.ok());
  wire::Deliver d = Delivery(*good, alice_);
  *d.mutable_epoch() = forged;
  EXPECT_FALSE(bob_.OpenDelivery(d, kNow).ok());
}

TEST_F(DeviceTest, EpochCertificateChecks) {
  // Outside its window at send time.
  auto late = alice_.PrepareMessage(Conversation(), "hi", kNow + 30 * kDay);
  EXPECT_FALSE(late.ok());

  // Another org's certificate, even when signed by our root.
  wire::EpochCertificateBody other = EpochBody();
  other.set_org("globex");
  EXPECT_FALSE(alice_.PrepareMessage(Conversation(root_.Certify(other)), "hi", kNow).ok());

  // A delivery whose certificate is for a different epoch than the envelope.
  auto envelope = alice_.PrepareMessage(Conversation(), "hi", kNow);
  ASSERT_TRUE(envelope.ok());
  wire::EpochCertificateBody next = EpochBody();
  next.set_epoch_id(kEpochId + 1);
  wire::Deliver d = Delivery(*envelope, alice_);
  *d.mutable_epoch() = root_.Certify(next);
  auto r = bob_.OpenDelivery(d, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
}

TEST_F(DeviceTest, MismatchedDeviceIdRefused) {
  // Bob's keys listed under the id of Alice's phone.
  wire::ConversationInfo c = Conversation();
  c.mutable_devices(2)->set_device_id(AsString(alice_phone_.device_id()));
  EXPECT_FALSE(alice_.PrepareMessage(c, "hi", kNow).ok());

  wire::ConversationInfo c2 = Conversation();
  c2.mutable_devices(2)->set_device_id(AsString(protocol::RandomBytes(16)));
  EXPECT_FALSE(alice_.PrepareMessage(c2, "hi", kNow).ok());

  // The same for a delivery's sender.
  auto envelope = alice_.PrepareMessage(Conversation(), "hi", kNow);
  ASSERT_TRUE(envelope.ok());
  wire::Deliver d = Delivery(*envelope, alice_);
  d.mutable_sender()->set_identity_key(AsString(bob_.identity_public()));
  EXPECT_FALSE(bob_.OpenDelivery(d, kNow).ok());
}

TEST_F(DeviceTest, BadPrekeySignatureRefused) {
  wire::ConversationInfo c = Conversation();
  auto other = protocol::hpke::GenerateKeyPair(protocol::hpke::KemId::kX25519HkdfSha256);
  ASSERT_TRUE(other.ok());
  c.mutable_devices(2)->mutable_prekey()->set_public_key(AsString(other->public_key));
  EXPECT_FALSE(alice_.PrepareMessage(c, "hi", kNow).ok());
}

TEST_F(DeviceTest, PrepareMessageRefusesBadDeviceCertificates) {
  Device bob_laptop = EnrolAnother(bob_, root_);
  ASSERT_TRUE(alice_.PrepareMessage(Conversation(), "hi", kNow).ok());
  struct Victim {
    int index;  // in Conversation()'s devices
    const Device* sibling;
    const Device* stranger;
  };
  // Bob's device, and the sender's own other device.
  for (const Victim& v : {Victim{2, &bob_laptop, &alice_phone_}, Victim{1, &alice_, &bob_}}) {
    for (const Breaker& b : Breakers(*v.sibling, *v.stranger)) {
      wire::ConversationInfo c = Conversation();
      b.apply(*c.mutable_devices(v.index));
      auto r = alice_.PrepareMessage(c, "hi", kNow);
      EXPECT_FALSE(r.ok()) << b.name << " (device " << v.index << ")";
    }
  }
}

TEST_F(DeviceTest, OpenDeliveryRefusesBadSenderCertificates) {
  auto envelope = alice_.PrepareMessage(Conversation(), "hi", kNow);
  ASSERT_TRUE(envelope.ok());
  ASSERT_TRUE(bob_.OpenDelivery(Delivery(*envelope, alice_), kNow).ok());
  const std::string before = Snapshot(bob_);
  for (const Breaker& b : Breakers(alice_phone_, bob_)) {
    wire::DeviceInfo sender = alice_.Info();
    b.apply(sender);
    auto r = bob_.OpenDelivery(Delivery(*envelope, sender), kNow);
    EXPECT_FALSE(r.ok()) << b.name;
  }
  EXPECT_EQ(Snapshot(bob_), before) << "a refused delivery records nothing";
}

TEST_F(DeviceTest, MembershipChecks) {
  Device mallory = Enrol("mallory", root_);
  wire::ConversationInfo c = Conversation();
  *c.add_devices() = mallory.Info();
  auto r = alice_.PrepareMessage(c, "hi", kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);

  wire::ConversationInfo no_bob = Conversation();
  no_bob.mutable_devices()->RemoveLast();
  EXPECT_EQ(alice_.PrepareMessage(no_bob, "hi", kNow).status().code(),
            Code::kFailedPrecondition);

  wire::ConversationInfo twice = Conversation();
  *twice.add_devices() = bob_.Info();
  EXPECT_FALSE(alice_.PrepareMessage(twice, "hi", kNow).ok());
}

TEST_F(DeviceTest, ForgedSenderRefused) {
  auto envelope = alice_.PrepareMessage(Conversation(), "from alice", kNow);
  ASSERT_TRUE(envelope.ok());

  // The gateway claims the message came from Mallory's (valid) device.
  Device mallory = Enrol("mallory", root_);
  auto r = bob_.OpenDelivery(Delivery(*envelope, mallory), kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);

  // Alice's keys relabelled as another user: the device id still fits the key.
  wire::Deliver relabelled = Delivery(*envelope, alice_);
  relabelled.mutable_sender()->set_user("carol");
  EXPECT_FALSE(bob_.OpenDelivery(relabelled, kNow).ok());

  // Mallory signs an envelope that claims to be from Alice's device.
  wire::Envelope forged = *envelope;
  auto sig = protocol::Ed25519Sign(
      mallory.profile().identity_private.view(),
      Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(forged.content())}));
  ASSERT_TRUE(sig.ok());
  forged.set_signature(AsString(*sig));
  auto f = bob_.OpenDelivery(Delivery(forged, alice_), kNow);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Code::kCryptoFailure);
}

// Alice's envelope whose archive capsule seals a CEK other than the one the
// devices get, signed by Alice: what a dishonest client would send.
wire::Envelope Dishonest(const wire::Envelope& envelope, const Device& signer,
                         ByteView archive_public) {
  wire::EnvelopeContent content;
  EXPECT_TRUE(content.ParseFromString(envelope.content()));
  wire::MessageHeader header;
  EXPECT_TRUE(header.ParseFromString(content.header()));
  auto capsule = protocol::ComputeArchiveCapsule(
      protocol::RandomBytes(protocol::kCekSize), AsBytes(header.message_id()), kEpochId,
      archive_public, AsBytes(content.header()));
  EXPECT_TRUE(capsule.ok()) << capsule.status().ToString();
  *content.mutable_archive() = *capsule;
  wire::Envelope dishonest;
  dishonest.set_content(content.SerializeAsString());
  auto sig = protocol::Ed25519Sign(
      signer.profile().identity_private.view(),
      Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(dishonest.content())}));
  EXPECT_TRUE(sig.ok());
  dishonest.set_signature(AsString(*sig));
  return dishonest;
}

TEST_F(DeviceTest, ArchiveCapsuleMismatchRejected) {
  auto envelope = alice_.PrepareMessage(Conversation(), "secret", kNow);
  ASSERT_TRUE(envelope.ok());
  const wire::Envelope dishonest = Dishonest(*envelope, alice_, archive_public_);

  auto r = bob_.OpenDelivery(Delivery(dishonest, alice_), kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCryptoFailure);
  EXPECT_EQ(r.status().message().rfind("archive capsule mismatch", 0), 0u)
      << r.status().message();

  auto h = UnverifiedHeader(Delivery(dishonest, alice_));
  ASSERT_TRUE(h.has_value());
  auto parsed = protocol::ParseEnvelope(*envelope);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(h->message_id(), parsed->header.message_id());
}

TEST_F(DeviceTest, ReportCarriesOnlyAWellFormedMessageId) {
  // A header whose message id is not 16 bytes: the gateway refuses reports
  // with such an id, so the report leaves it out rather than get lost.
  wire::MessageHeader header;
  header.set_message_id("short");
  wire::EnvelopeContent content;
  content.set_header(header.SerializeAsString());
  wire::Deliver d;
  d.set_delivery_id(7);
  d.mutable_envelope()->set_content(content.SerializeAsString());
  auto report = ReportFor(d, Status::CryptoFailure("device certificate: org countersignature"));
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->delivery_id(), 7u);
  EXPECT_TRUE(report->message_id().empty());
  EXPECT_EQ(report->reason(), "bad_device_certificate");
}

TEST_F(DeviceTest, ReportForClassifiesFailures) {
  auto envelope = alice_.PrepareMessage(Conversation(), "secret", kNow);
  ASSERT_TRUE(envelope.ok());
  auto parsed = protocol::ParseEnvelope(*envelope);
  ASSERT_TRUE(parsed.ok());
  const std::string message_id = parsed->header.message_id();

  // Each failure from the real OpenDelivery, then its report.
  auto report = [&](Device& receiver, const wire::Deliver& d) {
    auto r = receiver.OpenDelivery(d, kNow);
    EXPECT_FALSE(r.ok());
    return ReportFor(d, r.status());
  };

  auto mismatch = report(bob_, Delivery(Dishonest(*envelope, alice_, archive_public_), alice_));
  ASSERT_TRUE(mismatch.has_value());
  EXPECT_EQ(mismatch->reason(), "archive_capsule_mismatch");
  EXPECT_EQ(mismatch->delivery_id(), 42u);
  EXPECT_EQ(mismatch->message_id(), message_id);
  EXPECT_EQ(mismatch->detail().rfind("archive capsule mismatch", 0), 0u) << mismatch->detail();

  wire::Deliver bad_cert = Delivery(*envelope, alice_);
  FlipLastByte(*bad_cert.mutable_sender()->mutable_certificate()->mutable_org_signature());
  auto cert = report(bob_, bad_cert);
  ASSERT_TRUE(cert.has_value());
  EXPECT_EQ(cert->reason(), "bad_device_certificate") << cert->detail();

  wire::Envelope resigned = *envelope;
  auto sig = protocol::Ed25519Sign(
      bob_.profile().identity_private.view(),
      Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(resigned.content())}));
  ASSERT_TRUE(sig.ok());
  resigned.set_signature(AsString(*sig));
  auto bad_sig = report(bob_, Delivery(resigned, alice_));
  ASSERT_TRUE(bad_sig.has_value());
  EXPECT_EQ(bad_sig->reason(), "bad_signature") << bad_sig->detail();

  // Sealed to a prekey bob has since wiped.
  Device wiped = bob_;
  ASSERT_TRUE(wiped.BeginPrekeyRotation(kNow).ok());
  wire::PrekeyUpdated confirmed;
  confirmed.set_created_at_ms(kNow);
  ASSERT_TRUE(wiped.CompletePrekeyRotation(confirmed, kNow).ok());
  ASSERT_EQ(wiped.ExpireRetiredPrekeys(kNow, 0), 1u);
  auto undecryptable = report(wiped, Delivery(*envelope, alice_));
  ASSERT_TRUE(undecryptable.has_value());
  EXPECT_EQ(undecryptable->reason(), "undecryptable") << undecryptable->detail();

  // Failures that do not point at the sender: no capsule for this device,
  // a delivery labelled with another device.
  Device carol = Enrol("carol", root_);
  EXPECT_FALSE(report(carol, Delivery(*envelope, alice_)).has_value());
  Device mallory = Enrol("mallory", root_);
  EXPECT_FALSE(report(bob_, Delivery(*envelope, mallory)).has_value());
  EXPECT_FALSE(ReportFor(Delivery(*envelope, alice_), Status::NotFound("x")).has_value());

  // The header of an unparseable envelope is left out, not invented.
  wire::Deliver garbage = Delivery(*envelope, alice_);
  garbage.mutable_envelope()->set_content("\xff\xff");
  auto r = ReportFor(garbage, Status::CryptoFailure("archive capsule mismatch: x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->message_id().empty());
}

// ---------------------------------------------------------------- prekeys

TEST_F(DeviceTest, PrekeyRotationFullCycle) {
  const int64_t created = bob_.profile().prekey.created_at_ms();
  EXPECT_FALSE(bob_.PrekeyRotationDue(kNow));
  EXPECT_TRUE(bob_.PrekeyRotationDue(created + kDefaultPrekeyRotationMs));
  EXPECT_FALSE(bob_.PrekeyRotationDue(created + kDefaultPrekeyRotationMs - 1));
  EXPECT_TRUE(bob_.PrekeyRotationDue(kNow, kDay));

  const SecretBytes old_private = bob_.profile().prekey_private;
  const wire::SignedPrekey old_prekey = bob_.profile().prekey;
  auto to_old = alice_.PrepareMessage(Conversation(), "to the old prekey", kNow);
  ASSERT_TRUE(to_old.ok());

  const int64_t t1 = kNow + 1000;
  auto update = bob_.BeginPrekeyRotation(t1);
  ASSERT_TRUE(update.ok()) << update.status().ToString();
  EXPECT_EQ(update->prekey().created_at_ms(), t1);
  EXPECT_TRUE(protocol::VerifyPrekey(bob_.identity_public(), update->prekey()).ok());
  EXPECT_NE(update->prekey().public_key(), old_prekey.public_key());
  ASSERT_EQ(bob_.profile().pending_prekeys.size(), 1u);
  EXPECT_EQ(bob_.profile().prekey.SerializeAsString(), old_prekey.SerializeAsString())
      << "the current prekey stays until the gateway confirms";
  EXPECT_FALSE(bob_.PrekeyRotationDue(kNow + 100 * kDay)) << "not while one is pending";

  // A retry returns the same pending prekey.
  auto again = bob_.BeginPrekeyRotation(t1 + 5000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), update->SerializeAsString());
  EXPECT_EQ(bob_.profile().pending_prekeys.size(), 1u);

  // The gateway stored the new prekey, but its answer is still on the way:
  // senders already seal to it.
  wire::ConversationInfo c = Conversation();
  *c.mutable_devices(2)->mutable_prekey() = update->prekey();
  auto to_pending = alice_.PrepareMessage(c, "to the pending prekey", t1);
  ASSERT_TRUE(to_pending.ok()) << to_pending.status().ToString();
  auto got = bob_.OpenDelivery(Delivery(*to_pending, alice_), t1);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->text, "to the pending prekey");
  ASSERT_TRUE(bob_.OpenDelivery(Delivery(*to_old, alice_), t1).ok());

  // A confirmation of another prekey changes nothing.
  wire::PrekeyUpdated wrong;
  wrong.set_created_at_ms(t1 + 1);
  EXPECT_EQ(bob_.CompletePrekeyRotation(wrong, t1).code(), Code::kInvalidArgument);
  EXPECT_EQ(bob_.profile().pending_prekeys.size(), 1u);
  EXPECT_TRUE(bob_.profile().retired_prekeys.empty());
  EXPECT_EQ(bob_.profile().prekey.SerializeAsString(), old_prekey.SerializeAsString());

  const int64_t t2 = t1 + 2000;
  wire::PrekeyUpdated confirmed;
  confirmed.set_created_at_ms(t1);
  ASSERT_TRUE(bob_.CompletePrekeyRotation(confirmed, t2).ok());
  EXPECT_EQ(bob_.profile().prekey.SerializeAsString(), update->prekey().SerializeAsString());
  EXPECT_TRUE(bob_.profile().pending_prekeys.empty());
  ASSERT_EQ(bob_.profile().retired_prekeys.size(), 1u);
  EXPECT_EQ(bob_.profile().retired_prekeys[0].retired_at_ms, t2);
  EXPECT_EQ(bob_.profile().retired_prekeys[0].prekey.SerializeAsString(),
            old_prekey.SerializeAsString());
  EXPECT_EQ(bob_.Info().prekey().SerializeAsString(), update->prekey().SerializeAsString());
  EXPECT_EQ(bob_.CompletePrekeyRotation(confirmed, t2).code(), Code::kFailedPrecondition);
  EXPECT_TRUE(Device::FromProfile(bob_.profile()).ok());

  // Both messages open: the old one with the retired prekey.
  got = bob_.OpenDelivery(Delivery(*to_old, alice_), t2);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->text, "to the old prekey");
  ASSERT_TRUE(bob_.OpenDelivery(Delivery(*to_pending, alice_), t2).ok());
  EXPECT_NE(Snapshot(bob_).find(ToHex(old_private.view())), std::string::npos);

  // Past the grace period the old prekey is wiped, and with it the message.
  EXPECT_EQ(bob_.ExpireRetiredPrekeys(t2 + kDefaultPrekeyGraceMs - 1), 0u);
  ASSERT_TRUE(bob_.OpenDelivery(Delivery(*to_old, alice_), t2).ok());
  EXPECT_EQ(bob_.ExpireRetiredPrekeys(t2 + kDefaultPrekeyGraceMs), 1u);
  EXPECT_TRUE(bob_.profile().retired_prekeys.empty());
  EXPECT_EQ(Snapshot(bob_).find(ToHex(old_private.view())), std::string::npos);
  auto gone = bob_.OpenDelivery(Delivery(*to_old, alice_), t2);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), Code::kCryptoFailure) << gone.status().ToString();
  ASSERT_TRUE(bob_.OpenDelivery(Delivery(*to_pending, alice_), t2).ok());
  EXPECT_EQ(bob_.ExpireRetiredPrekeys(t2 + 10 * kDefaultPrekeyGraceMs), 0u);
}

TEST_F(DeviceTest, PrekeyRotationArguments) {
  auto fresh = Device::Generate("dave", kNow);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->BeginPrekeyRotation(kNow + 1).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(fresh->CompletePrekeyRotation(wire::PrekeyUpdated(), kNow).code(),
            Code::kFailedPrecondition);

  const int64_t created = bob_.profile().prekey.created_at_ms();
  EXPECT_EQ(bob_.BeginPrekeyRotation(created).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bob_.BeginPrekeyRotation(kNow, Bytes(31, 1)).status().code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(bob_.profile().pending_prekeys.empty());

  // Caller-supplied randomness makes the prekey deterministic.
  Device copy = bob_;
  const Bytes ikm(32, 7);
  auto a = bob_.BeginPrekeyRotation(kNow, ikm);
  auto b = copy.BeginPrekeyRotation(kNow, ikm);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
}

TEST(PrekeyPolicyTest, TakesTheGatewaysValuesWithinBounds) {
  constexpr int64_t kHour = 3600LL * 1000;
  constexpr int64_t kDay = 24 * kHour;
  auto policy = [](int64_t rotation, int64_t grace) {
    wire::Authenticated a;
    a.set_prekey_rotation_ms(rotation);
    a.set_prekey_grace_ms(grace);
    return PrekeyPolicyFrom(a);
  };
  PrekeyPolicy p = policy(2 * kDay, 40 * kDay);
  EXPECT_EQ(p.rotation_ms, 2 * kDay);
  EXPECT_EQ(p.grace_ms, 40 * kDay);
  p = policy(0, 0);  // an older gateway says nothing
  EXPECT_EQ(p.rotation_ms, kDefaultPrekeyRotationMs);
  EXPECT_EQ(p.grace_ms, kDefaultPrekeyGraceMs);
  p = policy(kHour - 1, 3651 * kDay);  // out of bounds: defaults
  EXPECT_EQ(p.rotation_ms, kDefaultPrekeyRotationMs);
  EXPECT_EQ(p.grace_ms, kDefaultPrekeyGraceMs);
  p = policy(300 * kDay, kDay);  // grace shorter than the rotation: not taken
  EXPECT_EQ(p.rotation_ms, 300 * kDay);
  EXPECT_EQ(p.grace_ms, 300 * kDay);
}

TEST_F(DeviceTest, AnAbandonedRotationDrawsANewPrekey) {
  EXPECT_FALSE(bob_.AbandonPrekeyRotation().ok()) << "nothing pending";
  auto first = bob_.BeginPrekeyRotation(kNow + 1);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(bob_.AbandonPrekeyRotation().ok());
  EXPECT_TRUE(bob_.profile().pending_prekeys.empty());
  auto second = bob_.BeginPrekeyRotation(kNow + 2);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_NE(second->prekey().public_key(), first->prekey().public_key());
}

TEST_F(DeviceTest, RetiredPrekeysAreCapped) {
  int64_t t = kNow;
  std::string newest_retired;
  for (size_t i = 0; i < kMaxRetiredPrekeys + 6; ++i) {
    t += 1000;
    newest_retired = bob_.profile().prekey.SerializeAsString();
    auto update = bob_.BeginPrekeyRotation(t);
    ASSERT_TRUE(update.ok()) << update.status().ToString();
    wire::PrekeyUpdated confirmed;
    confirmed.set_created_at_ms(t);
    ASSERT_TRUE(bob_.CompletePrekeyRotation(confirmed, t).ok());
  }
  ASSERT_EQ(bob_.profile().retired_prekeys.size(), kMaxRetiredPrekeys);
  EXPECT_EQ(bob_.profile().retired_prekeys.back().prekey.SerializeAsString(), newest_retired);
  // Such a profile still loads.
  auto text = EncodeProfile(bob_.profile(), KeyStore::InsecurePlaintext());
  ASSERT_TRUE(text.ok());
  auto decoded = DecodeProfile(*text, nullptr);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_TRUE(Device::FromProfile(std::move(decoded->profile)).ok());
}

// ---------------------------------------------------------------- notices

TEST_F(DeviceTest, FirstSightOfAConversationIsTheArchiveNoticeOnly) {
  auto notices = bob_.ObserveConversation(Conversation(), kNow);
  ASSERT_TRUE(notices.ok()) << notices.status().ToString();
  ASSERT_EQ(notices->size(), 1u);
  const Notice& n = (*notices)[0];
  EXPECT_EQ(n.kind, Notice::Kind::kArchived);
  EXPECT_EQ(n.conversation_id, "c-alice-bob");
  EXPECT_EQ(n.text, "Messages are archived.");
  EXPECT_TRUE(bob_.NoticeShown("c-alice-bob"));
  ASSERT_EQ(bob_.profile().conversations.size(), 1u);
  EXPECT_EQ(bob_.profile().conversations[0].members, (std::vector<std::string>{"alice", "bob"}));
  ASSERT_EQ(bob_.profile().contacts.size(), 2u);
  EXPECT_EQ(bob_.profile().contacts[0].user, "alice");
  EXPECT_EQ(bob_.profile().contacts[0].master_key, alice_.master_public());
  EXPECT_EQ(bob_.profile().contacts[0].devices.size(), 2u);
  EXPECT_EQ(bob_.profile().contacts[1].user, "bob");

  // Looking again: nothing changed, nothing to tell.
  notices = bob_.ObserveConversation(Conversation(), kNow);
  ASSERT_TRUE(notices.ok());
  EXPECT_TRUE(notices->empty());

  // Another conversation with the same people: only its archive notice.
  wire::ConversationInfo other = Conversation();
  other.set_conversation_id("c-other");
  notices = bob_.ObserveConversation(other, kNow);
  ASSERT_TRUE(notices.ok());
  EXPECT_EQ(Kinds(*notices), std::vector<Notice::Kind>{Notice::Kind::kArchived});
}

TEST_F(DeviceTest, NoticesForDevicesAddedRemovedAndReKeyed) {
  ASSERT_TRUE(bob_.ObserveConversation(Conversation(), kNow).ok());

  // A new device of a known contact.
  Device tablet = EnrolAnother(alice_, root_);
  wire::ConversationInfo c = Conversation();
  *c.add_devices() = tablet.Info();
  auto notices = bob_.ObserveConversation(c, kNow + 1);
  ASSERT_TRUE(notices.ok()) << notices.status().ToString();
  ASSERT_EQ(notices->size(), 1u);
  EXPECT_EQ((*notices)[0].kind, Notice::Kind::kNewDevice);
  EXPECT_EQ((*notices)[0].user, "alice");
  EXPECT_EQ((*notices)[0].device_id, tablet.device_id());
  EXPECT_EQ((*notices)[0].conversation_id, "c-alice-bob");
  EXPECT_NE((*notices)[0].text.find(protocol::Fingerprint(tablet.identity_public())),
            std::string::npos)
      << (*notices)[0].text;
  notices = bob_.ObserveConversation(c, kNow + 2);
  ASSERT_TRUE(notices.ok());
  EXPECT_TRUE(notices->empty());

  // A device no longer listed.
  c = Listing("c-alice-bob", {"alice", "bob"}, {&alice_, &tablet, &bob_});
  notices = bob_.ObserveConversation(c, kNow + 3);
  ASSERT_TRUE(notices.ok());
  ASSERT_EQ(notices->size(), 1u);
  EXPECT_EQ((*notices)[0].kind, Notice::Kind::kDeviceRemoved);
  EXPECT_EQ((*notices)[0].user, "alice");
  EXPECT_EQ((*notices)[0].device_id, alice_phone_.device_id());

  // Alice's account restored by the organisation: a new master key.
  Device restored = Enrol("alice", root_);
  ASSERT_NE(restored.master_public(), alice_.master_public());
  c = Listing("c-alice-bob", {"alice", "bob"}, {&restored, &bob_});
  notices = bob_.ObserveConversation(c, kNow + 4);
  ASSERT_TRUE(notices.ok()) << notices.status().ToString();
  ASSERT_FALSE(notices->empty());
  EXPECT_EQ((*notices)[0].kind, Notice::Kind::kMasterKeyChanged);
  EXPECT_EQ((*notices)[0].user, "alice");
  EXPECT_NE((*notices)[0].text.find(protocol::Fingerprint(restored.master_public())),
            std::string::npos)
      << (*notices)[0].text;
  const std::vector<Notice::Kind> kinds = Kinds(*notices);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Notice::Kind::kMasterKeyChanged), 1);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Notice::Kind::kDeviceRemoved), 0)
      << "the old devices went with the old master key";
  EXPECT_EQ(bob_.profile().contacts[0].master_key, restored.master_public());
  notices = bob_.ObserveConversation(c, kNow + 5);
  ASSERT_TRUE(notices.ok());
  EXPECT_TRUE(notices->empty());
}

TEST_F(DeviceTest, NoticesForOwnDevices) {
  ASSERT_TRUE(alice_.ObserveConversation(Conversation(), kNow).ok());
  Device tablet = EnrolAnother(alice_, root_);
  wire::ConversationInfo c = Conversation();
  *c.add_devices() = tablet.Info();
  auto notices = alice_.ObserveConversation(c, kNow);
  ASSERT_TRUE(notices.ok());
  ASSERT_EQ(notices->size(), 1u);
  EXPECT_EQ((*notices)[0].kind, Notice::Kind::kNewDevice);
  EXPECT_EQ((*notices)[0].user, "alice");
  EXPECT_NE((*notices)[0].text.find("Your account"), std::string::npos) << (*notices)[0].text;
}

TEST_F(DeviceTest, MembershipChangeNotices) {
  Device carol = Enrol("carol", root_);
  Device dave = Enrol("dave", root_);
  wire::ConversationInfo g = Listing("g-1", {"alice", "bob"}, {&alice_, &alice_phone_, &bob_});
  g.set_group(true);
  g.set_title("desk");
  g.set_created_by("alice");
  g.set_membership_version(1);
  auto notices = bob_.ObserveConversation(g, kNow);
  ASSERT_TRUE(notices.ok()) << notices.status().ToString();
  EXPECT_EQ(Kinds(*notices), std::vector<Notice::Kind>{Notice::Kind::kArchived});

  // Version 2: alice added carol and dave. Carol and dave are first seen, silently.
  g = Listing("g-1", {"alice", "bob", "carol", "dave"},
              {&alice_, &alice_phone_, &bob_, &carol, &dave});
  g.set_group(true);
  g.set_membership_version(2);
  wire::MembershipChange added;
  added.set_version(2);
  added.set_actor("alice");
  added.add_added("carol");
  added.add_added("dave");
  added.set_at_ms(kNow);
  *g.add_changes() = added;
  notices = bob_.ObserveConversation(g, kNow + 1);
  ASSERT_TRUE(notices.ok()) << notices.status().ToString();
  ASSERT_EQ(notices->size(), 1u);
  EXPECT_EQ((*notices)[0].kind, Notice::Kind::kMembersChanged);
  EXPECT_EQ((*notices)[0].user, "alice");
  EXPECT_EQ((*notices)[0].conversation_id, "g-1");
  EXPECT_EQ((*notices)[0].text, "alice added carol dave");

  // Version 3, listed with the change before it: only the new one is told.
  g = Listing("g-1", {"alice", "bob", "dave"}, {&alice_, &alice_phone_, &bob_, &dave});
  g.set_group(true);
  g.set_membership_version(3);
  *g.add_changes() = added;
  wire::MembershipChange* removed = g.add_changes();
  removed->set_version(3);
  removed->set_actor("alice");
  removed->add_removed("carol");
  notices = bob_.ObserveConversation(g, kNow + 2);
  ASSERT_TRUE(notices.ok()) << notices.status().ToString();
  ASSERT_EQ(notices->size(), 1u);
  EXPECT_EQ((*notices)[0].kind, Notice::Kind::kMembersChanged);
  EXPECT_EQ((*notices)[0].text, "alice removed carol");
  ASSERT_EQ(bob_.profile().conversations.size(), 1u);
  EXPECT_EQ(bob_.profile().conversations[0].membership_version, 3u);
  EXPECT_EQ(bob_.profile().conversations[0].members,
            (std::vector<std::string>{"alice", "bob", "dave"}));

  // The same version again, or an older one, tells nothing.
  notices = bob_.ObserveConversation(g, kNow + 3);
  ASSERT_TRUE(notices.ok());
  EXPECT_TRUE(notices->empty());
}

TEST_F(DeviceTest, FirstSightOfAGroupTellsItsHistory) {
  wire::ConversationInfo g = Listing("g-2", {"alice", "bob"}, {&alice_, &alice_phone_, &bob_});
  g.set_group(true);
  g.set_title("desk");
  g.set_created_by("alice");
  g.set_membership_version(1);
  wire::MembershipChange* created = g.add_changes();
  created->set_version(0);
  created->set_actor("alice");
  created->add_added("bob");
  created->add_added("carol");
  wire::MembershipChange* removed = g.add_changes();
  removed->set_version(1);
  removed->set_actor("alice");
  removed->add_removed("carol");
  auto notices = bob_.ObserveConversation(g, kNow);
  ASSERT_TRUE(notices.ok()) << notices.status().ToString();
  EXPECT_EQ(Kinds(*notices),
            (std::vector<Notice::Kind>{Notice::Kind::kArchived, Notice::Kind::kMembersChanged,
                                       Notice::Kind::kMembersChanged}));
  EXPECT_EQ((*notices)[1].text, "alice created the group \"desk\" with bob carol");
  EXPECT_EQ((*notices)[2].text, "alice removed carol");
  // Seen once, told once.
  notices = bob_.ObserveConversation(g, kNow + 1);
  ASSERT_TRUE(notices.ok());
  EXPECT_TRUE(notices->empty());
}

TEST_F(DeviceTest, RefusedConversationRecordsNothing) {
  Device mallory = Enrol("mallory", root_);
  Device restored = Enrol("alice", root_);
  Device tablet = EnrolAnother(alice_, root_);
  struct Case {
    std::string name;
    wire::ConversationInfo conversation;
  };
  auto with = [&](const std::function<void(wire::ConversationInfo&)>& edit) {
    wire::ConversationInfo c = Conversation();
    *c.add_devices() = tablet.Info();  // new to bob: would be recorded
    edit(c);
    return c;
  };
  const std::vector<Case> cases = {
      {"device of a non-member",
       with([&](auto& c) { *c.add_devices() = mallory.Info(); })},
      {"bad org signature",
       with([](auto& c) {
         FlipLastByte(*c.mutable_devices(0)->mutable_certificate()->mutable_org_signature());
       })},
      {"bad master signature",
       with([](auto& c) {
         FlipLastByte(*c.mutable_devices(2)->mutable_certificate()->mutable_master_signature());
       })},
      {"missing certificate", with([](auto& c) { c.mutable_devices(3)->clear_certificate(); })},
      {"one user under two master keys",
       with([&](auto& c) { *c.add_devices() = restored.Info(); })},
      {"this user not a member",
       with([](auto& c) {
         c.clear_members();
         c.add_members("alice");
         c.clear_devices();
       })},
      {"forged epoch certificate",
       with([&](auto& c) { *c.mutable_epoch() = impostor_.Certify(EpochBody()); })},
  };
  // On first sight of the conversation, and once it is known.
  for (bool known : {false, true}) {
    Device bob = bob_;
    if (known) {
      ASSERT_TRUE(bob.ObserveConversation(Conversation(), kNow).ok());
    }
    const std::string before = Snapshot(bob);
    for (const Case& c : cases) {
      auto r = bob.ObserveConversation(c.conversation, kNow);
      EXPECT_FALSE(r.ok()) << c.name << (known ? " (known)" : " (first sight)");
      EXPECT_EQ(Snapshot(bob), before) << c.name << (known ? " (known)" : " (first sight)");
    }
    // The same listing without the fault is accepted, and recorded.
    auto r = bob.ObserveConversation(with([](auto&) {}), kNow);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_NE(Snapshot(bob), before);
  }
}

TEST_F(DeviceTest, OpenDeliveryFromANewDeviceOfAKnownContact) {
  ASSERT_TRUE(bob_.ObserveConversation(Conversation(), kNow).ok());

  // From a device bob knows: no notice.
  auto envelope = alice_.PrepareMessage(Conversation(), "known", kNow);
  ASSERT_TRUE(envelope.ok());
  auto got = bob_.OpenDelivery(Delivery(*envelope, alice_), kNow);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->notices.empty());

  // From alice's new tablet, which bob has not seen in any listing.
  Device tablet = EnrolAnother(alice_, root_);
  wire::ConversationInfo c = Conversation();
  *c.add_devices() = tablet.Info();
  envelope = tablet.PrepareMessage(c, "new device", kNow);
  ASSERT_TRUE(envelope.ok()) << envelope.status().ToString();
  got = bob_.OpenDelivery(Delivery(*envelope, tablet), kNow + 1);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->text, "new device");
  ASSERT_EQ(got->notices.size(), 1u);
  EXPECT_EQ(got->notices[0].kind, Notice::Kind::kNewDevice);
  EXPECT_EQ(got->notices[0].user, "alice");
  EXPECT_EQ(got->notices[0].device_id, tablet.device_id());
  EXPECT_EQ(got->notices[0].conversation_id, "c-alice-bob");

  // Told once.
  got = bob_.OpenDelivery(Delivery(*envelope, tablet), kNow + 2);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->notices.empty());
  auto listed = bob_.ObserveConversation(c, kNow + 3);
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
}

TEST_F(DeviceTest, SeenSetAndNotices) {
  Bytes id = protocol::RandomBytes(16);
  EXPECT_FALSE(bob_.Seen(id));
  EXPECT_TRUE(bob_.MarkSeen(id));
  EXPECT_FALSE(bob_.MarkSeen(id));
  for (size_t i = 0; i < kSeenMessageIdsLimit; ++i) bob_.MarkSeen(protocol::RandomBytes(16));
  EXPECT_FALSE(bob_.Seen(id));
  EXPECT_EQ(bob_.profile().seen_message_ids.size(), kSeenMessageIdsLimit);

  EXPECT_TRUE(bob_.MarkNoticeShown("c1"));
  EXPECT_TRUE(bob_.NoticeShown("c1"));
  EXPECT_FALSE(bob_.MarkNoticeShown("c1"));
}

TEST_F(DeviceTest, UnregisteredDeviceCannotSend) {
  auto d = Device::Generate("dave", kNow);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->PrepareMessage(Conversation(), "x", kNow).status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(d->ObserveConversation(Conversation(), kNow).status().code(),
            Code::kFailedPrecondition);
}

// ----------------------------------------------------------------- resend

class ResendTest : public DeviceTest {
 protected:
  // bob sends to alice's two devices and keeps the message in his sent log;
  // alice then enrols a tablet.
  void SetUp() override {
    auto envelope = bob_.PrepareMessage(Conversation(), "while you were away", kNow);
    ASSERT_TRUE(envelope.ok()) << envelope.status().ToString();
    original_envelope_ = *envelope;
    ASSERT_TRUE(bob_.RecordSent(*envelope, "while you were away", kNow).ok());
    original_ = protocol::ParseEnvelope(*envelope)->header.message_id();
    tablet_.emplace(EnrolAnother(alice_, root_));
  }

  wire::ResendRequest Request(const std::vector<wire::DeviceInfo>& devices) const {
    wire::ResendRequest r;
    r.set_request_id(9);
    r.set_message_id(original_);
    r.set_conversation_id("c-alice-bob");
    for (const auto& d : devices) *r.add_devices() = d;
    *r.mutable_epoch() = root_.Certify(EpochBody());
    return r;
  }

  wire::Envelope original_envelope_;
  std::string original_;
  std::optional<Device> tablet_;
};

TEST_F(ResendTest, TheSentLogRecordsWhomAMessageWasSealedTo) {
  ASSERT_EQ(bob_.profile().sent_log.size(), 1u);
  const SentMessage& m = bob_.profile().sent_log[0];
  EXPECT_EQ(AsString(m.message_id), original_);
  EXPECT_EQ(m.conversation_id, "c-alice-bob");
  EXPECT_EQ(m.text, "while you were away");
  EXPECT_EQ(m.sent_at_ms, kNow);
  EXPECT_EQ(m.users, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ(alice_.RecordSent(original_envelope_, "x", kNow).code(), Code::kInvalidArgument)
      << "another device's envelope";

  // Entries past the retention period, and beyond the limit, are dropped.
  auto later = bob_.PrepareMessage(Conversation(), "later", kNow + 1);
  ASSERT_TRUE(later.ok());
  ASSERT_TRUE(bob_.RecordSent(*later, "later", kNow + 1, /*retention_ms=*/1).ok());
  ASSERT_EQ(bob_.profile().sent_log.size(), 2u);
  ASSERT_TRUE(bob_.RecordSent(*later, "later", kNow + 3, /*retention_ms=*/1).ok());
  ASSERT_EQ(bob_.profile().sent_log.size(), 1u) << "the original expired; the repeat replaced";
  for (size_t i = 0; i < kSentLogLimit; ++i) {
    auto e = bob_.PrepareMessage(Conversation(), "n", kNow + 2);
    ASSERT_TRUE(e.ok());
    ASSERT_TRUE(bob_.RecordSent(*e, "n", kNow + 2).ok());
  }
  EXPECT_EQ(bob_.profile().sent_log.size(), kSentLogLimit);
  EXPECT_EQ(bob_.profile().sent_log.front().text, "n");
}

TEST_F(ResendTest, AResentMessageOpensOnTheNewDeviceAndCountsOnce) {
  auto resent = bob_.PrepareResend(Request({tablet_->Info()}), kNow + 1000);
  ASSERT_TRUE(resent.ok()) << resent.status().ToString();
  auto parsed = protocol::ParseEnvelope(*resent);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->header.resend_of(), original_);
  EXPECT_NE(parsed->header.message_id(), original_);
  EXPECT_EQ(parsed->header.conversation_id(), "c-alice-bob");
  EXPECT_EQ(parsed->header.sent_at_ms(), kNow + 1000);
  ASSERT_EQ(parsed->content.devices_size(), 1);
  EXPECT_EQ(parsed->content.devices(0).device_id(), AsString(tablet_->device_id()));
  EXPECT_EQ(parsed->content.devices(0).user(), "alice");

  auto got = tablet_->OpenDelivery(Delivery(*resent, bob_), kNow + 1000);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->text, "while you were away");
  EXPECT_EQ(AsString(got->resend_of), original_);
  ASSERT_FALSE(got->notices.empty());
  EXPECT_EQ(got->notices.back().kind, Notice::Kind::kResent);
  EXPECT_EQ(got->notices.back().conversation_id, "c-alice-bob");
  EXPECT_TRUE(tablet_->MarkReceived(*got));
  EXPECT_TRUE(tablet_->Seen(AsBytes(original_)));
  // Nobody else can open it: it was sealed for the tablet alone.
  EXPECT_FALSE(alice_phone_.OpenDelivery(Delivery(*resent, bob_), kNow + 1000).ok());

  // Answered twice (an acknowledgement lost): the second copy is a duplicate.
  auto again = bob_.PrepareResend(Request({tablet_->Info()}), kNow + 2000);
  ASSERT_TRUE(again.ok());
  auto got_again = tablet_->OpenDelivery(Delivery(*again, bob_), kNow + 2000);
  ASSERT_TRUE(got_again.ok());
  EXPECT_FALSE(tablet_->MarkReceived(*got_again));
  // A device that opened the original drops a re-sent copy of it too.
  auto on_phone = alice_phone_.OpenDelivery(Delivery(original_envelope_, bob_), kNow);
  ASSERT_TRUE(on_phone.ok());
  EXPECT_TRUE(alice_phone_.MarkReceived(*on_phone));
  ReceivedMessage copy = *got;
  copy.message_id = protocol::RandomBytes(16);
  EXPECT_FALSE(alice_phone_.MarkReceived(copy));
  // An ordinary message has no resend notice.
  EXPECT_TRUE(on_phone->resend_of.empty());
  EXPECT_EQ(std::ranges::count(Kinds(on_phone->notices), Notice::Kind::kResent), 0);
}

TEST_F(ResendTest, AGatewayCannotMakeTheSenderDiscloseAMessageToAnyoneNew) {
  Device carol = Enrol("carol", root_);
  const auto code = [&](const wire::ResendRequest& r) {
    return bob_.PrepareResend(r, kNow + 1000).status().code();
  };
  EXPECT_EQ(code(Request({carol.Info()})), Code::kPermissionDenied) << "a user not sealed to";
  EXPECT_EQ(code(Request({tablet_->Info(), carol.Info()})), Code::kPermissionDenied);
  EXPECT_EQ(code(Request({bob_.Info()})), Code::kPermissionDenied) << "the sender itself";
  // carol's device presented as alice's: its certificate names carol.
  wire::DeviceInfo disguised = carol.Info();
  disguised.set_user("alice");
  EXPECT_NE(code(Request({disguised})), Code::kOk);
  for (const auto& breaker : Breakers(alice_phone_, carol)) {
    wire::DeviceInfo broken = tablet_->Info();
    breaker.apply(broken);
    EXPECT_NE(code(Request({broken})), Code::kOk) << breaker.name;
  }
  EXPECT_EQ(code(Request({tablet_->Info(), tablet_->Info()})), Code::kInvalidArgument);
  EXPECT_EQ(code(Request({})), Code::kInvalidArgument);

  wire::ResendRequest unknown = Request({tablet_->Info()});
  unknown.set_message_id(AsString(protocol::RandomBytes(16)));
  EXPECT_EQ(code(unknown), Code::kNotFound);
  EXPECT_EQ(alice_.PrepareResend(Request({tablet_->Info()}), kNow).status().code(),
            Code::kNotFound)
      << "only the sender's device holds the message";
  wire::ResendRequest elsewhere = Request({tablet_->Info()});
  elsewhere.set_conversation_id("c-other");
  EXPECT_EQ(code(elsewhere), Code::kPermissionDenied);
  wire::ResendRequest forged_epoch = Request({tablet_->Info()});
  *forged_epoch.mutable_epoch() = impostor_.Certify(EpochBody());
  EXPECT_NE(code(forged_epoch), Code::kOk);
  EXPECT_NE(bob_.PrepareResend(Request({tablet_->Info()}), kNow + 30 * kDay).status().code(),
            Code::kOk)
      << "an epoch that is over";
}


}  // namespace
}  // namespace holdfast::client
