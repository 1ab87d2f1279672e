#include "holdfast/gateway/config.h"

#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace holdfast::gateway {
namespace {

std::string Where(const YAML::Node& node, const std::string& source) {
  const YAML::Mark m = node.Mark();
  return source + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

// Reads a mapping, refusing keys outside `allowed` so that typos fail fast.
Status CheckKeys(const YAML::Node& map, const std::set<std::string>& allowed,
                 const std::string& path, const std::string& source) {
  if (!map.IsMap()) return Status::InvalidArgument(Where(map, source) + ": " + path + " must be a mapping");
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      return Status::InvalidArgument(Where(kv.first, source) + ": unknown key '" +
                                     (path.empty() ? key : path + "." + key) + "'");
    }
  }
  return Status::Ok();
}

template <typename T>
void Get(const YAML::Node& map, const char* key, T& out) {
  if (map && map[key]) out = map[key].as<T>();
}

Status GetEndpoint(const YAML::Node& map, const char* key, Endpoint& out, const std::string& source) {
  if (!map || !map[key]) return Status::Ok();
  auto ep = ParseEndpoint(map[key].as<std::string>());
  if (!ep.ok()) return Status::InvalidArgument(Where(map[key], source) + ": " + ep.status().message());
  out = *ep;
  return Status::Ok();
}

// "ldaps://host[:port]" or "ldap://host[:port]", nothing after the host part.
bool ValidLdapUrl(const std::string& url, bool& ldaps) {
  std::string rest;
  if (url.rfind("ldaps://", 0) == 0) {
    ldaps = true;
    rest = url.substr(8);
  } else if (url.rfind("ldap://", 0) == 0) {
    ldaps = false;
    rest = url.substr(7);
  } else {
    return false;
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty()) return false;
  for (char ch : rest) {
    if (ch == '/' || ch == '?' || ch == ' ' || ch == ',') return false;
  }
  return true;
}

Status ParseDirectory(const YAML::Node& dir, Config::Directory& d, const std::string& source) {
  HF_RETURN_IF_ERROR(CheckKeys(dir, {"mode", "url", "start_tls", "ca_file", "bind_dn_template", "search_base",
                                     "search_filter", "bind_dn", "bind_password_file",
                                     "display_name_attribute", "membership", "groups",
                                     "timeout_seconds", "threads"},
                               "directory", source));
  Get(dir, "mode", d.mode);
  Get(dir, "url", d.url);
  Get(dir, "start_tls", d.start_tls);
  Get(dir, "ca_file", d.ca_file);
  Get(dir, "bind_dn_template", d.bind_dn_template);
  Get(dir, "search_base", d.search_base);
  Get(dir, "search_filter", d.search_filter);
  Get(dir, "bind_dn", d.bind_dn);
  Get(dir, "bind_password_file", d.bind_password_file);
  Get(dir, "display_name_attribute", d.display_name_attribute);
  Get(dir, "membership", d.membership);
  Get(dir, "timeout_seconds", d.timeout_seconds);
  Get(dir, "threads", d.threads);
  if (auto groups = dir["groups"]) {
    HF_RETURN_IF_ERROR(CheckKeys(groups, {"enroll", "create_groups"}, "directory.groups", source));
    Get(groups, "enroll", d.enroll_groups);
    Get(groups, "create_groups", d.create_groups_groups);
  }
  const std::string at = Where(dir, source) + ": directory";
  if (d.mode != "local" && d.mode != "directory" && d.mode != "both") {
    return Status::InvalidArgument(at + ".mode must be local, directory or both, not '" + d.mode + "'");
  }
  if (d.membership != "group_search" && d.membership != "member_of") {
    return Status::InvalidArgument(at + ".membership must be group_search or member_of");
  }
  if (d.timeout_seconds == 0 || d.timeout_seconds > 300) {
    return Status::InvalidArgument(at + ".timeout_seconds must be 1 to 300");
  }
  if (d.threads < 1 || d.threads > 32) return Status::InvalidArgument(at + ".threads must be 1 to 32");
  if (!d.enabled()) return Status::Ok();
  bool ldaps = false;
  const std::string url_at = (dir["url"] ? Where(dir["url"], source) : Where(dir, source)) + ": directory";
  if (!ValidLdapUrl(d.url, ldaps)) {
    return Status::InvalidArgument(url_at + ".url must be ldaps://HOST[:PORT] or ldap://HOST[:PORT], not '" +
                                   d.url + "'");
  }
  if (ldaps && d.start_tls) {
    return Status::InvalidArgument(url_at + ".start_tls is for ldap:// URLs; ldaps:// is TLS already");
  }
  if (!ldaps && !d.start_tls) {
    return Status::InvalidArgument(url_at + ".url is plain ldap://: passwords would cross the network in "
                                   "clear; use ldaps:// or set start_tls: true");
  }
  if (d.ca_file.empty()) {
    return Status::InvalidArgument(at + ".ca_file is required: the directory's certificate is always verified");
  }
  const bool templated = !d.bind_dn_template.empty();
  const bool searched = !d.search_base.empty() || !d.search_filter.empty();
  if (templated == searched) {
    return Status::InvalidArgument(at + " needs exactly one of bind_dn_template and "
                                   "search_base/search_filter");
  }
  if (templated && d.bind_dn_template.find("{user}") == std::string::npos) {
    return Status::InvalidArgument(at + ".bind_dn_template must contain {user}");
  }
  if (searched) {
    if (d.search_base.empty() || d.search_filter.find("{user}") == std::string::npos) {
      return Status::InvalidArgument(at + ".search_base and a search_filter containing {user} are required");
    }
    if (d.bind_dn.empty() != d.bind_password_file.empty()) {
      return Status::InvalidArgument(at + ".bind_dn and bind_password_file go together");
    }
  } else if (!d.bind_dn.empty() || !d.bind_password_file.empty()) {
    return Status::InvalidArgument(at + ".bind_dn is only for search_filter; with bind_dn_template "
                                   "the user's own bind reads the entry");
  }
  if (d.enroll_groups.empty()) {
    return Status::InvalidArgument(at + ".groups.enroll must list at least one group: "
                                   "directory users outside it cannot enroll");
  }
  return Status::Ok();
}

}  // namespace

