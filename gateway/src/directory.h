// Directory (LDAP/AD) sign-in for device enrollment: a simple bind with the
// user's password over LDAPS or StartTLS, with the directory's certificate
// always verified, then the user's groups mapped to permissions. The
// password is only ever used for that bind; no key derives from it.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/gateway/config.h"

namespace holdfast::gateway {

inline constexpr std::string_view kPermissionEnroll = "enroll";
inline constexpr std::string_view kPermissionCreateGroups = "create_groups";

struct DirectoryUser {
  std::string user;          // as the client gave it
  std::string dn;            // the entry the password bound to
  std::string display_name;  // display_name_attribute, or the user name
  std::vector<std::string> permissions;

  bool may(std::string_view permission) const;
};

// RFC 4514 escaping of an attribute value for use inside a DN.
std::string EscapeDnValue(std::string_view value);
// RFC 4515 escaping of an assertion value for use inside a search filter.
std::string EscapeFilterValue(std::string_view value);
// `pattern` with every "{user}" replaced by `value`.
std::string FillTemplate(std::string_view pattern, std::string_view value);

class Directory {
 public:
  // Reads the service account's password file, if configured, and starts
  // config.threads worker threads. Connects to nothing yet.
  static Result<std::unique_ptr<Directory>> Create(const Config::Directory& config);
  ~Directory();
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  // Blocking: one fresh connection per call, each with its own TLS context.
  //   kPermissionDenied  wrong password, unknown user, empty password: one
  //                      answer for all, so that user names cannot be probed
  //   kUnavailable       the directory cannot be reached, its certificate
  //                      does not verify, it timed out, or the service
  //                      account's bind was refused
  //   kInternal          anything else the directory answered
  Result<DirectoryUser> Authenticate(const std::string& user, const SecretBytes& password);

  // Runs `job` on a directory thread. False, without running it, when the
  // queue is full or the pool stopped.
  bool Post(std::function<void()> job);
  // Finishes queued jobs and joins the threads.
  void Stop();

 private:
  Directory(Config::Directory config, SecretBytes service_password);
  void Run();

  const Config::Directory config_;
  const SecretBytes service_password_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace holdfast::gateway
