#include "module.h"

#include <dlfcn.h>

#include <map>
#include <mutex>
#include <utility>

namespace holdfast::hsm::internal {

Result<ModuleLibrary> ModuleLibrary::Load(const std::string& path) {
  if (path.empty()) return Status::Unavailable("no PKCS#11 module path configured");
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = dlerror();
    return Status::Unavailable("dlopen " + path + ": " + (error ? error : "unknown error"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
  if (get_list == nullptr) {
    dlclose(handle);
    return Status::Unavailable(path + " has no C_GetFunctionList: not a PKCS#11 module");
  }
  CK_FUNCTION_LIST* functions = nullptr;
  if (CK_RV rv = get_list(&functions); rv != CKR_OK || functions == nullptr) {
    dlclose(handle);
    return RvStatus(Code::kUnavailable, "C_GetFunctionList", rv == CKR_OK ? CKR_GENERAL_ERROR : rv);
  }
  if (functions->version.major < 2) {
    dlclose(handle);
    return Status::Unavailable(path + " implements PKCS#11 " +
                               std::to_string(functions->version.major) + ".x, need 2.x or later");
  }
  return ModuleLibrary(handle, functions);
}

ModuleLibrary::ModuleLibrary(ModuleLibrary&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      functions_(std::exchange(other.functions_, nullptr)) {}

ModuleLibrary& ModuleLibrary::operator=(ModuleLibrary&& other) noexcept {
  if (this != &other) {
    Reset();
    handle_ = std::exchange(other.handle_, nullptr);
    functions_ = std::exchange(other.functions_, nullptr);
  }
  return *this;
}

ModuleLibrary::~ModuleLibrary() { Reset(); }

void ModuleLibrary::Reset() {
  if (handle_ != nullptr) dlclose(handle_);
  handle_ = nullptr;
  functions_ = nullptr;
}

namespace {

struct InitState {
  int references = 0;
  bool finalize_when_unused = false;  // false if initialised outside this module
};

std::mutex& InitMutex() {
  static std::mutex mutex;
  return mutex;
}

std::map<CK_FUNCTION_LIST*, InitState>& InitRegistry() {
  static auto* registry = new std::map<CK_FUNCTION_LIST*, InitState>();
  return *registry;
}

}  // namespace

Result<ModuleInit> ModuleInit::Acquire(CK_FUNCTION_LIST* functions) {
  std::lock_guard lock(InitMutex());
  InitState& state = InitRegistry()[functions];
  if (state.references == 0) {
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = functions->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      InitRegistry().erase(functions);
      return RvStatus(Code::kUnavailable, "C_Initialize", rv);
    }
    state.finalize_when_unused = rv == CKR_OK;
  }
  ++state.references;
  return ModuleInit(functions);
}

ModuleInit::~ModuleInit() {
  if (functions_ == nullptr) return;
  std::lock_guard lock(InitMutex());
  auto it = InitRegistry().find(functions_);
  if (it == InitRegistry().end() || --it->second.references > 0) return;
  if (it->second.finalize_when_unused) functions_->C_Finalize(nullptr);
  InitRegistry().erase(it);
}

Result<Session> Session::Open(CK_FUNCTION_LIST* functions, CK_SLOT_ID slot) {
  CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
  CK_RV rv = functions->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                      nullptr, &handle);
  if (rv != CKR_OK) return RvStatus(Code::kUnavailable, "C_OpenSession", rv);
  return Session(functions, handle);
}

Session::~Session() {
  if (functions_ != nullptr) functions_->C_CloseSession(handle_);
}

Result<Login> Login::As(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE session,
                        CK_USER_TYPE user, const SecretBytes& pin) {
  // C_Login does not write through the PIN pointer.
  CK_RV rv = functions->C_Login(session, user, const_cast<uint8_t*>(pin.data()), pin.size());
  if (rv != CKR_OK) {
    Code code = rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED
                    ? Code::kPermissionDenied
                    : Code::kUnavailable;
    return RvStatus(code, user == CKU_SO ? "C_Login(CKU_SO)" : "C_Login", rv);
  }
  return Login(functions, session);
}

Login::~Login() {
  if (functions_ != nullptr) functions_->C_Logout(session_);
}

ScopedObject::~ScopedObject() {
  if (functions_ != nullptr) functions_->C_DestroyObject(session_, object_);
}

}  // namespace holdfast::hsm::internal
