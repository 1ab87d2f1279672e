// Owning handles for a dlopen'ed PKCS#11 module, its initialisation, a
// session and a session object. All are move-only and release in their
// destructors; none converts to the raw handle implicitly.
#pragma once

#include <string>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "p11.h"

namespace holdfast::hsm::internal {

// A dlopen handle and the module's function list.
class ModuleLibrary final {
 public:
  static Result<ModuleLibrary> Load(const std::string& path);

  ModuleLibrary(ModuleLibrary&& other) noexcept;
  ModuleLibrary& operator=(ModuleLibrary&& other) noexcept;
  ~ModuleLibrary();

  // Valid while this object lives.
  CK_FUNCTION_LIST* functions() const { return functions_; }

 private:
  ModuleLibrary(void* handle, CK_FUNCTION_LIST* functions)
      : handle_(handle), functions_(functions) {}
  void Reset();

  void* handle_ = nullptr;
  CK_FUNCTION_LIST* functions_ = nullptr;
};

// One reference to the module's C_Initialize. A module is initialised once per
// process, so references are counted per function list: the first calls
// C_Initialize, the last C_Finalize. If something else in the process had
// already initialised the module, it is never finalised from here.
// The ModuleLibrary must outlive this object.
class ModuleInit final {
 public:
  static Result<ModuleInit> Acquire(CK_FUNCTION_LIST* functions);

  ModuleInit(ModuleInit&& other) noexcept : functions_(other.functions_) {
    other.functions_ = nullptr;
  }
  ModuleInit& operator=(ModuleInit&&) = delete;
  ~ModuleInit();

 private:
  explicit ModuleInit(CK_FUNCTION_LIST* functions) : functions_(functions) {}
  CK_FUNCTION_LIST* functions_;
};

// An open session; C_CloseSession on destruction (which also logs out when
// it is the application's last session on the token).
class Session final {
 public:
  static Result<Session> Open(CK_FUNCTION_LIST* functions, CK_SLOT_ID slot);

  Session(Session&& other) noexcept
      : functions_(other.functions_), handle_(other.handle_) {
    other.functions_ = nullptr;
  }
  Session& operator=(Session&&) = delete;
  ~Session();

  CK_SESSION_HANDLE handle() const { return handle_; }

 private:
  Session(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE handle)
      : functions_(functions), handle_(handle) {}
  CK_FUNCTION_LIST* functions_;
  CK_SESSION_HANDLE handle_;
};

// A login on a session, undone with C_Logout on destruction. The PIN is
// passed to the module straight from the caller's buffer.
class Login final {
 public:
  // kPermissionDenied for a wrong or locked PIN, kUnavailable otherwise.
  static Result<Login> As(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE session,
                          CK_USER_TYPE user, const SecretBytes& pin);

  Login(Login&& other) noexcept : functions_(other.functions_), session_(other.session_) {
    other.functions_ = nullptr;
  }
  Login& operator=(Login&&) = delete;
  ~Login();

 private:
  Login(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE session)
      : functions_(functions), session_(session) {}
  CK_FUNCTION_LIST* functions_;
  CK_SESSION_HANDLE session_;
};

// An object to destroy when the scope ends unless Release() is called.
class ScopedObject final {
 public:
  ScopedObject(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE session,
               CK_OBJECT_HANDLE object)
      : functions_(functions), session_(session), object_(object) {}
  ScopedObject(const ScopedObject&) = delete;
  ScopedObject& operator=(const ScopedObject&) = delete;
  ~ScopedObject();

  CK_OBJECT_HANDLE get() const { return object_; }
  void Release() { functions_ = nullptr; }

 private:
  CK_FUNCTION_LIST* functions_;
  CK_SESSION_HANDLE session_;
  CK_OBJECT_HANDLE object_;
};

}  // namespace holdfast::hsm::internal
