#include "random.h"

#include <openssl/rand.h>

namespace holdfast::archive::internal {

Result<Bytes> RandomBytes(size_t n) {
  Bytes out(n);
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    return Status::Internal("RAND_bytes failed");
  }
  return out;
}

}  // namespace holdfast::archive::internal
