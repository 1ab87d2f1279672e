#include "holdfast/gateway/key_report.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "holdfast/archive/compliance.h"
#include "holdfast/archive/store.h"
#include "holdfast/gateway/ceremony.h"
#include "holdfast/gateway/key_export.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/testing/pg_fixture.h"
#include "holdfast/testing/softhsm.h"

namespace holdfast::gateway {
namespace {

constexpr int64_t kNow = 1'790'000'000'000;  // fixed clock
constexpr int64_t kDayMs = 24 * 3600 * 1000;

class KeyReportTest : public testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    auto hsm = holdfast::testing::TempSoftHsm::Create("key-report-test");
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
    char dir[] = "/tmp/holdfast-key-export-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    config_.org = "Key Report Test Org";
    config_.hsm.module = hsm_->module_path();
    config_.hsm.token_label = hsm_->token_label();
    config_.hsm.pin_file = pin_file_;
    config_.hsm.enrollment_token_label = hsm_->enrollment_token_label();
    config_.hsm.enrollment_pin_file = enrollment_pin_file_;
    config_.keys.epoch_days = 30;
    config_.keys.rotate_ahead_days = 7;
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
    auto init = InitializeKeys(*token_, *enrollment_, *conn_, config_, "kim", kNow);
    ASSERT_TRUE(init.ok()) << init.status().ToString();
    root_ = init->root_public;
  }
  void TearDown() override {
    token_.reset();
    enrollment_.reset();
    hsm_.reset();
    std::remove(pin_file_.c_str());
    std::remove(enrollment_pin_file_.c_str());
    std::filesystem::remove_all(dir_);
  }

  // label -> state at now_ms
  std::map<std::string, std::string> States(int64_t now_ms, bool with_tokens = true) {
    auto report = BuildKeyReport(*conn_, with_tokens ? token_.get() : nullptr,
                                 with_tokens ? enrollment_.get() : nullptr, config_, now_ms);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    std::map<std::string, std::string> out;
    if (report.ok()) {
      for (const auto& k : report->keys) out[k.label] = k.state;
    }
    return out;
  }

  std::vector<archive::AuditEvent> Trail() {
    auto trail = archive::Compliance(*conn_).AuditTrail();
    EXPECT_TRUE(trail.ok());
    return trail.ok() ? *trail : std::vector<archive::AuditEvent>{};
  }

  Config config_;
  std::unique_ptr<holdfast::testing::TempSoftHsm> hsm_;
  std::string pin_file_;
  std::string enrollment_pin_file_;
  std::string dir_;
  std::optional<archive::Connection> conn_;
  std::unique_ptr<hsm::Token> token_;
  std::unique_ptr<hsm::Token> enrollment_;
  Bytes root_;
};

TEST_F(KeyReportTest, StatesFollowTheValidityWindows) {
  // The next epoch, certified ahead of time, from the end of the first.
  auto next = CreateEpoch(*token_, *conn_, config_, "kim", kNow + 30 * kDayMs);
  ASSERT_TRUE(next.ok()) << next.status().ToString();

  auto report = BuildKeyReport(*conn_, token_.get(), enrollment_.get(), config_, kNow + 1);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->tokens_checked);
  ASSERT_EQ(report->keys.size(), 4u);
  EXPECT_EQ(report->keys[0].kind, "org_root");
  EXPECT_EQ(report->keys[0].public_key, root_);
  EXPECT_FALSE(report->keys[0].not_after_ms.has_value());
  EXPECT_EQ(report->keys[1].kind, "enrollment");
  EXPECT_EQ(report->keys[1].not_after_ms, kNow + int64_t{730} * kDayMs);
  EXPECT_EQ(report->keys[3].epoch_id, 2u);
  ASSERT_TRUE(report->keys[3].attributes.has_value());
  EXPECT_TRUE(report->keys[3].attributes->can_derive);
  EXPECT_EQ(report->next_rotation_ms, kNow + 60 * kDayMs - 7 * kDayMs);

  using Labels = std::map<std::string, std::string>;
  EXPECT_EQ(States(kNow + 1), (Labels{{"holdfast-org-root", "active"},
                                      {"holdfast-enrollment", "active"},
                                      {"holdfast-epoch-000001", "current"},
                                      {"holdfast-epoch-000002", "pending"}}));
  EXPECT_EQ(States(kNow + 31 * kDayMs)["holdfast-epoch-000001"], "retired");
  EXPECT_EQ(States(kNow + 31 * kDayMs)["holdfast-epoch-000002"], "current");
  EXPECT_EQ(States(kNow + 800 * kDayMs)["holdfast-enrollment"], "expired");
  EXPECT_EQ(States(kNow + 800 * kDayMs)["holdfast-epoch-000002"], "retired");

  // An epoch valid from now while the first still is: the newer is current.
  ASSERT_TRUE(CreateEpoch(*token_, *conn_, config_, "kim", kNow + kDayMs).ok());
  EXPECT_EQ(States(kNow + 2 * kDayMs)["holdfast-epoch-000001"], "superseded");
  EXPECT_EQ(States(kNow + 2 * kDayMs)["holdfast-epoch-000003"], "current");

  const std::string text = RenderKeyReport(*report, false);
  EXPECT_NE(text.find("epoch 2  holdfast-epoch-000002  pending  "), std::string::npos) << text;
  EXPECT_NE(text.find("sensitive=1 extractable=0 sign=1 derive=0"), std::string::npos) << text;
  EXPECT_NE(text.find("next scheduled rotation: "), std::string::npos) << text;
  const std::string json = KeyReportJson(*report, true);
  EXPECT_EQ(json.find("org_root"), std::string::npos) << json;
  EXPECT_NE(json.find("\"state\":\"pending\""), std::string::npos) << json;
}

