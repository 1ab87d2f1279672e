#include "fuzz_keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "holdfast/protocol/envelope.h"

namespace holdfast::fuzz {
namespace {

namespace hpke = protocol::hpke;

[[noreturn]] void Die(std::string_view what) {
  std::fprintf(stderr, "fuzz keys: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

template <typename T>
T Must(Result<T> r, std::string_view what) {
  if (!r.ok()) Die(what);
  return std::move(r).value();
}

Bytes Seed(std::string_view label) {
  return protocol::Sha256(AsBytes(label));
}

FixedKeys Make() {
  FixedKeys k;
  k.sender = Must(protocol::Ed25519FromSeed(Seed("holdfast fuzz sender identity")), "sender");
  k.sender_device = protocol::DeviceIdFor(k.sender.public_key);
  k.recipient =
      Must(protocol::Ed25519FromSeed(Seed("holdfast fuzz recipient identity")), "recipient");
  k.recipient_device = protocol::DeviceIdFor(k.recipient.public_key);
  k.recipient_prekey = Must(hpke::DeriveKeyPair(hpke::KemId::kX25519HkdfSha256,
                                                Seed("holdfast fuzz recipient prekey")),
                            "prekey");
  k.archive = Must(hpke::DeriveKeyPair(hpke::KemId::kP256HkdfSha256,
                                       Seed("holdfast fuzz archive epoch")),
                   "archive");
  k.org_root = Must(hpke::DeriveKeyPair(hpke::KemId::kP256HkdfSha256,
                                        Seed("holdfast fuzz org root")),
                    "org root");
  return k;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_clear_free(p); }
};

// The org root as an OpenSSL signing key, built once from the raw scalar.
EVP_PKEY* OrgRootPkey() {
  static EVP_PKEY* const pkey = [] {
    const FixedKeys& k = Keys();
    std::unique_ptr<BIGNUM, BnFree> priv(
        BN_bin2bn(k.org_root.private_key.data(), static_cast<int>(k.org_root.private_key.size()),
                  nullptr));
    std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
    if (!priv || !bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
            1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv.get()) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY,
                                         k.org_root.public_key.data(),
                                         k.org_root.public_key.size()) != 1) {
      Die("org root params");
    }
    std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY* out = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &out, EVP_PKEY_KEYPAIR, params.get()) != 1) {
      Die("org root key");
    }
    return out;
  }();
  return pkey;
}

}  // namespace

const FixedKeys& Keys() {
  static const FixedKeys keys = Make();
  return keys;
}

Bytes OrgRootSign(ByteView message) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, OrgRootPkey()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size()) != 1) {
    Die("ecdsa sign init");
  }
  Bytes der(len);
  if (EVP_DigestSign(ctx.get(), der.data(), &len, message.data(), message.size()) != 1) {
    Die("ecdsa sign");
  }
  der.resize(len);
  return Must(protocol::EcdsaDerToP1363(der), "ecdsa der");
}

Bytes SenderSign(ByteView message) {
  return Must(protocol::Ed25519Sign(Keys().sender.private_key.view(), message), "ed25519 sign");
}

}  // namespace holdfast::fuzz
