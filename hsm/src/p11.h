// The PKCS#11 API as seen by this module, and the mapping of CK_RV to Status.
#pragma once

#include <p11-kit/pkcs11.h>

#include <string_view>

#include "holdfast/base/status.h"

namespace holdfast::hsm::internal {

// "CKR_PIN_INCORRECT"; unknown values are not named (see RvStatus).
std::string_view RvName(CK_RV rv);

// The code a failed call maps to: lost sessions and devices are kUnavailable,
// refused key usages kPermissionDenied, the rest kInternal.
Code CodeForRv(CK_RV rv);

// "<function>: CKR_..." with CodeForRv(rv). rv must not be CKR_OK.
Status RvStatus(std::string_view function, CK_RV rv);
Status RvStatus(Code code, std::string_view function, CK_RV rv);

}  // namespace holdfast::hsm::internal
