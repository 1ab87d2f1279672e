#include "slots.h"

namespace holdfast::hsm::internal {

bool IsValidTokenLabel(std::string_view label) {
  return !label.empty() && label.size() <= kTokenLabelSize && label.back() != ' ';
}

std::string TokenLabelOf(const CK_TOKEN_INFO& info) {
  std::string label(reinterpret_cast<const char*>(info.label), sizeof info.label);
  label.erase(label.find_last_not_of(' ') + 1);
  return label;
}

Result<std::vector<CK_SLOT_ID>> SlotsWithToken(CK_FUNCTION_LIST* f) {
  std::vector<CK_SLOT_ID> slots;
  CK_RV rv;
  do {
    CK_ULONG count = 0;
    rv = f->C_GetSlotList(CK_TRUE, nullptr, &count);
    if (rv != CKR_OK) break;
    slots.resize(count);
    rv = f->C_GetSlotList(CK_TRUE, slots.data(), &count);
    slots.resize(count);
  } while (rv == CKR_BUFFER_TOO_SMALL);
  if (rv != CKR_OK) return RvStatus(Code::kUnavailable, "C_GetSlotList", rv);
  return slots;
}

Result<std::vector<CK_SLOT_ID>> SlotsLabelled(CK_FUNCTION_LIST* f, std::string_view label) {
  HF_ASSIGN_OR_RETURN(std::vector<CK_SLOT_ID> slots, SlotsWithToken(f));
  std::vector<CK_SLOT_ID> matches;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (f->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if (TokenLabelOf(info) == label) matches.push_back(slot);
  }
  return matches;
}

Result<CK_SLOT_ID> FindSlot(CK_FUNCTION_LIST* f, const std::string& label) {
  HF_ASSIGN_OR_RETURN(std::vector<CK_SLOT_ID> matches, SlotsLabelled(f, label));
  if (matches.empty()) return Status::Unavailable("no token labelled \"" + label + "\"");
  if (matches.size() > 1) {
    return Status::Unavailable(std::to_string(matches.size()) + " tokens labelled \"" + label +
                               "\"; labels must be unique");
  }
  return matches.front();
}

Status CheckUserReady(CK_FLAGS flags) {
  if ((flags & CKF_TOKEN_INITIALIZED) == 0) {
    return Status::Unavailable("token is not initialised (CKF_TOKEN_INITIALIZED clear)");
  }
  if ((flags & CKF_USER_PIN_INITIALIZED) == 0) {
    return Status::Unavailable("user PIN is not initialised (CKF_USER_PIN_INITIALIZED clear)");
  }
  if ((flags & CKF_USER_PIN_LOCKED) != 0) {
    return Status::Unavailable("user PIN is locked (CKF_USER_PIN_LOCKED)");
  }
  if ((flags & CKF_USER_PIN_FINAL_TRY) != 0) {
    return Status::Unavailable(
        "one more wrong user PIN locks the token (CKF_USER_PIN_FINAL_TRY)");
  }
  if ((flags & CKF_USER_PIN_TO_BE_CHANGED) != 0) {
    return Status::Unavailable("user PIN must be changed (CKF_USER_PIN_TO_BE_CHANGED)");
  }
  return Status::Ok();
}

}  // namespace holdfast::hsm::internal
