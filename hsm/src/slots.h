// Finding tokens by label, and judging a token's state from its flags. Used by
// Token::Open and by the administration functions of admin.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "holdfast/base/status.h"
#include "p11.h"

namespace holdfast::hsm::internal {

inline constexpr size_t kTokenLabelSize = 32;  // CK_TOKEN_INFO.label, blank padded

// 1 to 32 bytes, not ending in a blank (the padding could not be told apart).
bool IsValidTokenLabel(std::string_view label);
inline constexpr std::string_view kTokenLabelRule =
    "token label must be 1 to 32 bytes without trailing blanks";

// The label without its blank padding.
std::string TokenLabelOf(const CK_TOKEN_INFO& info);

// The slots that have a token. Starts with a size query (a null list), which
// is what makes SoftHSM2 re-enumerate its slots: a token initialised by this
// process shows its new state, and a new free slot appears.
Result<std::vector<CK_SLOT_ID>> SlotsWithToken(CK_FUNCTION_LIST* f);

// The slots whose token carries this label; slots whose token info cannot be
// read are skipped.
Result<std::vector<CK_SLOT_ID>> SlotsLabelled(CK_FUNCTION_LIST* f, std::string_view label);

// The one slot whose token carries this label; kUnavailable if there is none
// or more than one.
Result<CK_SLOT_ID> FindSlot(CK_FUNCTION_LIST* f, const std::string& label);

// Whether a token with these CK_TOKEN_INFO flags can be logged in to as the
// normal user: initialised, user PIN set, and the user PIN neither locked,
// on its final try nor due to be changed. kUnavailable naming the first
// offending flag otherwise.
Status CheckUserReady(CK_FLAGS flags);

}  // namespace holdfast::hsm::internal