void ApplyProcessEnvironment(const Config& config) {
  if (!config.hsm.softhsm2_conf.empty()) {
    ::setenv("SOFTHSM2_CONF", config.hsm.softhsm2_conf.c_str(), 1);
  }
}

namespace {
bool NodeIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}
constexpr size_t kMaxNodeIdBytes = 64;
}  // namespace

bool ValidNodeId(const std::string& id) {
  if (id.empty() || id.size() > kMaxNodeIdBytes) return false;
  for (char c : id) {
    if (!NodeIdChar(c)) return false;
  }
  return true;
}

std::string DefaultNodeId(uint16_t listen_port) {
  char host[256] = {};
  std::string id = ::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0' ? host : "gateway";
  for (char& c : id) {
    if (!NodeIdChar(c)) c = '-';
  }
  const std::string suffix = "-" + std::to_string(listen_port);
  if (id.size() > kMaxNodeIdBytes - suffix.size()) id.resize(kMaxNodeIdBytes - suffix.size());
  return id + suffix;
}

Result<Endpoint> ParseEndpoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument("endpoint '" + text + "' is not host:port");
  }
  Endpoint ep;
  ep.host = text.substr(0, colon);
  if (ep.host.size() > 2 && ep.host.front() == '[' && ep.host.back() == ']') {
    ep.host = ep.host.substr(1, ep.host.size() - 2);
  }
  try {
    size_t used = 0;
    const unsigned long port = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || port > 65535) throw std::out_of_range("port");
    ep.port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    return Status::InvalidArgument("endpoint '" + text + "' has no valid port");
  }
  return ep;
}

