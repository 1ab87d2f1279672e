#include "holdfast/gateway/key_export.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "holdfast/archive/compliance.h"
#include "holdfast/archive/export_package.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "holdfast/gateway/json_quote.h"

namespace holdfast::gateway {
namespace {

namespace fs = std::filesystem;
namespace wire = protocol::wire;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// DER SubjectPublicKeyInfo of an id-ecPublicKey on prime256v1, up to the
// 65-byte uncompressed point.
constexpr uint8_t kP256SpkiPrefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                       0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                       0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

std::string Utc(int64_t ms) { return FormatUtc(ms, TimePrecision::kSeconds); }

std::string Window(int64_t not_before_ms, int64_t not_after_ms, int64_t now_ms) {
  const char* now = now_ms < not_before_ms ? "not yet valid" : now_ms < not_after_ms ? "valid now" : "ended";
  return Utc(not_before_ms) + " .. " + Utc(not_after_ms) + " (" + now + ")";
}

std::string KeyLine(ByteView key) { return ToHex(key) + " (fingerprint " + protocol::Fingerprint(key) + ")"; }

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::Unavailable("cannot read " + path);
  return text.str();
}

std::string EpochJson(const wire::EpochCertificate& cert, const wire::EpochCertificateBody& body,
                      ByteView org_root) {
  const ByteView key = AsBytes(body.public_key());
  std::ostringstream out;
  out << "{\n  \"type\": \"holdfast epoch certificate\",\n  \"certificate_file\": "
      << JsonQuote(EpochCertFile(body.epoch_id())) << ",\n  \"version\": " << body.version()
      << ",\n  \"epoch_id\": " << body.epoch_id() << ",\n  \"org\": " << JsonQuote(body.org())
      << ",\n  \"public_key\": " << JsonQuote(ToHex(key))
      << ",\n  \"fingerprint\": " << JsonQuote(protocol::Fingerprint(key))
      << ",\n  \"not_before_ms\": " << body.not_before_ms() << ",\n  \"not_before\": "
      << JsonQuote(Utc(body.not_before_ms())) << ",\n  \"not_after_ms\": " << body.not_after_ms()
      << ",\n  \"not_after\": " << JsonQuote(Utc(body.not_after_ms()))
      << ",\n  \"signature\": " << JsonQuote(ToHex(AsBytes(cert.signature())))
      << ",\n  \"signed_by_org_root\": " << JsonQuote(protocol::Fingerprint(org_root)) << "\n}\n";
  return out.str();
}

std::string EnrollmentJson(const wire::EnrollmentKeyCertificate& cert,
                           const wire::EnrollmentKeyCertificateBody& body, ByteView org_root) {
  const ByteView key = AsBytes(body.public_key());
  std::ostringstream out;
  out << "{\n  \"type\": \"holdfast enrollment key certificate\",\n  \"certificate_file\": "
      << JsonQuote(kEnrollmentCertFile) << ",\n  \"version\": " << body.version()
      << ",\n  \"org\": " << JsonQuote(body.org()) << ",\n  \"public_key\": " << JsonQuote(ToHex(key))
      << ",\n  \"fingerprint\": " << JsonQuote(protocol::Fingerprint(key))
      << ",\n  \"not_before_ms\": " << body.not_before_ms() << ",\n  \"not_before\": "
      << JsonQuote(Utc(body.not_before_ms())) << ",\n  \"not_after_ms\": " << body.not_after_ms()
      << ",\n  \"not_after\": " << JsonQuote(Utc(body.not_after_ms()))
      << ",\n  \"signature\": " << JsonQuote(ToHex(AsBytes(cert.signature())))
      << ",\n  \"signed_by_org_root\": " << JsonQuote(protocol::Fingerprint(org_root)) << "\n}\n";
  return out.str();
}

// Collects the files of an export in memory, so nothing is written until
// every certificate has verified.
struct PendingFile {
  std::string name;
  std::string content;
  std::string description;
};

Status WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) return Status::Unavailable("cannot write " + path.string());
  std::error_code ec;
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                            fs::perms::others_read, ec);
  if (ec) return Status::Unavailable("cannot set the mode of " + path.string() + ": " + ec.message());
  return Status::Ok();
}

