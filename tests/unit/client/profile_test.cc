#include "holdfast/client/profile.h"

#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <sstream>

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <gtest/gtest.h>

#include "holdfast/client/device.h"
#include "holdfast/protocol/primitives.h"
#include "test_org.h"

namespace holdfast::client {
namespace {

using testing::OrgRoot;
using testing::TempDir;

constexpr int64_t kNow = 1'714'564'800'000;
constexpr char kPassphrase[] = "profile test passphrase";

PassphraseWrapper Wrapper(std::string_view passphrase = kPassphrase) {
  return PassphraseWrapper::Create(AsBytes(passphrase), Argon2idParams::Create(1, 64, 1).value())
      .value();
}

// The test passphrase, as a wrapper that outlives every call.
const KeyWrapper* Pw() {
  static const PassphraseWrapper w = Wrapper();
  return &w;
}

KeyStore Encrypted() { return KeyStore::Create(*Pw()).value(); }

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::trunc) << text;
  ASSERT_EQ(::chmod(p.c_str(), 0600), 0);
}

// Applies `edit` to the profile's JSON object and writes it back.
template <typename F>
void EditJson(const std::filesystem::path& p, F edit) {
  Poco::JSON::Parser parser;
  auto root = parser.parse(ReadAll(p)).extract<Poco::JSON::Object::Ptr>();
  edit(*root);
  std::ostringstream out;
  root->stringify(out, 2);
  WriteAll(p, out.str());
}

mode_t ModeOf(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

Device Registered(const OrgRoot& root) {
  auto d = Device::Generate("alice", kNow);
  EXPECT_TRUE(d.ok());
  wire::RegisterResponse r;
  r.set_device_id(AsString(protocol::DeviceIdFor(d->identity_public())));
  r.set_org_root_key(AsString(root.public_key()));
  r.set_org("acme");
  EXPECT_TRUE(d->AcceptRegistration(r, "wss://127.0.0.1:8443/v1", kProfileCaFileName).ok());
  d->MarkNoticeShown("c1");
  d->MarkSeen(protocol::RandomBytes(16));
  return std::move(d).value();
}

TEST(ProfileTest, RoundTrip) {
  OrgRoot root;
  TempDir tmp;
  const auto dir = tmp.path() / "alice";
  Device d = Registered(root);
  ASSERT_TRUE(SaveProfile(dir, d.profile(), Encrypted()).ok());
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir / kProfileFileName), 0600u);
  EXPECT_TRUE(ProfileExists(dir));

  // No private key appears in the file.
  const std::string text = ReadAll(dir / kProfileFileName);
  EXPECT_EQ(text.find(ToHex(d.profile().identity_private.view())), std::string::npos);
  EXPECT_EQ(text.find(ToHex(d.profile().prekey_private.view())), std::string::npos);
  EXPECT_EQ(text.find("identity_private_key"), std::string::npos);
  EXPECT_NE(text.find("\"version\": 2"), std::string::npos) << text;

  auto loaded_store = LoadProfile(dir, Pw());
  ASSERT_TRUE(loaded_store.ok()) << loaded_store.status().ToString();
  EXPECT_TRUE(loaded_store->store.encrypted());
  auto loaded = std::move(loaded_store->profile);
  const Profile& a = d.profile();
  const Profile& b = loaded;
  EXPECT_EQ(b.user, a.user);
  EXPECT_EQ(b.server_url, a.server_url);
  EXPECT_EQ(b.device_id, a.device_id);
  EXPECT_EQ(b.org, a.org);
  EXPECT_EQ(b.org_root_key, a.org_root_key);
  EXPECT_EQ(b.ca_file, a.ca_file);
  EXPECT_EQ(b.identity_private.Reveal(), a.identity_private.Reveal());
  EXPECT_EQ(b.prekey_private.Reveal(), a.prekey_private.Reveal());
  EXPECT_EQ(b.prekey.SerializeAsString(), a.prekey.SerializeAsString());
  EXPECT_EQ(b.notices_shown, a.notices_shown);
  EXPECT_EQ(b.seen_message_ids, a.seen_message_ids);

  auto again = Device::FromProfile(std::move(loaded));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->identity_public(), d.identity_public());

  // Saving again with the loaded store replaces the file, needs no
  // passphrase, and leaves no temporary behind.
  ASSERT_TRUE(SaveProfile(dir, again->profile(), loaded_store->store).ok());
  EXPECT_NE(ReadAll(dir / kProfileFileName), text);
  EXPECT_TRUE(LoadProfile(dir, Pw()).ok());
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(ModeOf(dir / kProfileFileName), 0600u);
}

