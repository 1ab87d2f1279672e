#include "holdfast/client/profile.h"

#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <gtest/gtest.h>

#include "holdfast/client/device.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"
#include "test_org.h"

namespace holdfast::client {
namespace {

using testing::OrgRoot;
using testing::TempDir;

constexpr int64_t kNow = 1'714'564'800'000;
constexpr int64_t kDay = 86'400'000;
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

// Registers `d` with `root` playing the gateway.
void Register(Device& d, const OrgRoot& root) {
  auto request = d.MakeRegisterRequest("CODE", kNow);
  ASSERT_TRUE(request.ok()) << request.status().ToString();
  Status s = d.AcceptRegistration(root.Register(*request), "wss://127.0.0.1:8443/v1",
                                  kProfileCaFileName);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

Device Registered(const OrgRoot& root, const std::string& user = "alice") {
  auto d = Device::Generate(user, kNow);
  EXPECT_TRUE(d.ok());
  Register(*d, root);
  d->MarkNoticeShown("c1");
  d->MarkSeen(protocol::RandomBytes(16));
  return std::move(d).value();
}

// An org with an archive epoch, and conversations between its devices.
class World {
 public:
  World() {
    auto archive = protocol::hpke::GenerateKeyPair(protocol::hpke::KemId::kP256HkdfSha256);
    EXPECT_TRUE(archive.ok());
    wire::EpochCertificateBody body;
    body.set_version(1);
    body.set_epoch_id(4);
    body.set_public_key(AsString(archive->public_key));
    body.set_not_before_ms(kNow - kDay);
    body.set_not_after_ms(kNow + 30 * kDay);
    body.set_org("acme");
    epoch_ = root_.Certify(body);
  }

  const OrgRoot& root() const { return root_; }

  wire::ConversationInfo Conversation(const std::vector<const Device*>& devices) const {
    wire::ConversationInfo c;
    c.set_conversation_id("g-1");
    std::set<std::string> members;
    for (const Device* d : devices) members.insert(d->profile().user);
    for (const auto& m : members) c.add_members(m);
    for (const Device* d : devices) *c.add_devices() = d->Info();
    *c.mutable_epoch() = epoch_;
    c.set_archive_notice("Archived.");
    c.set_group(true);
    c.set_membership_version(1);
    return c;
  }

  wire::Deliver Delivery(const wire::Envelope& envelope, const Device& sender) const {
    wire::Deliver d;
    d.set_delivery_id(1);
    *d.mutable_envelope() = envelope;
    *d.mutable_sender() = sender.Info();
    *d.mutable_epoch() = epoch_;
    return d;
  }

 private:
  OrgRoot root_;
  wire::EpochCertificate epoch_;
};

constexpr char kSentText[] = "a text that is never on disk in the clear";

// A device whose profile has every version 4 field filled: master key,
// countersigned certificate, contacts, a known conversation, a retired and
// a pending prekey, a sent message.
Device Rich(const World& world) {
  Device alice = Registered(world.root());
  Device bob = Registered(world.root(), "bob");
  auto notices = alice.ObserveConversation(world.Conversation({&alice, &bob}), kNow);
  EXPECT_TRUE(notices.ok()) << notices.status().ToString();
  EXPECT_TRUE(alice.BeginPrekeyRotation(kNow + 1).ok());
  wire::PrekeyUpdated confirmed;
  confirmed.set_created_at_ms(kNow + 1);
  EXPECT_TRUE(alice.CompletePrekeyRotation(confirmed, kNow + 2).ok());
  EXPECT_TRUE(alice.BeginPrekeyRotation(kNow + 3).ok());
  auto sent = alice.PrepareMessage(world.Conversation({&alice, &bob}), kSentText, kNow + 4);
  EXPECT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_TRUE(alice.RecordSent(*sent, kSentText, kNow + 4).ok());
  EXPECT_EQ(alice.profile().sent_log.size(), 1u);
  EXPECT_FALSE(alice.profile().contacts.empty());
  EXPECT_FALSE(alice.profile().conversations.empty());
  EXPECT_EQ(alice.profile().retired_prekeys.size(), 1u);
  EXPECT_EQ(alice.profile().pending_prekeys.size(), 1u);
  EXPECT_TRUE(alice.holds_master_key());
  return alice;
}

void ExpectSamePrekeys(const std::vector<StoredPrekey>& a, const std::vector<StoredPrekey>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prekey.SerializeAsString(), b[i].prekey.SerializeAsString()) << i;
    EXPECT_EQ(a[i].private_key.Reveal(), b[i].private_key.Reveal()) << i;
    EXPECT_EQ(a[i].retired_at_ms, b[i].retired_at_ms) << i;
  }
}

// Every field of the profile, private keys included.
void ExpectSameProfile(const Profile& a, const Profile& b) {
  EXPECT_EQ(b.user, a.user);
  EXPECT_EQ(b.server_url, a.server_url);
  EXPECT_EQ(b.device_id, a.device_id);
  EXPECT_EQ(b.org, a.org);
  EXPECT_EQ(b.org_root_key, a.org_root_key);
  EXPECT_EQ(b.ca_file, a.ca_file);
  EXPECT_EQ(b.identity_private.Reveal(), a.identity_private.Reveal());
  EXPECT_EQ(b.prekey_private.Reveal(), a.prekey_private.Reveal());
  EXPECT_EQ(b.prekey.SerializeAsString(), a.prekey.SerializeAsString());
  EXPECT_EQ(b.master_private.Reveal(), a.master_private.Reveal());
  EXPECT_EQ(b.master_public, a.master_public);
  EXPECT_EQ(b.certificate.SerializeAsString(), a.certificate.SerializeAsString());
  ExpectSamePrekeys(a.pending_prekeys, b.pending_prekeys);
  ExpectSamePrekeys(a.retired_prekeys, b.retired_prekeys);
  ASSERT_EQ(b.contacts.size(), a.contacts.size());
  for (size_t i = 0; i < a.contacts.size(); ++i) {
    EXPECT_EQ(b.contacts[i].user, a.contacts[i].user);
    EXPECT_EQ(b.contacts[i].master_key, a.contacts[i].master_key);
    ASSERT_EQ(b.contacts[i].devices.size(), a.contacts[i].devices.size());
    for (size_t j = 0; j < a.contacts[i].devices.size(); ++j) {
      EXPECT_EQ(b.contacts[i].devices[j].device_id, a.contacts[i].devices[j].device_id);
      EXPECT_EQ(b.contacts[i].devices[j].first_seen_ms, a.contacts[i].devices[j].first_seen_ms);
    }
  }
  ASSERT_EQ(b.conversations.size(), a.conversations.size());
  for (size_t i = 0; i < a.conversations.size(); ++i) {
    EXPECT_EQ(b.conversations[i].conversation_id, a.conversations[i].conversation_id);
    EXPECT_EQ(b.conversations[i].membership_version, a.conversations[i].membership_version);
    EXPECT_EQ(b.conversations[i].members, a.conversations[i].members);
  }
  EXPECT_EQ(b.notices_shown, a.notices_shown);
  EXPECT_EQ(b.seen_message_ids, a.seen_message_ids);
  ASSERT_EQ(b.sent_log.size(), a.sent_log.size());
  for (size_t i = 0; i < a.sent_log.size(); ++i) {
    EXPECT_EQ(b.sent_log[i].message_id, a.sent_log[i].message_id);
    EXPECT_EQ(b.sent_log[i].conversation_id, a.sent_log[i].conversation_id);
    EXPECT_EQ(b.sent_log[i].text, a.sent_log[i].text);
    EXPECT_EQ(b.sent_log[i].sent_at_ms, a.sent_log[i].sent_at_ms);
    EXPECT_EQ(b.sent_log[i].users, a.sent_log[i].users);
  }
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
  EXPECT_NE(text.find("\"version\": 4"), std::string::npos) << text;

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
  for (const char* text : {"not json", "[1,2]", "{\"version\": 3}", "{\"version\": 4}"}) {
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
  World world;
  OrgRoot other_root;
  TempDir tmp;
  const auto path = tmp.path() / kProfileFileName;
  const Profile original = Rich(world).profile();
  using Edit = std::function<void(Poco::JSON::Object&)>;
  auto first = [](Poco::JSON::Object& o, const std::string& array) {
    auto a = o.getArray(array);
    EXPECT_TRUE(a && a->size() > 0) << array;
    return a->getObject(0);
  };
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
      {"holds_master_key", [](auto& o) { o.set("holds_master_key", false); }},
      {"master_key",
       [](auto& o) { o.set("master_key", ToHex(protocol::Ed25519Generate()->public_key)); }},
      {"certificate",
       [](auto& o) {
         auto bytes = FromHex(o.template getValue<std::string>("certificate"));
         ASSERT_TRUE(bytes.has_value());
         wire::DeviceCertificate cert;
         ASSERT_TRUE(cert.ParseFromString(AsString(*bytes)));
         cert.mutable_org_signature()->back() ^= 1;
         o.set("certificate", ToHex(AsBytes(cert.SerializeAsString())));
       }},
      {"pending_prekeys[0].created_at_ms",
       [&](auto& o) { first(o, "pending_prekeys")->set("created_at_ms", Poco::Int64(kNow + 9)); }},
      {"pending_prekeys removed", [](auto& o) { o.set("pending_prekeys", Poco::JSON::Array()); }},
      {"retired_prekeys[0].retired_at_ms",
       [&](auto& o) { first(o, "retired_prekeys")->set("retired_at_ms", Poco::Int64(kNow + 99)); }},
      {"retired_prekeys removed", [](auto& o) { o.set("retired_prekeys", Poco::JSON::Array()); }},
      {"contacts[0].master_key",
       [&](auto& o) {
         first(o, "contacts")->set("master_key", ToHex(protocol::Ed25519Generate()->public_key));
       }},
      {"contacts[0].devices[0].device_id",
       [&](auto& o) {
         first(o, "contacts")->getArray("devices")->getObject(0)->set("device_id",
                                                                      std::string(32, 'a'));
       }},
      {"contacts[0].devices removed",
       [&](auto& o) { first(o, "contacts")->set("devices", Poco::JSON::Array()); }},
      {"contacts removed", [](auto& o) { o.set("contacts", Poco::JSON::Array()); }},
      {"conversations[0].membership_version",
       [&](auto& o) { first(o, "conversations")->set("membership_version", Poco::Int64(0)); }},
      {"conversations[0].members",
       [&](auto& o) { first(o, "conversations")->getArray("members")->add("mallory"); }},
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
  EditJson(path, [](auto& o) { o.set("private_keys", std::string(64, '0')); });
  EXPECT_EQ(LoadProfile(tmp.path(), Pw()).status().code(), Code::kInvalidArgument);
}

// A device without the master key cannot be made to claim one.
TEST(ProfileTest, ClaimingAMasterKeyIsRefused) {
  World world;
  TempDir tmp;
  Device alice = Registered(world.root());
  auto phone = Device::Generate("alice", kNow, /*with_master_key=*/false);
  ASSERT_TRUE(phone.ok());
  auto cert = alice.CertifyNewDevice(phone->identity_public(), kNow);
  ASSERT_TRUE(cert.ok());
  ASSERT_TRUE(phone->UseCertificate(*cert).ok());
  Register(*phone, world.root());
  ASSERT_TRUE(SaveProfile(tmp.path(), phone->profile(), Encrypted()).ok());
  ASSERT_TRUE(LoadProfile(tmp.path(), Pw()).ok());
  EditJson(tmp.path() / kProfileFileName, [](auto& o) { o.set("holds_master_key", true); });
  auto r = LoadProfile(tmp.path(), Pw());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCryptoFailure) << r.status().ToString();
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

TEST(ProfileTest, EveryFieldRoundTrips) {
  World world;
  const Device rich = Rich(world);
  // A second device: no master key, a certificate made by the first.
  auto phone = Device::Generate("alice", kNow, /*with_master_key=*/false);
  ASSERT_TRUE(phone.ok());
  auto cert = rich.CertifyNewDevice(phone->identity_public(), kNow);
  ASSERT_TRUE(cert.ok());
  ASSERT_TRUE(phone->UseCertificate(*cert).ok());
  const Device unregistered = *phone;
  Register(*phone, world.root());

  const KeyStore stores[] = {Encrypted(), KeyStore::InsecurePlaintext()};
  const Device& registered_phone = *phone;
  for (const Device* d : {&rich, &registered_phone, &unregistered}) {
    for (const KeyStore& store : stores) {
      SCOPED_TRACE(std::string(store.scheme()) +
                   (d->holds_master_key() ? " master" : " no master") +
                   (d->registered() ? " registered" : " unregistered"));
      auto text = EncodeProfile(d->profile(), store);
      ASSERT_TRUE(text.ok()) << text.status().ToString();
      EXPECT_NE(text->find("\"holds_master_key\": " +
                           std::string(d->holds_master_key() ? "true" : "false")),
                std::string::npos);
      if (store.encrypted()) {
        for (const auto* key : {&d->profile().identity_private, &d->profile().master_private}) {
          if (!key->empty()) {
            EXPECT_EQ(text->find(ToHex(key->view())), std::string::npos);
          }
        }
      }
      auto decoded = DecodeProfile(*text, Pw());
      ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
      EXPECT_EQ(decoded->store.encrypted(), store.encrypted());
      ExpectSameProfile(d->profile(), decoded->profile);
      auto again = Device::FromProfile(std::move(decoded->profile));
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      EXPECT_EQ(again->holds_master_key(), d->holds_master_key());
      EXPECT_EQ(again->master_public(), d->master_public());
    }
  }
}

TEST(ProfileTest, RefusesVersionTwoWithInstructions) {
  World world;
  TempDir tmp;
  ASSERT_TRUE(SaveProfile(tmp.path(), Registered(world.root()).profile(), Encrypted()).ok());
  EditJson(tmp.path() / kProfileFileName, [](auto& o) { o.set("version", 2); });
  for (const KeyWrapper* w : {Pw(), static_cast<const KeyWrapper*>(nullptr)}) {
    auto r = LoadProfile(tmp.path(), w);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
    EXPECT_NE(r.status().message().find("version 2"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("register this device again"), std::string::npos)
        << r.status().message();
  }
  auto summary = PeekProfile(tmp.path());
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->version, 2);
  EXPECT_EQ(summary->user, "alice");
}

TEST(ProfileTest, ReloadedPrekeysStillOpenOldMessages) {
  World world;
  TempDir tmp;
  Device alice = Registered(world.root());
  Device bob = Registered(world.root(), "bob");
  const wire::ConversationInfo before = world.Conversation({&alice, &bob});
  auto to_old = alice.PrepareMessage(before, "sealed to the first prekey", kNow);
  ASSERT_TRUE(to_old.ok()) << to_old.status().ToString();

  ASSERT_TRUE(bob.BeginPrekeyRotation(kNow + 1).ok());
  wire::PrekeyUpdated confirmed;
  confirmed.set_created_at_ms(kNow + 1);
  ASSERT_TRUE(bob.CompletePrekeyRotation(confirmed, kNow + 2).ok());
  auto to_current = alice.PrepareMessage(world.Conversation({&alice, &bob}), "second", kNow + 3);
  ASSERT_TRUE(to_current.ok());
  auto pending = bob.BeginPrekeyRotation(kNow + 4);
  ASSERT_TRUE(pending.ok());
  wire::ConversationInfo after = world.Conversation({&alice, &bob});
  *after.mutable_devices(1)->mutable_prekey() = pending->prekey();
  auto to_pending = alice.PrepareMessage(after, "third", kNow + 5);
  ASSERT_TRUE(to_pending.ok());

  ASSERT_TRUE(SaveProfile(tmp.path(), bob.profile(), Encrypted()).ok());
  auto loaded = LoadProfile(tmp.path(), Pw());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_EQ(loaded->profile.retired_prekeys.size(), 1u);
  ASSERT_EQ(loaded->profile.pending_prekeys.size(), 1u);
  auto reloaded = Device::FromProfile(std::move(loaded->profile));
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  for (const auto& [envelope, text] :
       {std::pair{&*to_old, "sealed to the first prekey"}, std::pair{&*to_current, "second"},
        std::pair{&*to_pending, "third"}}) {
    auto got = reloaded->OpenDelivery(world.Delivery(*envelope, alice), kNow + 6);
    ASSERT_TRUE(got.ok()) << text << ": " << got.status().ToString();
    EXPECT_EQ(got->text, text);
  }
  // After the grace period, saved and loaded again, the first one is gone.
  EXPECT_EQ(reloaded->ExpireRetiredPrekeys(kNow + 2 + kDefaultPrekeyGraceMs), 1u);
  ASSERT_TRUE(SaveProfile(tmp.path(), reloaded->profile(), loaded->store).ok());
  auto expired = LoadProfile(tmp.path(), Pw());
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_TRUE(expired->profile.retired_prekeys.empty());
  auto last = Device::FromProfile(std::move(expired->profile));
  ASSERT_TRUE(last.ok());
  EXPECT_FALSE(last->OpenDelivery(world.Delivery(*to_old, alice), kNow + 6).ok());
  EXPECT_TRUE(last->OpenDelivery(world.Delivery(*to_current, alice), kNow + 6).ok());
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

  p = alice.profile();
  p.master_private = other->profile().master_private;
  EXPECT_FALSE(Device::FromProfile(p).ok()) << "master key pair";

  Device bob = Registered(root, "bob");
  p = alice.profile();
  p.certificate = bob.profile().certificate;
  EXPECT_FALSE(Device::FromProfile(p).ok()) << "another device's certificate";

  p = alice.profile();
  p.certificate.Clear();
  EXPECT_FALSE(Device::FromProfile(p).ok()) << "registered without a certificate";

  p = alice.profile();
  p.master_private = SecretBytes();
  p.master_public = other->profile().master_public;
  EXPECT_FALSE(Device::FromProfile(p).ok()) << "certificate under another master key";

  p = alice.profile();
  ASSERT_TRUE(alice.BeginPrekeyRotation(kNow + 1).ok());
  p = alice.profile();
  p.pending_prekeys[0].private_key = other->profile().prekey_private;
  EXPECT_FALSE(Device::FromProfile(p).ok()) << "pending prekey pair";

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

TEST(ProfileTest, TheSentLogIsSealedWithThePrivateKeys) {
  World world;
  TempDir tmp;
  const auto dir = tmp.path() / "alice";
  const Device rich = Rich(world);
  ASSERT_TRUE(SaveProfile(dir, rich.profile(), Encrypted()).ok());
  const std::string text = ReadAll(dir / kProfileFileName);
  EXPECT_EQ(text.find(kSentText), std::string::npos);
  EXPECT_EQ(text.find(ToHex(AsBytes(std::string_view(kSentText)))), std::string::npos);
  EXPECT_EQ(text.find(ToHex(rich.profile().sent_log[0].message_id)), std::string::npos);
  auto loaded = LoadProfile(dir, Pw());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectSameProfile(rich.profile(), loaded->profile);
  EXPECT_EQ(loaded->profile.sent_log[0].text, kSentText);
}

// A version 3 file has no sent log: it loads with an empty one and is
// written back as version 4.
TEST(ProfileTest, AVersion3ProfileLoadsWithAnEmptySentLog) {
  OrgRoot root;
  TempDir tmp;
  const auto dir = tmp.path() / "alice";
  const Device d = Registered(root);
  ASSERT_TRUE(SaveProfile(dir, d.profile(), KeyStore::InsecurePlaintext()).ok());
  // The encoded empty sent log: its label as a field, then a zero count.
  const size_t empty_log_hex = 2 * (4 + std::string_view("holdfast/client sent log v1").size() + 8);
  EditJson(dir / kProfileFileName, [&](Poco::JSON::Object& o) {
    o.set("version", 3);
    auto keys = o.getValue<std::string>("private_keys");
    o.set("private_keys", keys.substr(0, keys.size() - empty_log_hex));
  });
  auto loaded = LoadProfile(dir, nullptr);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectSameProfile(d.profile(), loaded->profile);
  EXPECT_TRUE(loaded->profile.sent_log.empty());
  ASSERT_TRUE(SaveProfile(dir, loaded->profile, loaded->store).ok());
  EXPECT_NE(ReadAll(dir / kProfileFileName).find("\"version\": 4"), std::string::npos);
  // A version 4 file without the sent log is refused.
  EditJson(dir / kProfileFileName, [&](Poco::JSON::Object& o) {
    auto keys = o.getValue<std::string>("private_keys");
    o.set("private_keys", keys.substr(0, keys.size() - empty_log_hex));
  });
  EXPECT_EQ(LoadProfile(dir, nullptr).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace holdfast::client
