#include "holdfast/protocol/envelope.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <functional>
#include <memory>
#include <string>

#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::protocol {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

ByteView View(const std::string& s) { return AsBytes(s); }

struct Device {
  std::string user;
  Ed25519KeyPair identity;
  hpke::KeyPair prekey;
  Bytes id;
};

Device MakeDevice(std::string user) {
  auto identity = Ed25519Generate();
  auto prekey = hpke::GenerateKeyPair(hpke::KemId::kX25519HkdfSha256);
  if (!identity.ok() || !prekey.ok()) std::abort();
  Bytes id = DeviceIdFor(identity->public_key);
  return Device{std::move(user), std::move(identity).value(), std::move(prekey).value(), id};
}

class EnvelopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sender_ = MakeDevice("alice");
    devices_.push_back(MakeDevice("bob"));
    devices_.push_back(MakeDevice("bob"));
    devices_.push_back(MakeDevice("alice"));
    auto archive = hpke::GenerateKeyPair(hpke::KemId::kP256HkdfSha256);
    ASSERT_TRUE(archive.ok());
    archive_ = std::move(archive).value();
  }

  SealRequest Request() const {
    SealRequest r;
    r.conversation_id = "conv-1";
    r.sender_user = sender_.user;
    r.sender_device = sender_.id;
    r.sent_at_ms = 1'700'000'000'000;
    r.epoch_id = 7;
    r.archive_public = archive_.public_key;
    for (const Device& d : devices_) r.recipients.push_back({d.user, d.id, d.prekey.public_key});
    r.text = "the quarterly numbers are in";
    return r;
  }

  wire::Envelope Seal() const {
    auto envelope = SealMessage(Request(), sender_.identity.private_key.view());
    if (!envelope.ok()) ADD_FAILURE() << envelope.status().ToString();
    return envelope.ok() ? *envelope : wire::Envelope();
  }

  Result<OpenedMessage> OpenAs(const wire::Envelope& envelope, const Device& d) const {
    HF_ASSIGN_OR_RETURN(ParsedEnvelope parsed, ParseEnvelope(envelope));
    return OpenMessage(parsed, sender_.identity.public_key, d.id, d.prekey.private_key.view(),
                       archive_.public_key);
  }

  SecretBytes CekOf(const ParsedEnvelope& parsed) const {
    const wire::DeviceCapsule& c = parsed.content.devices(0);
    auto cek = hpke::Open(hpke::kDeviceSuite, devices_[0].prekey.private_key.view(),
                          View(c.enc()), AsBytes(labels::kDeviceCapsuleInfo),
                          View(parsed.content.header()), View(c.ct()));
    if (!cek.ok()) std::abort();
    return std::move(cek).value();
  }

  // Rewrites the content and signs it again with the sender's real key, as a
  // malicious or buggy sender client would.
  wire::Envelope Resign(const wire::Envelope& envelope,
                        const std::function<void(wire::EnvelopeContent&)>& edit) const {
    wire::EnvelopeContent content;
    EXPECT_TRUE(content.ParseFromString(envelope.content()));
    edit(content);
    wire::Envelope out;
    out.set_content(content.SerializeAsString());
    auto sig = Ed25519Sign(sender_.identity.private_key.view(),
                           Concat({AsBytes(labels::kEnvelopeSig), View(out.content())}));
    EXPECT_TRUE(sig.ok());
    out.set_signature(AsString(*sig));
    return out;
  }

  Device sender_;
  std::vector<Device> devices_;
  hpke::KeyPair archive_;
};

TEST_F(EnvelopeTest, EveryRecipientDeviceOpens) {
  wire::Envelope envelope = Seal();
  for (const Device& d : devices_) {
    auto opened = OpenAs(envelope, d);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    EXPECT_EQ(opened->text, "the quarterly numbers are in");
    EXPECT_EQ(opened->header.conversation_id(), "conv-1");
    EXPECT_EQ(opened->header.epoch_id(), 7u);
    EXPECT_EQ(opened->header.sender_device(), AsString(sender_.id));
    EXPECT_EQ(opened->header.message_id().size(), kMessageIdSize);
  }
}

TEST_F(EnvelopeTest, ParsesFromSerializedBytes) {
  wire::Envelope envelope = Seal();
  auto parsed = ParseEnvelope(View(envelope.SerializeAsString()));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->content.devices_size(), 3);
  EXPECT_TRUE(VerifyEnvelopeSignature(*parsed, sender_.identity.public_key).ok());
}

