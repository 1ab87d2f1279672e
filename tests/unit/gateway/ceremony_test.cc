#include "holdfast/gateway/ceremony.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "holdfast/archive/compliance.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/testing/pg_cluster.h"
#include "holdfast/testing/pg_fixture.h"
#include "holdfast/testing/softhsm.h"

namespace holdfast::gateway {
namespace {

constexpr int64_t kNow = 1'790'000'000'000;  // fixed clock
constexpr int64_t kDayMs = 24 * 3600 * 1000;

class CeremonyTest : public testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    auto hsm = holdfast::testing::TempSoftHsm::Create("ceremony-test");
    ASSERT_TRUE(hsm.ok()) << hsm.status().ToString();
    hsm_ = std::move(hsm).value();
    for (auto [file, pin] : {std::pair{&pin_file_, hsm_->user_pin()},
                             std::pair{&enrollment_pin_file_, hsm_->enrollment_pin()}}) {
      char pin_path[] = "/tmp/holdfast-pin-XXXXXX";
      const int fd = ::mkstemp(pin_path);
      ASSERT_GE(fd, 0);
      ::close(fd);
      *file = pin_path;
      std::ofstream(*file) << pin << "\n";
    }
    config_.org = "Ceremony Test Org";
    config_.database.conninfo = conninfo();
    config_.hsm.module = hsm_->module_path();
    config_.hsm.token_label = hsm_->token_label();
    config_.hsm.pin_file = pin_file_;
    config_.hsm.enrollment_token_label = hsm_->enrollment_token_label();
    config_.hsm.enrollment_pin_file = enrollment_pin_file_;
    config_.keys.epoch_days = 30;
    auto conn = archive::Connection::Open(conninfo());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    conn_.emplace(std::move(conn).value());
    ASSERT_TRUE(archive::Migrate(*conn_).ok());
    auto token = OpenToken(config_);
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    token_ = std::move(token).value();
    auto enrollment = OpenEnrollmentToken(config_);
    ASSERT_TRUE(enrollment.ok()) << enrollment.status().ToString();
    enrollment_ = std::move(enrollment).value();
  }
  void TearDown() override {
    token_.reset();
    enrollment_.reset();
    hsm_.reset();
    std::remove(pin_file_.c_str());
    std::remove(enrollment_pin_file_.c_str());
  }

  Result<InitReport> Init(int64_t now_ms, const std::string& actor = "operator") {
    return InitializeKeys(*token_, *enrollment_, *conn_, config_, actor, now_ms);
  }

  Result<protocol::wire::EnrollmentKeyCertificate> StoredEnrollmentCertificate() {
    archive::Store store(*conn_);
    HF_ASSIGN_OR_RETURN(Bytes bytes,
                        store.GetSetting(std::string(archive::kEnrollmentKeyCertificateSetting)));
    protocol::wire::EnrollmentKeyCertificate cert;
    if (!cert.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return Status::Internal("stored enrollment key certificate does not parse");
    }
    return cert;
  }

  int AuditCount(const std::string& action) {
    archive::Compliance compliance(*conn_);
    auto trail = compliance.AuditTrail();
    EXPECT_TRUE(trail.ok());
    int n = 0;
    for (const auto& e : trail.ok() ? *trail : std::vector<archive::AuditEvent>{}) n += e.action == action;
    return n;
  }

  Config config_;
  std::unique_ptr<holdfast::testing::TempSoftHsm> hsm_;
  std::string pin_file_;
  std::string enrollment_pin_file_;
  std::optional<archive::Connection> conn_;
  std::unique_ptr<hsm::Token> token_;
  std::unique_ptr<hsm::Token> enrollment_;
};

