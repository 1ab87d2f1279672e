// POSIX file helpers for the profile directory. Private to client/.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::client::internal {

// An owned file descriptor; move-only, closed on destruction.
class UniqueFd final {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  ~UniqueFd();

  bool valid() const { return fd_ >= 0; }
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes and reports the result; the destructor closes only as a fallback.
  Status Close();

 private:
  int fd_ = -1;
};

// Creates `dir` (and parents) if needed and sets its mode to 0700.
Status EnsurePrivateDirectory(const std::filesystem::path& dir);

// Writes `content` to a temporary file next to `path` with `mode`, fsyncs it,
// renames it over `path` and fsyncs the directory. Readers see either the
// old file or the complete new one.
Status WriteFileAtomic(const std::filesystem::path& path, std::string_view content, mode_t mode);

// Reads a regular file of at most `max_size` bytes.
Result<std::string> ReadSmallFile(const std::filesystem::path& path, size_t max_size);

// Reads a secret (a passphrase file) of at most `max_size` bytes straight
// into a wiped buffer. Refuses a file that group or others can access.
Result<SecretBytes> ReadSecretFile(const std::filesystem::path& path, size_t max_size);

}  // namespace holdfast::client::internal
