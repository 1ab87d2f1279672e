#include "holdfast/client/profile.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <sstream>

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include "files.h"
#include "key_store_encoding.h"

namespace holdfast::client {
namespace {

constexpr int64_t kOldPlaintextVersion = 1;
constexpr int64_t kOldUncertifiedVersion = 2;
constexpr size_t kPrivateKeySize = 32;  // Ed25519 seed and X25519 private key
constexpr char kSealAead[] = "chacha20-poly1305";
constexpr std::string_view kBoundLabelV3 = "holdfast/client profile v3";
constexpr std::string_view kBoundLabel = "holdfast/client profile v4";
constexpr std::string_view kSentLogLabel = "holdfast/client sent log v1";
constexpr size_t kMaxProfileSize = 4 << 20;
constexpr size_t kMaxCaFileSize = 1 << 20;

void AddPrekey(internal::FieldEncoder& e, const wire::SignedPrekey& k) {
  e.Add(k.public_key());
  e.AddInt(k.created_at_ms());
  e.Add(k.signature());
}

// Every field except the private keys and the sent log, for the key
// store's associated data; `version` is the file's.
Bytes BoundFields(const Profile& p, int64_t version = kProfileVersion) {
  internal::FieldEncoder e(version == kProfileVersionWithoutSentLog ? kBoundLabelV3 : kBoundLabel);
  e.AddInt(version);
  e.Add(p.user);
  e.Add(p.server_url);
  e.Add(p.device_id);
  e.Add(p.org);
  e.Add(p.org_root_key);
  e.Add(p.ca_file);
  AddPrekey(e, p.prekey);
  e.AddInt(p.master_private.empty() ? 0 : 1);
  e.Add(p.master_public);
  e.Add(p.certificate.SerializeAsString());
  e.AddCount(p.pending_prekeys.size());
  for (const auto& k : p.pending_prekeys) AddPrekey(e, k.prekey);
  e.AddCount(p.retired_prekeys.size());
  for (const auto& k : p.retired_prekeys) {
    AddPrekey(e, k.prekey);
    e.AddInt(k.retired_at_ms);
  }
  e.AddCount(p.contacts.size());
  for (const auto& c : p.contacts) {
    e.Add(c.user);
    e.Add(c.master_key);
    e.AddCount(c.devices.size());
    for (const auto& d : c.devices) {
      e.Add(d.device_id);
      e.AddInt(d.first_seen_ms);
    }
  }
  e.AddCount(p.conversations.size());
  for (const auto& c : p.conversations) {
    e.Add(c.conversation_id);
    e.AddInt(static_cast<int64_t>(c.membership_version));
    e.AddCount(c.members.size());
    for (const auto& m : c.members) e.Add(m);
  }
  e.AddCount(p.notices_shown.size());
  for (const auto& c : p.notices_shown) e.Add(c);
  e.AddCount(p.seen_message_ids.size());
  for (const auto& id : p.seen_message_ids) e.Add(id);
  return std::move(e).Finish();
}

Bytes EncodeSentLog(const std::deque<SentMessage>& log) {
  internal::FieldEncoder e(kSentLogLabel);
  e.AddCount(log.size());
  for (const auto& m : log) {
    e.Add(m.message_id);
    e.Add(m.conversation_id);
    e.AddInt(m.sent_at_ms);
    e.Add(m.text);
    e.AddCount(m.users.size());
    for (const auto& u : m.users) e.Add(u);
  }
  return std::move(e).Finish();
}

Result<std::deque<SentMessage>> DecodeSentLog(ByteView blob) {
  internal::FieldDecoder d(blob);
  std::string label;
  int64_t count = 0;
  std::deque<SentMessage> log;
  if (!d.Read(label) || label != kSentLogLabel || !d.ReadInt(count) || count < 0 ||
      static_cast<uint64_t>(count) > kSentLogLimit) {
    return Status::InvalidArgument("profile: bad sent log");
  }
  for (int64_t i = 0; i < count; ++i) {
    SentMessage m;
    int64_t users = 0;
    if (!d.Read(m.message_id) || !d.Read(m.conversation_id) || !d.ReadInt(m.sent_at_ms) ||
        !d.Read(m.text) || !d.ReadInt(users) || users < 0 || users > 4096) {
      return Status::InvalidArgument("profile: bad sent log entry");
    }
    m.users.resize(static_cast<size_t>(users));
    for (auto& u : m.users) {
      if (!d.Read(u)) return Status::InvalidArgument("profile: bad sent log entry");
    }
    log.push_back(std::move(m));
  }
  if (!d.done()) return Status::InvalidArgument("profile: trailing bytes after the sent log");
  return log;
}

// The private keys in one blob of 32-byte keys, in the order of the public
// fields: identity, current prekey, master (if held), pending, retired;
// then the encoded sent log.
Result<SecretBytes> PackSecrets(const Profile& p) {
  std::vector<const SecretBytes*> keys{&p.identity_private, &p.prekey_private};
  if (!p.master_private.empty()) keys.push_back(&p.master_private);
  for (const auto& k : p.pending_prekeys) keys.push_back(&k.private_key);
  for (const auto& k : p.retired_prekeys) keys.push_back(&k.private_key);
  Bytes log = EncodeSentLog(p.sent_log);
  SecretBytes out(keys.size() * kPrivateKeySize + log.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i]->size() != kPrivateKeySize) {
      SecureWipe(log.data(), log.size());
      return Status::InvalidArgument("profile: private keys must be 32 bytes each");
    }
    std::copy(keys[i]->view().begin(), keys[i]->view().end(), out.data() + i * kPrivateKeySize);
  }
  std::copy(log.begin(), log.end(), out.data() + keys.size() * kPrivateKeySize);
  SecureWipe(log.data(), log.size());
  return out;
}