TEST_F(CeremonyTest, InitCreatesRootAndACertifiedEpoch) {
  auto report = Init(kNow);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->created_root);
  EXPECT_TRUE(report->created_epoch);
  EXPECT_EQ(report->epoch.epoch_id, 1u);
  EXPECT_EQ(report->epoch.not_before_ms, kNow);
  EXPECT_EQ(report->epoch.not_after_ms, kNow + 30 * kDayMs);

  // The certificate verifies offline with the recorded root key alone.
  archive::Store store(*conn_);
  auto root = store.GetSetting(std::string(archive::kOrgRootPublicKeySetting));
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(*root, report->root_public);
  protocol::wire::EpochCertificate cert;
  ASSERT_TRUE(cert.ParseFromArray(report->epoch.certificate.data(),
                                  static_cast<int>(report->epoch.certificate.size())));
  auto body = protocol::VerifyEpochCertificate(cert, *root, kNow + 1);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(body->epoch_id(), 1u);
  EXPECT_EQ(body->org(), "Ceremony Test Org");
  EXPECT_EQ(Bytes(body->public_key().begin(), body->public_key().end()), report->epoch.public_key);
  // Outside its window the certificate is refused.
  EXPECT_FALSE(protocol::VerifyEpochCertificate(cert, *root, kNow + 31 * kDayMs).ok());

  // The epoch key in the HSM is the certified one, derive-only, non-extractable.
  auto info = token_->Describe(hsm::EpochKeyLabel(1));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->public_key, report->epoch.public_key);
  EXPECT_TRUE(info->sensitive);
  EXPECT_FALSE(info->extractable);
  EXPECT_TRUE(info->can_derive);
  EXPECT_FALSE(info->can_sign);
}

TEST_F(CeremonyTest, InitIsIdempotent) {
  auto first = Init(kNow);
  ASSERT_TRUE(first.ok());
  auto stored = StoredEnrollmentCertificate();
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  auto second = Init(kNow + 1000);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_FALSE(second->created_root);
  EXPECT_FALSE(second->created_epoch);
  EXPECT_FALSE(second->created_enrollment_key);
  EXPECT_FALSE(second->certified_enrollment_key);
  EXPECT_EQ(second->root_public, first->root_public);
  EXPECT_EQ(second->epoch.epoch_id, first->epoch.epoch_id);
  EXPECT_EQ(second->enrollment_public, first->enrollment_public);
  EXPECT_EQ(second->enrollment_certificate, first->enrollment_certificate);
  auto again = StoredEnrollmentCertificate();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), stored->SerializeAsString());
  archive::Store store(*conn_);
  auto epochs = store.ListEpochs();
  ASSERT_TRUE(epochs.ok());
  EXPECT_EQ(epochs->size(), 1u);
  EXPECT_EQ(AuditCount("key.enrollment.create"), 1);
  EXPECT_EQ(AuditCount("key.enrollment.certify"), 1);
}