TEST(ProfileTest, TightensExistingDirectory) {
  OrgRoot root;
  TempDir tmp;
  ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
  ASSERT_TRUE(SaveProfile(tmp.path(), Registered(root).profile(), Encrypted()).ok());
  EXPECT_EQ(ModeOf(tmp.path()), 0700u);
}

TEST(ProfileTest, RefusesReadableByOthers) {
  OrgRoot root;
  TempDir tmp;
  ASSERT_TRUE(SaveProfile(tmp.path(), Registered(root).profile(), Encrypted()).ok());
  ASSERT_EQ(::chmod((tmp.path() / kProfileFileName).c_str(), 0644), 0);
  auto r = LoadProfile(tmp.path(), Pw());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
}

TEST(ProfileTest, MissingAndMalformed) {
  TempDir tmp;
  EXPECT_EQ(LoadProfile(tmp.path(), nullptr).status().code(), Code::kNotFound);
  EXPECT_FALSE(ProfileExists(tmp.path()));

  const auto path = tmp.path() / kProfileFileName;
  for (const char* text : {"not json", "[1,2]", "{\"version\": 3}", "{\"version\": 2}"}) {
    std::ofstream(path) << text;
    ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
    auto r = LoadProfile(tmp.path(), Pw());
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << text;
  }
}

TEST(ProfileTest, WrongPassphraseAndMissingPassphrase) {
  OrgRoot root;
  TempDir tmp;
  ASSERT_TRUE(SaveProfile(tmp.path(), Registered(root).profile(), Encrypted()).ok());
  const PassphraseWrapper wrong = Wrapper("not the passphrase");
  auto r = LoadProfile(tmp.path(), &wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(r.status().message(), "wrong passphrase");
  EXPECT_EQ(LoadProfile(tmp.path(), nullptr).status().code(), Code::kFailedPrecondition);

  auto summary = PeekProfile(tmp.path());
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->version, kProfileVersion);
  EXPECT_EQ(summary->user, "alice");
  EXPECT_TRUE(summary->registered);
  EXPECT_EQ(summary->scheme, kArgon2idScheme);
}

// Every field outside the sealed keys is bound as associated data.
TEST(ProfileTest, AlteredFieldsAreRefused) {
  OrgRoot root;
  OrgRoot other_root;
  TempDir tmp;
  const auto path = tmp.path() / kProfileFileName;
  const Profile original = Registered(root).profile();
  using Edit = std::function<void(Poco::JSON::Object&)>;
  const std::vector<std::pair<std::string, Edit>> edits = {
      {"user", [](auto& o) { o.set("user", "mallory"); }},
      {"server", [](auto& o) { o.set("server", "wss://evil.example/v1"); }},
      {"org", [](auto& o) { o.set("org", "other"); }},
      {"org_root_key", [&](auto& o) { o.set("org_root_key", ToHex(other_root.public_key())); }},
      {"ca_file", [](auto& o) { o.set("ca_file", "other.pem"); }},
      {"notices_shown", [](auto& o) { o.set("notices_shown", Poco::JSON::Array()); }},
      {"seen_message_ids", [](auto& o) { o.set("seen_message_ids", Poco::JSON::Array()); }},
      {"prekey.created_at_ms",
       [](auto& o) { o.getObject("prekey")->set("created_at_ms", Poco::Int64(1)); }},
      {"sealed_private_keys",
       [](auto& o) {
         auto ks = o.getObject("key_store");
         std::string hex = ks->template getValue<std::string>("sealed_private_keys");
         hex[0] = hex[0] == '0' ? '1' : '0';
         ks->set("sealed_private_keys", hex);
       }},
  };
  for (const auto& [name, edit] : edits) {
    ASSERT_TRUE(SaveProfile(tmp.path(), original, Encrypted()).ok());
    EditJson(path, edit);
    auto r = LoadProfile(tmp.path(), Pw());
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), Code::kCryptoFailure) << name << ": " << r.status().ToString();
  }
  // Re-serialising an untouched file changes its layout, not its meaning.
  ASSERT_TRUE(SaveProfile(tmp.path(), original, Encrypted()).ok());
  EditJson(path, [](auto&) {});
  EXPECT_TRUE(LoadProfile(tmp.path(), Pw()).ok());
  // Plaintext keys slipped into an encrypted profile are refused.
  EditJson(path, [](auto& o) { o.set("identity_private_key", std::string(64, '0')); });
  EXPECT_EQ(LoadProfile(tmp.path(), Pw()).status().code(), Code::kInvalidArgument);
}