TEST_F(EnvelopeTest, FreshCekAndMessageIdEachTime) {
  auto a = ParseEnvelope(Seal());
  auto b = ParseEnvelope(Seal());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->header.message_id(), b->header.message_id());
  EXPECT_NE(CekOf(*a).Reveal(), CekOf(*b).Reveal());
}

TEST_F(EnvelopeTest, DeviceNotAddressedIsNotFound) {
  Device stranger = MakeDevice("mallory");
  auto opened = OpenAs(Seal(), stranger);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kNotFound);
}

TEST_F(EnvelopeTest, ArchiveCapsuleIsDeterministic) {
  auto parsed = ParseEnvelope(Seal());
  ASSERT_TRUE(parsed.ok());
  SecretBytes cek = CekOf(*parsed);
  auto again = ComputeArchiveCapsule(cek.view(), View(parsed->header.message_id()), 7,
                                     archive_.public_key, View(parsed->content.header()));
  auto third = ComputeArchiveCapsule(cek.view(), View(parsed->header.message_id()), 7,
                                     archive_.public_key, View(parsed->content.header()));
  ASSERT_TRUE(again.ok() && third.ok());
  EXPECT_EQ(again->SerializeAsString(), parsed->content.archive().SerializeAsString());
  EXPECT_EQ(third->SerializeAsString(), again->SerializeAsString());
  EXPECT_EQ(again->enc().size(), 65u);

  // Any input change gives a different capsule.
  Bytes other_id(parsed->header.message_id().begin(), parsed->header.message_id().end());
  other_id[0] ^= 1;
  auto moved = ComputeArchiveCapsule(cek.view(), other_id, 7, archive_.public_key,
                                     View(parsed->content.header()));
  ASSERT_TRUE(moved.ok());
  EXPECT_NE(moved->enc(), again->enc());
}

TEST_F(EnvelopeTest, ArchiveCapsuleForAnotherCekIsRejected) {
  wire::Envelope honest = Seal();
  auto parsed = ParseEnvelope(honest);
  ASSERT_TRUE(parsed.ok());
  SecretBytes other_cek(RandomBytes(kCekSize));
  auto forged = ComputeArchiveCapsule(other_cek.view(), View(parsed->header.message_id()), 7,
                                      archive_.public_key, View(parsed->content.header()));
  ASSERT_TRUE(forged.ok());
  wire::Envelope cheating =
      Resign(honest, [&](wire::EnvelopeContent& c) { *c.mutable_archive() = *forged; });
  for (const Device& d : devices_) {
    auto opened = OpenAs(cheating, d);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), Code::kCryptoFailure);
    EXPECT_THAT(opened.status().message(), StartsWith("archive capsule mismatch"));
  }
}

TEST_F(EnvelopeTest, ArchiveCiphertextSwapIsRejected) {
  wire::Envelope honest = Seal();
  wire::Envelope cheating = Resign(honest, [](wire::EnvelopeContent& c) {
    std::string ct = c.archive().ct();
    ct[3] ^= 0x40;
    c.mutable_archive()->set_ct(ct);
  });
  auto opened = OpenAs(cheating, devices_[1]);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kCryptoFailure);
  EXPECT_THAT(opened.status().message(), StartsWith("archive capsule mismatch"));
}

TEST_F(EnvelopeTest, ArchiveCapsuleForAnotherKeyIsRejected) {
  wire::Envelope honest = Seal();
  auto parsed = ParseEnvelope(honest);
  ASSERT_TRUE(parsed.ok());
  auto other = hpke::GenerateKeyPair(hpke::KemId::kP256HkdfSha256);
  ASSERT_TRUE(other.ok());
  auto opened = OpenMessage(*parsed, sender_.identity.public_key, devices_[0].id,
                            devices_[0].prekey.private_key.view(), other->public_key);
  ASSERT_FALSE(opened.ok());
  EXPECT_THAT(opened.status().message(), StartsWith("archive capsule mismatch"));
}