// The inverse of PackSecrets; `holds_master` comes from the public fields.
// A version 3 blob holds the keys only.
Status UnpackSecrets(Profile& p, bool holds_master, ByteView blob, int64_t version) {
  const size_t count = 2 + (holds_master ? 1 : 0) + p.pending_prekeys.size() +
                       p.retired_prekeys.size();
  const bool has_log = version != kProfileVersionWithoutSentLog;
  if (has_log ? blob.size() <= count * kPrivateKeySize : blob.size() != count * kPrivateKeySize) {
    return Status::InvalidArgument("profile: sealed private keys have the wrong size");
  }
  if (has_log) {
    HF_ASSIGN_OR_RETURN(p.sent_log, DecodeSentLog(blob.subspan(count * kPrivateKeySize)));
  }
  size_t i = 0;
  auto next = [&] { return SecretBytes(blob.subspan(kPrivateKeySize * i++, kPrivateKeySize)); };
  p.identity_private = next();
  p.prekey_private = next();
  if (holds_master) p.master_private = next();
  for (auto& k : p.pending_prekeys) k.private_key = next();
  for (auto& k : p.retired_prekeys) k.private_key = next();
  return Status::Ok();
}

Poco::JSON::Object PrekeyJson(const wire::SignedPrekey& k) {
  Poco::JSON::Object o;
  o.set("public_key", ToHex(AsBytes(k.public_key())));
  o.set("created_at_ms", static_cast<Poco::Int64>(k.created_at_ms()));
  o.set("signature", ToHex(AsBytes(k.signature())));
  return o;
}