TEST(ProfileTest, InsecurePlaintextOnlyOnRequest) {
  OrgRoot root;
  TempDir tmp;
  const Profile original = Registered(root).profile();
  ASSERT_TRUE(SaveProfile(tmp.path(), original, KeyStore::InsecurePlaintext()).ok());
  const std::string text = ReadAll(tmp.path() / kProfileFileName);
  EXPECT_NE(text.find(ToHex(original.identity_private.view())), std::string::npos);
  EXPECT_NE(text.find(std::string(kInsecurePlaintextScheme)), std::string::npos);
  for (const KeyWrapper* w : {static_cast<const KeyWrapper*>(nullptr), Pw()}) {
    auto r = LoadProfile(tmp.path(), w);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_FALSE(r->store.encrypted());
    EXPECT_EQ(r->profile.identity_private.Reveal(), original.identity_private.Reveal());
  }
  EXPECT_EQ(PeekProfile(tmp.path())->scheme, kInsecurePlaintextScheme);
}

TEST(ProfileTest, RefusesVersionOneWithInstructions) {
  TempDir tmp;
  WriteAll(tmp.path() / kProfileFileName,
           R"({"version": 1, "user": "alice", "server": "wss://h/v1", "device_id": "00",)"
           R"( "org": "acme", "org_root_key": "", "ca_file": "ca.pem",)"
           R"( "identity_private_key": "00", "prekey_private_key": "00"})");
  auto r = LoadProfile(tmp.path(), Pw());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("register this device again"), std::string::npos)
      << r.status().message();
  auto summary = PeekProfile(tmp.path());
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->version, 1);
}

TEST(ProfileTest, EncodeDecodeInMemory) {
  OrgRoot root;
  const Profile original = Registered(root).profile();
  KeyStore store = Encrypted();
  auto text = EncodeProfile(original, store);
  ASSERT_TRUE(text.ok());
  auto decoded = DecodeProfile(*text, Pw());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->profile.prekey_private.Reveal(), original.prekey_private.Reveal());
  Profile bad = original;
  bad.prekey_private.resize(31);
  EXPECT_EQ(EncodeProfile(bad, store).status().code(), Code::kInvalidArgument);
}

TEST(ProfileTest, KeysMustFitTogether) {
  OrgRoot root;
  Device alice = Registered(root);
  auto other = Device::Generate("bob", kNow);
  ASSERT_TRUE(other.ok());

  Profile p = alice.profile();
  p.prekey_private = other->profile().prekey_private;
  EXPECT_FALSE(Device::FromProfile(p).ok());

  p = alice.profile();
  p.identity_private = other->profile().identity_private;
  EXPECT_FALSE(Device::FromProfile(p).ok());

  p = alice.profile();
  p.prekey = other->profile().prekey;
  EXPECT_FALSE(Device::FromProfile(p).ok());

  p = alice.profile();
  p.org_root_key.resize(33);
  EXPECT_FALSE(Device::FromProfile(p).ok());

  EXPECT_TRUE(Device::FromProfile(alice.profile()).ok());
}

TEST(ProfileTest, InstallCaFile) {
  TempDir tmp;
  const auto src = tmp.path() / "src.pem";
  std::ofstream(src) << "hello";
  EXPECT_FALSE(InstallCaFile(tmp.path() / "p", src).ok());
  std::ofstream(src) << "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  ASSERT_TRUE(InstallCaFile(tmp.path() / "p", src).ok());
  EXPECT_EQ(ModeOf(tmp.path() / "p" / kProfileCaFileName), 0600u);
  EXPECT_FALSE(InstallCaFile(tmp.path() / "p", tmp.path() / "missing.pem").ok());
}

}  // namespace
}  // namespace holdfast::client
