// Audit events shared by the disclosure export and the history restore,
// which record the same facts under their own action names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "holdfast/archive/database.h"
#include "holdfast/base/status.h"
#include "holdfast/policy/policy.h"

namespace holdfast::archive::internal {

std::string JoinReasons(const policy::Decision& d);  // "; "-separated
std::string ReasonsJson(const policy::Decision& d);  // a JSON array of strings

// A refused request: verdict, rule, policy version and reasons; committed.
Status AuditRefusal(Connection& conn, int64_t request_id, const std::string& actor,
                    const policy::Decision& d, std::string_view action);
// Committed before the first capsule is opened: rule, policy version and
// how many envelopes are in scope.
Status AuditStart(Connection& conn, int64_t request_id, const std::string& actor,
                  const policy::Decision& d, size_t envelopes, std::string_view action);
// A started job that failed, with the error; committed.
Status AuditFailure(Connection& conn, int64_t request_id, const std::string& actor,
                    const Status& error, std::string_view action);

// Locks request `request_id` until the transaction ends and returns its
// state, which must still be pending or approved: kFailedPrecondition
// "... changed state during the <what>" otherwise.
Result<std::string> LockOpenRequest(Connection::Impl& c, int64_t request_id,
                                    std::string_view what);

}  // namespace holdfast::archive::internal