TEST_F(CeremonyTest, InitCreatesTheEnrollmentKeyInItsOwnTokenAndCertifiesIt) {
  config_.keys.enrollment_key_days = 100;
  auto report = Init(kNow, "kim");
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->created_enrollment_key);
  EXPECT_TRUE(report->certified_enrollment_key);
  EXPECT_EQ(report->enrollment_not_after_ms, kNow + 100 * kDayMs);

  // In the enrollment token, sign-only and kept there; not in the archive token.
  auto info = enrollment_->Describe(hsm::kEnrollmentKeyLabel);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->public_key, report->enrollment_public);
  EXPECT_TRUE(info->sensitive);
  EXPECT_FALSE(info->extractable);
  EXPECT_TRUE(info->can_sign);
  EXPECT_FALSE(info->can_derive);
  EXPECT_EQ(token_->Describe(hsm::kEnrollmentKeyLabel).status().code(), Code::kNotFound);
  EXPECT_EQ(enrollment_->Describe(hsm::kOrgRootLabel).status().code(), Code::kNotFound);
  // As another PKCS#11 client sees it.
  auto listed = holdfast::testing::RunCommand(
      {"/usr/bin/pkcs11-tool", "--module", hsm_->module_path(), "--token-label",
       hsm_->enrollment_token_label(), "--login", "--pin", hsm_->enrollment_pin(), "--list-objects",
       "--type", "privkey"});
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  const size_t at = listed->find("label:      holdfast-enrollment\n");
  ASSERT_NE(at, std::string::npos) << *listed;
  const std::string block = listed->substr(at);
  EXPECT_NE(block.find("Usage:      sign\n"), std::string::npos) << block;
  EXPECT_NE(block.find("Access:     sensitive, always sensitive, never extractable"), std::string::npos)
      << block;

  // The stored certificate is what the report returned and verifies under
  // the recorded root, for exactly its window.
  auto cert = StoredEnrollmentCertificate();
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  const std::string cert_bytes = cert->SerializeAsString();
  EXPECT_EQ(Bytes(cert_bytes.begin(), cert_bytes.end()), report->enrollment_certificate);
  auto body = protocol::VerifyEnrollmentKeyCertificate(*cert, report->root_public, kNow);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(Bytes(body->public_key().begin(), body->public_key().end()), report->enrollment_public);
  EXPECT_EQ(body->not_before_ms(), kNow);
  EXPECT_EQ(body->not_after_ms(), kNow + 100 * kDayMs);
  EXPECT_EQ(body->org(), "Ceremony Test Org");
  EXPECT_EQ(protocol::VerifyEnrollmentKeyCertificate(*cert, report->root_public, kNow + 100 * kDayMs)
                .status()
                .code(),
            Code::kFailedPrecondition);
  EXPECT_FALSE(protocol::VerifyEnrollmentKeyCertificate(*cert, report->enrollment_public, kNow).ok())
      << "signed by the org root, not by itself";

  archive::Compliance compliance(*conn_);
  auto trail = compliance.AuditTrail();
  ASSERT_TRUE(trail.ok());
  int seen = 0;
  for (const auto& e : *trail) {
    if (e.action != "key.enrollment.create" && e.action != "key.enrollment.certify") continue;
    ++seen;
    EXPECT_EQ(e.actor, "kim");
    EXPECT_NE(e.detail.find(ToHex(report->enrollment_public)), std::string::npos) << e.detail;
  }
  EXPECT_EQ(seen, 2);
  EXPECT_TRUE(compliance.VerifyAuditChain().ok());
}

TEST_F(CeremonyTest, InitCertifiesTheSameEnrollmentKeyAgainOnceItsCertificateEnded) {
  config_.keys.enrollment_key_days = 10;
  auto first = Init(kNow);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto later = Init(kNow + 11 * kDayMs);
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_FALSE(later->created_enrollment_key);
  EXPECT_TRUE(later->certified_enrollment_key);
  EXPECT_EQ(later->enrollment_public, first->enrollment_public);
  auto cert = StoredEnrollmentCertificate();
  ASSERT_TRUE(cert.ok());
  auto body = protocol::VerifyEnrollmentKeyCertificate(*cert, first->root_public, kNow + 11 * kDayMs);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(body->not_before_ms(), kNow + 11 * kDayMs);
  EXPECT_EQ(AuditCount("key.enrollment.certify"), 2);
}

TEST_F(CeremonyTest, InitCertifiesAnEnrollmentKeyLeftWithoutCertificate) {
  auto orphan = enrollment_->GenerateSigningKey(hsm::kEnrollmentKeyLabel);
  ASSERT_TRUE(orphan.ok());
  auto report = Init(kNow);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_FALSE(report->created_enrollment_key);
  EXPECT_TRUE(report->certified_enrollment_key);
  EXPECT_EQ(report->enrollment_public, *orphan);
}

TEST_F(CeremonyTest, InitRefusesACertificateOfAnotherEnrollmentKey) {
  auto first = Init(kNow);
  ASSERT_TRUE(first.ok());
  // A certificate, by the real root, of some other key (here: the archive
  // token's own signing key made for the test).
  auto other = token_->GenerateSigningKey("holdfast-other");
  ASSERT_TRUE(other.ok());
  const std::string body =
      protocol::MakeEnrollmentKeyCertificateBody(*other, kNow, kNow + kDayMs, "x").SerializeAsString();
  auto sig = token_->SignWithOrgRoot(protocol::EnrollmentKeyCertificateSigningInput(AsBytes(body)));
  ASSERT_TRUE(sig.ok());
  protocol::wire::EnrollmentKeyCertificate cert;
  cert.set_body(body);
  cert.set_signature(AsString(*sig));
  archive::Store store(*conn_);
  ASSERT_TRUE(store.PutSetting(std::string(archive::kEnrollmentKeyCertificateSetting),
                               AsBytes(cert.SerializeAsString()))
                  .ok());
  auto again = Init(kNow + 1000);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition) << again.status().ToString();
  EXPECT_NE(again.status().message().find("another enrollment key"), std::string::npos)
      << again.status().ToString();
}

