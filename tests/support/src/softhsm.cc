#include "holdfast/testing/softhsm.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "holdfast/testing/pg_cluster.h"

namespace holdfast::testing {

namespace fs = std::filesystem;

Result<std::unique_ptr<TempSoftHsm>> TempSoftHsm::Create(const std::string& token_label,
                                                         const std::string& enrollment_token_label) {
  std::unique_ptr<TempSoftHsm> hsm(new TempSoftHsm());
  for (const char* path : {"/usr/lib/softhsm/libsofthsm2.so",
                           "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}) {
    if (fs::exists(path)) {
      hsm->module_path_ = path;
      break;
    }
  }
  if (hsm->module_path_.empty()) return Status::Unavailable("libsofthsm2.so not found");

  std::string tmpl = "/tmp/holdfast-softhsm-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::Unavailable("mkdtemp failed");
  hsm->dir_ = tmpl;
  fs::create_directory(fs::path(tmpl) / "tokens");
  std::string conf = (fs::path(tmpl) / "softhsm2.conf").string();
  {
    std::ofstream out(conf);
    out << "directories.tokendir = " << (fs::path(tmpl) / "tokens").string() << "\n"
        << "objectstore.backend = file\n"
        << "log.level = ERROR\n";
    if (!out) return Status::Unavailable("cannot write " + conf);
  }
  if (::setenv("SOFTHSM2_CONF", conf.c_str(), 1) != 0) {
    return Status::Unavailable("setenv SOFTHSM2_CONF failed");
  }
  hsm->token_label_ = token_label;
  hsm->user_pin_ = "test-user-pin";
  hsm->enrollment_token_label_ = enrollment_token_label;
  hsm->enrollment_pin_ = "test-enrollment-pin";
  for (const auto& [label, pin] : {std::pair{token_label, hsm->user_pin_},
                                   std::pair{enrollment_token_label, hsm->enrollment_pin_}}) {
    HF_RETURN_IF_ERROR(RunCommand({"/usr/bin/softhsm2-util", "--init-token", "--free", "--label",
                                   label, "--so-pin", "test-so-pin", "--pin", pin})
                           .status());
  }
  return hsm;
}

TempSoftHsm::~TempSoftHsm() {
  if (dir_.empty()) return;
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

}  // namespace holdfast::testing
