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
constexpr size_t kPrivateKeySize = 32;  // Ed25519 seed and X25519 private key
constexpr char kSealAead[] = "chacha20-poly1305";
constexpr std::string_view kBoundLabel = "holdfast/client profile v2";
constexpr size_t kMaxProfileSize = 4 << 20;
constexpr size_t kMaxCaFileSize = 1 << 20;

// Every field except the private keys, for the key store's associated data.
Bytes BoundFields(const Profile& p) {
  internal::FieldEncoder e(kBoundLabel);
  e.AddInt(kProfileVersion);
  e.Add(p.user);
  e.Add(p.server_url);
  e.Add(p.device_id);
  e.Add(p.org);
  e.Add(p.org_root_key);
  e.Add(p.ca_file);
  e.Add(p.prekey.public_key());
  e.AddInt(p.prekey.created_at_ms());
  e.Add(p.prekey.signature());
  e.AddCount(p.notices_shown.size());
  for (const auto& c : p.notices_shown) e.Add(c);
  e.AddCount(p.seen_message_ids.size());
  for (const auto& id : p.seen_message_ids) e.Add(id);
  return std::move(e).Finish();
}

Result<std::string> ProfileToJson(const Profile& p, const KeyStore& store) {
  if (p.identity_private.size() != kPrivateKeySize || p.prekey_private.size() != kPrivateKeySize) {
    return Status::InvalidArgument("profile: private keys must be 32 bytes each");
  }
  Poco::JSON::Object prekey;
  prekey.set("public_key", ToHex(AsBytes(p.prekey.public_key())));
  prekey.set("created_at_ms", static_cast<Poco::Int64>(p.prekey.created_at_ms()));
  prekey.set("signature", ToHex(AsBytes(p.prekey.signature())));

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
  root.set("prekey", prekey);
  root.set("notices_shown", notices);
  root.set("seen_message_ids", seen);

  // The hex strings below go into Poco's own buffers, which are not wiped;
  // that is the accepted cost of the explicit plaintext opt-in only.
  Poco::JSON::Object ks;
  ks.set("scheme", std::string(store.scheme()));
  if (store.encrypted()) {
    SecretBytes secrets(2 * kPrivateKeySize);
    std::copy(p.identity_private.view().begin(), p.identity_private.view().end(), secrets.data());
    std::copy(p.prekey_private.view().begin(), p.prekey_private.view().end(),
              secrets.data() + kPrivateKeySize);
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
    root.set("identity_private_key", ToHex(p.identity_private.view()));
    root.set("prekey_private_key", ToHex(p.prekey_private.view()));
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

Result<SecretBytes> HexSecret(const Reader& r, const std::string& key) {
  HF_ASSIGN_OR_RETURN(Bytes k, r.Hex(key));
  SecretBytes out(k);
  SecureWipe(k.data(), k.size());
  if (out.size() != kPrivateKeySize) {
    return Status::InvalidArgument("profile: \"" + key + "\" is not 32 bytes");
  }
  return out;
}

Status CheckVersion(int64_t version) {
  if (version == kOldPlaintextVersion) {
    return Status::FailedPrecondition(
        "profile has the old format (version 1, private keys unencrypted), which is no longer "
        "loaded; move the profile directory away and register this device again with a new "
        "enrollment code (holdfast-admin user enroll USER)");
  }
  if (version != kProfileVersion) {
    return Status::InvalidArgument("profile: unsupported version " + std::to_string(version));
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
  Reader pr(prekey_obj);
  HF_ASSIGN_OR_RETURN(Bytes prekey_public, pr.Hex("public_key"));
  HF_ASSIGN_OR_RETURN(int64_t created_at, pr.Int("created_at_ms"));
  HF_ASSIGN_OR_RETURN(Bytes prekey_sig, pr.Hex("signature"));
  p.prekey.set_public_key(AsString(prekey_public));
  p.prekey.set_created_at_ms(created_at);
  p.prekey.set_signature(AsString(prekey_sig));
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
    HF_ASSIGN_OR_RETURN(p.identity_private, HexSecret(r, "identity_private_key"));
    HF_ASSIGN_OR_RETURN(p.prekey_private, HexSecret(r, "prekey_private_key"));
    return LoadedProfile{std::move(p), KeyStore::InsecurePlaintext()};
  }
  if (r.Has("identity_private_key") || r.Has("prekey_private_key")) {
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
  HF_ASSIGN_OR_RETURN(auto opened, KeyStore::Open(sealed, BoundFields(p), *wrapper));
  if (opened.secrets.size() != 2 * kPrivateKeySize) {
    return Status::InvalidArgument("profile: sealed private keys have the wrong size");
  }
  p.identity_private = SecretBytes(opened.secrets.view().first(kPrivateKeySize));
  p.prekey_private = SecretBytes(opened.secrets.view().subspan(kPrivateKeySize));
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
