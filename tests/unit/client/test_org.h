// An org root, its enrollment key and archive epochs for client tests, made
// with OpenSSL the way the HSM would: ECDSA P-256 SHA-256, P1363 r||s. The
// org also plays the gateway's part at registration: it countersigns the
// master-signed device certificate a device sends.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "holdfast/base/bytes.h"
#include "holdfast/client/device.h"
#include "holdfast/testing/p256_key.h"

namespace holdfast::client::testing {

// An ECDSA P-256 signing key.
using ::holdfast::testing::P256Key;

// `master_signed` countersigned by `enrollment_key`, carrying `key_certificate`
// (which need not vouch for that key: tests forge chains with it).
wire::DeviceCertificate Countersign(const wire::DeviceCertificate& master_signed,
                                    const P256Key& enrollment_key,
                                    const wire::EnrollmentKeyCertificate& key_certificate);

class OrgRoot {
 public:
  // A fresh root key, and an enrollment key it certifies for org "acme"
  // from the epoch to the end of time.
  OrgRoot();
  ~OrgRoot();
  OrgRoot(const OrgRoot&) = delete;
  OrgRoot& operator=(const OrgRoot&) = delete;

  const Bytes& public_key() const { return root_.public_key(); }
  // Signs `body` (serialised) into a certificate.
  wire::EpochCertificate Certify(const wire::EpochCertificateBody& body) const;
  // Certifies `public_key` as an enrollment key valid in [not_before_ms, not_after_ms).
  wire::EnrollmentKeyCertificate CertifyEnrollmentKey(ByteView public_key, int64_t not_before_ms,
                                                      int64_t not_after_ms,
                                                      const std::string& org = "acme") const;

  const P256Key& enrollment_key() const { return enrollment_key_; }
  const wire::EnrollmentKeyCertificate& enrollment_certificate() const {
    return enrollment_certificate_;
  }
  // Countersigns with this org's enrollment key.
  wire::DeviceCertificate Countersign(const wire::DeviceCertificate& master_signed) const;

  // What an honest gateway answers `request`: the device id derived from the
  // identity key, this root, `org`, and the request's certificate
  // countersigned. No checks: tests hand it requests they built themselves.
  wire::RegisterResponse Register(const wire::RegisterRequest& request,
                                  const std::string& org = "acme") const;

 private:
  P256Key root_;
  P256Key enrollment_key_;
  wire::EnrollmentKeyCertificate enrollment_certificate_;
};

// A unique temporary directory, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace holdfast::client::testing
