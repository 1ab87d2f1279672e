#pragma once

#include "holdfast/base/bytes.h"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace holdfast::archive::internal {

Bytes Sha256(ByteView data);

// Incremental SHA-256.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void Update(ByteView data);
  Bytes Finish();

 private:
  ::evp_md_ctx_st* ctx_;
};

}  // namespace holdfast::archive::internal
