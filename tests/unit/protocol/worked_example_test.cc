// The worked example of docs/protocol.md, computed from fixed inputs.
//
// Every hex constant below is also printed in the "Worked example" section of
// docs/protocol.md. The test recomputes each value with the protocol library
// and checks that it equals the constant AND that the constant is printed in
// the document as a whole value, so the specification cannot drift from the
// code.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "hpke_internal.h"

namespace holdfast::protocol {
namespace {

ByteView View(const std::string& s) { return AsBytes(s); }

// n bytes first, first + 1, ... (mod 256).
Bytes Sequence(uint8_t first, size_t n) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(first + i);
  return out;
}

template <typename T>
T Must(Result<T> r) {
  if (!r.ok()) throw std::runtime_error(r.status().message());
  return std::move(r).value();
}

// ------------------------------------------------------------ fixed inputs

const Bytes kIdentitySeed = Sequence(0x00, 32);        // sender Ed25519 seed
const Bytes kRecipientPrekeyPrivate = Sequence(0x20, 32);  // recipient X25519
const Bytes kArchivePrivate = Sequence(0x40, 32);      // epoch P-256 scalar
const Bytes kCek = Sequence(0x60, 32);
const Bytes kMessageId = Sequence(0x80, 16);
const Bytes kDeviceEphemeralPrivate = Sequence(0xa0, 32);  // normally random
const Bytes kAuthNonce = Sequence(0xc0, 32);
const Bytes kRecipientIdentitySeed = Sequence(0xe0, 32);  // recipient Ed25519 seed
constexpr int64_t kPrekeyCreatedAtMs = 1'700'000'000'000;
const Bytes kPrekeyCreatedAtBe64 = {0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00};
constexpr int64_t kSentAtMs = 1'700'000'123'456;
constexpr uint32_t kEpochId = 7;
const std::string kConversationId = "c_0123456789abcdef";
const std::string kSenderUser = "alice";
const std::string kRecipientUser = "bob";
const std::string kText = "hello";

// --------------------------------------------------- expected (in the doc)

struct Expected {
  const char* name;
  const char* hex;
};

constexpr Expected kIdentityPublic{
    "identity_public", "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"};
constexpr Expected kSenderDevice{"sender_device", "5c8c8fa6480f24b1acf2f63b06073002"};
constexpr Expected kRecipientPrekeyPublic{
    "recipient_prekey_public", "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254"};
constexpr Expected kRecipientIdentityPublic{
    "recipient_identity_public",
    "13d9908a70925992ed546007d27f50da68ba7217ef62ac3cca784529ff10471c"};
constexpr Expected kRecipientDevice{"recipient_device", "97128dad50d6c8b4a644f4908f92806a"};
constexpr Expected kPrekeySigningInput{
    "prekey_signing_input",
    "686f6c64666173742f7631207072656b6579358072d6365880d1aeea329adf91"
    "21383851ed21a28e3b75e965d0d2cd1662540000018bcfe56800"};
constexpr Expected kPrekeySignature{
    "prekey_signature",
    "6a15f9f08018d172d60fd86438aa6c7160079d58cdca049e263280e892859c99"
    "d9a8424629de968b0eececb28002416680db54d156b4fc7ffd1ad83b5384990f"};
constexpr Expected kArchivePublic{
    "archive_public",
    "0468ec7cf08cd4106e43b14de895426522bd0a45150c027e45c7953434d747e7"
    "bae3af39a88ebbee8679bb61e7845c3a89cb9b5a3237c3fdb0b0587dbaf41511"
    "8d"};
constexpr Expected kHeaderBytes{
    "header",
    "08011210808182838485868788898a8b8c8d8e8f1a12635f3031323334353637"
    "38396162636465662205616c6963652a105c8c8fa6480f24b1acf2f63b060730"
    "0230c0949dffbc313807"};
constexpr Expected kBodyKey{
    "body_key", "596351193a4b2fa4fe34ce83ee090b6271210113fbbbc1926353d8a9548a7b65"};
constexpr Expected kBodyPlaintext{"body_plaintext", "0a0568656c6c6f"};
constexpr Expected kBodyCiphertext{"body", "49060347673e1f67025dc7d7180dbc56b713b7b689b140"};
constexpr Expected kDeviceEnc{
    "device_enc", "605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23c"};
constexpr Expected kDeviceCt{
    "device_ct",
    "6e513e878062fabd8caa74fd64e00042ade1709cfab45ca82fee809c0c0a908c"
    "324e787639267315fd031eaaf342fbdc"};
constexpr Expected kArchiveIkmE{
    "archive_ikm_e", "7d276d0b13dc045384c069a8d754f6388dfe8cc117cdad8eaa617a8d11ea850b"};
constexpr Expected kArchiveSkE{
    "archive_sk_e", "9685678e29ba7bf264cf707af44128ee866b267ebdcd023392dbe936b4715d6d"};
constexpr Expected kArchiveEnc{
    "archive_enc",
    "0465ff3041c477bde2b9558a79d99bb077fc081225dd9869e510dfc061f2877f"
    "80970c68b2f67826fdf5d233f1d8f7ee8c393a8ad64b485ad8e7d33d763110cf"
    "0e"};
constexpr Expected kDeviceSharedSecret{
    "device_shared_secret", "92b1c0ad288f77b3a4166ed643ba657f59e1ab1cbd5cbcac0f12f789a1704608"};
constexpr Expected kDeviceKey{
    "device_key", "b6885ed28c74050e0bdcb9a09130b2a2507a15600bbc8b6780f2c92bee474fad"};
constexpr Expected kDeviceBaseNonce{"device_base_nonce", "9fd6fa46b15c1d33859e163f"};
constexpr Expected kArchiveInfo{
    "archive_info", "686f6c64666173742f763120617263686976652d63617073756c6500000007"};
constexpr Expected kArchiveDh{
    "archive_dh", "3215192419e57d1345c657bd8f2bcfa7db9487ab1fe82b9ad567fd273333a207"};
constexpr Expected kArchiveSharedSecret{
    "archive_shared_secret", "dae86878030d34d8217cc9e5fc53127a45704965c804d3b2a3f4379446baa949"};
constexpr Expected kArchiveKey{
    "archive_key", "e9544ac2ceae36742c13b0f21849af6c14dd6cf71dee795b190cd893392da0c4"};
constexpr Expected kArchiveBaseNonce{"archive_base_nonce", "ddf3aaddb238a72088a329a5"};
constexpr Expected kArchiveCt{
    "archive_ct",
    "cc5f70a9f2c624493bc68d2b97feff99c71ba47c9a77059502c6eb3275dff432"
    "7acc8ad07ba7e27739e81a59b7401fdc"};
constexpr Expected kContent{
    "content",
    "0a4a08011210808182838485868788898a8b8c8d8e8f1a12635f303132333435"
    "363738396162636465662205616c6963652a105c8c8fa6480f24b1acf2f63b06"
    "07300230c0949dffbc313807121749060347673e1f67025dc7d7180dbc56b713"
    "b7b689b1401a6b0a03626f62121097128dad50d6c8b4a644f4908f92806a1a20"
    "605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23c"
    "22306e513e878062fabd8caa74fd64e00042ade1709cfab45ca82fee809c0c0a"
    "908c324e787639267315fd031eaaf342fbdc2277080712410465ff3041c477bd"
    "e2b9558a79d99bb077fc081225dd9869e510dfc061f2877f80970c68b2f67826"
    "fdf5d233f1d8f7ee8c393a8ad64b485ad8e7d33d763110cf0e1a30cc5f70a9f2"
    "c624493bc68d2b97feff99c71ba47c9a77059502c6eb3275dff4327acc8ad07b"
    "a7e27739e81a59b7401fdc"};
constexpr Expected kEnvelopeSignature{
    "envelope_signature",
    "e3addac4cc87e9c948a24b735aa7efeeedd6b1dfa92e355e8e0b5fccd3441e5f"
    "4fe1378c57541e9a0c88556c1b060978d07f922bfc9f49b53184b7f90189da09"};
constexpr Expected kAuthSignature{
    "auth_signature",
    "f9eb0686837cbef75a5d07bb2945fd5b63fb89a0b1935a93b5ba18ae4947dbc7"
    "490c8342bf318fa628fca04b11b71a4f9e92a9817a6161986905ef70125f8d03"};

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// The hex values printed in docs/protocol.md: every whitespace-separated
// word that is all hex, and every run of consecutive lines that are all hex
// (a long value wrapped over several lines), joined. A constant must be one
// of these values exactly, not merely a substring of a longer one.
std::set<std::string> ProtocolDocValues() {
  std::ifstream in(std::string(HOLDFAST_SOURCE_DIR) + "/docs/protocol.md");
  std::set<std::string> values;
  std::string line, run;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> parts;
    for (std::string w; words >> w;) parts.push_back(w);
    if (parts.size() == 1 && IsHex(parts[0])) {
      run += parts[0];
      continue;
    }
    if (!run.empty()) values.insert(std::exchange(run, {}));
    for (const std::string& w : parts) {
      if (IsHex(w)) values.insert(w);
    }
  }
  if (!run.empty()) values.insert(run);
  return values;
}

