#include "holdfast/client/device.h"

#include <gtest/gtest.h>

#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "test_org.h"

namespace holdfast::client {
namespace {

using testing::OrgRoot;

constexpr int64_t kNow = 1'714'564'800'000;  // 2024-05-01T12:00:00Z
constexpr int64_t kDay = 86'400'000;
constexpr uint32_t kEpochId = 7;

Device Enrol(const std::string& user, const OrgRoot& root, const std::string& org = "acme") {
  auto d = Device::Generate(user, kNow - kDay);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  wire::RegisterResponse r;
  r.set_device_id(AsString(protocol::DeviceIdFor(d->identity_public())));
  r.set_org_root_key(AsString(root.public_key()));
  r.set_org(org);
  EXPECT_TRUE(d->AcceptRegistration(r, "wss://127.0.0.1:8443/v1", "ca.pem").ok());
  return std::move(d).value();
}

class DeviceTest : public ::testing::Test {
 protected:
  DeviceTest()
      : alice_(Enrol("alice", root_)),
        alice_phone_(Enrol("alice", root_)),
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

  wire::Deliver Delivery(const wire::Envelope& envelope, const Device& sender) const {
    wire::Deliver d;
    d.set_delivery_id(42);
    *d.mutable_envelope() = envelope;
    *d.mutable_sender() = sender.Info();
    *d.mutable_epoch() = root_.Certify(EpochBody());
    d.set_archive_notice("Messages are archived.");
    return d;
  }

  OrgRoot root_;
  Device alice_, alice_phone_, bob_;
  Bytes archive_public_;
};

TEST_F(DeviceTest, RegistrationChecksDeviceId) {
  auto d = Device::Generate("carol", kNow);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->registered());
  wire::RegisterResponse r;
  r.set_device_id(AsString(protocol::DeviceIdFor(bob_.identity_public())));
  r.set_org_root_key(AsString(root_.public_key()));
  r.set_org("acme");
  Status s = d->AcceptRegistration(r, "wss://localhost/v1", "ca.pem");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_FALSE(d->registered());

  r.set_device_id(AsString(protocol::DeviceIdFor(d->identity_public())));
  r.set_org_root_key("short");
  EXPECT_FALSE(d->AcceptRegistration(r, "wss://localhost/v1", "ca.pem").ok());
}

TEST_F(DeviceTest, RegisterRequestCarriesSignedPrekey) {
  wire::RegisterRequest r = bob_.MakeRegisterRequest("CODE-1");
  EXPECT_EQ(r.user(), "bob");
  EXPECT_EQ(r.enrollment_code(), "CODE-1");
  EXPECT_TRUE(protocol::VerifyPrekey(AsBytes(r.identity_key()), r.prekey()).ok());
  EXPECT_TRUE(protocol::VerifyDeviceInfo(bob_.Info()).ok());
}

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

  auto got = bob_.OpenDelivery(Delivery(*envelope, alice_));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->text, "hello bob");
  EXPECT_EQ(got->sender_user, "alice");
  EXPECT_EQ(got->sender_device, alice_.device_id());
  EXPECT_EQ(got->conversation_id, "c-alice-bob");
  EXPECT_EQ(got->sent_at_ms, kNow);
  EXPECT_EQ(AsString(got->message_id), parsed->header.message_id());

  auto mine = alice_phone_.OpenDelivery(Delivery(*envelope, alice_));
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  EXPECT_EQ(mine->text, "hello bob");

  EXPECT_FALSE(alice_.OpenDelivery(Delivery(*envelope, alice_)).ok());
}

TEST_F(DeviceTest, EpochCertificateFromAnotherKeyRefused) {
  OrgRoot impostor;
  auto forged = impostor.Certify(EpochBody());
  auto envelope = alice_.PrepareMessage(Conversation(forged), "hi", kNow);
  ASSERT_FALSE(envelope.ok());
  EXPECT_EQ(envelope.status().code(), Code::kCryptoFailure) << envelope.status().ToString();

  auto good = alice_.PrepareMessage(Conversation(), "hi", kNow);
  ASSERT_TRUE(good.ok());
  wire::Deliver d = Delivery(*good, alice_);
  *d.mutable_epoch() = forged;
  EXPECT_FALSE(bob_.OpenDelivery(d).ok());
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
  auto r = bob_.OpenDelivery(d);
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
  EXPECT_FALSE(bob_.OpenDelivery(d).ok());
}

TEST_F(DeviceTest, BadPrekeySignatureRefused) {
  wire::ConversationInfo c = Conversation();
  auto other = protocol::hpke::GenerateKeyPair(protocol::hpke::KemId::kX25519HkdfSha256);
  ASSERT_TRUE(other.ok());
  c.mutable_devices(2)->mutable_prekey()->set_public_key(AsString(other->public_key));
  EXPECT_FALSE(alice_.PrepareMessage(c, "hi", kNow).ok());
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
  auto r = bob_.OpenDelivery(Delivery(*envelope, mallory));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);

  // Alice's keys relabelled as another user: the device id still fits the key.
  wire::Deliver relabelled = Delivery(*envelope, alice_);
  relabelled.mutable_sender()->set_user("carol");
  EXPECT_FALSE(bob_.OpenDelivery(relabelled).ok());

  // Mallory signs an envelope that claims to be from Alice's device.
  wire::Envelope forged = *envelope;
  auto sig = protocol::Ed25519Sign(
      mallory.profile().identity_private.view(),
      Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(forged.content())}));
  ASSERT_TRUE(sig.ok());
  forged.set_signature(AsString(*sig));
  auto f = bob_.OpenDelivery(Delivery(forged, alice_));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Code::kCryptoFailure);
}

TEST_F(DeviceTest, ArchiveCapsuleMismatchRejected) {
  auto envelope = alice_.PrepareMessage(Conversation(), "secret", kNow);
  ASSERT_TRUE(envelope.ok());
  // A dishonest sender: the archive gets a capsule for a different CEK.
  wire::EnvelopeContent content;
  ASSERT_TRUE(content.ParseFromString(envelope->content()));
  wire::MessageHeader header;
  ASSERT_TRUE(header.ParseFromString(content.header()));
  auto capsule = protocol::ComputeArchiveCapsule(
      protocol::RandomBytes(protocol::kCekSize), AsBytes(header.message_id()), kEpochId,
      archive_public_, AsBytes(content.header()));
  ASSERT_TRUE(capsule.ok()) << capsule.status().ToString();
  *content.mutable_archive() = *capsule;
  wire::Envelope dishonest;
  dishonest.set_content(content.SerializeAsString());
  auto sig = protocol::Ed25519Sign(
      alice_.profile().identity_private.view(),
      Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(dishonest.content())}));
  ASSERT_TRUE(sig.ok());
  dishonest.set_signature(AsString(*sig));

  auto r = bob_.OpenDelivery(Delivery(dishonest, alice_));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCryptoFailure);
  EXPECT_EQ(r.status().message().rfind("archive capsule mismatch", 0), 0u)
      << r.status().message();

  auto h = UnverifiedHeader(Delivery(dishonest, alice_));
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->message_id(), header.message_id());
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
}

}  // namespace
}  // namespace holdfast::client