// ------------------------------------------------------------ verify-cert

Result<VerifiedObject> VerifyEpoch(const wire::EpochCertificate& cert, ByteView org_root, int64_t now_ms) {
  HF_ASSIGN_OR_RETURN(wire::EpochCertificateBody body, protocol::VerifyEpochCertificate(cert, org_root, 0));
  VerifiedObject v{SignedObject::kEpochCertificate, {}};
  v.facts.push_back("epoch certificate verified: signed by the org root " + protocol::Fingerprint(org_root));
  v.facts.push_back("  archive epoch " + std::to_string(body.epoch_id()) + " of \"" + body.org() + "\"");
  v.facts.push_back("  archive public key " + KeyLine(AsBytes(body.public_key())));
  v.facts.push_back("  valid " + Window(body.not_before_ms(), body.not_after_ms(), now_ms));
  v.facts.push_back("clients seal the archive copy of messages sent in this window to this key");
  return v;
}

Result<VerifiedObject> VerifyEnrollment(const wire::EnrollmentKeyCertificate& cert, ByteView org_root,
                                        int64_t now_ms) {
  HF_ASSIGN_OR_RETURN(wire::EnrollmentKeyCertificateBody body,
                      protocol::VerifyEnrollmentKeyCertificate(cert, org_root, 0));
  VerifiedObject v{SignedObject::kEnrollmentKeyCertificate, {}};
  v.facts.push_back("enrollment key certificate verified: signed by the org root " +
                    protocol::Fingerprint(org_root));
  v.facts.push_back("  enrollment key of \"" + body.org() + "\": " + KeyLine(AsBytes(body.public_key())));
  v.facts.push_back("  valid " + Window(body.not_before_ms(), body.not_after_ms(), now_ms));
  v.facts.push_back("device certificates countersigned by this key while it is valid are the organisation's");
  return v;
}

Result<VerifiedObject> VerifyDeviceCert(const wire::DeviceCertificate& cert, ByteView org_root) {
  HF_ASSIGN_OR_RETURN(protocol::CertifiedDevice device, protocol::VerifyDeviceCertificate(cert, org_root));
  wire::EnrollmentKeyCertificateBody enrollment;
  (void)enrollment.ParseFromString(cert.enrollment_key().body());  // verified above
  VerifiedObject v{SignedObject::kDeviceCertificate, {}};
  v.facts.push_back("device certificate verified: user \"" + device.user + "\" of \"" + device.org + "\"");
  v.facts.push_back("  device " + ToHex(device.device_id) + ", identity key " + ToHex(device.identity_key));
  v.facts.push_back("  certified " + Utc(device.issued_at_ms) + " by the user's master key " +
                    ToHex(device.master_key));
  v.facts.push_back("  countersigned by the enrollment key " +
                    protocol::Fingerprint(AsBytes(enrollment.public_key())) + " (valid " +
                    Utc(enrollment.not_before_ms()) + " .. " + Utc(enrollment.not_after_ms()) +
                    "), certified by the org root " + protocol::Fingerprint(org_root));
  return v;
}