TEST_F(CeremonyTest, InitDoesNotReplaceALostEnrollmentKey) {
  ASSERT_TRUE(Init(kNow).ok());
  // The enrollment token is replaced by an empty one: same label, no key.
  enrollment_.reset();
  token_.reset();
  auto deleted = holdfast::testing::RunCommand(
      {"/usr/bin/pkcs11-tool", "--module", hsm_->module_path(), "--token-label",
       hsm_->enrollment_token_label(), "--login", "--pin", hsm_->enrollment_pin(), "--delete-object",
       "--type", "privkey", "--label", std::string(hsm::kEnrollmentKeyLabel)});
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  token_ = std::move(OpenToken(config_)).value();
  enrollment_ = std::move(OpenEnrollmentToken(config_)).value();
  auto again = Init(kNow + 1000);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition) << again.status().ToString();
  EXPECT_EQ(enrollment_->PublicKey(hsm::kEnrollmentKeyLabel).status().code(), Code::kNotFound)
      << "no new key was made";
}

TEST_F(CeremonyTest, InitRefusesAnExtractableEnrollmentKey) {
  // Made by someone else, outside Holdfast, and extractable.
  enrollment_.reset();
  token_.reset();
  auto made = holdfast::testing::RunCommand(
      {"/usr/bin/pkcs11-tool", "--module", hsm_->module_path(), "--token-label",
       hsm_->enrollment_token_label(), "--login", "--pin", hsm_->enrollment_pin(), "--keypairgen",
       "--key-type", "EC:prime256v1", "--label", std::string(hsm::kEnrollmentKeyLabel),
       "--extractable"});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  token_ = std::move(OpenToken(config_)).value();
  // The attribute policy refuses the token at open, naming key and attribute,
  // so neither holdfast-admin nor the gateway gets to use it.
  auto refused = OpenEnrollmentToken(config_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("key holdfast-enrollment in token \"" +
                                            hsm_->enrollment_token_label() +
                                            "\": CKA_EXTRACTABLE is true (must be false)"),
            std::string::npos)
      << refused.status().ToString();
  archive::Store store(*conn_);
  EXPECT_EQ(store.GetSetting(std::string(archive::kEnrollmentKeyCertificateSetting)).status().code(),
            Code::kNotFound);
}

TEST_F(CeremonyTest, InitAfterExpiryCreatesTheNextEpoch) {
  ASSERT_TRUE(Init(kNow).ok());
  auto later = Init(kNow + 40 * kDayMs);
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_TRUE(later->created_epoch);
  EXPECT_EQ(later->epoch.epoch_id, 2u);
  EXPECT_NE(later->epoch.public_key, token_->PublicKey(hsm::EpochKeyLabel(1)).value());
}

TEST_F(CeremonyTest, RotateCreatesSuccessiveEpochsAndAuditsThem) {
  ASSERT_TRUE(Init(kNow).ok());
  auto e2 = CreateEpoch(*token_, *conn_, config_, "kim", kNow + kDayMs);
  ASSERT_TRUE(e2.ok()) << e2.status().ToString();
  EXPECT_EQ(e2->epoch_id, 2u);
  archive::Compliance compliance(*conn_);
  auto trail = compliance.AuditTrail();
  ASSERT_TRUE(trail.ok());
  int root_events = 0, epoch_events = 0;
  for (const auto& e : *trail) {
    root_events += e.action == "key.org_root.create";
    epoch_events += e.action == "key.epoch.create";
    if (e.action == "key.epoch.create" && e.detail.find("\"epoch_id\":2") != std::string::npos) {
      EXPECT_EQ(e.actor, "kim");
    }
  }
  EXPECT_EQ(root_events, 1);
  EXPECT_EQ(epoch_events, 2);
  EXPECT_TRUE(compliance.VerifyAuditChain().ok());
}

