// The admin REST API (/api/v1, JSON; docs/admin-api.openapi.yaml): officer
// sign-in with password and TOTP, cases, legal holds, disclosure requests,
// approvals, export jobs and package downloads, the audit log and the
// policy. Transport-free: the admin plane hands it parsed requests.
//
// Every request but sign-in carries `Authorization: Bearer <token>`. Each
// handler checks the officer's role, then the object: a case, its holds,
// requests, jobs and packages are visible to the case's members (auditors
// see them read-only; packages never); a request without a case to its
// requester and to compliance officers. A refusal of a signed-in officer
// is answered 403 (role) or 404 (object not visible, indistinguishable from
// absent) and appended to the audit log as access.denied.
//
// Thread-safe: each call opens its own database connection.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "holdfast/gateway/config.h"
#include "metrics.h"

namespace holdfast::gateway {

struct ApiRequest {
  std::string method;
  std::string path;                          // without the query string
  std::map<std::string, std::string> query;  // decoded
  std::string body;
  std::string authorization;                 // the Authorization header
  std::string address;                       // the client's address
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // When set, the response body is this file's content (a package file).
  std::string file_path;
  std::string download_name;
};

class AdminApi {
 public:
  AdminApi(const Config& config, Metrics& metrics);
  ~AdminApi();
  AdminApi(const AdminApi&) = delete;
  AdminApi& operator=(const AdminApi&) = delete;

  ApiResponse Handle(const ApiRequest& request);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Sessions end after this long without a request, and this long after
// sign-in whatever happens; step-up is good for the policy's
// step_up_max_age_seconds.
inline constexpr int64_t kSessionIdleMs = 15 * 60 * 1000;
inline constexpr int64_t kSessionAbsoluteMs = 8 * 60 * 60 * 1000;
// Consecutive failed sign-ins after which an officer is locked out, and for
// how long.
inline constexpr int kMaxFailedSignIns = 5;
inline constexpr int64_t kSignInLockMs = 15 * 60 * 1000;

}  // namespace holdfast::gateway