Result<std::string> ProfileToJson(const Profile& p, const KeyStore& store) {
  if (p.identity_private.size() != kPrivateKeySize || p.prekey_private.size() != kPrivateKeySize) {
    return Status::InvalidArgument("profile: private keys must be 32 bytes each");
  }
  Poco::JSON::Array pending;
  for (const auto& k : p.pending_prekeys) pending.add(PrekeyJson(k.prekey));
  Poco::JSON::Array retired;
  for (const auto& k : p.retired_prekeys) {
    Poco::JSON::Object o = PrekeyJson(k.prekey);
    o.set("retired_at_ms", static_cast<Poco::Int64>(k.retired_at_ms));
    retired.add(o);
  }
  Poco::JSON::Array contacts;
  for (const auto& c : p.contacts) {
    Poco::JSON::Object o;
    o.set("user", c.user);
    o.set("master_key", ToHex(c.master_key));
    Poco::JSON::Array devices;
    for (const auto& d : c.devices) {
      Poco::JSON::Object dj;
      dj.set("device_id", ToHex(d.device_id));
      dj.set("first_seen_ms", static_cast<Poco::Int64>(d.first_seen_ms));
      devices.add(dj);
    }
    o.set("devices", devices);
    contacts.add(o);
  }
  Poco::JSON::Array conversations;
  for (const auto& c : p.conversations) {
    Poco::JSON::Object o;
    o.set("conversation_id", c.conversation_id);
    o.set("membership_version", static_cast<Poco::Int64>(c.membership_version));
    Poco::JSON::Array members;
    for (const auto& m : c.members) members.add(m);
    o.set("members", members);
    conversations.add(o);
  }
  Poco::JSON::Array notices;
  for (const auto& c : p.notices_shown) notices.add(c);
  Poco::JSON::Array seen;
  for (const auto& id : p.seen_message_ids) seen.add(ToHex(id));

  Poco::JSON::Object root;
  root.set("version", kProfileVersion);
  root.set("user", p.user);
  root.set("server", p.server_url);
  root.set("device_id", ToHex(p.device_id));
  root.set("org", p.org);
  root.set("org_root_key", ToHex(p.org_root_key));
  root.set("ca_file", p.ca_file);
  root.set("prekey", PrekeyJson(p.prekey));
  root.set("holds_master_key", !p.master_private.empty());
  root.set("master_key", ToHex(p.master_public));
  root.set("certificate", ToHex(AsBytes(p.certificate.SerializeAsString())));
  root.set("pending_prekeys", pending);
  root.set("retired_prekeys", retired);
  root.set("contacts", contacts);
  root.set("conversations", conversations);
  root.set("notices_shown", notices);
  root.set("seen_message_ids", seen);

  HF_ASSIGN_OR_RETURN(SecretBytes secrets, PackSecrets(p));
  // The hex string below goes into Poco's own buffers, which are not wiped;
  // that is the accepted cost of the explicit plaintext opt-in only.
  Poco::JSON::Object ks;
  ks.set("scheme", std::string(store.scheme()));
  if (store.encrypted()) {
    HF_ASSIGN_OR_RETURN(SealedKeys sealed, store.Seal(secrets.view(), BoundFields(p)));
    Poco::JSON::Object params;
    for (const auto& [k, v] : sealed.key.params) params.set(k, v);
    ks.set("params", params);
    ks.set("wrapped_key", ToHex(sealed.key.wrapped));
    ks.set("key_check", ToHex(sealed.key_check));
    ks.set("aead", std::string(kSealAead));
    ks.set("nonce", ToHex(sealed.nonce));
    ks.set("sealed_private_keys", ToHex(sealed.ciphertext));
  } else {
    root.set("private_keys", ToHex(secrets.view()));
  }
  root.set("key_store", ks);

  std::ostringstream out;
  root.stringify(out, 2);
  out << '\n';
  return out.str();
}

// Field readers that turn a missing or mistyped field into a Status.
class Reader {
 public:
  explicit Reader(Poco::JSON::Object::Ptr obj) : obj_(std::move(obj)) {}

  Result<std::string> String(const std::string& key) const {
    if (!obj_->has(key) || !obj_->get(key).isString()) {
      return Status::InvalidArgument("profile: missing string field \"" + key + "\"");
    }
    return obj_->getValue<std::string>(key);
  }
  Result<Bytes> Hex(const std::string& key) const {
    HF_ASSIGN_OR_RETURN(std::string s, String(key));
    auto b = FromHex(s);
    if (!b) return Status::InvalidArgument("profile: field \"" + key + "\" is not hex");
    return std::move(*b);
  }
  Result<int64_t> Int(const std::string& key) const {
    if (!obj_->has(key) || !obj_->get(key).isInteger()) {
      return Status::InvalidArgument("profile: missing integer field \"" + key + "\"");
    }
    return obj_->getValue<Poco::Int64>(key);
  }
  Result<Poco::JSON::Object::Ptr> Object(const std::string& key) const {
    auto o = obj_->getObject(key);
    if (!o) return Status::InvalidArgument("profile: missing object \"" + key + "\"");
    return o;
  }
  // An object whose values are all strings.
  Result<std::map<std::string, std::string>> StringMap(const std::string& key) const {
    HF_ASSIGN_OR_RETURN(auto o, Object(key));
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : *o) {
      if (!v.isString()) {
        return Status::InvalidArgument("profile: \"" + key + "\" holds a non-string");
      }
      out[k] = v.extract<std::string>();
    }
    return out;
  }
  bool Has(const std::string& key) const { return obj_->has(key); }
  Result<bool> Bool(const std::string& key) const {
    if (!obj_->has(key) || !obj_->get(key).isBoolean()) {
      return Status::InvalidArgument("profile: missing boolean field \"" + key + "\"");
    }
    return obj_->getValue<bool>(key);
  }
  // Missing arrays read as empty; every element must be an object.
  Result<std::vector<Poco::JSON::Object::Ptr>> Objects(const std::string& key) const {
    std::vector<Poco::JSON::Object::Ptr> out;
    if (!obj_->has(key)) return out;
    auto a = obj_->getArray(key);
    if (!a) return Status::InvalidArgument("profile: \"" + key + "\" is not an array");
    for (size_t i = 0; i < a->size(); ++i) {
      auto o = a->getObject(static_cast<unsigned>(i));
      if (!o) return Status::InvalidArgument("profile: \"" + key + "\" holds a non-object");
      out.push_back(o);
    }
    return out;
  }
  // Missing arrays read as empty.
  Result<std::vector<std::string>> Strings(const std::string& key) const {
    std::vector<std::string> out;
    if (!obj_->has(key)) return out;
    auto a = obj_->getArray(key);
    if (!a) return Status::InvalidArgument("profile: \"" + key + "\" is not an array");
    for (size_t i = 0; i < a->size(); ++i) {
      if (!a->get(i).isString()) {
        return Status::InvalidArgument("profile: \"" + key + "\" holds a non-string");
      }
      out.push_back(a->getElement<std::string>(i));
    }
    return out;
  }

 private:
  Poco::JSON::Object::Ptr obj_;
};

