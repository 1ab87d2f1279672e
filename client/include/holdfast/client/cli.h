// The reference command-line client, `holdfast-client`.
#pragma once

#include <ostream>

namespace holdfast::client {

// Exit status: 0 success, 1 usage error, 2 refused or failed (one line on `err`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;
inline constexpr int kExitFailed = 2;

// `listen` installs SIGINT and SIGTERM handlers for the life of the call.
int RunClientCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace holdfast::client