Result<VerifiedObject> VerifyManifest(const std::string& path, const std::string& manifest, ByteView org_root,
                                      const std::optional<std::string>& signature_path) {
  const fs::path sig_path = signature_path ? fs::path(*signature_path) : fs::path(path).parent_path() / "manifest.sig";
  HF_ASSIGN_OR_RETURN(std::string sig_text, ReadFile(sig_path.string()));
  Status s = archive::VerifyManifestSignature(manifest, sig_text, org_root);
  if (!s.ok()) return s.WithContext("export manifest " + path + " with signature " + sig_path.string());
  VerifiedObject v{SignedObject::kExportManifest, {}};
  v.facts.push_back("export manifest verified: signed by the org root " + protocol::Fingerprint(org_root));
  try {
    Poco::JSON::Parser parser;
    auto object = parser.parse(manifest).extract<Poco::JSON::Object::Ptr>();
    const std::string named_root = object->optValue<std::string>("org_root_public_key", "");
    if (named_root != ToHex(org_root)) {
      return Status::CryptoFailure("the manifest names org root key " + named_root +
                                   ", not the key that signed it");
    }
    v.facts.push_back("  disclosure request " + object->optValue<std::string>("request_id", "?") + ", case " +
                      object->optValue<std::string>("case_id", "?") + ", purpose " +
                      object->optValue<std::string>("purpose", "?") + ", reference \"" +
                      object->optValue<std::string>("legal_reference", "") + "\"");
    v.facts.push_back("  " + object->optValue<std::string>("message_count", "?") + " message(s), created " +
                      object->optValue<std::string>("created_at", "?") + " by " +
                      object->optValue<std::string>("created_by", "?") + " under policy " +
                      object->optValue<std::string>("policy_version", "?"));
    if (auto files = object->getArray("files")) {
      for (size_t i = 0; i < files->size(); ++i) {
        auto f = files->getObject(static_cast<unsigned>(i));
        if (!f) continue;
        const std::string name = f->optValue<std::string>("name", "");
        if (!archive::IsSafePackageName(name)) {
          return Status::InvalidArgument("the manifest lists a file with an unusable name");
        }
        const fs::path beside = fs::path(path).parent_path() / name;
        std::error_code ec;
        if (!fs::exists(beside, ec)) {
          v.facts.push_back("  " + name + ": not beside the manifest, not checked");
          continue;
        }
        HF_ASSIGN_OR_RETURN(std::string content, ReadFile(beside.string()));
        if (ToHex(protocol::Sha256(AsBytes(content))) != f->optValue<std::string>("sha256", "") ||
            std::to_string(content.size()) != f->optValue<std::string>("bytes", "")) {
          return Status::CryptoFailure(name + " does not match the SHA-256 and size the manifest lists");
        }
        v.facts.push_back("  " + name + ": SHA-256 and size match the manifest");
      }
    }
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("the manifest is signed but is not the JSON of an export: " +
                                   e.displayText());
  }
  return v;
}

}  // namespace

std::string EpochCertFile(uint32_t epoch_id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "epoch-%06u.cert", epoch_id);
  return buf;
}

std::string EpochJsonFile(uint32_t epoch_id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "epoch-%06u.json", epoch_id);
  return buf;
}

Result<std::string> P256PublicKeyPem(ByteView point) {
  if (point.size() != 65 || point[0] != 0x04) {
    return Status::InvalidArgument("a P-256 public key is 65 bytes starting 04");
  }
  const Bytes der = Concat({ByteView(kP256SpkiPrefix, sizeof kP256SpkiPrefix), point});
  const unsigned char* p = der.data();
  PkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key) return Status::InvalidArgument("not a point on P-256");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) return Status::Internal("PEM encoding failed");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<Bytes> ParseOrgRootKey(std::string_view text) {
  if (text.find("-----BEGIN") == std::string_view::npos) {
    std::string hex(text);
    while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.back()))) hex.pop_back();
    auto key = FromHex(hex);
    if (!key || key->size() != 65 || (*key)[0] != 0x04) {
      return Status::InvalidArgument("the org root key must be a PEM public key or 65 bytes in hex (04...)");
    }
    return *key;
  }
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  PkeyPtr key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) return Status::InvalidArgument("the org root key file holds no PEM public key");
  char group[64] = {};
  size_t group_len = 0;
  if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &group_len) != 1 ||
      std::string_view(group, group_len) != "prime256v1") {
    return Status::InvalidArgument("the org root key is not a P-256 key");
  }
  (void)EVP_PKEY_set_utf8_string_param(key.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "uncompressed");
  Bytes point(65);
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(), &len) != 1 ||
      len != 65) {
    return Status::InvalidArgument("cannot read the org root key's point");
  }
  return point;
}

