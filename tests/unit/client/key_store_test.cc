#include "holdfast/client/key_store.h"

#include <gtest/gtest.h>

#include "holdfast/protocol/primitives.h"

namespace holdfast::client {
namespace {

// Cheap enough for unit tests; the defaults are tested once.
Argon2idParams Cheap() { return Argon2idParams::Create(1, 64, 1).value(); }

PassphraseWrapper Wrapper(std::string_view passphrase, Argon2idParams p = Cheap()) {
  return PassphraseWrapper::Create(AsBytes(passphrase), p).value();
}

// A platform wrapper stand-in: XOR with a pad, honest about its scheme.
class PadWrapper final : public KeyWrapper {
 public:
  explicit PadWrapper(uint8_t pad, std::string scheme = "test-pad")
      : pad_(pad), scheme_(std::move(scheme)) {}
  Result<WrappedKey> Wrap(const SecretBytes& key) const override {
    Bytes w(key.view().begin(), key.view().end());
    for (auto& b : w) b ^= pad_;
    return WrappedKey{scheme_, {}, w};
  }
  Result<SecretBytes> Unwrap(const WrappedKey& w) const override {
    if (w.scheme != scheme_) return Status::FailedPrecondition("other scheme");
    SecretBytes k(w.wrapped);
    for (size_t i = 0; i < k.size(); ++i) k.data()[i] ^= pad_;
    return k;
  }

 private:
  uint8_t pad_;
  std::string scheme_;
};

const Bytes kSecrets(64, 0x5a);
const Bytes kBound = {1, 2, 3};

TEST(Argon2idParamsTest, Bounds) {
  auto d = Argon2idParams::Default();
  EXPECT_EQ(d.time_cost(), 3u);
  EXPECT_EQ(d.memory_kib(), 65536u);
  EXPECT_EQ(d.parallelism(), 1u);
  EXPECT_TRUE(Argon2idParams::Create(1, 8, 1).ok());
  for (auto [t, m, p] : std::vector<std::tuple<uint32_t, uint32_t, uint32_t>>{
           {0, 64, 1}, {65, 64, 1}, {1, 7, 1}, {1, 15, 2}, {1, 64, 0}, {1, 1024, 17},
           {1, Argon2idParams::kMaxMemoryKib + 1, 1}}) {
    EXPECT_EQ(Argon2idParams::Create(t, m, p).status().code(), Code::kInvalidArgument)
        << t << " " << m << " " << p;
  }
  EXPECT_EQ(PassphraseWrapper::Create({}).status().code(), Code::kInvalidArgument);
}

TEST(KeyStoreTest, PassphraseRoundTripWithDefaultParameters) {
  auto store = KeyStore::Create(Wrapper("correct horse", Argon2idParams::Default()));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE(store->encrypted());
  EXPECT_EQ(store->scheme(), kArgon2idScheme);
  auto sealed = store->Seal(kSecrets, kBound);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->key.params.at("t"), "3");
  EXPECT_EQ(sealed->key.params.at("m_kib"), "65536");
  EXPECT_EQ(sealed->key.params.at("p"), "1");
  EXPECT_EQ(sealed->key.params.at("salt").size(), 32u);
  auto opened = KeyStore::Open(*sealed, kBound, Wrapper("correct horse"));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->secrets.Reveal(), kSecrets);
  // The reopened store re-seals without the passphrase.
  auto again = opened->store.Seal(kSecrets, kBound);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->nonce, sealed->nonce);
  EXPECT_EQ(again->key.wrapped, sealed->key.wrapped);
  EXPECT_TRUE(KeyStore::Open(*again, kBound, Wrapper("correct horse")).ok());
}

