// One owning pointer type per OpenSSL object; every deleter lives here.
#pragma once

#include <memory>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

namespace holdfast::protocol::internal {

template <auto Free>
struct SslDeleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};

template <typename T, auto Free>
using SslPtr = std::unique_ptr<T, SslDeleter<Free>>;

using EvpPkeyPtr = SslPtr<EVP_PKEY, EVP_PKEY_free>;
using EvpPkeyCtxPtr = SslPtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using EvpCipherCtxPtr = SslPtr<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using EvpMdCtxPtr = SslPtr<EVP_MD_CTX, EVP_MD_CTX_free>;
using EvpMacPtr = SslPtr<EVP_MAC, EVP_MAC_free>;
using EvpMacCtxPtr = SslPtr<EVP_MAC_CTX, EVP_MAC_CTX_free>;
using BignumPtr = SslPtr<BIGNUM, BN_free>;
// For BIGNUMs that hold private scalars.
using SecretBignumPtr = SslPtr<BIGNUM, BN_clear_free>;
using BnCtxPtr = SslPtr<BN_CTX, BN_CTX_free>;
using EcGroupPtr = SslPtr<EC_GROUP, EC_GROUP_free>;
using EcPointPtr = SslPtr<EC_POINT, EC_POINT_free>;
// For points derived from a private scalar (ECDH results).
using SecretEcPointPtr = SslPtr<EC_POINT, EC_POINT_clear_free>;
using EcdsaSigPtr = SslPtr<ECDSA_SIG, ECDSA_SIG_free>;
using ParamBldPtr = SslPtr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>;
using ParamPtr = SslPtr<OSSL_PARAM, OSSL_PARAM_free>;

}  // namespace holdfast::protocol::internal
