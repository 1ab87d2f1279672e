#pragma once

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::archive::internal {

// Bytes from the operating system's CSPRNG (via OpenSSL).
Result<Bytes> RandomBytes(size_t n);

}  // namespace holdfast::archive::internal
