#include "holdfast/protocol/hpke.h"

#include <gtest/gtest.h>

#include <string>

#include "holdfast/protocol/primitives.h"
#include "hpke_internal.h"
#include "vector_files.h"

namespace holdfast::protocol::hpke {
namespace {

using Poco::JSON::Array;
using Poco::JSON::Object;
using testing::HexField;

constexpr AeadId kAllAeads[] = {AeadId::kAes128Gcm, AeadId::kAes256Gcm,
                                 AeadId::kChaCha20Poly1305};
constexpr KemId kAllKems[] = {KemId::kX25519HkdfSha256, KemId::kP256HkdfSha256};

Suite SuiteOf(const Object::Ptr& v) {
  return Suite{static_cast<KemId>(v->getValue<int>("kem_id")),
               static_cast<KdfId>(v->getValue<int>("kdf_id")),
               static_cast<AeadId>(v->getValue<int>("aead_id"))};
}

std::string Name(const Object::Ptr& v) {
  return "kem " + std::to_string(v->getValue<int>("kem_id")) + " aead " +
         std::to_string(v->getValue<int>("aead_id"));
}

Result<SecretBytes> ComputeDh(KemId kem, ByteView sk, ByteView pk) {
  return kem == KemId::kP256HkdfSha256 ? EcdhP256(sk, pk) : X25519(sk, pk);
}

template <typename Context>
void ExpectSchedule(const Context& c, const Object::Ptr& v, bool export_only) {
  if (!export_only) {
    EXPECT_EQ(ContextAccess::Key(c).Reveal(), HexField(v, "key")) << Name(v);
    EXPECT_EQ(ContextAccess::BaseNonce(c).Reveal(), HexField(v, "base_nonce")) << Name(v);
  }
  EXPECT_EQ(ContextAccess::ExporterSecret(c).Reveal(), HexField(v, "exporter_secret"))
      << Name(v);
}

template <typename Context>
void ExpectExports(const Context& c, const Object::Ptr& v) {
  Array::Ptr exports = v->getArray("exports");
  ASSERT_GT(exports->size(), 0u);
  for (size_t i = 0; i < exports->size(); ++i) {
    Object::Ptr e = exports->getObject(static_cast<unsigned>(i));
    auto value = c.Export(HexField(e, "exporter_context"), e->getValue<size_t>("L"));
    ASSERT_TRUE(value.ok()) << Name(v);
    EXPECT_EQ(value->Reveal(), HexField(e, "exported_value")) << Name(v) << " export " << i;
  }
}

// Opens every encryption of the vector in order, as a receiver must.
void ExpectOpensAll(ReceiverContext& r, const Object::Ptr& v) {
  Array::Ptr encryptions = v->getArray("encryptions");
  for (size_t i = 0; i < encryptions->size(); ++i) {
    Object::Ptr e = encryptions->getObject(static_cast<unsigned>(i));
    auto pt = r.Open(HexField(e, "aad"), HexField(e, "ct"));
    ASSERT_TRUE(pt.ok()) << Name(v) << " encryption " << i << ": " << pt.status().ToString();
    EXPECT_EQ(pt->Reveal(), HexField(e, "pt")) << Name(v) << " encryption " << i;
  }
}

TEST(HpkeTest, Rfc9180BaseModeVectors) {
  Array::Ptr vectors = testing::LoadArray("hpke/rfc9180-base.json");
  ASSERT_EQ(vectors->size(), 8u);  // {P-256, X25519} x {AES-128, AES-256, ChaCha, export}
  size_t encryptions_checked = 0;
  for (size_t n = 0; n < vectors->size(); ++n) {
    Object::Ptr v = vectors->getObject(static_cast<unsigned>(n));
    ASSERT_EQ(v->getValue<int>("mode"), 0);
    const Suite suite = SuiteOf(v);
    const bool export_only = suite.aead == AeadId::kExportOnly;
    const Bytes info = HexField(v, "info");
    SCOPED_TRACE(Name(v));

    auto eph = DeriveKeyPair(suite.kem, HexField(v, "ikmE"));
    auto rcp = DeriveKeyPair(suite.kem, HexField(v, "ikmR"));
    ASSERT_TRUE(eph.ok() && rcp.ok());
    EXPECT_EQ(eph->private_key.Reveal(), HexField(v, "skEm"));
    EXPECT_EQ(eph->public_key, HexField(v, "pkEm"));
    EXPECT_EQ(rcp->private_key.Reveal(), HexField(v, "skRm"));
    EXPECT_EQ(rcp->public_key, HexField(v, "pkRm"));
    auto pub = PublicKeyFromPrivate(suite.kem, HexField(v, "skRm"));
    ASSERT_TRUE(pub.ok());
    EXPECT_EQ(*pub, HexField(v, "pkRm"));

    auto encap = internal::EncapWithEphemeral(suite.kem, *eph, rcp->public_key);
    ASSERT_TRUE(encap.ok()) << encap.status().ToString();
    EXPECT_EQ(encap->enc, HexField(v, "enc"));
    EXPECT_EQ(encap->shared_secret.Reveal(), HexField(v, "shared_secret"));
    auto decap = internal::Decap(suite.kem, HexField(v, "enc"), rcp->private_key.view());
    ASSERT_TRUE(decap.ok());
    EXPECT_EQ(decap->Reveal(), HexField(v, "shared_secret"));

    auto sender = SetupBaseSenderWithEphemeral(suite, *eph, rcp->public_key, info);
    ASSERT_TRUE(sender.ok()) << sender.status().ToString();
    EXPECT_EQ(sender->enc(), HexField(v, "enc"));
    ExpectSchedule(*sender, v, export_only);

    auto receiver = SetupBaseReceiver(suite, HexField(v, "enc"), rcp->private_key.view(), info);
    ASSERT_TRUE(receiver.ok()) << receiver.status().ToString();
    ExpectSchedule(*receiver, v, export_only);

    auto dh = ComputeDh(suite.kem, rcp->private_key.view(), HexField(v, "pkEm"));
    ASSERT_TRUE(dh.ok());
    auto with_dh =
        SetupBaseReceiverWithDh(suite, HexField(v, "enc"), dh->view(), rcp->public_key, info);
    ASSERT_TRUE(with_dh.ok()) << with_dh.status().ToString();
    ExpectSchedule(*with_dh, v, export_only);

    Array::Ptr encryptions = v->getArray("encryptions");
    EXPECT_EQ(encryptions->size(), export_only ? 0u : 257u);
    for (size_t i = 0; i < encryptions->size(); ++i) {
      Object::Ptr e = encryptions->getObject(static_cast<unsigned>(i));
      // The vector lists nonces for seq = 0, 1, 2, ...
      Bytes nonce = ContextAccess::BaseNonce(*sender).Reveal();
      for (size_t b = 0; b < 8; ++b) nonce[11 - b] ^= static_cast<uint8_t>(i >> (8 * b));
      EXPECT_EQ(nonce, HexField(e, "nonce")) << "encryption " << i;
      auto ct = sender->Seal(HexField(e, "aad"), HexField(e, "pt"));
      ASSERT_TRUE(ct.ok());
      EXPECT_EQ(*ct, HexField(e, "ct")) << "encryption " << i;
      ++encryptions_checked;
    }
    ExpectOpensAll(*receiver, v);
    ExpectOpensAll(*with_dh, v);
    EXPECT_EQ(ContextAccess::Sequence(*receiver), encryptions->size());

    ExpectExports(*sender, v);
    ExpectExports(*receiver, v);
    ExpectExports(*with_dh, v);
    if (export_only) {
      EXPECT_FALSE(sender->Seal({}, {}).ok());
      EXPECT_FALSE(receiver->Open({}, Bytes(16)).ok());
    }
  }
  EXPECT_EQ(encryptions_checked, 6u * 257u);
}

TEST(HpkeTest, SingleShotRoundTripEverySuite) {
  for (KemId kem : kAllKems) {
    for (AeadId aead : kAllAeads) {
      Suite suite{kem, KdfId::kHkdfSha256, aead};
      auto rcp = GenerateKeyPair(kem);
      ASSERT_TRUE(rcp.ok());
      Bytes info = RandomBytes(9), aad = RandomBytes(5), pt = RandomBytes(32);
      auto sealed = Seal(suite, rcp->public_key, info, aad, pt);
      ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
      auto opened = Open(suite, rcp->private_key.view(), sealed->enc, info, aad, sealed->ct);
      ASSERT_TRUE(opened.ok()) << opened.status().ToString();
      EXPECT_EQ(opened->Reveal(), pt);

      Bytes other_info = info;
      other_info[0] ^= 1;
      EXPECT_EQ(Open(suite, rcp->private_key.view(), sealed->enc, other_info, aad, sealed->ct)
                    .status()
                    .code(),
                Code::kCryptoFailure);
      Bytes bad_ct = sealed->ct;
      bad_ct.back() ^= 1;
      EXPECT_EQ(
          Open(suite, rcp->private_key.view(), sealed->enc, info, aad, bad_ct).status().code(),
          Code::kCryptoFailure);
    }
  }
}

TEST(HpkeTest, FailedOpenDoesNotAdvanceSequence) {
  auto rcp = GenerateKeyPair(KemId::kX25519HkdfSha256);
  ASSERT_TRUE(rcp.ok());
  auto sender = SetupBaseSender(kDeviceSuite, rcp->public_key, {});
  ASSERT_TRUE(sender.ok());
  auto ct0 = sender->Seal({}, AsBytes("zero"));
  auto ct1 = sender->Seal({}, AsBytes("one"));
  ASSERT_TRUE(ct0.ok() && ct1.ok());
  auto receiver = SetupBaseReceiver(kDeviceSuite, sender->enc(), rcp->private_key.view(), {});
  ASSERT_TRUE(receiver.ok());
  EXPECT_FALSE(receiver->Open({}, *ct1).ok());
  EXPECT_EQ(ContextAccess::Sequence(*receiver), 0u);
  auto pt0 = receiver->Open({}, *ct0);
  auto pt1 = receiver->Open({}, *ct1);
  ASSERT_TRUE(pt0.ok() && pt1.ok());
  EXPECT_EQ(AsString(pt0->view()), "zero");
  EXPECT_EQ(AsString(pt1->view()), "one");
}

TEST(HpkeTest, DeriveKeyPairIsDeterministic) {
  for (KemId kem : kAllKems) {
    Bytes ikm = RandomBytes(32);
    auto a = DeriveKeyPair(kem, ikm);
    auto b = DeriveKeyPair(kem, ikm);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->private_key.Reveal(), b->private_key.Reveal());
    EXPECT_EQ(a->public_key, b->public_key);
    EXPECT_EQ(a->public_key.size(), kem == KemId::kP256HkdfSha256 ? 65u : 32u);
    EXPECT_FALSE(DeriveKeyPair(kem, Bytes(31)).ok());
  }
}

TEST(HpkeTest, RejectsInvalidP256Points) {
  auto rcp = GenerateKeyPair(KemId::kP256HkdfSha256);
  ASSERT_TRUE(rcp.ok());
  Bytes off_curve = rcp->public_key;
  off_curve.back() ^= 1;
  Bytes compressed(rcp->public_key.begin(), rcp->public_key.begin() + 33);
  compressed[0] = 0x02;
  Bytes infinity = {0x00};
  for (const Bytes& bad : {off_curve, compressed, infinity, Bytes(65, 0)}) {
    EXPECT_EQ(Seal(kArchiveSuite, bad, {}, {}, AsBytes("x")).status().code(),
              Code::kInvalidArgument);
    EXPECT_FALSE(Open(kArchiveSuite, rcp->private_key.view(), bad, {}, {}, Bytes(17)).ok());
    EXPECT_FALSE(
        SetupBaseReceiverWithDh(kArchiveSuite, bad, Bytes(32, 7), rcp->public_key, {}).ok());
    EXPECT_FALSE(
        SetupBaseReceiverWithDh(kArchiveSuite, rcp->public_key, Bytes(32, 7), bad, {}).ok());
  }
}

TEST(HpkeTest, RejectsSmallOrderX25519Keys) {
  auto rcp = GenerateKeyPair(KemId::kX25519HkdfSha256);
  ASSERT_TRUE(rcp.ok());
  // The identity and a point of order 8: DH with either is all zero.
  Bytes zero(32, 0);
  Bytes order8 = testing::Hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
  for (const Bytes& bad : {zero, order8}) {
    auto sealed = Seal(kDeviceSuite, bad, {}, {}, AsBytes("x"));
    ASSERT_FALSE(sealed.ok());
    EXPECT_EQ(sealed.status().code(), Code::kCryptoFailure);
    EXPECT_FALSE(SetupBaseReceiver(kDeviceSuite, bad, rcp->private_key.view(), {}).ok());
  }
  EXPECT_EQ(SetupBaseReceiverWithDh(kDeviceSuite, rcp->public_key, zero, rcp->public_key, {})
                .status()
                .code(),
            Code::kCryptoFailure);
  EXPECT_FALSE(
      SetupBaseReceiverWithDh(kDeviceSuite, rcp->public_key, Bytes(31, 1), rcp->public_key, {})
          .ok());
}

TEST(HpkeTest, RejectsUnknownSuites) {
  auto rcp = GenerateKeyPair(KemId::kX25519HkdfSha256);
  ASSERT_TRUE(rcp.ok());
  Suite bad_kdf{KemId::kX25519HkdfSha256, static_cast<KdfId>(2), AeadId::kAes128Gcm};
  Suite bad_aead{KemId::kX25519HkdfSha256, KdfId::kHkdfSha256, static_cast<AeadId>(9)};
  EXPECT_FALSE(SetupBaseSender(bad_kdf, rcp->public_key, {}).ok());
  EXPECT_FALSE(SetupBaseSender(bad_aead, rcp->public_key, {}).ok());
  EXPECT_FALSE(GenerateKeyPair(static_cast<KemId>(0x21)).ok());
}

}  // namespace
}  // namespace holdfast::protocol::hpke