Result<Config> Config::Parse(const std::string& yaml, const std::string& source) {
  Config c;
  try {
    const YAML::Node root = YAML::Load(yaml);
    if (!root.IsNull()) HF_RETURN_IF_ERROR(CheckKeys(root,
                                 {"org", "state_dir", "database", "hsm", "gateway", "admin", "keys",
                                  "directory", "delivery", "policy_file", "export_dir", "ports_file"},
                                 "", source));
    Get(root, "org", c.org);
    Get(root, "state_dir", c.state_dir);
    Get(root, "policy_file", c.policy_file);
    Get(root, "export_dir", c.export_dir);
    Get(root, "ports_file", c.ports_file);
    if (auto db = root["database"]) {
      HF_RETURN_IF_ERROR(CheckKeys(db, {"conninfo", "workers", "ingest_batch_max", "ingest_queue_max"}, "database",
                                    source));
      Get(db, "conninfo", c.database.conninfo);
      Get(db, "workers", c.database.workers);
      Get(db, "ingest_batch_max", c.database.ingest_batch_max);
      Get(db, "ingest_queue_max", c.database.ingest_queue_max);
      if (c.database.workers < 1 || c.database.ingest_batch_max < 1 || c.database.ingest_queue_max < 1) {
        return Status::InvalidArgument(Where(db, source) +
                                       ": database.workers, ingest_batch_max and ingest_queue_max must be >= 1");
      }
    }
    if (auto hsm = root["hsm"]) {
      HF_RETURN_IF_ERROR(CheckKeys(hsm, {"module", "token_label", "pin_file", "so_pin_file",
                                         "enrollment_token_label", "enrollment_pin_file", "softhsm2_conf",
                                         "sessions", "pin_credential", "pin_env", "enrollment_pin_credential",
                                         "enrollment_pin_env"},
                                   "hsm", source));
      Get(hsm, "module", c.hsm.module);
      Get(hsm, "token_label", c.hsm.token_label);
      Get(hsm, "pin_file", c.hsm.pin_file);
      Get(hsm, "so_pin_file", c.hsm.so_pin_file);
      Get(hsm, "enrollment_token_label", c.hsm.enrollment_token_label);
      Get(hsm, "enrollment_pin_file", c.hsm.enrollment_pin_file);
      Get(hsm, "softhsm2_conf", c.hsm.softhsm2_conf);
      Get(hsm, "sessions", c.hsm.sessions);
      Get(hsm, "pin_credential", c.hsm.pin_credential);
      Get(hsm, "pin_env", c.hsm.pin_env);
      Get(hsm, "enrollment_pin_credential", c.hsm.enrollment_pin_credential);
      Get(hsm, "enrollment_pin_env", c.hsm.enrollment_pin_env);
      if (c.hsm.sessions < 1 || c.hsm.sessions > 64) {
        return Status::InvalidArgument(Where(hsm, source) + ": hsm.sessions must be 1 to 64");
      }
      for (const std::string* name : {&c.hsm.pin_credential, &c.hsm.enrollment_pin_credential}) {
        if (name->find('/') != std::string::npos || *name == "." || *name == "..") {
          return Status::InvalidArgument(Where(hsm, source) + ": a PIN credential is a name, not a path: " +
                                         *name);
        }
      }
    }
    if (auto gw = root["gateway"]) {
      HF_RETURN_IF_ERROR(CheckKeys(gw, {"listen", "node_id", "tls_cert", "tls_key", "max_frame_bytes",
                                        "max_clock_skew_seconds", "archive_notice",
                                        "enrollment_failures_per_user", "enrollment_failures_per_ip"},
                                   "gateway", source));
      HF_RETURN_IF_ERROR(GetEndpoint(gw, "listen", c.gateway.listen, source));
      Get(gw, "node_id", c.gateway.node_id);
      // Empty: the default below.
      if (!c.gateway.node_id.empty() && !ValidNodeId(c.gateway.node_id)) {
        return Status::InvalidArgument(Where(gw["node_id"], source) +
                                       ": gateway.node_id must be 1 to 64 of A-Z a-z 0-9 . _ -");
      }
      Get(gw, "tls_cert", c.gateway.tls_cert);
      Get(gw, "tls_key", c.gateway.tls_key);
      Get(gw, "max_frame_bytes", c.gateway.max_frame_bytes);
      Get(gw, "max_clock_skew_seconds", c.gateway.max_clock_skew_seconds);
      Get(gw, "archive_notice", c.gateway.archive_notice);
      Get(gw, "enrollment_failures_per_user", c.gateway.enrollment_failures_per_user);
      Get(gw, "enrollment_failures_per_ip", c.gateway.enrollment_failures_per_ip);
      if (c.gateway.enrollment_failures_per_user == 0 || c.gateway.enrollment_failures_per_ip == 0) {
        return Status::InvalidArgument(Where(gw, source) +
                                       ": gateway.enrollment_failures_per_user and _per_ip must be >= 1");
      }
    }
    if (auto admin = root["admin"]) {
      HF_RETURN_IF_ERROR(CheckKeys(admin, {"listen", "tls_cert", "tls_key"}, "admin", source));
      HF_RETURN_IF_ERROR(GetEndpoint(admin, "listen", c.admin.listen, source));
      Get(admin, "tls_cert", c.admin.tls_cert);
      Get(admin, "tls_key", c.admin.tls_key);
    }
    if (auto dir = root["directory"]) {
      HF_RETURN_IF_ERROR(ParseDirectory(dir, c.directory, source));
    }
    if (auto keys = root["keys"]) {
      HF_RETURN_IF_ERROR(CheckKeys(keys, {"epoch_days", "rotate_ahead_days", "enrollment_key_days",
                                          "prekey_rotation_days", "prekey_grace_days"},
                                   "keys", source));
      Get(keys, "epoch_days", c.keys.epoch_days);
      Get(keys, "rotate_ahead_days", c.keys.rotate_ahead_days);
      Get(keys, "enrollment_key_days", c.keys.enrollment_key_days);
      Get(keys, "prekey_rotation_days", c.keys.prekey_rotation_days);
      Get(keys, "prekey_grace_days", c.keys.prekey_grace_days);
      if (c.keys.prekey_rotation_days == 0 || c.keys.prekey_rotation_days > 365) {
        return Status::InvalidArgument(Where(keys, source) +
                                       ": keys.prekey_rotation_days must be 1 to 365");
      }
      if (c.keys.prekey_grace_days < c.keys.prekey_rotation_days ||
          c.keys.prekey_grace_days > 3650) {
        return Status::InvalidArgument(
            Where(keys, source) +
            ": keys.prekey_grace_days must be at least prekey_rotation_days and at most 3650");
      }
      if (c.keys.epoch_days == 0) return Status::InvalidArgument(Where(keys, source) + ": keys.epoch_days must be > 0");
      if (c.keys.enrollment_key_days == 0) {
        return Status::InvalidArgument(Where(keys, source) + ": keys.enrollment_key_days must be > 0");
      }
      if (c.keys.rotate_ahead_days >= c.keys.epoch_days) {
        return Status::InvalidArgument(Where(keys, source) + ": keys.rotate_ahead_days must be less than epoch_days");
      }
    }
    if (auto delivery = root["delivery"]) {
      HF_RETURN_IF_ERROR(CheckKeys(delivery, {"queue_ttl_days"}, "delivery", source));
      Get(delivery, "queue_ttl_days", c.delivery.queue_ttl_days);
      if (c.delivery.queue_ttl_days == 0 || c.delivery.queue_ttl_days > 3650) {
        return Status::InvalidArgument(Where(delivery, source) +
                                       ": delivery.queue_ttl_days must be 1 to 3650");
      }
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                                   std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  const std::string& s = c.state_dir;
  if (c.hsm.pin_file.empty()) c.hsm.pin_file = s + "/hsm/user.pin";
  if (c.hsm.so_pin_file.empty()) c.hsm.so_pin_file = s + "/hsm/so.pin";
  if (c.hsm.enrollment_pin_file.empty()) c.hsm.enrollment_pin_file = s + "/hsm/enrollment.pin";
  if (c.hsm.enrollment_token_label == c.hsm.token_label) {
    return Status::InvalidArgument(source + ": hsm.enrollment_token_label must differ from hsm.token_label: "
                                   "the gateway logs in to the enrollment token, never to the archive token");
  }
  if (c.gateway.node_id.empty()) c.gateway.node_id = DefaultNodeId(c.gateway.listen.port);
  // Checked across sections, whichever of them the file sets.
  if (c.keys.prekey_grace_days < c.delivery.queue_ttl_days) {
    return Status::InvalidArgument(
        source + ": keys.prekey_grace_days (" + std::to_string(c.keys.prekey_grace_days) +
        ") must be at least delivery.queue_ttl_days (" + std::to_string(c.delivery.queue_ttl_days) +
        "): a device drops a replaced prekey after the grace period, and a message still queued "
        "for it then no longer opens");
  }
  if (c.gateway.tls_cert.empty()) c.gateway.tls_cert = s + "/tls/gateway.pem";
  if (c.gateway.tls_key.empty()) c.gateway.tls_key = s + "/tls/gateway.key";
  if (c.admin.tls_cert.empty()) c.admin.tls_cert = c.gateway.tls_cert;
  if (c.admin.tls_key.empty()) c.admin.tls_key = c.gateway.tls_key;
  if (c.policy_file.empty()) c.policy_file = s + "/policy.yaml";
  if (c.export_dir.empty()) c.export_dir = s + "/exports";
  return c;
}

Result<Config> Config::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path);
}

}  // namespace holdfast::gateway
