#include "directory.h"

#include <ldap.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "holdfast/hsm/token.h"

namespace holdfast::gateway {
namespace {

constexpr size_t kMaxUserNameBytes = 256;
constexpr size_t kMaxPasswordBytes = 1024;
constexpr size_t kQueuePerThread = 16;

void AppendHexEscape(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('\\');
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 0xf]);
}

struct LdapDeleter {
  void operator()(LDAP* ld) const { ldap_unbind_ext_s(ld, nullptr, nullptr); }
};
using LdapHandle = std::unique_ptr<LDAP, LdapDeleter>;

struct MessageDeleter {
  void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
using MessageHandle = std::unique_ptr<LDAPMessage, MessageDeleter>;

struct ValuesDeleter {
  void operator()(berval** v) const { ldap_value_free_len(v); }
};
using ValuesHandle = std::unique_ptr<berval*, ValuesDeleter>;

struct MemDeleter {
  void operator()(char* p) const { ldap_memfree(p); }
};
using LdapString = std::unique_ptr<char, MemDeleter>;

std::string Diagnostic(LDAP* ld, int rc) {
  std::string text = ldap_err2string(rc);
  char* raw = nullptr;
  if (ld != nullptr && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &raw) == LDAP_OPT_SUCCESS && raw) {
    LdapString diag(raw);
    if (*raw != '\0') text += " (" + std::string(raw) + ")";
  }
  return text;
}

bool Unreachable(int rc) {
  return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_TIMEOUT ||
         rc == LDAP_TIMELIMIT_EXCEEDED || rc == LDAP_UNAVAILABLE || rc == LDAP_BUSY;
}

// libldap reports a certificate that does not verify as a connection
// failure, without the TLS library's reason.
constexpr char kConnectHint[] =
    "; is the directory up, and does its certificate verify against directory.ca_file and name the "
    "host in directory.url?";

Status LdapError(LDAP* ld, int rc, const std::string& what) {
  std::string message = "directory " + what + ": " + Diagnostic(ld, rc);
  if (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR) message += kConnectHint;
  if (Unreachable(rc)) return Status::Unavailable(message);
  return Status::Internal(message);
}

void Warn(const std::string& message) {
  std::fprintf(stderr, "holdfast-gateway: directory: %s\n", message.c_str());
}

struct Entry {
  std::string dn;
  std::map<std::string, std::vector<std::string>> values;  // by requested attribute name
};

Result<std::vector<Entry>> Search(LDAP* ld, const std::string& base, int scope, const std::string& filter,
                                  const std::vector<std::string>& attributes, uint32_t timeout_seconds,
                                  int size_limit) {
  std::vector<char*> attrs;
  for (const auto& a : attributes) attrs.push_back(const_cast<char*>(a.c_str()));
  if (attrs.empty()) attrs.push_back(const_cast<char*>(LDAP_NO_ATTRS));
  attrs.push_back(nullptr);
  timeval tv{static_cast<time_t>(timeout_seconds), 0};
  LDAPMessage* raw = nullptr;
  const int rc = ldap_search_ext_s(ld, base.c_str(), scope, filter.c_str(), attrs.data(), 0, nullptr,
                                   nullptr, &tv, size_limit, &raw);
  MessageHandle result(raw);
  std::vector<Entry> out;
  if (rc == LDAP_NO_SUCH_OBJECT) return out;
  if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) return LdapError(ld, rc, "search");
  for (LDAPMessage* e = ldap_first_entry(ld, result.get()); e != nullptr; e = ldap_next_entry(ld, e)) {
    Entry entry;
    LdapString dn(ldap_get_dn(ld, e));
    if (dn) entry.dn = dn.get();
    for (const auto& a : attributes) {
      ValuesHandle values(ldap_get_values_len(ld, e, a.c_str()));
      auto& list = entry.values[a];
      if (!values) continue;
      for (berval** v = values.get(); *v != nullptr; ++v) list.emplace_back((*v)->bv_val, (*v)->bv_len);
    }
    out.push_back(std::move(entry));
  }
  return out;
}