TEST_F(CeremonyTest, RotatesAheadOfExpiryOnce) {
  config_.keys.rotate_ahead_days = 7;
  ASSERT_TRUE(Init(kNow).ok());
  auto early = RotateIfDue(*token_, *conn_, config_, "gateway", kNow + 22 * kDayMs);
  ASSERT_TRUE(early.ok()) << early.status().ToString();
  EXPECT_FALSE(early->has_value());

  auto due = RotateIfDue(*token_, *conn_, config_, "gateway", kNow + 24 * kDayMs);
  ASSERT_TRUE(due.ok()) << due.status().ToString();
  ASSERT_TRUE(due->has_value());
  EXPECT_EQ((*due)->epoch_id, 2u);
  // The next epoch starts exactly where the current one ends.
  EXPECT_EQ((*due)->not_before_ms, kNow + 30 * kDayMs);

  auto again = RotateIfDue(*token_, *conn_, config_, "gateway", kNow + 24 * kDayMs);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());

  archive::Store store(*conn_);
  EXPECT_EQ(store.CurrentEpoch(kNow + 29 * kDayMs)->epoch_id, 1u);
  EXPECT_EQ(store.CurrentEpoch(kNow + 31 * kDayMs)->epoch_id, 2u);
}

TEST_F(CeremonyTest, RotationAfterALapseStartsNow) {
  ASSERT_TRUE(Init(kNow).ok());
  auto late = RotateIfDue(*token_, *conn_, config_, "gateway", kNow + 45 * kDayMs);
  ASSERT_TRUE(late.ok());
  ASSERT_TRUE(late->has_value());
  EXPECT_EQ((*late)->not_before_ms, kNow + 45 * kDayMs);
}

TEST_F(CeremonyTest, RotationOffDoesNothing) {
  config_.keys.rotate_ahead_days = 0;
  ASSERT_TRUE(Init(kNow).ok());
  auto r = RotateIfDue(*token_, *conn_, config_, "gateway", kNow + 29 * kDayMs);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
}

TEST_F(CeremonyTest, CertifiesAnOrphanKeyLeftByAFailedRun) {
  ASSERT_TRUE(Init(kNow).ok());
  // A run that generated epoch 2's key and died before storing it.
  auto orphan = token_->GenerateEpochKey(2);
  ASSERT_TRUE(orphan.ok());
  auto e2 = CreateEpoch(*token_, *conn_, config_, "operator", kNow + kDayMs);
  ASSERT_TRUE(e2.ok()) << e2.status().ToString();
  EXPECT_EQ(e2->epoch_id, 2u);
  EXPECT_EQ(e2->public_key, *orphan);
}

TEST_F(CeremonyTest, RefusesADatabaseThatRecordsAnotherRoot) {
  archive::Store store(*conn_);
  ASSERT_TRUE(store.PutSetting(std::string(archive::kOrgRootPublicKeySetting), Bytes(65, 0x04)).ok());
  auto report = Init(kNow);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), Code::kFailedPrecondition);
}

TEST_F(CeremonyTest, WrongPinFailsClosed) {
  std::ofstream(pin_file_) << "0000\n";
  token_.reset();
  auto token = OpenToken(config_);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), Code::kUnavailable);
}

TEST_F(CeremonyTest, EachTokenTakesItsOwnPin) {
  enrollment_.reset();
  token_.reset();
  config_.hsm.enrollment_pin_file = pin_file_;  // the archive token's PIN
  auto enrollment = OpenEnrollmentToken(config_);
  ASSERT_FALSE(enrollment.ok());
  EXPECT_EQ(enrollment.status().code(), Code::kUnavailable);
  EXPECT_NE(enrollment.status().message().find("CKR_PIN_INCORRECT"), std::string::npos)
      << enrollment.status().ToString();
}

}  // namespace
}  // namespace holdfast::gateway
