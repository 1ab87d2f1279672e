// One error type for every module boundary in Holdfast.
//
// A Status is either OK or carries a code and a human-readable message.
// Result<T> holds a T or a non-OK Status. Failed authentication or decryption
// is an ordinary returned value, never an exception.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace holdfast {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // malformed or hostile input
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,    // authentication or authorisation refused
  kFailedPrecondition,  // state does not allow the operation (e.g. no approval)
  kUnavailable,         // a dependency (database, HSM, peer) cannot be reached
  kCryptoFailure,       // signature, tag or capsule check failed
  kInternal,            // broken invariant or unexpected library failure
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status CryptoFailure(std::string m) { return {Code::kCryptoFailure, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "CODE: message", or "OK".
  std::string ToString() const;

  // Prefixes the message with context, keeping the code.
  Status WithContext(std::string_view context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  // An OK status carries no value: the Result becomes an internal error
  // rather than something that is neither a value nor an error.
  Result(Status status)  // NOLINT: implicit by design
      : v_(status.ok() ? Status::Internal("Result built from an OK status") : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace holdfast

#define HF_CONCAT_INNER_(a, b) a##b
#define HF_CONCAT_(a, b) HF_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if it is not OK.
#define HF_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    ::holdfast::Status hf_status_ = (expr);       \
    if (!hf_status_.ok()) return hf_status_;      \
  } while (0)

// HF_ASSIGN_OR_RETURN(auto x, MakeX()); declares x or returns the error.
#define HF_ASSIGN_OR_RETURN(lhs, expr) \
  HF_ASSIGN_OR_RETURN_IMPL_(HF_CONCAT_(hf_result_, __LINE__), lhs, expr)
#define HF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