TEST(KeyStoreTest, WrongPassphrase) {
  auto store = KeyStore::Create(Wrapper("correct horse"));
  ASSERT_TRUE(store.ok());
  auto sealed = store->Seal(kSecrets, kBound);
  ASSERT_TRUE(sealed.ok());
  auto r = KeyStore::Open(*sealed, kBound, Wrapper("battery staple"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(r.status().message(), "wrong passphrase");
}

TEST(KeyStoreTest, TamperingIsDetected) {
  auto store = KeyStore::Create(Wrapper("pw"));
  ASSERT_TRUE(store.ok());
  const SealedKeys good = store->Seal(kSecrets, kBound).value();

  // Bound fields, ciphertext and key check: the AEAD or key check refuses.
  EXPECT_EQ(KeyStore::Open(good, Bytes{1, 2, 4}, Wrapper("pw")).status().code(),
            Code::kCryptoFailure);
  SealedKeys s = good;
  s.ciphertext[3] ^= 1;
  EXPECT_EQ(KeyStore::Open(s, kBound, Wrapper("pw")).status().code(), Code::kCryptoFailure);
  s = good;
  s.nonce[0] ^= 1;
  EXPECT_EQ(KeyStore::Open(s, kBound, Wrapper("pw")).status().code(), Code::kCryptoFailure);
  s = good;
  s.key_check[0] ^= 1;
  EXPECT_EQ(KeyStore::Open(s, kBound, Wrapper("pw")).status().code(), Code::kPermissionDenied);

  // Wrapping fields read as a wrong passphrase: indistinguishable by design.
  s = good;
  s.key.params["t"] = "2";
  EXPECT_EQ(KeyStore::Open(s, kBound, Wrapper("pw")).status().code(), Code::kPermissionDenied);
  s = good;
  s.key.wrapped[20] ^= 1;
  EXPECT_EQ(KeyStore::Open(s, kBound, Wrapper("pw")).status().code(), Code::kPermissionDenied);

  // Malformed wrapping fields are input errors.
  for (auto edit : std::vector<std::pair<std::string, std::string>>{
           {"t", "0"}, {"t", "x"}, {"t", "03"}, {"m_kib", "99999999999"}, {"salt", "abc"},
           {"salt", "00"}}) {
    s = good;
    s.key.params[edit.first] = edit.second;
    EXPECT_EQ(KeyStore::Open(s, kBound, Wrapper("pw")).status().code(), Code::kInvalidArgument)
        << edit.first << "=" << edit.second;
  }
  s = good;
  s.key.params["extra"] = "1";
  EXPECT_EQ(KeyStore::Open(s, kBound, Wrapper("pw")).status().code(), Code::kInvalidArgument);
  s = good;
  s.nonce.pop_back();
  EXPECT_EQ(KeyStore::Open(s, kBound, Wrapper("pw")).status().code(), Code::kInvalidArgument);
}

TEST(KeyStoreTest, PlatformWrapper) {
  auto store = KeyStore::Create(PadWrapper(0x33));
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(store->scheme(), "test-pad");
  const SealedKeys sealed = store->Seal(kSecrets, kBound).value();
  auto opened = KeyStore::Open(sealed, kBound, PadWrapper(0x33));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->secrets.Reveal(), kSecrets);
  // Another platform key unwraps to some other key: caught by the key check.
  EXPECT_EQ(KeyStore::Open(sealed, kBound, PadWrapper(0x44)).status().code(),
            Code::kPermissionDenied);
  // A passphrase cannot open a platform-wrapped store, and vice versa.
  EXPECT_EQ(KeyStore::Open(sealed, kBound, Wrapper("pw")).status().code(),
            Code::kFailedPrecondition);
  const SealedKeys by_passphrase =
      KeyStore::Create(Wrapper("pw")).value().Seal(kSecrets, kBound).value();
  EXPECT_EQ(KeyStore::Open(by_passphrase, kBound, PadWrapper(0x33)).status().code(),
            Code::kFailedPrecondition);
  // Reserved or malformed scheme names are refused.
  for (const char* bad : {"insecure-plaintext", "Upper", "", "a b"}) {
    EXPECT_FALSE(KeyStore::Create(PadWrapper(1, bad)).ok()) << bad;
  }
}

TEST(KeyStoreTest, PlaintextStoreDoesNotSeal) {
  KeyStore plain = KeyStore::InsecurePlaintext();
  EXPECT_FALSE(plain.encrypted());
  EXPECT_EQ(plain.scheme(), kInsecurePlaintextScheme);
  EXPECT_EQ(plain.Seal(kSecrets, kBound).status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace holdfast::client
