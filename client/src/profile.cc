#include "holdfast/client/profile.h"

#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include "files.h"

namespace holdfast::client {
namespace {

constexpr int kProfileVersion = 1;
constexpr size_t kMaxProfileSize = 4 << 20;
constexpr size_t kMaxCaFileSize = 1 << 20;

std::string ProfileToJson(const Profile& p) {
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
  root.set("identity_private_key", ToHex(p.identity_private.view()));
  root.set("prekey_private_key", ToHex(p.prekey_private.view()));
  root.set("prekey", prekey);
  root.set("notices_shown", notices);
  root.set("seen_message_ids", seen);

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
  // Missing arrays read as empty, so older profiles stay loadable.
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

Result<Profile> ProfileFromJson(const std::string& text) {
  Poco::JSON::Object::Ptr root;
  try {
    Poco::JSON::Parser parser;
    root = parser.parse(text).extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("profile: not valid JSON: " + e.displayText());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("profile: not a JSON object: ") + e.what());
  }
  if (!root) return Status::InvalidArgument("profile: not a JSON object");
  Reader r(root);
  HF_ASSIGN_OR_RETURN(int64_t version, r.Int("version"));
  if (version != kProfileVersion) {
    return Status::InvalidArgument("profile: unsupported version " + std::to_string(version));
  }
  Profile p;
  HF_ASSIGN_OR_RETURN(p.user, r.String("user"));
  HF_ASSIGN_OR_RETURN(p.server_url, r.String("server"));
  HF_ASSIGN_OR_RETURN(p.device_id, r.Hex("device_id"));
  HF_ASSIGN_OR_RETURN(p.org, r.String("org"));
  HF_ASSIGN_OR_RETURN(p.org_root_key, r.Hex("org_root_key"));
  HF_ASSIGN_OR_RETURN(p.ca_file, r.String("ca_file"));
  {
    HF_ASSIGN_OR_RETURN(Bytes k, r.Hex("identity_private_key"));
    p.identity_private = SecretBytes(k);
    SecureWipe(k.data(), k.size());
  }
  {
    HF_ASSIGN_OR_RETURN(Bytes k, r.Hex("prekey_private_key"));
    p.prekey_private = SecretBytes(k);
    SecureWipe(k.data(), k.size());
  }
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
  while (p.seen_message_ids.size() > kSeenMessageIdsLimit) p.seen_message_ids.pop_front();

  if (p.ca_file.empty() || p.ca_file.find('/') != std::string::npos || p.ca_file == "." ||
      p.ca_file == "..") {
    return Status::InvalidArgument("profile: ca_file must be a file name inside the profile");
  }
  return p;
}

}  // namespace

Status SaveProfile(const std::filesystem::path& dir, const Profile& profile) {
  HF_RETURN_IF_ERROR(internal::EnsurePrivateDirectory(dir));
  std::string json = ProfileToJson(profile);
  Status s = internal::WriteFileAtomic(dir / kProfileFileName, json, 0600);
  SecureWipe(json.data(), json.size());
  return s;
}

Result<Profile> LoadProfile(const std::filesystem::path& dir) {
  const auto path = dir / kProfileFileName;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::NotFound("no profile in " + dir.string());
  }
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied(path.string() +
                                    " is accessible by group or others; run chmod 600 on it");
  }
  HF_ASSIGN_OR_RETURN(std::string text, internal::ReadSmallFile(path, kMaxProfileSize));
  auto profile = ProfileFromJson(text);
  SecureWipe(text.data(), text.size());
  return profile;
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
