// A throw-away SoftHSM2 token for tests.
//
// Points SOFTHSM2_CONF (process-wide) at a fresh token directory under /tmp
// and initialises one token there; the directory is removed on destruction.
// Create at most one per process at a time.
#pragma once

#include <memory>
#include <string>

#include "holdfast/base/status.h"

namespace holdfast::testing {

class TempSoftHsm {
 public:
  static Result<std::unique_ptr<TempSoftHsm>> Create(const std::string& token_label = "holdfast-test");
  ~TempSoftHsm();
  TempSoftHsm(const TempSoftHsm&) = delete;
  TempSoftHsm& operator=(const TempSoftHsm&) = delete;

  const std::string& module_path() const { return module_path_; }
  const std::string& token_label() const { return token_label_; }
  const std::string& user_pin() const { return user_pin_; }

 private:
  TempSoftHsm() = default;
  std::string dir_;
  std::string module_path_;
  std::string token_label_;
  std::string user_pin_;
};

}  // namespace holdfast::testing
