#include "holdfast/hsm/admin.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <vector>

#include "module.h"
#include "p11.h"
#include "slots.h"

namespace holdfast::hsm {

using internal::FindSlot;
using internal::Login;
using internal::ModuleInit;
using internal::ModuleLibrary;
using internal::RvStatus;
using internal::Session;

namespace {

std::string TokenContext(const std::string& label) { return "token \"" + label + "\""; }

Status ProbeSlot(CK_FUNCTION_LIST* f, const std::string& label) {
  HF_ASSIGN_OR_RETURN(CK_SLOT_ID slot, FindSlot(f, label));
  CK_TOKEN_INFO info{};
  if (CK_RV rv = f->C_GetTokenInfo(slot, &info); rv != CKR_OK) {
    return RvStatus(Code::kUnavailable, "C_GetTokenInfo", rv);
  }
  return internal::CheckUserReady(info.flags);
}

// The PIN length range a token advertises, where it advertises one.
Status CheckPinLength(const SecretBytes& pin, std::string_view what, const CK_TOKEN_INFO& info) {
  if (pin.empty()) return Status::InvalidArgument("empty " + std::string(what) + " PIN");
  const bool has_max = info.ulMaxPinLen != 0 && info.ulMaxPinLen != CK_UNAVAILABLE_INFORMATION;
  if (pin.size() < info.ulMinPinLen || (has_max && pin.size() > info.ulMaxPinLen)) {
    return Status::InvalidArgument(
        std::string(what) + " PIN has " + std::to_string(pin.size()) +
        " bytes; the token takes " + std::to_string(info.ulMinPinLen) + " to " +
        (has_max ? std::to_string(info.ulMaxPinLen) : std::string("any number of")));
  }
  return Status::Ok();
}

// Logs in as SO, sets the user PIN, and logs out (Login's destructor) before
// the session closes.
Status SetUserPin(CK_FUNCTION_LIST* f, CK_SLOT_ID slot, const SecretBytes& so_pin,
                  const SecretBytes& user_pin) {
  HF_ASSIGN_OR_RETURN(Session session, Session::Open(f, slot));
  HF_ASSIGN_OR_RETURN(Login so, Login::As(f, session.handle(), CKU_SO, so_pin));
  // C_InitPIN does not write through the PIN pointer.
  CK_RV rv = f->C_InitPIN(session.handle(), const_cast<uint8_t*>(user_pin.data()),
                          user_pin.size());
  if (rv != CKR_OK) return RvStatus("C_InitPIN", rv);
  return Status::Ok();
}

struct SlotSurvey {
  std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> labelled;  // tokens with the label
  std::optional<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> free;     // first uninitialised
};

Result<SlotSurvey> Survey(CK_FUNCTION_LIST* f, const std::string& label) {
  HF_ASSIGN_OR_RETURN(std::vector<CK_SLOT_ID> slots, internal::SlotsWithToken(f));
  SlotSurvey survey;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (f->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) {
      if (!survey.free) survey.free.emplace(slot, info);
    } else if (internal::TokenLabelOf(info) == label) {
      survey.labelled.emplace_back(slot, info);
    }
  }
  return survey;
}

Status InitSlot(CK_FUNCTION_LIST* f, const std::string& label, const SecretBytes& so_pin,
                const SecretBytes& user_pin) {
  HF_ASSIGN_OR_RETURN(SlotSurvey survey, Survey(f, label));
  if (survey.labelled.size() > 1) {
    return Status::FailedPrecondition(std::to_string(survey.labelled.size()) +
                                      " tokens with this label already exist");
  }
  if (survey.labelled.size() == 1) {
    const auto& [slot, info] = survey.labelled.front();
    if ((info.flags & CKF_USER_PIN_INITIALIZED) != 0) {
      return Status::AlreadyExists("already exists in slot " + std::to_string(slot));
    }
    // Initialised without a user PIN: an earlier call stopped after
    // C_InitToken. Finishing it takes the SO PIN.
    HF_RETURN_IF_ERROR(CheckPinLength(user_pin, "user", info));
    return SetUserPin(f, slot, so_pin, user_pin);
  }
  if (!survey.free) {
    return Status::Unavailable("no slot has an uninitialised token to initialise");
  }
  const auto& [free_slot, free_info] = *survey.free;
  // Both PINs are checked first so that a bad user PIN cannot leave behind a
  // token without one.
  HF_RETURN_IF_ERROR(CheckPinLength(so_pin, "SO", free_info));
  HF_RETURN_IF_ERROR(CheckPinLength(user_pin, "user", free_info));

  CK_UTF8CHAR padded_label[internal::kTokenLabelSize];
  std::fill(std::begin(padded_label), std::end(padded_label), ' ');
  std::copy(label.begin(), label.end(), padded_label);
  // C_InitToken does not write through the PIN pointer.
  if (CK_RV rv = f->C_InitToken(free_slot, const_cast<uint8_t*>(so_pin.data()), so_pin.size(),
                                padded_label);
      rv != CKR_OK) {
    return RvStatus("C_InitToken", rv);
  }
  // Slot ids may change when a token is initialised. SoftHSM2 keeps the id
  // until the next C_Initialize (then it derives one from the serial), but
  // reports the token's new flags, and offers a new free slot, only once the
  // slots are enumerated again. So the token is looked up again by label,
  // which enumerates.
  HF_ASSIGN_OR_RETURN(CK_SLOT_ID slot, FindSlot(f, label));
  HF_RETURN_IF_ERROR(SetUserPin(f, slot, so_pin, user_pin));
  if (Status ready = ProbeSlot(f, label); !ready.ok()) {
    return Status::Internal("initialised, but not ready: " + ready.message());
  }
  return Status::Ok();
}

std::mutex& InitTokenMutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

Status ProbeToken(const std::string& module_path, const std::string& token_label) {
  if (!internal::IsValidTokenLabel(token_label)) {
    return Status::Unavailable(std::string(internal::kTokenLabelRule));
  }
  HF_ASSIGN_OR_RETURN(ModuleLibrary library, ModuleLibrary::Load(module_path));
  HF_ASSIGN_OR_RETURN(ModuleInit init, ModuleInit::Acquire(library.functions()));
  return ProbeSlot(library.functions(), token_label).WithContext(TokenContext(token_label));
}

Status InitToken(const std::string& module_path, const std::string& token_label,
                 const SecretBytes& so_pin, const SecretBytes& user_pin) {
  if (!internal::IsValidTokenLabel(token_label)) {
    return Status::InvalidArgument(std::string(internal::kTokenLabelRule));
  }
  if (so_pin.empty()) return Status::InvalidArgument("empty SO PIN");
  if (user_pin.empty()) return Status::InvalidArgument("empty user PIN");
  std::lock_guard lock(InitTokenMutex());
  HF_ASSIGN_OR_RETURN(ModuleLibrary library, ModuleLibrary::Load(module_path));
  HF_ASSIGN_OR_RETURN(ModuleInit init, ModuleInit::Acquire(library.functions()));
  return InitSlot(library.functions(), token_label, so_pin, user_pin)
      .WithContext(TokenContext(token_label));
}

}  // namespace holdfast::hsm