class WorkedExampleTest : public ::testing::Test {
 protected:
  void Check(const Expected& e, ByteView actual) {
    const std::string hex = ToHex(actual);
    EXPECT_EQ(hex, e.hex) << e.name;
    checked_.push_back(e);
  }

  void TearDown() override {
    const std::set<std::string> doc = ProtocolDocValues();
    ASSERT_FALSE(doc.empty()) << "cannot read docs/protocol.md";
    for (const Expected& e : checked_) {
      EXPECT_NE(std::string(e.hex), "") << e.name;
      EXPECT_EQ(doc.count(e.hex), 1u)
          << e.name << " = " << e.hex << " is not printed in docs/protocol.md";
    }
  }

  std::vector<Expected> checked_;
};

TEST_F(WorkedExampleTest, ReproducesEveryValueOfTheDocument) {
  // Keys.
  Ed25519KeyPair identity = Must(Ed25519FromSeed(kIdentitySeed));
  Check(kIdentityPublic, identity.public_key);
  const Bytes sender_device = DeviceIdFor(identity.public_key);
  Bytes digest = Sha256(Concat({AsBytes(labels::kDeviceId), identity.public_key}));
  digest.resize(kDeviceIdSize);
  EXPECT_EQ(sender_device, digest);
  Check(kSenderDevice, sender_device);

  const Bytes recipient_public =
      Must(hpke::PublicKeyFromPrivate(hpke::KemId::kX25519HkdfSha256, kRecipientPrekeyPrivate));
  Check(kRecipientPrekeyPublic, recipient_public);
  // The recipient device: identity, device id, signed prekey.
  Ed25519KeyPair recipient_identity = Must(Ed25519FromSeed(kRecipientIdentitySeed));
  Check(kRecipientIdentityPublic, recipient_identity.public_key);
  const Bytes recipient_device = DeviceIdFor(recipient_identity.public_key);
  Check(kRecipientDevice, recipient_device);
  Check(kPrekeySigningInput,
        Concat({AsBytes(labels::kPrekeySig), recipient_public, kPrekeyCreatedAtBe64}));
  wire::SignedPrekey prekey =
      Must(SignPrekey(kRecipientIdentitySeed, recipient_public, kPrekeyCreatedAtMs));
  Check(kPrekeySignature, View(prekey.signature()));
  ASSERT_TRUE(Ed25519Verify(recipient_identity.public_key,
                            Concat({AsBytes(labels::kPrekeySig), recipient_public,
                                    kPrekeyCreatedAtBe64}),
                            View(prekey.signature()))
                  .ok());
  wire::DeviceInfo recipient_info;
  recipient_info.set_user(kRecipientUser);
  recipient_info.set_device_id(AsString(recipient_device));
  recipient_info.set_identity_key(AsString(recipient_identity.public_key));
  *recipient_info.mutable_prekey() = prekey;
  ASSERT_TRUE(VerifyDeviceInfo(recipient_info).ok());

  const Bytes archive_public =
      Must(hpke::PublicKeyFromPrivate(hpke::KemId::kP256HkdfSha256, kArchivePrivate));
  Check(kArchivePublic, archive_public);

  // Header.
  wire::MessageHeader header;
  header.set_version(labels::kProtocolVersion);
  header.set_message_id(AsString(kMessageId));
  header.set_conversation_id(kConversationId);
  header.set_sender_user(kSenderUser);
  header.set_sender_device(AsString(sender_device));
  header.set_sent_at_ms(kSentAtMs);
  header.set_epoch_id(kEpochId);
  const std::string header_bytes = header.SerializeAsString();
  Check(kHeaderBytes, View(header_bytes));

  // Body.
  SecretBytes body_key = Must(Hkdf({}, kCek, AsBytes(labels::kBodyKey), 32));
  Check(kBodyKey, body_key.view());
  wire::MessageBody body;
  body.set_text(kText);
  const std::string body_plaintext = body.SerializeAsString();
  Check(kBodyPlaintext, View(body_plaintext));
  const uint8_t zero_nonce[kAeadNonceSize] = {};
  const Bytes body_ct = Must(AeadSeal(Aead::kChaCha20Poly1305, body_key.view(), zero_nonce,
                                      View(header_bytes), View(body_plaintext)));
  Check(kBodyCiphertext, body_ct);

  // Device capsule, with a fixed ephemeral key in place of a random one.
  hpke::KeyPair device_ephemeral{
      SecretBytes(ByteView(kDeviceEphemeralPrivate)),
      Must(hpke::PublicKeyFromPrivate(hpke::KemId::kX25519HkdfSha256, kDeviceEphemeralPrivate))};
  hpke::SenderContext device_ctx =
      Must(hpke::SetupBaseSenderWithEphemeral(hpke::kDeviceSuite, device_ephemeral,
                                              recipient_public,
                                              AsBytes(labels::kDeviceCapsuleInfo)));
  const Bytes device_ct = Must(device_ctx.Seal(View(header_bytes), kCek));
  hpke::Encapsulation device_encap = Must(hpke::internal::EncapWithEphemeral(
      hpke::KemId::kX25519HkdfSha256, device_ephemeral, recipient_public));
  Check(kDeviceSharedSecret, device_encap.shared_secret.view());
  Check(kDeviceKey, hpke::ContextAccess::Key(device_ctx).view());
  Check(kDeviceBaseNonce, hpke::ContextAccess::BaseNonce(device_ctx).view());
  Check(kDeviceEnc, device_ctx.enc());
  Check(kDeviceCt, device_ct);

  // Archive capsule, step by step.
  SecretBytes ikm_e = Must(Hkdf(kMessageId, kCek, AsBytes(labels::kArchiveEphemeral), 32));
  Check(kArchiveIkmE, ikm_e.view());
  hpke::KeyPair archive_ephemeral =
      Must(hpke::DeriveKeyPair(hpke::KemId::kP256HkdfSha256, ikm_e.view()));
  Check(kArchiveSkE, archive_ephemeral.private_key.view());
  const Bytes archive_info =
      Concat({AsBytes(labels::kArchiveCapsuleInfo), Bytes{0x00, 0x00, 0x00, 0x07}});
  Check(kArchiveInfo, archive_info);
  hpke::SenderContext archive_ctx = Must(hpke::SetupBaseSenderWithEphemeral(
      hpke::kArchiveSuite, archive_ephemeral, archive_public, archive_info));
  SecretBytes archive_dh = Must(EcdhP256(archive_ephemeral.private_key.view(), archive_public));
  Check(kArchiveDh, archive_dh.view());
  hpke::Encapsulation archive_encap = Must(hpke::internal::EncapWithEphemeral(
      hpke::KemId::kP256HkdfSha256, archive_ephemeral, archive_public));
  Check(kArchiveSharedSecret, archive_encap.shared_secret.view());
  Check(kArchiveKey, hpke::ContextAccess::Key(archive_ctx).view());
  Check(kArchiveBaseNonce, hpke::ContextAccess::BaseNonce(archive_ctx).view());
  const Bytes archive_ct = Must(archive_ctx.Seal(View(header_bytes), kCek));
  Check(kArchiveEnc, archive_ctx.enc());
  Check(kArchiveCt, archive_ct);
  EXPECT_EQ(archive_ctx.enc(), archive_ephemeral.public_key);

  // The library's own deterministic capsule is the same.
  wire::ArchiveCapsule capsule = Must(
      ComputeArchiveCapsule(kCek, kMessageId, kEpochId, archive_public, View(header_bytes)));
  EXPECT_EQ(capsule.epoch_id(), kEpochId);
  EXPECT_EQ(ToHex(View(capsule.enc())), ToHex(archive_ctx.enc()));
  EXPECT_EQ(ToHex(View(capsule.ct())), ToHex(archive_ct));

  // Envelope content and signature.
  wire::EnvelopeContent content;
  content.set_header(header_bytes);
  content.set_body(AsString(body_ct));
  wire::DeviceCapsule* dc = content.add_devices();
  dc->set_user(kRecipientUser);
  dc->set_device_id(AsString(recipient_device));
  dc->set_enc(AsString(device_ctx.enc()));
  dc->set_ct(AsString(device_ct));
  *content.mutable_archive() = capsule;
  wire::Envelope envelope;
  envelope.set_content(content.SerializeAsString());
  Check(kContent, View(envelope.content()));
  const Bytes signature = Must(Ed25519Sign(
      kIdentitySeed, Concat({AsBytes(labels::kEnvelopeSig), View(envelope.content())})));
  envelope.set_signature(AsString(signature));
  Check(kEnvelopeSignature, signature);

  // The envelope passes every check a recipient and the archive make.
  ParsedEnvelope parsed = Must(ParseEnvelope(View(envelope.SerializeAsString())));
  ASSERT_TRUE(VerifyEnvelopeSignature(parsed, identity.public_key).ok());
  OpenedMessage opened = Must(OpenMessage(parsed, identity.public_key, recipient_device,
                                          kRecipientPrekeyPrivate, archive_public));
  EXPECT_EQ(opened.text, kText);
  // Disclosure: the HSM computes DH(sk_epoch, enc); it equals DH(skE, pkR).
  SecretBytes dh = Must(EcdhP256(kArchivePrivate, View(capsule.enc())));
  EXPECT_EQ(ToHex(dh.view()), kArchiveDh.hex);
  OpenedMessage disclosed = Must(OpenWithArchiveDh(parsed, dh.view(), archive_public));
  EXPECT_EQ(disclosed.text, kText);

  // Login transcript.
  const Bytes auth_sig =
      Must(Ed25519Sign(kIdentitySeed, AuthTranscript(kAuthNonce, sender_device)));
  Check(kAuthSignature, auth_sig);
  ASSERT_TRUE(Ed25519Verify(identity.public_key,
                            Concat({AsBytes(labels::kAuthSig), kAuthNonce, sender_device}),
                            auth_sig)
                  .ok());
}

}  // namespace
}  // namespace holdfast::protocol
