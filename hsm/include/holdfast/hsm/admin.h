// Token administration and health checks that never log in as the user.
//
// Both functions load the module and share its process-wide C_Initialize with
// any open Token (see token.h); neither keeps anything open when it returns.
#pragma once

#include <string>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::hsm {

// Whether the token labelled token_label could be logged in to, judged from
// C_GetTokenInfo alone: no session is opened and no PIN is needed, so a
// health check built on this can never use a key. OK if the token is
// initialised, its user PIN is initialised and the user PIN is not locked, on
// its final try or due to be changed. kUnavailable otherwise (bad module,
// no or several tokens with that label, or a flag in the wrong state); the
// message names the PKCS#11 function and CKR_ value or the CKF_ flag.
Status ProbeToken(const std::string& module_path, const std::string& token_label);

// Initialises a new token labelled token_label in the first slot whose token
// is not initialised, with so_pin as its SO PIN, then logs in as SO, sets
// user_pin as the user PIN and logs out. The PINs are handed to the module
// from the caller's buffers and not copied.
//   kAlreadyExists     a token with that label exists and has a user PIN;
//                      nothing is changed, so a repeated call is harmless.
//   OK                 also when the token exists but has no user PIN yet (an
//                      earlier call stopped after C_InitToken): the user PIN
//                      is set, which needs the right SO PIN.
//   kInvalidArgument   bad label, or a PIN empty or outside the token's
//                      length range (checked before anything is written).
//   kPermissionDenied  the SO PIN is wrong (only when finishing a token).
//   kUnavailable       module failures, or no slot with a free token.
// Calls are serialised within the process.
Status InitToken(const std::string& module_path, const std::string& token_label,
                 const SecretBytes& so_pin, const SecretBytes& user_pin);

}  // namespace holdfast::hsm