TEST_F(EnvelopeTest, UnsignedTamperingFailsTheSignature) {
  wire::Envelope honest = Seal();
  std::vector<std::function<void(wire::Envelope&)>> tampers = {
      [](wire::Envelope& e) {
        std::string s = e.signature();
        s[10] ^= 1;
        e.set_signature(s);
      },
      [](wire::Envelope& e) {
        wire::EnvelopeContent c;
        c.ParseFromString(e.content());
        wire::MessageHeader h;
        h.ParseFromString(c.header());
        h.set_sent_at_ms(h.sent_at_ms() + 1);
        c.set_header(h.SerializeAsString());
        e.set_content(c.SerializeAsString());
      },
      [](wire::Envelope& e) {
        wire::EnvelopeContent c;
        c.ParseFromString(e.content());
        std::string body = c.body();
        body[0] ^= 1;
        c.set_body(body);
        e.set_content(c.SerializeAsString());
      },
      [](wire::Envelope& e) {
        wire::EnvelopeContent c;
        c.ParseFromString(e.content());
        std::string ct = c.devices(1).ct();
        ct[0] ^= 1;
        c.mutable_devices(1)->set_ct(ct);
        e.set_content(c.SerializeAsString());
      },
  };
  for (size_t i = 0; i < tampers.size(); ++i) {
    wire::Envelope e = honest;
    tampers[i](e);
    auto opened = OpenAs(e, devices_[1]);
    ASSERT_FALSE(opened.ok()) << i;
    EXPECT_EQ(opened.status().code(), Code::kCryptoFailure) << i;
    EXPECT_THAT(opened.status().message(), StartsWith("envelope signature")) << i;
  }
}

TEST_F(EnvelopeTest, SignedTamperingFailsTheMatchingCheck) {
  wire::Envelope honest = Seal();
  {
    // Header changed after sealing: the device capsule's AAD no longer matches.
    wire::Envelope e = Resign(honest, [](wire::EnvelopeContent& c) {
      wire::MessageHeader h;
      h.ParseFromString(c.header());
      h.set_conversation_id("conv-2");
      c.set_header(h.SerializeAsString());
    });
    auto opened = OpenAs(e, devices_[0]);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), Code::kCryptoFailure);
    EXPECT_THAT(opened.status().message(), StartsWith("device capsule"));
  }
  {
    wire::Envelope e = Resign(honest, [](wire::EnvelopeContent& c) {
      std::string body = c.body();
      body.back() ^= 1;
      c.set_body(body);
    });
    auto opened = OpenAs(e, devices_[0]);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), Code::kCryptoFailure);
    EXPECT_THAT(opened.status().message(), StartsWith("body"));
  }
  {
    wire::Envelope e = Resign(honest, [](wire::EnvelopeContent& c) {
      std::string enc = c.devices(2).enc();
      enc[5] ^= 1;
      c.mutable_devices(2)->set_enc(enc);
    });
    auto opened = OpenAs(e, devices_[2]);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), Code::kCryptoFailure);
    EXPECT_THAT(opened.status().message(), StartsWith("device capsule"));
    // The other devices are unaffected.
    EXPECT_TRUE(OpenAs(e, devices_[0]).ok());
  }
}

TEST_F(EnvelopeTest, SignatureFromAnotherDeviceIsRejected) {
  wire::Envelope envelope = Seal();
  auto parsed = ParseEnvelope(envelope);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(VerifyEnvelopeSignature(*parsed, devices_[0].identity.public_key).code(),
            Code::kCryptoFailure);

  // Signed by a real key whose device id is not the header's sender_device.
  Device impostor = MakeDevice("alice");
  wire::Envelope resigned = envelope;
  auto sig = Ed25519Sign(impostor.identity.private_key.view(),
                         Concat({AsBytes(labels::kEnvelopeSig), View(envelope.content())}));
  ASSERT_TRUE(sig.ok());
  resigned.set_signature(AsString(*sig));
  auto reparsed = ParseEnvelope(resigned);
  ASSERT_TRUE(reparsed.ok());
  Status status = VerifyEnvelopeSignature(*reparsed, impostor.identity.public_key);
  EXPECT_EQ(status.code(), Code::kCryptoFailure);
  EXPECT_THAT(status.message(), HasSubstr("sender device"));
}

