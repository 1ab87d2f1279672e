#include "holdfast/protocol/primitives.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "vector_files.h"

namespace holdfast::protocol {
namespace {

using Poco::JSON::Array;
using Poco::JSON::Object;
using testing::Hex;
using testing::HexField;
using testing::LoadObject;

struct Tally {
  int valid = 0;
  int invalid = 0;
  int acceptable = 0;
  void Count(const std::string& result) {
    if (result == "valid") ++valid;
    else if (result == "invalid") ++invalid;
    else ++acceptable;
  }
  int total() const { return valid + invalid + acceptable; }
};

bool HasFlag(const Object::Ptr& test, const std::string& flag) {
  Array::Ptr flags = test->getArray("flags");
  for (size_t i = 0; i < flags->size(); ++i) {
    if (flags->getElement<std::string>(static_cast<unsigned>(i)) == flag) return true;
  }
  return false;
}

std::string Where(const Object::Ptr& test) {
  return "tcId " + std::to_string(test->getValue<int>("tcId")) + " (" +
         test->getValue<std::string>("comment") + ")";
}

// Visits every test of every group of a Wycheproof file.
template <typename Fn>
int ForEachTest(const std::string& file, Fn fn) {
  Object::Ptr root = LoadObject(file);
  Array::Ptr groups = root->getArray("testGroups");
  int seen = 0;
  for (size_t g = 0; g < groups->size(); ++g) {
    Object::Ptr group = groups->getObject(static_cast<unsigned>(g));
    Array::Ptr tests = group->getArray("tests");
    for (size_t t = 0; t < tests->size(); ++t) {
      fn(group, tests->getObject(static_cast<unsigned>(t)));
      ++seen;
    }
  }
  EXPECT_EQ(seen, root->getValue<int>("numberOfTests")) << file;
  return seen;
}

// Wycheproof writes scalars as ASN.1-style integers (maybe a leading 00 or
// fewer than 32 bytes); the API takes exactly 32 big-endian bytes.
Bytes Scalar32(Bytes v) {
  while (v.size() > 32 && v.front() == 0) v.erase(v.begin());
  if (v.size() < 32) v.insert(v.begin(), 32 - v.size(), 0);
  return v;
}

TEST(Sha256Test, KnownAnswers) {
  EXPECT_EQ(ToHex(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ToHex(Sha256({})),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(RandomBytesTest, FillsAndDiffers) {
  Bytes a = RandomBytes(32);
  Bytes b = RandomBytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_TRUE(RandomBytes(std::span<uint8_t>()).ok());
}

TEST(HkdfTest, Wycheproof) {
  Tally tally;
  ForEachTest("wycheproof/hkdf_sha256_test.json", [&](const Object::Ptr&, const Object::Ptr& t) {
    const std::string result = t->getValue<std::string>("result");
    tally.Count(result);
    auto okm = Hkdf(HexField(t, "salt"), HexField(t, "ikm"), HexField(t, "info"),
                    t->getValue<size_t>("size"));
    if (result == "valid") {
      ASSERT_TRUE(okm.ok()) << Where(t) << okm.status().ToString();
      EXPECT_EQ(ToHex(okm->view()), t->getValue<std::string>("okm")) << Where(t);
    } else {
      EXPECT_FALSE(okm.ok()) << Where(t);
    }
  });
  EXPECT_GT(tally.valid, 0);
  EXPECT_GT(tally.invalid, 0);
}

TEST(HkdfTest, ExtractThenExpandMatchesOneShot) {
  Bytes salt = RandomBytes(13), ikm = RandomBytes(40), info = RandomBytes(7);
  SecretBytes prk = HkdfExtract(salt, ikm);
  auto split = HkdfExpand(prk.view(), info, 100);
  auto whole = Hkdf(salt, ikm, info, 100);
  ASSERT_TRUE(split.ok() && whole.ok());
  EXPECT_EQ(split->Reveal(), whole->Reveal());
  EXPECT_FALSE(HkdfExpand(prk.view(), info, 255 * 32 + 1).ok());
}

// Runs a Wycheproof AEAD file through AeadSeal/AeadOpen. Groups with a nonce
// other than 96 bits or a key size `aead_for` does not map must be refused.
template <typename AeadFor>
void RunAeadVectors(const std::string& file, AeadFor aead_for) {
  Tally tally;
  int refused = 0;
  ForEachTest(file, [&](const Object::Ptr& g, const Object::Ptr& t) {
    const std::string result = t->getValue<std::string>("result");
    const Bytes key = HexField(t, "key"), iv = HexField(t, "iv"), aad = HexField(t, "aad");
    const Bytes msg = HexField(t, "msg");
    const Bytes sealed = Concat({HexField(t, "ct"), HexField(t, "tag")});
    std::optional<Aead> aead = aead_for(g->getValue<int>("keySize"));
    if (!aead || g->getValue<int>("ivSize") != 96 || g->getValue<int>("tagSize") != 128) {
      Aead any = aead.value_or(Aead::kAes128Gcm);
      EXPECT_FALSE(AeadOpen(any, key, iv, aad, sealed).ok()) << Where(t);
      EXPECT_FALSE(AeadSeal(any, key, iv, aad, msg).ok()) << Where(t);
      ++refused;
      return;
    }
    tally.Count(result);
    auto opened = AeadOpen(*aead, key, iv, aad, sealed);
    if (result == "valid") {
      ASSERT_TRUE(opened.ok()) << Where(t) << opened.status().ToString();
      EXPECT_EQ(opened->Reveal(), msg) << Where(t);
      auto ct = AeadSeal(*aead, key, iv, aad, msg);
      ASSERT_TRUE(ct.ok()) << Where(t);
      EXPECT_EQ(*ct, sealed) << Where(t);
    } else {
      ASSERT_FALSE(opened.ok()) << Where(t);
      EXPECT_EQ(opened.status().code(), Code::kCryptoFailure) << Where(t);
    }
  });
  EXPECT_GT(tally.valid, 0);
  EXPECT_GT(tally.invalid, 0);
  EXPECT_GT(refused, 0);
}

TEST(AeadTest, WycheproofAesGcm) {
  RunAeadVectors("wycheproof/aes_gcm_test.json", [](int key_bits) -> std::optional<Aead> {
    if (key_bits == 128) return Aead::kAes128Gcm;
    if (key_bits == 256) return Aead::kAes256Gcm;
    return std::nullopt;
  });
}

TEST(AeadTest, WycheproofChaCha20Poly1305) {
  RunAeadVectors("wycheproof/chacha20_poly1305_test.json",
                 [](int key_bits) -> std::optional<Aead> {
                   if (key_bits == 256) return Aead::kChaCha20Poly1305;
                   return std::nullopt;
                 });
}

TEST(AeadTest, RoundTripAndTamperEverySuite) {
  for (Aead aead : {Aead::kAes128Gcm, Aead::kAes256Gcm, Aead::kChaCha20Poly1305}) {
    Bytes key = RandomBytes(AeadKeySize(aead)), nonce = RandomBytes(kAeadNonceSize);
    Bytes aad = {'h', 'e', 'a', 'd', 'e', 'r'};
    Bytes pt = RandomBytes(77);
    auto ct = AeadSeal(aead, key, nonce, aad, pt);
    ASSERT_TRUE(ct.ok());
    ASSERT_EQ(ct->size(), pt.size() + kAeadTagSize);
    auto opened = AeadOpen(aead, key, nonce, aad, *ct);
    ASSERT_TRUE(opened.ok());
    EXPECT_EQ(opened->Reveal(), pt);
    for (size_t i : {size_t{0}, ct->size() / 2, ct->size() - 1}) {
      Bytes bad = *ct;
      bad[i] ^= 0x01;
      auto r = AeadOpen(aead, key, nonce, aad, bad);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), Code::kCryptoFailure);
    }
    Bytes other_aad = aad;
    other_aad.push_back('!');
    EXPECT_EQ(AeadOpen(aead, key, nonce, other_aad, *ct).status().code(), Code::kCryptoFailure);
    EXPECT_EQ(AeadOpen(aead, key, nonce, aad, Bytes(kAeadTagSize - 1)).status().code(),
              Code::kCryptoFailure);
    EXPECT_EQ(AeadSeal(aead, Bytes(5), nonce, aad, pt).status().code(), Code::kInvalidArgument);
  }
}

TEST(Ed25519Test, Rfc8032TestOne) {
  auto pair = Ed25519FromSeed(
      Hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
  ASSERT_TRUE(pair.ok());
  EXPECT_EQ(ToHex(pair->public_key),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  auto sig = Ed25519Sign(pair->private_key.view(), {});
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(ToHex(*sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
            "1cf9b46bd25bf5f0595bbe24655141438e7a100b");
  EXPECT_TRUE(Ed25519Verify(pair->public_key, {}, *sig).ok());
}

TEST(Ed25519Test, SignVerifyAndReject) {
  auto pair = Ed25519Generate();
  ASSERT_TRUE(pair.ok());
  Bytes msg = RandomBytes(50);
  auto sig = Ed25519Sign(pair->private_key.view(), msg);
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(Ed25519Verify(pair->public_key, msg, *sig).ok());
  msg[0] ^= 1;
  EXPECT_EQ(Ed25519Verify(pair->public_key, msg, *sig).code(), Code::kCryptoFailure);
  EXPECT_EQ(Ed25519Verify(pair->public_key, msg, Bytes(63)).code(), Code::kInvalidArgument);
  EXPECT_EQ(Ed25519Verify(Bytes(31), msg, *sig).code(), Code::kInvalidArgument);
  EXPECT_FALSE(Ed25519Sign(Bytes(31), msg).ok());
}

TEST(Ed25519Test, Wycheproof) {
  Tally tally;
  ForEachTest("wycheproof/ed25519_test.json", [&](const Object::Ptr& g, const Object::Ptr& t) {
    const std::string result = t->getValue<std::string>("result");
    tally.Count(result);
    Bytes pk = Hex(g->getObject("publicKey")->getValue<std::string>("pk"));
    Status status = Ed25519Verify(pk, HexField(t, "msg"), HexField(t, "sig"));
    if (result == "valid") {
      EXPECT_TRUE(status.ok()) << Where(t) << status.ToString();
    } else {
      EXPECT_FALSE(status.ok()) << Where(t);
    }
  });
  EXPECT_GT(tally.valid, 0);
  EXPECT_GT(tally.invalid, 0);
}

TEST(X25519Test, Wycheproof) {
  Tally tally;
  int zero_rejected = 0;
  ForEachTest("wycheproof/x25519_test.json", [&](const Object::Ptr&, const Object::Ptr& t) {
    const std::string result = t->getValue<std::string>("result");
    tally.Count(result);
    auto shared = X25519(HexField(t, "private"), HexField(t, "public"));
    if (HasFlag(t, "ZeroSharedSecret")) {
      // RFC 9180 requires refusing these, so "acceptable" means "must fail" here.
      ASSERT_FALSE(shared.ok()) << Where(t);
      EXPECT_EQ(shared.status().code(), Code::kCryptoFailure) << Where(t);
      ++zero_rejected;
    } else if (result == "valid") {
      ASSERT_TRUE(shared.ok()) << Where(t) << shared.status().ToString();
      EXPECT_EQ(ToHex(shared->view()), t->getValue<std::string>("shared")) << Where(t);
    } else if (result == "acceptable") {
      if (shared.ok()) {
        EXPECT_EQ(ToHex(shared->view()), t->getValue<std::string>("shared")) << Where(t);
      }
    } else {
      EXPECT_FALSE(shared.ok()) << Where(t);
    }
  });
  EXPECT_GT(tally.valid, 0);
  EXPECT_GT(zero_rejected, 0);
}

TEST(EcdhP256Test, WycheproofEcpoint) {
  Tally tally;
  ForEachTest("wycheproof/ecdh_secp256r1_ecpoint_test.json",
              [&](const Object::Ptr&, const Object::Ptr& t) {
                const std::string result = t->getValue<std::string>("result");
                tally.Count(result);
                auto shared =
                    EcdhP256(Scalar32(HexField(t, "private")), HexField(t, "public"));
                if (result == "valid") {
                  ASSERT_TRUE(shared.ok()) << Where(t) << shared.status().ToString();
                  EXPECT_EQ(ToHex(shared->view()), t->getValue<std::string>("shared"))
                      << Where(t);
                } else if (result == "invalid") {
                  EXPECT_FALSE(shared.ok()) << Where(t);
                } else if (shared.ok()) {
                  EXPECT_EQ(ToHex(shared->view()), t->getValue<std::string>("shared"))
                      << Where(t);
                }
              });
  EXPECT_GT(tally.valid, 0);
  EXPECT_GT(tally.invalid, 0);
}

TEST(EcdhP256Test, RejectsOutOfRangeScalars) {
  Bytes peer = Hex(
      "0462d5bd3372af75fe85a040715d0f502428e07046868b0bfdfa61d731afe44f26ac333a93a9e70a81cd5a95b5"
      "bf8d13990eb741c8c38872b4a07d275a014e30cf");
  EXPECT_FALSE(EcdhP256(Bytes(32, 0), peer).ok());
  EXPECT_FALSE(EcdhP256(Bytes(32, 0xff), peer).ok());
  EXPECT_FALSE(EcdhP256(Bytes(31, 1), peer).ok());
}

TEST(EcdsaTest, WycheproofP1363) {
  Tally tally;
  int round_trips = 0;
  ForEachTest("wycheproof/ecdsa_secp256r1_sha256_p1363_test.json",
              [&](const Object::Ptr& g, const Object::Ptr& t) {
                const std::string result = t->getValue<std::string>("result");
                tally.Count(result);
                Bytes pk = Hex(g->getObject("publicKey")->getValue<std::string>("uncompressed"));
                Bytes sig = HexField(t, "sig");
                Status status = EcdsaP256Verify(pk, HexField(t, "msg"), sig);
                if (result == "valid") {
                  EXPECT_TRUE(status.ok()) << Where(t) << status.ToString();
                  auto der = EcdsaP1363ToDer(sig);
                  ASSERT_TRUE(der.ok()) << Where(t);
                  auto back = EcdsaDerToP1363(*der);
                  ASSERT_TRUE(back.ok()) << Where(t);
                  EXPECT_EQ(*back, sig) << Where(t);
                  ++round_trips;
                } else {
                  EXPECT_FALSE(status.ok()) << Where(t);
                }
              });
  EXPECT_GT(tally.valid, 0);
  EXPECT_GT(tally.invalid, 0);
  EXPECT_EQ(round_trips, tally.valid);
}

TEST(EcdsaTest, DerConversionRejectsNonCanonical) {
  Bytes p1363(64, 0);
  p1363[31] = 1;
  p1363[63] = 2;
  auto der = EcdsaP1363ToDer(p1363);
  ASSERT_TRUE(der.ok());
  EXPECT_EQ(ToHex(*der), "3006020101020102");
  // Long-form length where short form is required.
  EXPECT_FALSE(EcdsaDerToP1363(Hex("308106020101020102")).ok());
  // Trailing garbage.
  EXPECT_FALSE(EcdsaDerToP1363(Hex("300602010102010200")).ok());
  // r is a canonical 33-byte integer: too wide for P1363.
  Bytes wide = {0x30, 0x26, 0x02, 0x21, 0x01};
  wide.insert(wide.end(), 32, 0);
  wide.insert(wide.end(), {0x02, 0x01, 0x02});
  EXPECT_FALSE(EcdsaDerToP1363(wide).ok());
  EXPECT_FALSE(EcdsaP1363ToDer(Bytes(63)).ok());
}

}  // namespace
}  // namespace holdfast::protocol