Result<Poco::JSON::Object::Ptr> ParseObject(std::string_view text) {
  try {
    Poco::JSON::Parser parser;
    auto root = parser.parse(std::string(text)).extract<Poco::JSON::Object::Ptr>();
    if (!root) return Status::InvalidArgument("profile: not a JSON object");
    return root;
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("profile: not valid JSON: " + e.displayText());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("profile: not a JSON object: ") + e.what());
  }
}

Status CheckVersion(int64_t version) {
  if (version == kOldPlaintextVersion || version == kOldUncertifiedVersion) {
    return Status::FailedPrecondition(
        "profile has an old format (version " + std::to_string(version) +
        "), which is no longer loaded; move the profile directory away and register this "
        "device again with a new enrollment code (holdfast-admin user enroll USER)");
  }
  if (version != kProfileVersion && version != kProfileVersionWithoutSentLog) {
    return Status::InvalidArgument("profile: unsupported version " + std::to_string(version));
  }
  return Status::Ok();
}

Result<wire::SignedPrekey> ReadPrekey(const Poco::JSON::Object::Ptr& obj) {
  Reader pr(obj);
  HF_ASSIGN_OR_RETURN(Bytes prekey_public, pr.Hex("public_key"));
  HF_ASSIGN_OR_RETURN(int64_t created_at, pr.Int("created_at_ms"));
  HF_ASSIGN_OR_RETURN(Bytes prekey_sig, pr.Hex("signature"));
  wire::SignedPrekey k;
  k.set_public_key(AsString(prekey_public));
  k.set_created_at_ms(created_at);
  k.set_signature(AsString(prekey_sig));
  return k;
}

Status ReadState(const Reader& r, Profile& p) {
  HF_ASSIGN_OR_RETURN(auto pending, r.Objects("pending_prekeys"));
  for (const auto& o : pending) {
    StoredPrekey k;
    HF_ASSIGN_OR_RETURN(k.prekey, ReadPrekey(o));
    p.pending_prekeys.push_back(std::move(k));
  }
  if (p.pending_prekeys.size() > 1) {
    return Status::InvalidArgument("profile: more than one pending prekey");
  }
  HF_ASSIGN_OR_RETURN(auto retired, r.Objects("retired_prekeys"));
  for (const auto& o : retired) {
    StoredPrekey k;
    HF_ASSIGN_OR_RETURN(k.prekey, ReadPrekey(o));
    HF_ASSIGN_OR_RETURN(k.retired_at_ms, Reader(o).Int("retired_at_ms"));
    p.retired_prekeys.push_back(std::move(k));
  }
  if (p.retired_prekeys.size() > kMaxRetiredPrekeys) {
    return Status::InvalidArgument("profile: too many retired prekeys");
  }
  HF_ASSIGN_OR_RETURN(auto contacts, r.Objects("contacts"));
  for (const auto& o : contacts) {
    Reader cr(o);
    Contact c;
    HF_ASSIGN_OR_RETURN(c.user, cr.String("user"));
    HF_ASSIGN_OR_RETURN(c.master_key, cr.Hex("master_key"));
    HF_ASSIGN_OR_RETURN(auto devices, cr.Objects("devices"));
    for (const auto& d : devices) {
      Reader dr(d);
      Contact::Device dev;
      HF_ASSIGN_OR_RETURN(dev.device_id, dr.Hex("device_id"));
      HF_ASSIGN_OR_RETURN(dev.first_seen_ms, dr.Int("first_seen_ms"));
      c.devices.push_back(std::move(dev));
    }
    p.contacts.push_back(std::move(c));
  }
  HF_ASSIGN_OR_RETURN(auto conversations, r.Objects("conversations"));
  for (const auto& o : conversations) {
    Reader cr(o);
    KnownConversation c;
    HF_ASSIGN_OR_RETURN(c.conversation_id, cr.String("conversation_id"));
    HF_ASSIGN_OR_RETURN(int64_t version, cr.Int("membership_version"));
    if (version < 0) return Status::InvalidArgument("profile: negative membership version");
    c.membership_version = static_cast<uint64_t>(version);
    HF_ASSIGN_OR_RETURN(c.members, cr.Strings("members"));
    p.conversations.push_back(std::move(c));
  }
  return Status::Ok();
}