TEST_F(EnvelopeTest, ArchiveOpensWithHsmStyleDh) {
  auto parsed = ParseEnvelope(Seal());
  ASSERT_TRUE(parsed.ok());
  auto dh = EcdhP256(archive_.private_key.view(), View(parsed->content.archive().enc()));
  ASSERT_TRUE(dh.ok());
  auto opened = OpenWithArchiveDh(*parsed, dh->view(), archive_.public_key);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->text, "the quarterly numbers are in");
  EXPECT_EQ(opened->header.message_id(), parsed->header.message_id());

  Bytes wrong = dh->Reveal();
  wrong[0] ^= 1;
  auto bad = OpenWithArchiveDh(*parsed, wrong, archive_.public_key);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kCryptoFailure);
}

TEST_F(EnvelopeTest, ArchiveDhPathCatchesANonDeterministicCapsule) {
  wire::Envelope honest = Seal();
  auto parsed = ParseEnvelope(honest);
  ASSERT_TRUE(parsed.ok());
  SecretBytes cek = CekOf(*parsed);
  // A capsule that decrypts to the right CEK but with a random ephemeral key.
  Bytes info = Concat({AsBytes(labels::kArchiveCapsuleInfo), Bytes{0, 0, 0, 7}});
  auto sealed = hpke::Seal(hpke::kArchiveSuite, archive_.public_key, info,
                           View(parsed->content.header()), cek.view());
  ASSERT_TRUE(sealed.ok());
  wire::Envelope cheating = Resign(honest, [&](wire::EnvelopeContent& c) {
    c.mutable_archive()->set_enc(AsString(sealed->enc));
    c.mutable_archive()->set_ct(AsString(sealed->ct));
  });
  auto reparsed = ParseEnvelope(cheating);
  ASSERT_TRUE(reparsed.ok());
  auto dh = EcdhP256(archive_.private_key.view(), sealed->enc);
  ASSERT_TRUE(dh.ok());
  auto opened = OpenWithArchiveDh(*reparsed, dh->view(), archive_.public_key);
  ASSERT_FALSE(opened.ok());
  EXPECT_THAT(opened.status().message(), StartsWith("archive capsule mismatch"));
}

TEST_F(EnvelopeTest, SealRejectsBadRequests) {
  const ByteView key = sender_.identity.private_key.view();
  {
    SealRequest r = Request();
    r.sender_device = devices_[0].id;
    EXPECT_EQ(SealMessage(r, key).status().code(), Code::kInvalidArgument);
  }
  {
    SealRequest r = Request();
    r.sender_device.clear();
    auto e = SealMessage(r, key);
    ASSERT_TRUE(e.ok());
    auto parsed = ParseEnvelope(*e);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->header.sender_device(), AsString(sender_.id));
  }
  {
    SealRequest r = Request();
    r.message_id = Bytes(15);
    EXPECT_EQ(SealMessage(r, key).status().code(), Code::kInvalidArgument);
  }
  {
    SealRequest r = Request();
    r.recipients.push_back(r.recipients[0]);
    EXPECT_EQ(SealMessage(r, key).status().code(), Code::kInvalidArgument);
  }
  {
    SealRequest r = Request();
    r.recipients.clear();
    EXPECT_EQ(SealMessage(r, key).status().code(), Code::kInvalidArgument);
  }
  {
    SealRequest r = Request();
    r.archive_public.back() ^= 1;  // off the curve
    EXPECT_FALSE(SealMessage(r, key).ok());
  }
  {
    SealRequest r = Request();
    r.recipients[1].prekey_public = Bytes(32, 0);  // small order
    EXPECT_FALSE(SealMessage(r, key).ok());
  }
}

TEST_F(EnvelopeTest, GivenMessageIdIsUsed) {
  SealRequest r = Request();
  r.message_id = Bytes(16, 0xab);
  auto e = SealMessage(r, sender_.identity.private_key.view());
  ASSERT_TRUE(e.ok());
  auto parsed = ParseEnvelope(*e);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->header.message_id(), std::string(16, '\xab'));
  EXPECT_TRUE(parsed->header.resend_of().empty());
}

