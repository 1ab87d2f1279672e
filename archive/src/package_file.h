// Files of an export package: created exclusively (0600, never through a
// symbolic link), written through a raw descriptor, hashed as they go and
// fsynced before they count as written.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::archive::internal {

inline std::string ErrnoMessage(const std::string& what) { return what + ": " + std::strerror(errno); }

// Move-only; the destructor closes without fsync (an abandoned file).
class PackageFile {
 public:
  // kAlreadyExists if `path` exists (a symbolic link included).
  static Result<PackageFile> Create(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST) return Status::AlreadyExists(path.string() + " already exists");
      return Status::Internal(ErrnoMessage("creating " + path.string()));
    }
    return PackageFile(fd);
  }
  // Opens a partly written file, keeps its first `keep` bytes (a
  // checkpoint: what was fsynced and recorded), hashes them and appends
  // after them. A missing file is created when `keep` is 0.
  static Result<PackageFile> Resume(const std::filesystem::path& path, int64_t keep) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return Status::Internal(ErrnoMessage("opening " + path.string()));
    PackageFile file(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) return Status::Internal(ErrnoMessage("stat of " + path.string()));
    if (st.st_size < keep) {
      return Status::Internal(path.string() + " is shorter than its checkpoint (" +
                              std::to_string(st.st_size) + " < " + std::to_string(keep) + " bytes)");
    }
    if (::ftruncate(fd, keep) != 0) return Status::Internal(ErrnoMessage("truncating " + path.string()));
    std::string chunk(1 << 16, '\0');
    for (int64_t off = 0; off < keep;) {
      ssize_t n = ::pread(fd, chunk.data(), std::min<int64_t>(chunk.size(), keep - off), off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::Internal(ErrnoMessage("reading " + path.string()));
      file.hasher_->Update(AsBytes(std::string_view(chunk.data(), static_cast<size_t>(n))));
      off += n;
    }
    file.bytes_ = static_cast<uint64_t>(keep);
    if (::lseek(fd, keep, SEEK_SET) < 0) return Status::Internal(ErrnoMessage("seeking " + path.string()));
    return file;
  }

  PackageFile(PackageFile&& other) noexcept : fd_(other.fd_), bytes_(other.bytes_) {
    other.fd_ = -1;
    hasher_.swap(other.hasher_);
  }
  PackageFile(const PackageFile&) = delete;
  PackageFile& operator=(const PackageFile&) = delete;
  PackageFile& operator=(PackageFile&&) = delete;
  ~PackageFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Write(std::string_view data) {
    hasher_->Update(AsBytes(data));
    bytes_ += data.size();
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::Internal(ErrnoMessage("writing the export"));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  }

  Status Sync() {
    if (::fdatasync(fd_) != 0) return Status::Internal(ErrnoMessage("fsync of the export"));
    return Status::Ok();
  }

  // Flushes to disk and closes.
  Status Close() {
    int fd = fd_;
    fd_ = -1;
    if (::fsync(fd) != 0) {
      Status s = Status::Internal(ErrnoMessage("fsync of the export"));
      ::close(fd);
      return s;
    }
    if (::close(fd) != 0) return Status::Internal(ErrnoMessage("closing the export"));
    return Status::Ok();
  }

  // SHA-256 of everything written; call once.
  Bytes Digest() { return hasher_->Finish(); }
  uint64_t bytes() const { return bytes_; }

 private:
  explicit PackageFile(int fd) : fd_(fd), hasher_(std::make_unique<protocol::Sha256Hasher>()) {}
  int fd_;
  std::unique_ptr<protocol::Sha256Hasher> hasher_;
  uint64_t bytes_ = 0;
};

inline Status SyncDirectory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Internal(ErrnoMessage("opening " + dir.string()));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::Internal(ErrnoMessage("fsync of " + dir.string()));
  return Status::Ok();
}

}  // namespace holdfast::archive::internal
