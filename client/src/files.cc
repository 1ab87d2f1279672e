#include "files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "holdfast/protocol/primitives.h"

namespace holdfast::client::internal {
namespace {

Status Errno(std::string_view what, const std::filesystem::path& path) {
  int err = errno;
  return Status::Unavailable(std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.Release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

Status UniqueFd::Close() {
  if (fd_ < 0) return Status::Ok();
  int fd = Release();
  if (::close(fd) != 0) return Status::Unavailable(std::string("close: ") + std::strerror(errno));
  return Status::Ok();
}

Status EnsurePrivateDirectory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable("create directory " + dir.string() + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0) return Errno("chmod", dir);
  return Status::Ok();
}

Status WriteFileAtomic(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  const std::filesystem::path dir =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const std::filesystem::path tmp =
      dir / ("." + path.filename().string() + "." + ToHex(protocol::RandomBytes(6)) + ".tmp");

  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd.valid()) return Errno("create", tmp);
  auto fail = [&](Status s) {
    fd = UniqueFd();
    ::unlink(tmp.c_str());
    return s;
  };
  // The umask may have narrowed the mode; it never widens it, but set it exactly.
  if (::fchmod(fd.get(), mode) != 0) return fail(Errno("chmod", tmp));
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Errno("write", tmp));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(Errno("fsync", tmp));
  if (Status s = fd.Close(); !s.ok()) return fail(s);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(Errno("rename", path));

  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) return Errno("open", dir);
  if (::fsync(dir_fd.get()) != 0) return Errno("fsync", dir);
  return dir_fd.Close();
}

Result<std::string> ReadSmallFile(const std::filesystem::path& path, size_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::NotFound(path.string() + " does not exist");
    return Errno("open", path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Errno("stat", path);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path.string() + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    return Status::InvalidArgument(path.string() + " is too large");
  }
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_size) return Status::InvalidArgument(path.string() + " is too large");
  }
  return out;
}

Result<SecretBytes> ReadSecretFile(const std::filesystem::path& path, size_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::NotFound(path.string() + " does not exist");
    return Errno("open", path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Errno("stat", path);
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(path.string() + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied(path.string() +
                                    " is accessible by group or others; run chmod 600 on it");
  }
  SecretBytes out(max_size + 1);
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", path);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > max_size) return Status::InvalidArgument(path.string() + " is too large");
  out.resize(got);
  return out;
}

}  // namespace holdfast::client::internal