Result<LoadedProfile> ProfileFromJson(std::string_view text, const KeyWrapper* wrapper) {
  HF_ASSIGN_OR_RETURN(auto root, ParseObject(text));
  Reader r(root);
  HF_ASSIGN_OR_RETURN(int64_t version, r.Int("version"));
  HF_RETURN_IF_ERROR(CheckVersion(version));
  Profile p;
  HF_ASSIGN_OR_RETURN(p.user, r.String("user"));
  HF_ASSIGN_OR_RETURN(p.server_url, r.String("server"));
  HF_ASSIGN_OR_RETURN(p.device_id, r.Hex("device_id"));
  HF_ASSIGN_OR_RETURN(p.org, r.String("org"));
  HF_ASSIGN_OR_RETURN(p.org_root_key, r.Hex("org_root_key"));
  HF_ASSIGN_OR_RETURN(p.ca_file, r.String("ca_file"));
  HF_ASSIGN_OR_RETURN(auto prekey_obj, r.Object("prekey"));
  HF_ASSIGN_OR_RETURN(p.prekey, ReadPrekey(prekey_obj));
  HF_ASSIGN_OR_RETURN(bool holds_master, r.Bool("holds_master_key"));
  HF_ASSIGN_OR_RETURN(p.master_public, r.Hex("master_key"));
  HF_ASSIGN_OR_RETURN(Bytes certificate, r.Hex("certificate"));
  if (!p.certificate.ParseFromArray(certificate.data(), static_cast<int>(certificate.size()))) {
    return Status::InvalidArgument("profile: bad device certificate");
  }
  HF_RETURN_IF_ERROR(ReadState(r, p));
  HF_ASSIGN_OR_RETURN(p.notices_shown, r.Strings("notices_shown"));
  HF_ASSIGN_OR_RETURN(auto seen, r.Strings("seen_message_ids"));
  for (const auto& s : seen) {
    auto id = FromHex(s);
    if (!id) return Status::InvalidArgument("profile: bad seen message id");
    p.seen_message_ids.push_back(std::move(*id));
  }
  if (p.seen_message_ids.size() > kSeenMessageIdsLimit) {
    return Status::InvalidArgument("profile: too many seen message ids");
  }
  if (!p.ca_file.empty() &&
      (p.ca_file.find('/') != std::string::npos || p.ca_file == "." || p.ca_file == "..")) {
    return Status::InvalidArgument("profile: ca_file must be a file name inside the profile");
  }

  HF_ASSIGN_OR_RETURN(auto ks_obj, r.Object("key_store"));
  Reader ks(ks_obj);
  HF_ASSIGN_OR_RETURN(std::string scheme, ks.String("scheme"));
  if (scheme == kInsecurePlaintextScheme) {
    HF_ASSIGN_OR_RETURN(Bytes blob, r.Hex("private_keys"));
    SecretBytes secrets(blob);
    SecureWipe(blob.data(), blob.size());
    HF_RETURN_IF_ERROR(UnpackSecrets(p, holds_master, secrets.view(), version));
    return LoadedProfile{std::move(p), KeyStore::InsecurePlaintext()};
  }
  if (r.Has("private_keys")) {
    return Status::InvalidArgument("profile: encrypted profile also holds plaintext keys");
  }
  SealedKeys sealed;
  sealed.key.scheme = scheme;
  HF_ASSIGN_OR_RETURN(sealed.key.params, ks.StringMap("params"));
  HF_ASSIGN_OR_RETURN(sealed.key.wrapped, ks.Hex("wrapped_key"));
  HF_ASSIGN_OR_RETURN(sealed.key_check, ks.Hex("key_check"));
  HF_ASSIGN_OR_RETURN(std::string aead, ks.String("aead"));
  if (aead != kSealAead) return Status::InvalidArgument("profile: unsupported AEAD " + aead);
  HF_ASSIGN_OR_RETURN(sealed.nonce, ks.Hex("nonce"));
  HF_ASSIGN_OR_RETURN(sealed.ciphertext, ks.Hex("sealed_private_keys"));
  if (wrapper == nullptr) {
    return Status::FailedPrecondition("profile private keys are encrypted (" + scheme +
                                      "); a passphrase or key wrapper is needed");
  }
  // BoundFields reads holds_master from master_private, which is not loaded
  // yet; a placeholder of the right size stands in for it.
  if (holds_master) p.master_private = SecretBytes(kPrivateKeySize);
  HF_ASSIGN_OR_RETURN(auto opened, KeyStore::Open(sealed, BoundFields(p, version), *wrapper));
  HF_RETURN_IF_ERROR(UnpackSecrets(p, holds_master, opened.secrets.view(), version));
  return LoadedProfile{std::move(p), std::move(opened.store)};
}

}  // namespace