Result<KeyExportSummary> ExportPublicKeys(archive::Connection& conn, hsm::Token& token, const Config& config,
                                          const std::string& dir, const std::string& actor) {
  archive::Store store(conn);
  HF_ASSIGN_OR_RETURN(Bytes root, token.PublicKey(hsm::kOrgRootLabel));
  auto recorded = store.GetSetting(std::string(archive::kOrgRootPublicKeySetting));
  if (!recorded.ok()) return recorded.status().WithContext("the org root public key recorded by `init`");
  if (*recorded != root) {
    return Status::FailedPrecondition("the database records a different org root key than the HSM holds");
  }

  std::vector<PendingFile> pending;
  HF_ASSIGN_OR_RETURN(std::string pem, P256PublicKeyPem(root));
  pending.push_back({std::string(kOrgRootPemFile), pem,
                     "the org root public key (PEM SubjectPublicKeyInfo, ECDSA P-256); pin it in clients' "
                     "MDM profiles and give it to auditors"});
  pending.push_back({std::string(kOrgRootHexFile), ToHex(root) + "\n",
                     "the same key as a 65-byte uncompressed point in hex, as holdfast-admin prints it"});

  HF_ASSIGN_OR_RETURN(Bytes enrollment_bytes,
                      store.GetSetting(std::string(archive::kEnrollmentKeyCertificateSetting)));
  wire::EnrollmentKeyCertificate enrollment;
  if (!enrollment.ParseFromArray(enrollment_bytes.data(), static_cast<int>(enrollment_bytes.size()))) {
    return Status::FailedPrecondition("the stored enrollment key certificate does not parse");
  }
  auto enrollment_body = protocol::VerifyEnrollmentKeyCertificate(enrollment, root, 0);
  if (!enrollment_body.ok()) {
    return Status::FailedPrecondition("the stored enrollment key certificate does not verify: " +
                                      enrollment_body.status().message());
  }
  pending.push_back({std::string(kEnrollmentCertFile), AsString(enrollment_bytes),
                     "the org root's certificate of the enrollment key (serialised wire "
                     "EnrollmentKeyCertificate), which countersigns device certificates"});
  pending.push_back({std::string(kEnrollmentJsonFile), EnrollmentJson(enrollment, *enrollment_body, root),
                     "its body and signature as JSON, for reading"});

  HF_ASSIGN_OR_RETURN(auto epochs, store.ListEpochs());
  for (const archive::EpochRecord& e : epochs) {
    wire::EpochCertificate cert;
    if (!cert.ParseFromArray(e.certificate.data(), static_cast<int>(e.certificate.size()))) {
      return Status::FailedPrecondition("the certificate of epoch " + std::to_string(e.epoch_id) + " does not parse");
    }
    auto body = protocol::VerifyEpochCertificate(cert, root, 0);
    if (!body.ok() || body->epoch_id() != e.epoch_id) {
      return Status::FailedPrecondition("the certificate of epoch " + std::to_string(e.epoch_id) +
                                        " does not verify under the org root");
    }
    pending.push_back({EpochCertFile(e.epoch_id), AsString(e.certificate),
                       "the org root's certificate of archive epoch " + std::to_string(e.epoch_id) +
                           " (serialised wire EpochCertificate), valid " + Utc(e.not_before_ms) + " .. " +
                           Utc(e.not_after_ms)});
    pending.push_back({EpochJsonFile(e.epoch_id), EpochJson(cert, *body, root),
                       "its body and signature as JSON, for reading"});
  }

  std::error_code ec;
  const fs::path out(dir);
  if (fs::exists(out, ec) && !fs::is_empty(out, ec)) {
    return Status::AlreadyExists(dir + " exists and is not empty; export into a new directory");
  }
  fs::create_directories(out, ec);
  if (ec) return Status::Unavailable("cannot create " + dir + ": " + ec.message());

  KeyExportSummary summary;
  summary.out_dir = out.string();
  summary.org_root = root;
  std::ostringstream readme;
  readme << "Holdfast public key material of \"" << config.org << "\"\n"
         << "exported " << Utc(NowMs()) << " by " << actor << "\n\n"
         << "org root key fingerprint: " << protocol::Fingerprint(root) << "\n"
         << "org root key (hex):       " << ToHex(root) << "\n\n"
         << "Compare the org root key with the one recorded at the key ceremony (`holdfast-admin\n"
         << "init`) before trusting anything here. Nothing in this directory is secret.\n\n"
         << "Files (SHA-256, then name and content; SHA256SUMS lists them for `sha256sum -c`):\n\n";
  std::string sums;
  for (const PendingFile& f : pending) {
    HF_RETURN_IF_ERROR(WriteFile(out / f.name, f.content));
    const std::string sha = ToHex(protocol::Sha256(AsBytes(f.content)));
    summary.files.push_back({f.name, sha, f.content.size()});
    readme << sha << "  " << f.name << "\n    " << f.description << "\n";
    sums += sha + "  " + f.name + "\n";
  }
  readme << "\nVerify offline (no database or HSM), each certificate under the org root key:\n\n"
         << "  sha256sum -c SHA256SUMS\n"
         << "  holdfast-admin verify-cert " << kEnrollmentCertFile << " --org-root " << kOrgRootPemFile << "\n";
  if (!epochs.empty()) {
    readme << "  holdfast-admin verify-cert " << EpochCertFile(epochs.back().epoch_id) << " --org-root "
           << kOrgRootPemFile << "\n";
  }
  readme << "  openssl pkey -pubin -in " << kOrgRootPemFile << " -noout -text\n\n"
         << "verify-cert also checks a device certificate (`SELECT certificate FROM devices`, the\n"
         << "bytes) and an export package's manifest.json with its manifest.sig. Signed audit\n"
         << "tree heads are checked with `holdfast-admin audit verify-proof FILE --org-root HEX`.\n";
  const std::string readme_text = readme.str();
  HF_RETURN_IF_ERROR(WriteFile(out / kExportReadmeFile, readme_text));
  const std::string readme_sha = ToHex(protocol::Sha256(AsBytes(readme_text)));
  summary.files.push_back({std::string(kExportReadmeFile), readme_sha, readme_text.size()});
  sums += readme_sha + "  " + std::string(kExportReadmeFile) + "\n";
  HF_RETURN_IF_ERROR(WriteFile(out / kExportSumsFile, sums));
  const std::string sums_sha = ToHex(protocol::Sha256(AsBytes(sums)));
  summary.files.push_back({std::string(kExportSumsFile), sums_sha, sums.size()});

  archive::Compliance compliance(conn);
  HF_RETURN_IF_ERROR(compliance.Audit(
      actor, "key.export",
      "{\"dir\":" + JsonQuote(summary.out_dir) + ",\"org_root_fingerprint\":" +
          JsonQuote(protocol::Fingerprint(root)) + ",\"epochs\":" + std::to_string(epochs.size()) +
          ",\"files\":" + std::to_string(summary.files.size()) + ",\"sha256sums\":" + JsonQuote(sums_sha) + "}"));
  return summary;
}