TEST_F(KeyReportTest, AKeyAbsentFromTheTokenIsShreddedOnceItsEpochEnded) {
  // A certificate whose key the token does not hold (as after a shred).
  archive::EpochRecord gone;
  gone.epoch_id = 2;
  gone.certificate = {1, 2, 3};
  gone.public_key = Bytes(65, 4);
  gone.not_before_ms = kNow + 30 * kDayMs;
  gone.not_after_ms = kNow + 60 * kDayMs;
  ASSERT_TRUE(archive::Store(*conn_).PutEpoch(gone).ok());
  EXPECT_EQ(States(kNow + 61 * kDayMs)["holdfast-epoch-000002"], "shredded");
  EXPECT_EQ(States(kNow + 1)["holdfast-epoch-000002"], "missing");
  // Without the tokens nothing can be said about presence.
  EXPECT_EQ(States(kNow + 1, false)["holdfast-epoch-000002"], "pending");

  // A key no certificate names.
  ASSERT_TRUE(token_->GenerateEpochKey(9).ok());
  EXPECT_EQ(States(kNow + 1)["holdfast-epoch-000009"], "uncertified");
}

TEST_F(KeyReportTest, OnlyAKeyCustodianMayRunACeremonyAndRefusalsAreAudited) {
  archive::Compliance compliance(*conn_);
  ASSERT_TRUE(compliance.AddOfficer({"kim", std::string(kKeyCustodianRole)}, "operator").ok());
  ASSERT_TRUE(compliance.AddOfficer({"olivia", "compliance_officer"}, "operator").ok());
  auto kim = AuthorizeCeremony(compliance, "kim", "epoch rotate");
  ASSERT_TRUE(kim.ok()) << kim.status().ToString();
  EXPECT_EQ(kim->name, "kim");
  const size_t before = Trail().size();
  EXPECT_EQ(AuthorizeCeremony(compliance, "olivia", "epoch rotate").status().code(), Code::kPermissionDenied);
  EXPECT_EQ(AuthorizeCeremony(compliance, "mallory", "init").status().code(), Code::kPermissionDenied);
  auto trail = Trail();
  ASSERT_EQ(trail.size(), before + 2);
  EXPECT_EQ(trail[before].actor, "olivia");
  EXPECT_EQ(trail[before].action, "key.ceremony.denied");
  EXPECT_NE(trail[before].detail.find("epoch rotate"), std::string::npos);
  EXPECT_EQ(trail[before + 1].actor, "mallory");
}

TEST_F(KeyReportTest, ExportedCertificatesVerifyUnderTheExportedRootOnly) {
  const std::string out = dir_ + "/keys";
  auto summary = ExportPublicKeys(*conn_, *token_, config_, out, "kim");
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->files.size(), 8u);  // pem, hex, enrollment and epoch 1 (.cert, .json), README, sums
  EXPECT_EQ(Trail().back().action, "key.export");
  EXPECT_EQ(Trail().back().actor, "kim");

  std::ifstream pem_in(out + "/" + std::string(kOrgRootPemFile));
  std::stringstream pem;
  pem << pem_in.rdbuf();
  auto parsed = ParseOrgRootKey(pem.str());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, root_);
  EXPECT_EQ(*ParseOrgRootKey(ToHex(root_) + "\n"), root_);

  auto epoch = VerifySignedFile(out + "/" + EpochCertFile(1), root_, std::nullopt, kNow + 1);
  ASSERT_TRUE(epoch.ok()) << epoch.status().ToString();
  EXPECT_EQ(epoch->kind, SignedObject::kEpochCertificate);
  auto enrollment = VerifySignedFile(out + "/" + std::string(kEnrollmentCertFile), root_, std::nullopt, kNow);
  ASSERT_TRUE(enrollment.ok()) << enrollment.status().ToString();
  EXPECT_EQ(enrollment->kind, SignedObject::kEnrollmentKeyCertificate);

  auto other_key = token_->GenerateSigningKey("holdfast-other");
  ASSERT_TRUE(other_key.ok());
  EXPECT_EQ(VerifySignedFile(out + "/" + EpochCertFile(1), *other_key, std::nullopt, kNow).status().code(),
            Code::kCryptoFailure);
  EXPECT_EQ(ExportPublicKeys(*conn_, *token_, config_, out, "kim").status().code(), Code::kAlreadyExists);
}

}  // namespace
}  // namespace holdfast::gateway
