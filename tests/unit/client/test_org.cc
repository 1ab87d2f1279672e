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
