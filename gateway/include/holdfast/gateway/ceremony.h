// Key ceremonies run by holdfast-admin: the org root key and archive epoch
// keys are generated inside the archive token, the enrollment key inside the
// enrollment token, epoch and enrollment key certificates are signed by the
// org root, and every step is written to the audit trail.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "holdfast/archive/database.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/status.h"
#include "holdfast/gateway/config.h"
#include "holdfast/hsm/token.h"

namespace holdfast::gateway {

// Opens the archive token named by the configuration (PIN from
// hsm.pin_credential, hsm.pin_env or hsm.pin_file, with hsm.sessions
// sessions) and refuses it, kFailedPrecondition naming key and attribute,
// unless every Holdfast key in it passes hsm::CheckKeyPolicy.
// ApplyProcessEnvironment must have run first.
Result<std::unique_ptr<hsm::Token>> OpenToken(const Config& config);
// The same for the enrollment token (hsm.enrollment_token_label,
// hsm.enrollment_pin_*), as holdfast-admin and the gateway open it.
Result<std::unique_ptr<hsm::Token>> OpenEnrollmentToken(const Config& config);

struct InitReport {
  bool created_root = false;
  Bytes root_public;
  bool created_epoch = false;
  archive::EpochRecord epoch;
  bool created_enrollment_key = false;
  bool certified_enrollment_key = false;  // a certificate was issued by this call
  Bytes enrollment_public;
  Bytes enrollment_certificate;           // serialised wire EnrollmentKeyCertificate
  int64_t enrollment_not_after_ms = 0;
};

// Idempotent: creates the org root key if the archive token has none,
// records its public key, creates a first epoch if none is valid at now_ms,
// creates the enrollment key in `enrollment` if absent, and stores an
// org-root certificate of it (valid keys.enrollment_key_days from now_ms)
// unless one valid at now_ms is stored already. kFailedPrecondition, with
// nothing changed, if the database records another org root, or a
// certificate of an enrollment key that the enrollment token does not hold.
Result<InitReport> InitializeKeys(hsm::Token& token, hsm::Token& enrollment, archive::Connection& conn,
                                  const Config& config, const std::string& actor, int64_t now_ms);

// Generates the next epoch key in the HSM and stores its certificate, valid
// from not_before_ms for config.keys.epoch_days days.
Result<archive::EpochRecord> CreateEpoch(hsm::Token& token, archive::Connection& conn,
                                         const Config& config, const std::string& actor,
                                         int64_t not_before_ms);

// Creates the next epoch, valid from the end of the latest one, when the
// latest ends within config.keys.rotate_ahead_days of now_ms (from now_ms
// if it has already ended). Returns the new epoch, or nullopt when none was
// due. Does nothing while no epoch exists: that is `InitializeKeys`' job.
Result<std::optional<archive::EpochRecord>> RotateIfDue(hsm::Token& token, archive::Connection& conn,
                                                        const Config& config, const std::string& actor,
                                                        int64_t now_ms);

}  // namespace holdfast::gateway
