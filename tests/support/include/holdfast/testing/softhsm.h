// A throw-away SoftHSM2 token for tests.
//
// Points SOFTHSM2_CONF (process-wide) at a fresh token directory under /tmp
// and initialises two tokens there, as `holdfast-admin hsm init-token` does:
// the archive token and the enrollment token, each with its own user PIN.
// The directory is removed on destruction. Create at most one per process
// at a time.
#pragma once

#include <memory>
#include <string>

#include "holdfast/base/status.h"

namespace holdfast::testing {

class TempSoftHsm {
 public:
  static Result<std::unique_ptr<TempSoftHsm>> Create(
      const std::string& token_label = "holdfast-test",
      const std::string& enrollment_token_label = "holdfast-enrollment");
  ~TempSoftHsm();
  TempSoftHsm(const TempSoftHsm&) = delete;
  TempSoftHsm& operator=(const TempSoftHsm&) = delete;

  const std::string& module_path() const { return module_path_; }
  const std::string& token_label() const { return token_label_; }
  const std::string& user_pin() const { return user_pin_; }
  const std::string& enrollment_token_label() const { return enrollment_token_label_; }
  const std::string& enrollment_pin() const { return enrollment_pin_; }

 private:
  TempSoftHsm() = default;
  std::string dir_;
  std::string module_path_;
  std::string token_label_;
  std::string user_pin_;
  std::string enrollment_token_label_;
  std::string enrollment_pin_;
};

}  // namespace holdfast::testing
