#include "test_org.h"

#include <stdlib.h>

#include <limits>
#include <memory>
#include <stdexcept>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::client::testing {

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

wire::DeviceCertificate Countersign(const wire::DeviceCertificate& master_signed,
                                    const P256Key& enrollment_key,
                                    const wire::EnrollmentKeyCertificate& key_certificate) {
  wire::DeviceCertificate cert = master_signed;
  cert.set_org_signature(
      AsString(enrollment_key.Sign(protocol::DeviceCertificateOrgInput(AsBytes(cert.body())))));
  *cert.mutable_enrollment_key() = key_certificate;
  return cert;
}

OrgRoot::OrgRoot()
    : enrollment_certificate_(CertifyEnrollmentKey(enrollment_key_.public_key(), 0,
                                                   std::numeric_limits<int64_t>::max())) {}

OrgRoot::~OrgRoot() = default;

wire::EpochCertificate OrgRoot::Certify(const wire::EpochCertificateBody& body) const {
  wire::EpochCertificate cert;
  cert.set_body(body.SerializeAsString());
  cert.set_signature(
      AsString(root_.Sign(protocol::EpochCertificateSigningInput(AsBytes(cert.body())))));
  return cert;
}

wire::EnrollmentKeyCertificate OrgRoot::CertifyEnrollmentKey(ByteView public_key,
                                                             int64_t not_before_ms,
                                                             int64_t not_after_ms,
                                                             const std::string& org) const {
  wire::EnrollmentKeyCertificate cert;
  cert.set_body(protocol::MakeEnrollmentKeyCertificateBody(public_key, not_before_ms,
                                                           not_after_ms, org)
                    .SerializeAsString());
  cert.set_signature(AsString(
      root_.Sign(protocol::EnrollmentKeyCertificateSigningInput(AsBytes(cert.body())))));
  return cert;
}

wire::DeviceCertificate OrgRoot::Countersign(const wire::DeviceCertificate& master_signed) const {
  return testing::Countersign(master_signed, enrollment_key_, enrollment_certificate_);
}

wire::RegisterResponse OrgRoot::Register(const wire::RegisterRequest& request,
                                         const std::string& org) const {
  wire::RegisterResponse r;
  r.set_device_id(AsString(protocol::DeviceIdFor(AsBytes(request.identity_key()))));
  r.set_org_root_key(AsString(public_key()));
  r.set_org(org);
  *r.mutable_certificate() = Countersign(request.certificate());
  return r;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "holdfast-client-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace holdfast::client::testing