TEST_F(EnvelopeTest, AResentMessageNamesItsOriginal) {
  SealRequest r = Request();
  r.resend_of = Bytes(16, 0x5e);
  auto e = SealMessage(r, sender_.identity.private_key.view());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto parsed = ParseEnvelope(*e);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->header.resend_of(), std::string(16, '\x5e'));
  EXPECT_NE(parsed->header.message_id(), parsed->header.resend_of());
  r.resend_of = Bytes(15, 0x5e);
  EXPECT_EQ(SealMessage(r, sender_.identity.private_key.view()).status().code(),
            Code::kInvalidArgument);
  r.message_id = Bytes(16, 0x5e);
  r.resend_of = r.message_id;
  EXPECT_EQ(SealMessage(r, sender_.identity.private_key.view()).status().code(),
            Code::kInvalidArgument);
}

// ------------------------------------------------------------- parsing

class ParseEnvelopeTest : public EnvelopeTest {
 protected:
  // Edits content and header of an honest envelope; signatures are irrelevant
  // to ParseEnvelope.
  Status ParseEdited(const std::function<void(wire::EnvelopeContent&, wire::MessageHeader&)>& edit) {
    wire::Envelope e = Seal();
    wire::EnvelopeContent c;
    EXPECT_TRUE(c.ParseFromString(e.content()));
    wire::MessageHeader h;
    EXPECT_TRUE(h.ParseFromString(c.header()));
    edit(c, h);
    c.set_header(h.SerializeAsString());
    e.set_content(c.SerializeAsString());
    auto parsed = ParseEnvelope(e);
    return parsed.ok() ? Status::Ok() : parsed.status();
  }
};

TEST_F(ParseEnvelopeTest, AcceptsHonestEnvelope) {
  EXPECT_TRUE(ParseEdited([](auto&, auto&) {}).ok());
}

TEST_F(ParseEnvelopeTest, RejectsBadProtobuf) {
  const Bytes garbage = {0xff, 0xff, 0xff, 0xff, 0x0f};
  auto parsed = ParseEnvelope(ByteView(garbage));
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(parsed.status().message(), HasSubstr("bad protobuf"));

  wire::Envelope e = Seal();
  e.set_content("\xff\xff\xff");
  EXPECT_THAT(ParseEnvelope(e).status().message(), HasSubstr("content is a bad protobuf"));

  Status s = ParseEdited([](wire::EnvelopeContent&, wire::MessageHeader&) {});
  EXPECT_TRUE(s.ok());
  wire::Envelope h = Seal();
  wire::EnvelopeContent c;
  c.ParseFromString(h.content());
  c.set_header("\x0a\xff");
  h.set_content(c.SerializeAsString());
  EXPECT_THAT(ParseEnvelope(h).status().message(), HasSubstr("header is a bad protobuf"));
}

TEST_F(ParseEnvelopeTest, RejectsOversizedInput) {
  Bytes huge(kMaxEnvelopeSize + 1);
  EXPECT_THAT(ParseEnvelope(ByteView(huge)).status().message(), HasSubstr("size limit"));
  EXPECT_THAT(ParseEdited([](auto&, wire::MessageHeader& h) {
                h.set_conversation_id(std::string(kMaxNameSize + 1, 'c'));
              }).message(),
              HasSubstr("conversation id too long"));
  EXPECT_THAT(ParseEdited([](wire::EnvelopeContent& c, auto&) {
                c.mutable_devices(0)->set_user(std::string(kMaxNameSize + 1, 'u'));
              }).message(),
              HasSubstr("capsule user too long"));
  EXPECT_THAT(ParseEdited([](wire::EnvelopeContent& c, auto&) {
                const wire::DeviceCapsule first = c.devices(0);
                for (size_t i = 0; i <= kMaxDeviceCapsules; ++i) {
                  wire::DeviceCapsule* d = c.add_devices();
                  *d = first;
                  std::string id = first.device_id();
                  id[0] = static_cast<char>(i);
                  id[1] = static_cast<char>(i >> 8);
                  d->set_device_id(id);
                }
              }).message(),
              HasSubstr("too many device capsules"));
}