// kPermissionDenied for a refused password, whatever the directory's reason.
Status Bind(LDAP* ld, const std::string& dn, ByteView password) {
  berval cred;
  cred.bv_len = password.size();
  cred.bv_val = const_cast<char*>(reinterpret_cast<const char*>(password.data()));
  const int rc = ldap_sasl_bind_s(ld, dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
  if (rc == LDAP_SUCCESS) return Status::Ok();
  if (rc == LDAP_INVALID_CREDENTIALS || rc == LDAP_INVALID_DN_SYNTAX || rc == LDAP_UNWILLING_TO_PERFORM ||
      rc == LDAP_INAPPROPRIATE_AUTH) {
    return Status::PermissionDenied("wrong user name or password");
  }
  return LdapError(ld, rc, "bind");
}

// DN in a canonical, case-folded form for comparison.
std::string CanonicalDn(const std::string& dn) {
  char* raw = nullptr;
  std::string out = dn;
  if (ldap_dn_normalize(dn.c_str(), LDAP_DN_FORMAT_LDAP, &raw, LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS &&
      raw != nullptr) {
    LdapString normal(raw);
    out = raw;
  }
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// A handle to the configured URL with verification of the server's
// certificate against ca_file demanded, in a TLS context of its own. No
// network traffic yet.
Result<LdapHandle> NewHandle(const Config::Directory& config) {
  LDAP* raw = nullptr;
  int rc = ldap_initialize(&raw, config.url.c_str());
  if (rc != LDAP_SUCCESS) return Status::InvalidArgument("directory.url: " + std::string(ldap_err2string(rc)));
  LdapHandle ld(raw);
  const int version = LDAP_VERSION3;
  const int demand = LDAP_OPT_X_TLS_DEMAND;
  const int tls_min = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
  const int client = 0;
  const timeval tv{static_cast<time_t>(config.timeout_seconds), 0};
  struct Option {
    int option;
    const void* value;
  };
  const Option options[] = {
      {LDAP_OPT_PROTOCOL_VERSION, &version},
      {LDAP_OPT_REFERRALS, LDAP_OPT_OFF},
      {LDAP_OPT_NETWORK_TIMEOUT, &tv},
      {LDAP_OPT_TIMEOUT, &tv},
      {LDAP_OPT_X_TLS_REQUIRE_CERT, &demand},
      {LDAP_OPT_X_TLS_PROTOCOL_MIN, &tls_min},
      {LDAP_OPT_X_TLS_CACERTFILE, config.ca_file.c_str()},
      // Last: builds this handle's TLS context from the options above.
      {LDAP_OPT_X_TLS_NEWCTX, &client},
  };
  for (const Option& o : options) {
    rc = ldap_set_option(ld.get(), o.option, o.value);
    if (rc != LDAP_OPT_SUCCESS) {
      return Status::InvalidArgument("directory: setting LDAP option " + std::to_string(o.option) +
                                     " (url, ca_file): " + Diagnostic(ld.get(), rc));
    }
  }
  return ld;
}

// NewHandle, after StartTLS if configured.
Result<LdapHandle> Connect(const Config::Directory& config) {
  HF_ASSIGN_OR_RETURN(LdapHandle ld, NewHandle(config));
  if (config.start_tls) {
    const int rc = ldap_start_tls_s(ld.get(), nullptr, nullptr);
    // Any StartTLS failure, the certificate's included, is the directory
    // being unusable, never a reason to go on in clear.
    if (rc != LDAP_SUCCESS) {
      return Status::Unavailable("directory StartTLS: " + Diagnostic(ld.get(), rc) + kConnectHint);
    }
  }
  return ld;
}

}  // namespace

bool DirectoryUser::may(std::string_view permission) const {
  return std::find(permissions.begin(), permissions.end(), permission) != permissions.end();
}

std::string EscapeDnValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    const bool edge_space = c == ' ' && (i == 0 || i + 1 == value.size());
    if (c < 0x20 || c == 0x7f) {
      AppendHexEscape(out, c);
    } else if (c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' || c == '\\' ||
               c == '=' || edge_space || (c == '#' && i == 0)) {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string EscapeFilterValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char ch : value) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20 || c == 0x7f) {
      AppendHexEscape(out, c);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

std::string FillTemplate(std::string_view pattern, std::string_view value) {
  static constexpr std::string_view kPlaceholder = "{user}";
  std::string out;
  size_t from = 0;
  for (size_t at; (at = pattern.find(kPlaceholder, from)) != std::string_view::npos;) {
    out.append(pattern.substr(from, at - from));
    out.append(value);
    from = at + kPlaceholder.size();
  }
  out.append(pattern.substr(from));
  return out;
}

Result<std::unique_ptr<Directory>> Directory::Create(const Config::Directory& config) {
  SecretBytes service_password;
  if (!config.bind_password_file.empty()) {
    auto read = hsm::ReadPinFile(config.bind_password_file);
    if (!read.ok()) return read.status().WithContext("directory.bind_password_file");
    service_password = std::move(*read);
  }
  // Builds a TLS context once, so that an unreadable ca_file fails here.
  if (auto probe = NewHandle(config); !probe.ok()) return probe.status();
  std::unique_ptr<Directory> d(new Directory(config, std::move(service_password)));
  for (int i = 0; i < config.threads; ++i) d->threads_.emplace_back([p = d.get()] { p->Run(); });
  return d;
}

Directory::Directory(Config::Directory config, SecretBytes service_password)
    : config_(std::move(config)), service_password_(std::move(service_password)) {}

Directory::~Directory() { Stop(); }

bool Directory::Post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || jobs_.size() >= kQueuePerThread * threads_.size()) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void Directory::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void Directory::Run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

Result<DirectoryUser> Directory::Authenticate(const std::string& user, const SecretBytes& password) {
  // An empty password would be an unauthenticated bind, which succeeds.
  if (user.empty() || user.size() > kMaxUserNameBytes || password.empty() ||
      password.size() > kMaxPasswordBytes) {
    return Status::PermissionDenied("wrong user name or password");
  }
  std::vector<std::string> attributes = {config_.display_name_attribute};
  if (config_.membership == "member_of") attributes.push_back("memberOf");

  DirectoryUser out;
  out.user = user;
  LdapHandle reader;  // the connection the groups are read on
  Entry entry;
  if (!config_.bind_dn_template.empty()) {
    out.dn = FillTemplate(config_.bind_dn_template, EscapeDnValue(user));
    HF_ASSIGN_OR_RETURN(reader, Connect(config_));
    HF_RETURN_IF_ERROR(Bind(reader.get(), out.dn, password.view()));
    HF_ASSIGN_OR_RETURN(auto found, Search(reader.get(), out.dn, LDAP_SCOPE_BASE, "(objectClass=*)",
                                           attributes, config_.timeout_seconds, 1));
    if (found.size() == 1) entry = std::move(found.front());
  } else {
    HF_ASSIGN_OR_RETURN(reader, Connect(config_));
    if (!config_.bind_dn.empty()) {
      Status s = Bind(reader.get(), config_.bind_dn, service_password_.view());
      if (s.code() == Code::kPermissionDenied) {
        return Status::Unavailable("directory refused the service account " + config_.bind_dn +
                                   " (directory.bind_dn, bind_password_file)");
      }
      HF_RETURN_IF_ERROR(s);
    }
    const std::string filter = FillTemplate(config_.search_filter, EscapeFilterValue(user));
    HF_ASSIGN_OR_RETURN(auto found, Search(reader.get(), config_.search_base, LDAP_SCOPE_SUBTREE, filter,
                                           attributes, config_.timeout_seconds, 2));
    if (found.size() != 1) {
      if (found.size() > 1) Warn("search_filter matches more than one entry; refusing the sign-in");
      return Status::PermissionDenied("wrong user name or password");
    }
    entry = std::move(found.front());
    out.dn = entry.dn;
    HF_ASSIGN_OR_RETURN(LdapHandle own, Connect(config_));
    HF_RETURN_IF_ERROR(Bind(own.get(), out.dn, password.view()));
  }

  const auto& names = entry.values[config_.display_name_attribute];
  out.display_name = names.empty() || names.front().empty() ? user : names.front();

  std::set<std::string> member_of;  // canonical DNs of the mapped groups the user is in
  if (config_.membership == "member_of") {
    for (const auto& g : entry.values["memberOf"]) member_of.insert(CanonicalDn(g));
  } else {
    std::set<std::string> groups(config_.enroll_groups.begin(), config_.enroll_groups.end());
    groups.insert(config_.create_groups_groups.begin(), config_.create_groups_groups.end());
    const std::string filter = "(&(objectClass=groupOfNames)(member=" + EscapeFilterValue(out.dn) + "))";
    for (const auto& g : groups) {
      HF_ASSIGN_OR_RETURN(auto found, Search(reader.get(), g, LDAP_SCOPE_BASE, filter, {},
                                             config_.timeout_seconds, 1));
      if (!found.empty()) member_of.insert(CanonicalDn(g));
    }
  }
  auto in_any = [&](const std::vector<std::string>& groups) {
    return std::any_of(groups.begin(), groups.end(),
                       [&](const std::string& g) { return member_of.count(CanonicalDn(g)) != 0; });
  };
  if (in_any(config_.enroll_groups)) out.permissions.emplace_back(kPermissionEnroll);
  if (in_any(config_.create_groups_groups)) out.permissions.emplace_back(kPermissionCreateGroups);
  return out;
}

}  // namespace holdfast::gateway
