#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "holdfast/hsm/token.h"

namespace holdfast::hsm {
namespace {

// Longer than any PIN a token accepts; a larger file is not a PIN file.
constexpr size_t kMaxPinFileSize = 256;

constexpr mode_t kGroupOrOtherReadWrite = S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH;

class Fd final {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<SecretBytes> ReadPinFile(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int error = errno;
    std::string message = "PIN file " + path + ": " + std::strerror(error);
    return error == ENOENT ? Status::NotFound(std::move(message))
                           : Status::Unavailable(std::move(message));
  }
  // Checked on the opened file, so that it is the file that is read.
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    return Status::Unavailable("PIN file " + path + ": " + std::strerror(errno));
  }
  if ((st.st_mode & kGroupOrOtherReadWrite) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::PermissionDenied("PIN file " + path + " has mode " + mode +
                                    "; group and others must not be able to read or write "
                                    "it (chmod 600)");
  }
  // Read straight into the secret buffer so no unwiped copy of the PIN remains.
  SecretBytes pin(kMaxPinFileSize + 1);
  size_t size = 0;
  while (size < pin.size()) {
    ssize_t n = read(fd.get(), pin.data() + size, pin.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status::Unavailable("PIN file " + path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  if (size > kMaxPinFileSize) {
    return Status::InvalidArgument("PIN file " + path + " is larger than " +
                                   std::to_string(kMaxPinFileSize) + " bytes");
  }
  if (size > 0 && pin.data()[size - 1] == '\n') --size;
  if (size == 0) return Status::InvalidArgument("PIN file " + path + " is empty");
  pin.resize(size);
  return pin;
}

Result<SecretBytes> ReadPinEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return Status::NotFound("PIN variable " + name + " is not set");
  std::string_view pin(value);
  if (pin.ends_with('\n')) pin.remove_suffix(1);
  if (pin.empty()) return Status::InvalidArgument("PIN variable " + name + " is empty");
  if (pin.size() > kMaxPinFileSize) {
    return Status::InvalidArgument("PIN variable " + name + " is longer than " +
                                   std::to_string(kMaxPinFileSize) + " bytes");
  }
  return SecretBytes(AsBytes(pin));
}

}  // namespace holdfast::hsm
