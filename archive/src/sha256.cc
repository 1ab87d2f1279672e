#include "sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace holdfast::archive::internal {

Bytes Sha256(ByteView data) {
  Bytes out(32);
  unsigned int len = 0;
  // EVP_Digest fails only on allocation failure or a broken OpenSSL build.
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != out.size()) {
    std::abort();
  }
  return out;
}

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) std::abort();
}

Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(ctx_); }

void Sha256Hasher::Update(ByteView data) {
  if (EVP_DigestUpdate(ctx_, data.data(), data.size()) != 1) std::abort();
}

Bytes Sha256Hasher::Finish() {
  Bytes out(32);
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, out.data(), &len) != 1 || len != out.size()) std::abort();
  return out;
}

}  // namespace holdfast::archive::internal
