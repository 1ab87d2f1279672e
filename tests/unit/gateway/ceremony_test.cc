#include "holdfast/gateway/ceremony.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "holdfast/archive/compliance.h"
#include "holdfast/protocol/envelope.h"
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
    char pin_path[] = "/tmp/holdfast-pin-XXXXXX";
    const int fd = ::mkstemp(pin_path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    pin_file_ = pin_path;
    std::ofstream(pin_file_) << hsm_->user_pin() << "\n";
    config_.org = "Ceremony Test Org";
    config_.database.conninfo = conninfo();
    config_.hsm.module = hsm_->module_path();
    config_.hsm.token_label = hsm_->token_label();
    config_.hsm.pin_file = pin_file_;
    config_.keys.epoch_days = 30;
    auto conn = archive::Connection::Open(conninfo());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    conn_.emplace(std::move(conn).value());
    ASSERT_TRUE(archive::Migrate(*conn_).ok());
    auto token = OpenToken(config_);
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    token_ = std::move(token).value();
  }
  void TearDown() override {
    token_.reset();
    hsm_.reset();
    std::remove(pin_file_.c_str());
  }

  Config config_;
  std::unique_ptr<holdfast::testing::TempSoftHsm> hsm_;
  std::string pin_file_;
  std::optional<archive::Connection> conn_;
  std::unique_ptr<hsm::Token> token_;
};

TEST_F(CeremonyTest, InitCreatesRootAndACertifiedEpoch) {
  auto report = InitializeKeys(*token_, *conn_, config_, "operator", kNow);
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
  auto first = InitializeKeys(*token_, *conn_, config_, "operator", kNow);
  ASSERT_TRUE(first.ok());
  auto second = InitializeKeys(*token_, *conn_, config_, "operator", kNow + 1000);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_FALSE(second->created_root);
  EXPECT_FALSE(second->created_epoch);
  EXPECT_EQ(second->root_public, first->root_public);
  EXPECT_EQ(second->epoch.epoch_id, first->epoch.epoch_id);
  archive::Store store(*conn_);
  auto epochs = store.ListEpochs();
  ASSERT_TRUE(epochs.ok());
  EXPECT_EQ(epochs->size(), 1u);
}

TEST_F(CeremonyTest, InitAfterExpiryCreatesTheNextEpoch) {
  ASSERT_TRUE(InitializeKeys(*token_, *conn_, config_, "operator", kNow).ok());
  auto later = InitializeKeys(*token_, *conn_, config_, "operator", kNow + 40 * kDayMs);
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_TRUE(later->created_epoch);
  EXPECT_EQ(later->epoch.epoch_id, 2u);
  EXPECT_NE(later->epoch.public_key, token_->PublicKey(hsm::EpochKeyLabel(1)).value());
}

TEST_F(CeremonyTest, RotateCreatesSuccessiveEpochsAndAuditsThem) {
  ASSERT_TRUE(InitializeKeys(*token_, *conn_, config_, "operator", kNow).ok());
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
  ASSERT_TRUE(InitializeKeys(*token_, *conn_, config_, "operator", kNow).ok());
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
  ASSERT_TRUE(InitializeKeys(*token_, *conn_, config_, "operator", kNow).ok());
  auto late = RotateIfDue(*token_, *conn_, config_, "gateway", kNow + 45 * kDayMs);
  ASSERT_TRUE(late.ok());
  ASSERT_TRUE(late->has_value());
  EXPECT_EQ((*late)->not_before_ms, kNow + 45 * kDayMs);
}

TEST_F(CeremonyTest, RotationOffDoesNothing) {
  config_.keys.rotate_ahead_days = 0;
  ASSERT_TRUE(InitializeKeys(*token_, *conn_, config_, "operator", kNow).ok());
  auto r = RotateIfDue(*token_, *conn_, config_, "gateway", kNow + 29 * kDayMs);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
}

TEST_F(CeremonyTest, CertifiesAnOrphanKeyLeftByAFailedRun) {
  ASSERT_TRUE(InitializeKeys(*token_, *conn_, config_, "operator", kNow).ok());
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
  auto report = InitializeKeys(*token_, *conn_, config_, "operator", kNow);
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

}  // namespace
}  // namespace holdfast::gateway
