// An org root and archive epoch for client tests, made with OpenSSL the way
// the HSM would: ECDSA P-256 over EpochCertificateSigningInput, P1363.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "holdfast/base/bytes.h"
#include "holdfast/client/device.h"

namespace holdfast::client::testing {

class OrgRoot {
 public:
  OrgRoot();
  ~OrgRoot();
  OrgRoot(const OrgRoot&) = delete;
  OrgRoot& operator=(const OrgRoot&) = delete;

  const Bytes& public_key() const { return public_key_; }
  // Signs `body` (serialised) into a certificate.
  wire::EpochCertificate Certify(const wire::EpochCertificateBody& body) const;

 private:
  struct Key;
  std::unique_ptr<Key> key_;
  Bytes public_key_;
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
