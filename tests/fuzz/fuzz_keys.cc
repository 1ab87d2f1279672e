#include "fuzz_keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <algorithm>
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
  k.sender_prekey = Must(hpke::DeriveKeyPair(hpke::KemId::kX25519HkdfSha256,
                                             Seed("holdfast fuzz sender prekey")),
                         "sender prekey");
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
  k.enrollment = Must(hpke::DeriveKeyPair(hpke::KemId::kP256HkdfSha256,
                                          Seed("holdfast fuzz enrollment key")),
                      "enrollment");
  k.master = Must(protocol::Ed25519FromSeed(Seed("holdfast fuzz master key")), "master");
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

// A P-256 key pair as an OpenSSL signing key, built from the raw scalar.
EVP_PKEY* P256Pkey(const hpke::KeyPair& key) {
  std::unique_ptr<BIGNUM, BnFree> priv(
      BN_bin2bn(key.private_key.data(), static_cast<int>(key.private_key.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!priv || !bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv.get()) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, key.public_key.data(),
                                       key.public_key.size()) != 1) {
    Die("p-256 params");
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* out = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &out, EVP_PKEY_KEYPAIR, params.get()) != 1) {
    Die("p-256 key");
  }
  return out;
}

// ECDSA P-256 SHA-256 as r||s.
Bytes EcdsaSign(EVP_PKEY* pkey, ByteView message) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey) != 1 ||
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

}  // namespace

const FixedKeys& Keys() {
  static const FixedKeys keys = Make();
  return keys;
}

Bytes OrgRootSign(ByteView message) {
  static EVP_PKEY* const pkey = P256Pkey(Keys().org_root);
  return EcdsaSign(pkey, message);
}

Bytes EnrollmentSign(ByteView message) {
  static EVP_PKEY* const pkey = P256Pkey(Keys().enrollment);
  return EcdsaSign(pkey, message);
}

Bytes MasterSign(ByteView message) {
  return Must(protocol::Ed25519Sign(Keys().master.private_key.view(), message), "ed25519 sign");
}

Bytes RecipientDeviceSeed() {
  return Concat({Seed("holdfast fuzz recipient identity"), Seed("holdfast fuzz recipient prekey"),
                 Seed("holdfast fuzz master key")});
}

const protocol::wire::EnrollmentKeyCertificate& EnrollmentCertificate() {
  static const protocol::wire::EnrollmentKeyCertificate cert = [] {
    protocol::wire::EnrollmentKeyCertificate c;
    c.set_body(protocol::MakeEnrollmentKeyCertificateBody(Keys().enrollment.public_key,
                                                          kNowMs - 365 * kDayMs,
                                                          kNowMs + 365 * kDayMs, kOrg)
                   .SerializeAsString());
    c.set_signature(AsString(
        OrgRootSign(protocol::EnrollmentKeyCertificateSigningInput(AsBytes(c.body())))));
    return c;
  }();
  return cert;
}

protocol::wire::DeviceCertificate CertifyDevice(const std::string& user, ByteView identity_public,
                                                int64_t issued_at_ms) {
  auto cert = Must(protocol::CertifyDevice(Keys().master.private_key.view(), user, identity_public,
                                           issued_at_ms),
                   "certify device");
  cert.set_org_signature(
      AsString(EnrollmentSign(protocol::DeviceCertificateOrgInput(AsBytes(cert.body())))));
  *cert.mutable_enrollment_key() = EnrollmentCertificate();
  return cert;
}

void Resign(protocol::wire::DeviceCertificate& cert) {
  const ByteView body = AsBytes(cert.body());
  cert.set_master_signature(AsString(MasterSign(protocol::DeviceCertificateMasterInput(body))));
  cert.set_org_signature(AsString(EnrollmentSign(protocol::DeviceCertificateOrgInput(body))));
  if (cert.has_enrollment_key()) {
    auto* e = cert.mutable_enrollment_key();
    e->set_signature(AsString(
        OrgRootSign(protocol::EnrollmentKeyCertificateSigningInput(AsBytes(e->body())))));
  }
}

void ResignPrekey(ByteView identity_public, protocol::wire::SignedPrekey& prekey) {
  const FixedKeys& k = Keys();
  const protocol::Ed25519KeyPair* signer = nullptr;
  for (const auto* pair : {&k.sender, &k.recipient}) {
    if (std::ranges::equal(identity_public, pair->public_key)) signer = pair;
  }
  if (signer == nullptr) return;
  auto signed_prekey = protocol::SignPrekey(signer->private_key.view(),
                                            AsBytes(prekey.public_key()), prekey.created_at_ms());
  if (signed_prekey.ok()) prekey = std::move(*signed_prekey);
}

void Resign(protocol::wire::DeviceInfo& device) {
  if (device.has_prekey()) ResignPrekey(AsBytes(device.identity_key()), *device.mutable_prekey());
  if (device.has_certificate()) Resign(*device.mutable_certificate());
}

Bytes SenderSign(ByteView message) {
  return Must(protocol::Ed25519Sign(Keys().sender.private_key.view(), message), "ed25519 sign");
}

}  // namespace holdfast::fuzz