Result<VerifiedObject> VerifySignedFile(const std::string& path, ByteView org_root,
                                        const std::optional<std::string>& signature_path, int64_t now_ms) {
  HF_ASSIGN_OR_RETURN(std::string content, ReadFile(path));
  const size_t first = content.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && content[first] == '{') {
    return VerifyManifest(path, content, org_root, signature_path);
  }
  const std::string not_a_certificate =
      path + " is not an epoch, enrollment key or device certificate, nor an export manifest";
  wire::DeviceCertificate device;
  if (!device.ParseFromString(content)) return Status::InvalidArgument(not_a_certificate);
  if (!device.org_signature().empty() || device.has_enrollment_key()) return VerifyDeviceCert(device, org_root);

  // Epoch and enrollment key certificates share their outer shape; the
  // signing inputs are domain-separated, so at most one verifies.
  wire::EpochCertificate epoch;
  wire::EnrollmentKeyCertificate enrollment;
  if (!epoch.ParseFromString(content) || !enrollment.ParseFromString(content)) {
    return Status::InvalidArgument(not_a_certificate);
  }
  auto as_epoch = VerifyEpoch(epoch, org_root, now_ms);
  if (as_epoch.ok()) return as_epoch;
  auto as_enrollment = VerifyEnrollment(enrollment, org_root, now_ms);
  if (as_enrollment.ok()) return as_enrollment;
  // Name the failure of the kind the body looks like.
  wire::EpochCertificateBody epoch_body;
  if (epoch_body.ParseFromString(epoch.body()) && epoch_body.epoch_id() != 0 && epoch_body.public_key().size() == 65) {
    return as_epoch.status();
  }
  wire::EnrollmentKeyCertificateBody enrollment_body;
  if (enrollment_body.ParseFromString(enrollment.body()) && enrollment_body.public_key().size() == 65) {
    return as_enrollment.status();
  }
  return Status::InvalidArgument(not_a_certificate);
}

}  // namespace holdfast::gateway