TEST_F(ParseEnvelopeTest, RejectsEachMalformedField) {
  struct Case {
    const char* expect;
    std::function<void(wire::EnvelopeContent&, wire::MessageHeader&)> edit;
  };
  const std::vector<Case> cases = {
      {"unsupported version 2", [](auto&, auto& h) { h.set_version(2); }},
      {"unsupported version 0", [](auto&, auto& h) { h.clear_version(); }},
      {"message id must be 16 bytes", [](auto&, auto& h) { h.set_message_id("short"); }},
      {"sender device must be 16 bytes",
       [](auto&, auto& h) { h.set_sender_device(std::string(17, 'd')); }},
      {"no device capsules", [](auto& c, auto&) { c.clear_devices(); }},
      {"capsule device id must be 16 bytes",
       [](auto& c, auto&) { c.mutable_devices(1)->set_device_id("x"); }},
      {"device capsule enc must be 32 bytes",
       [](auto& c, auto&) { c.mutable_devices(1)->set_enc(std::string(33, 'e')); }},
      {"device capsule ct must be 48 bytes",
       [](auto& c, auto&) { c.mutable_devices(1)->set_ct(std::string(47, 'c')); }},
      {"duplicate device id",
       [](auto& c, auto&) { c.mutable_devices(2)->set_device_id(c.devices(0).device_id()); }},
      {"missing archive capsule", [](auto& c, auto&) { c.clear_archive(); }},
      {"archive capsule epoch differs from header epoch",
       [](auto& c, auto&) { c.mutable_archive()->set_epoch_id(8); }},
      {"archive capsule epoch differs from header epoch",
       [](auto&, auto& h) { h.set_epoch_id(6); }},
      {"archive capsule enc must be 65 bytes",
       [](auto& c, auto&) { c.mutable_archive()->set_enc(std::string(33, '\x02')); }},
      {"archive capsule ct must be 48 bytes",
       [](auto& c, auto&) { c.mutable_archive()->set_ct(""); }},
      {"body shorter than an AEAD tag", [](auto& c, auto&) { c.set_body("tiny"); }},
      {"resend_of must be empty or another 16-byte id",
       [](auto&, auto& h) { h.set_resend_of("short"); }},
      {"resend_of must be empty or another 16-byte id",
       [](auto&, auto& h) { h.set_resend_of(h.message_id()); }},
  };
  for (const Case& k : cases) {
    Status s = ParseEdited(k.edit);
    ASSERT_FALSE(s.ok()) << k.expect;
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << k.expect;
    EXPECT_THAT(s.message(), HasSubstr(k.expect));
  }
  wire::Envelope e = Seal();
  e.set_signature(std::string(63, 's'));
  EXPECT_THAT(ParseEnvelope(e).status().message(), HasSubstr("signature must be 64 bytes"));
}

// ------------------------------------------------------ keys and certs

TEST(DeviceIdTest, IsTruncatedLabelledHash) {
  Bytes key = RandomBytes(32);
  Bytes id = DeviceIdFor(key);
  ASSERT_EQ(id.size(), kDeviceIdSize);
  Bytes digest = Sha256(Concat({AsBytes("holdfast/v1 device-id"), key}));
  EXPECT_EQ(id, Bytes(digest.begin(), digest.begin() + 16));
}

TEST(AuthTranscriptTest, Layout) {
  Bytes nonce(32, 0x11), device(16, 0x22);
  EXPECT_EQ(AuthTranscript(nonce, device),
            Concat({AsBytes("holdfast/v1 auth"), nonce, device}));
}

TEST(PrekeyTest, SignVerifyAndTamper) {
  Device d = MakeDevice("carol");
  auto signed_prekey = SignPrekey(d.identity.private_key.view(), d.prekey.public_key, 1234);
  ASSERT_TRUE(signed_prekey.ok());
  EXPECT_TRUE(VerifyPrekey(d.identity.public_key, *signed_prekey).ok());

  // The signed bytes are label || key || created_at as 8-byte big-endian.
  Bytes input = Concat({AsBytes("holdfast/v1 prekey"), d.prekey.public_key,
                        Bytes{0, 0, 0, 0, 0, 0, 0x04, 0xd2}});
  EXPECT_TRUE(
      Ed25519Verify(d.identity.public_key, input, View(signed_prekey->signature())).ok());

  wire::SignedPrekey later = *signed_prekey;
  later.set_created_at_ms(1235);
  EXPECT_EQ(VerifyPrekey(d.identity.public_key, later).code(), Code::kCryptoFailure);
  wire::SignedPrekey other_key = *signed_prekey;
  other_key.set_public_key(std::string(32, 'k'));
  EXPECT_EQ(VerifyPrekey(d.identity.public_key, other_key).code(), Code::kCryptoFailure);
  EXPECT_FALSE(SignPrekey(d.identity.private_key.view(), Bytes(31), 1).ok());

  wire::DeviceInfo info;
  info.set_user("carol");
  info.set_device_id(AsString(d.id));
  info.set_identity_key(AsString(d.identity.public_key));
  *info.mutable_prekey() = *signed_prekey;
  EXPECT_TRUE(VerifyDeviceInfo(info).ok());
  wire::DeviceInfo wrong_id = info;
  wrong_id.set_device_id(std::string(16, 'x'));
  EXPECT_FALSE(VerifyDeviceInfo(wrong_id).ok());
  wire::DeviceInfo wrong_prekey = info;
  wrong_prekey.mutable_prekey()->set_created_at_ms(1);
  EXPECT_FALSE(VerifyDeviceInfo(wrong_prekey).ok());
  wire::DeviceInfo no_prekey = info;
  no_prekey.clear_prekey();
  EXPECT_FALSE(VerifyDeviceInfo(no_prekey).ok());
}

