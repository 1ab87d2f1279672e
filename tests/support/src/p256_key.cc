#include "holdfast/testing/p256_key.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <stdexcept>

#include "holdfast/protocol/primitives.h"

namespace holdfast::testing {

struct P256Key::Key {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey{nullptr, EVP_PKEY_free};
};

P256Key::P256Key() : key_(std::make_unique<Key>()) {
  key_->pkey.reset(EVP_EC_gen("P-256"));
  if (!key_->pkey) throw std::runtime_error("EVP_EC_gen failed");
  public_key_.resize(65);
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key_->pkey.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                      public_key_.data(), public_key_.size(), &len) != 1 ||
      len != 65) {
    throw std::runtime_error("cannot export P-256 public key");
  }
}

P256Key::~P256Key() = default;

Bytes P256Key::Sign(ByteView message) const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t der_len = 0;
  if (!ctx ||
      EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key_->pkey.get(),
                            nullptr) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &der_len, message.data(), message.size()) != 1) {
    throw std::runtime_error("ECDSA sign init failed");
  }
  Bytes der(der_len);
  if (EVP_DigestSign(ctx.get(), der.data(), &der_len, message.data(), message.size()) != 1) {
    throw std::runtime_error("ECDSA sign failed");
  }
  der.resize(der_len);
  auto p1363 = protocol::EcdsaDerToP1363(der);
  if (!p1363.ok()) throw std::runtime_error("DER to P1363 failed");
  return std::move(p1363).value();
}

}  // namespace holdfast::testing