Result<std::string> EncodeProfile(const Profile& profile, const KeyStore& store) {
  return ProfileToJson(profile, store);
}

Result<LoadedProfile> DecodeProfile(std::string_view text, const KeyWrapper* wrapper) {
  return ProfileFromJson(text, wrapper);
}

Status SaveProfile(const std::filesystem::path& dir, const Profile& profile,
                   const KeyStore& store) {
  HF_ASSIGN_OR_RETURN(std::string json, ProfileToJson(profile, store));
  Status s = internal::EnsurePrivateDirectory(dir);
  if (s.ok()) s = internal::WriteFileAtomic(dir / kProfileFileName, json, 0600);
  SecureWipe(json.data(), json.size());
  return s;
}

namespace {

Result<std::string> ReadProfileFile(const std::filesystem::path& dir) {
  const auto path = dir / kProfileFileName;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::NotFound("no profile in " + dir.string());
  }
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied(path.string() +
                                    " is accessible by group or others; run chmod 600 on it");
  }
  return internal::ReadSmallFile(path, kMaxProfileSize);
}

}  // namespace

Result<LoadedProfile> LoadProfile(const std::filesystem::path& dir, const KeyWrapper* wrapper) {
  HF_ASSIGN_OR_RETURN(std::string text, ReadProfileFile(dir));
  auto profile = ProfileFromJson(text, wrapper);
  SecureWipe(text.data(), text.size());
  return profile;
}

Result<ProfileSummary> PeekProfile(const std::filesystem::path& dir) {
  HF_ASSIGN_OR_RETURN(std::string text, ReadProfileFile(dir));
  auto root = ParseObject(text);
  SecureWipe(text.data(), text.size());
  if (!root.ok()) return root.status();
  Reader r(*root);
  ProfileSummary s;
  HF_ASSIGN_OR_RETURN(s.version, r.Int("version"));
  HF_ASSIGN_OR_RETURN(s.user, r.String("user"));
  HF_ASSIGN_OR_RETURN(Bytes device_id, r.Hex("device_id"));
  s.registered = !device_id.empty();
  if (s.version == kOldPlaintextVersion) {
    s.scheme = std::string(kInsecurePlaintextScheme);
  } else {
    HF_ASSIGN_OR_RETURN(auto ks, r.Object("key_store"));
    HF_ASSIGN_OR_RETURN(s.scheme, Reader(ks).String("scheme"));
  }
  return s;
}

bool ProfileExists(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::exists(dir / kProfileFileName, ec);
}

Status InstallCaFile(const std::filesystem::path& dir, const std::filesystem::path& source) {
  HF_ASSIGN_OR_RETURN(std::string pem, internal::ReadSmallFile(source, kMaxCaFileSize));
  if (pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Status::InvalidArgument(source.string() + " holds no PEM certificate");
  }
  HF_RETURN_IF_ERROR(internal::EnsurePrivateDirectory(dir));
  return internal::WriteFileAtomic(dir / kProfileCaFileName, pem, 0600);
}

}  // namespace holdfast::client