// An org root key held in the test; production keeps it in the HSM.
class OrgRoot {
 public:
  OrgRoot() : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free) {
    if (!key_) std::abort();
    public_key_.resize(65);
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(key_.get(), OSSL_PKEY_PARAM_PUB_KEY, public_key_.data(),
                                        public_key_.size(), &len) != 1 ||
        len != 65) {
      std::abort();
    }
  }

  const Bytes& public_key() const { return public_key_; }

  Bytes SignP1363(ByteView message) const {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                 EVP_MD_CTX_free);
    size_t len = 0;
    if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size()) != 1) {
      std::abort();
    }
    Bytes der(len);
    if (EVP_DigestSign(ctx.get(), der.data(), &len, message.data(), message.size()) != 1) {
      std::abort();
    }
    der.resize(len);
    auto p1363 = EcdsaDerToP1363(der);
    if (!p1363.ok()) std::abort();
    return *p1363;
  }

 private:
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_{nullptr, EVP_PKEY_free};
  Bytes public_key_;
};

TEST(EpochCertificateTest, VerifiesSignatureAndWindow) {
  OrgRoot root;
  auto epoch_key = hpke::GenerateKeyPair(hpke::KemId::kP256HkdfSha256);
  ASSERT_TRUE(epoch_key.ok());
  wire::EpochCertificateBody body;
  body.set_version(1);
  body.set_epoch_id(7);
  body.set_public_key(AsString(epoch_key->public_key));
  body.set_not_before_ms(1000);
  body.set_not_after_ms(2000);
  body.set_org("example");
  wire::EpochCertificate cert;
  cert.set_body(body.SerializeAsString());
  cert.set_signature(AsString(root.SignP1363(EpochCertificateSigningInput(View(cert.body())))));

  EXPECT_EQ(EpochCertificateSigningInput(View(cert.body())),
            Concat({AsBytes("holdfast/v1 epoch-cert"), View(cert.body())}));
  auto verified = VerifyEpochCertificate(cert, root.public_key(), 1500);
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ(verified->epoch_id(), 7u);
  EXPECT_EQ(verified->public_key(), AsString(epoch_key->public_key));
  EXPECT_TRUE(VerifyEpochCertificate(cert, root.public_key(), 0).ok());
  EXPECT_TRUE(VerifyEpochCertificate(cert, root.public_key(), 1000).ok());
  EXPECT_EQ(VerifyEpochCertificate(cert, root.public_key(), 999).status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(VerifyEpochCertificate(cert, root.public_key(), 2000).status().code(),
            Code::kFailedPrecondition);

  OrgRoot other;
  EXPECT_EQ(VerifyEpochCertificate(cert, other.public_key(), 1500).status().code(),
            Code::kCryptoFailure);
  wire::EpochCertificate tampered = cert;
  body.set_not_after_ms(9000);
  tampered.set_body(body.SerializeAsString());
  EXPECT_EQ(VerifyEpochCertificate(tampered, root.public_key(), 1500).status().code(),
            Code::kCryptoFailure);
  // A body signed without the label does not verify.
  wire::EpochCertificate unlabelled = cert;
  unlabelled.set_signature(AsString(root.SignP1363(View(cert.body()))));
  EXPECT_EQ(VerifyEpochCertificate(unlabelled, root.public_key(), 1500).status().code(),
            Code::kCryptoFailure);
}

}  // namespace
}  // namespace holdfast::protocol
