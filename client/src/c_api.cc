// The C API of client.h over the C++ core. Every entry point runs inside
// Guard(), which turns any exception into an error code.
#include "holdfast/client.h"

#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/client/device.h"
#include "holdfast/client/key_store.h"
#include "holdfast/client/profile.h"

namespace hfc = ::holdfast::client;
using holdfast::ByteView;
using holdfast::Bytes;
using holdfast::Code;
using holdfast::Result;
using holdfast::SecretBytes;
using holdfast::Status;

struct hf_device {
  hfc::Device device;
  // Set by protect_with_* or import_*; holds the unwrapped store key.
  std::optional<hfc::KeyStore> store;
  // What the most recent hf_device_open_delivery failure warrants reporting.
  std::optional<hfc::wire::ReportDelivery> last_report;
};

struct hf_notices {
  std::vector<hfc::Notice> items;
};

struct hf_message {
  hfc::ReceivedMessage opened;  // its notices moved to `notices`
  std::string notice;
  hf_notices notices;

  hf_message() = default;
  hf_message(const hf_message&) = delete;
  hf_message& operator=(const hf_message&) = delete;
  ~hf_message() { holdfast::SecureWipe(opened.text.data(), opened.text.size()); }
};

namespace {

// Inputs larger than this are refused before parsing.
constexpr size_t kMaxInputSize = 16u << 20;

thread_local std::string t_last_error;

void SetLastError(std::string_view message) noexcept {
  try {
    t_last_error.assign(message);
  } catch (...) {
    t_last_error.clear();
  }
}

hf_error Fail(hf_error code, std::string_view message) {
  SetLastError(message);
  return code;
}

hf_error FromCode(Code code) {
  switch (code) {
    case Code::kOk: return HF_OK;
    case Code::kInvalidArgument: return HF_ERR_INVALID_ARGUMENT;
    case Code::kNotFound: return HF_ERR_NOT_FOUND;
    case Code::kAlreadyExists: return HF_ERR_ALREADY_EXISTS;
    case Code::kPermissionDenied: return HF_ERR_PERMISSION_DENIED;
    case Code::kFailedPrecondition: return HF_ERR_FAILED_PRECONDITION;
    case Code::kCryptoFailure: return HF_ERR_CRYPTO_FAILURE;
    // Nothing behind this API does I/O; an unavailable resource (Argon2id
    // memory, the DRBG) is not something the caller can retry around.
    case Code::kUnavailable:
    case Code::kInternal: return HF_ERR_INTERNAL;
  }
  return HF_ERR_INTERNAL;
}

Code ToCode(hf_error e) {
  switch (e) {
    case HF_OK: return Code::kOk;
    case HF_ERR_INVALID_ARGUMENT: return Code::kInvalidArgument;
    case HF_ERR_NOT_FOUND: return Code::kNotFound;
    case HF_ERR_ALREADY_EXISTS: return Code::kAlreadyExists;
    case HF_ERR_PERMISSION_DENIED: return Code::kPermissionDenied;
    case HF_ERR_FAILED_PRECONDITION: return Code::kFailedPrecondition;
    case HF_ERR_CRYPTO_FAILURE: return Code::kCryptoFailure;
    default: return Code::kInternal;
  }
}

hf_error FromStatus(const Status& s) {
  if (s.ok()) return HF_OK;
  return Fail(FromCode(s.code()), s.message());
}

template <typename F>
hf_error Guard(F&& body) noexcept {
  t_last_error.clear();
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(HF_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return Fail(HF_ERR_INTERNAL, std::string("unexpected exception: ") + e.what());
  } catch (...) {
    return Fail(HF_ERR_INTERNAL, "unexpected exception");
  }
}

// A (pointer, length) input; NULL is allowed only with length 0.
std::optional<ByteView> Input(const uint8_t* data, size_t len) {
  if (data == nullptr && len != 0) return std::nullopt;
  if (len > kMaxInputSize) return std::nullopt;
  return ByteView(data, len);
}

// Copies `data` out under the query-size convention.
hf_error WriteOut(ByteView data, uint8_t* out, size_t* out_len) {
  if (out == nullptr) {
    *out_len = data.size();
    return HF_OK;
  }
  if (*out_len < data.size()) {
    const size_t capacity = *out_len;
    *out_len = data.size();
    return Fail(HF_ERR_BUFFER_TOO_SMALL, "output needs " + std::to_string(data.size()) +
                                             " bytes, buffer holds " + std::to_string(capacity));
  }
  if (!data.empty()) std::memcpy(out, data.data(), data.size());
  *out_len = data.size();
  return HF_OK;
}

hf_error WriteOut(const std::string& data, uint8_t* out, size_t* out_len) {
  return WriteOut(holdfast::AsBytes(data), out, out_len);
}

template <typename Message>
std::optional<Message> Parse(const uint8_t* data, size_t len) {
  auto in = Input(data, len);
  if (!in) return std::nullopt;
  Message m;
  if (!m.ParseFromArray(in->data(), static_cast<int>(in->size()))) return std::nullopt;
  return m;
}

// A KeyWrapper over the app's callbacks.
class CallbackWrapper final : public hfc::KeyWrapper {
 public:
  explicit CallbackWrapper(const hf_key_wrapper& w) : w_(w), scheme_(w.scheme) {}

  Result<hfc::WrappedKey> Wrap(const SecretBytes& key) const override {
    Bytes out(HF_MAX_WRAPPED_KEY_SIZE);
    size_t len = out.size();
    hf_error e = w_.wrap(w_.context, key.data(), out.data(), &len);
    if (e != HF_OK) return Status(ToCode(e), "key wrapper \"" + scheme_ + "\" could not wrap");
    if (len == 0 || len > HF_MAX_WRAPPED_KEY_SIZE) {
      return Status::InvalidArgument("key wrapper \"" + scheme_ + "\" returned a bad length");
    }
    out.resize(len);
    return hfc::WrappedKey{scheme_, {}, std::move(out)};
  }

  Result<SecretBytes> Unwrap(const hfc::WrappedKey& wrapped) const override {
    if (wrapped.scheme != scheme_) {
      return Status::FailedPrecondition("key store is protected by \"" + wrapped.scheme +
                                        "\", not by \"" + scheme_ + "\"");
    }
    if (!wrapped.params.empty() || wrapped.wrapped.empty() ||
        wrapped.wrapped.size() > HF_MAX_WRAPPED_KEY_SIZE) {
      return Status::InvalidArgument("key store: malformed platform-wrapped key");
    }
    SecretBytes key(hfc::kStoreKeySize);
    hf_error e = w_.unwrap(w_.context, wrapped.wrapped.data(), wrapped.wrapped.size(), key.data());
    if (e != HF_OK) {
      return Status(ToCode(e), "key wrapper \"" + scheme_ + "\" could not unwrap the store key");
    }
    return key;
  }

 private:
  hf_key_wrapper w_;
  std::string scheme_;
};

Status CheckWrapper(const hf_key_wrapper* w) {
  if (w == nullptr || w->scheme == nullptr || w->wrap == nullptr || w->unwrap == nullptr) {
    return Status::InvalidArgument("key wrapper needs a scheme, wrap and unwrap");
  }
  const std::string_view scheme(w->scheme);
  if (!hfc::IsValidWrapperScheme(scheme) || scheme == hfc::kArgon2idScheme ||
      scheme == hfc::kInsecurePlaintextScheme) {
    return Status::InvalidArgument("key wrapper scheme must be 1-32 characters of [a-z0-9-] "
                                   "and not a reserved name");
  }
  return Status::Ok();
}

Result<hfc::PassphraseWrapper> MakePassphraseWrapper(const uint8_t* passphrase, size_t len,
                                                     const hf_kdf_params* params) {
  auto pw = Input(passphrase, len);
  if (!pw) return Status::InvalidArgument("passphrase pointer is NULL");
  hfc::Argon2idParams p = hfc::Argon2idParams::Default();
  if (params != nullptr) {
    HF_ASSIGN_OR_RETURN(p, hfc::Argon2idParams::Create(params->t_cost, params->m_cost_kib,
                                                       params->parallelism));
  }
  return hfc::PassphraseWrapper::Create(*pw, p);
}

hf_error Import(const uint8_t* store, size_t store_len, const hfc::KeyWrapper& wrapper,
                hf_device** out) {
  auto in = Input(store, store_len);
  if (!in) return Fail(HF_ERR_INVALID_ARGUMENT, "key store pointer is NULL or too large");
  const std::string_view text(reinterpret_cast<const char*>(in->data()), in->size());
  auto loaded = hfc::DecodeProfile(text, &wrapper);
  if (!loaded.ok()) return FromStatus(loaded.status());
  if (!loaded->store.encrypted()) {
    return Fail(HF_ERR_INVALID_ARGUMENT, "key store is not encrypted");
  }
  auto device = hfc::Device::FromProfile(std::move(loaded->profile));
  if (!device.ok()) return FromStatus(device.status());
  *out = new hf_device{std::move(device).value(), std::move(loaded->store), std::nullopt};
  return HF_OK;
}

hf_error Create(const char* user, int64_t now_ms, const hf_rng* rng, bool with_master,
                hf_device** out) {
  if (out == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "out is NULL");
  *out = nullptr;
  if (user == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "user is NULL");
  Result<hfc::Device> device = Status::Internal("unset");
  if (rng != nullptr) {
    if (rng->fill == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "rng has no fill function");
    SecretBytes seed(with_master ? hfc::kDeviceSeedWithMasterSize : hfc::kDeviceSeedSize);
    if (rng->fill(rng->context, seed.data(), seed.size()) != 0) {
      return Fail(HF_ERR_RNG_FAILURE, "the caller's rng reported failure");
    }
    device = hfc::Device::FromSeed(user, now_ms, seed.view());
  } else {
    device = hfc::Device::Generate(user, now_ms, with_master);
  }
  if (!device.ok()) return FromStatus(device.status());
  *out = new hf_device{std::move(device).value(), std::nullopt, std::nullopt};
  return HF_OK;
}

hf_notice_kind KindOf(hfc::Notice::Kind kind) {
  switch (kind) {
    case hfc::Notice::Kind::kArchived: return HF_NOTICE_ARCHIVED;
    case hfc::Notice::Kind::kNewDevice: return HF_NOTICE_NEW_DEVICE;
    case hfc::Notice::Kind::kDeviceRemoved: return HF_NOTICE_DEVICE_REMOVED;
    case hfc::Notice::Kind::kMasterKeyChanged: return HF_NOTICE_MASTER_KEY_CHANGED;
    case hfc::Notice::Kind::kMembersChanged: return HF_NOTICE_MEMBERS_CHANGED;
    case hfc::Notice::Kind::kResent: return HF_NOTICE_RESENT;
    case hfc::Notice::Kind::kHistoryRestored: return HF_NOTICE_HISTORY_RESTORED;
  }
  return HF_NOTICE_ARCHIVED;  // unreachable: the switch is exhaustive
}

// Accessor results; a NULL message reads as empty.
const char* Text(const hf_message* m, const std::string hfc::ReceivedMessage::*field,
                 size_t* len) {
  if (len) *len = m ? (m->opened.*field).size() : 0;
  return m ? (m->opened.*field).c_str() : nullptr;
}

const uint8_t* Data(const hf_message* m, const Bytes hfc::ReceivedMessage::*field, size_t* len) {
  if (len) *len = m ? (m->opened.*field).size() : 0;
  return m ? (m->opened.*field).data() : nullptr;
}

}  // namespace

extern "C" {

const char* hf_error_string(hf_error error) {
  switch (error) {
    case HF_OK: return "HF_OK: success";
    case HF_ERR_INVALID_ARGUMENT: return "HF_ERR_INVALID_ARGUMENT: invalid or malformed input";
    case HF_ERR_BUFFER_TOO_SMALL: return "HF_ERR_BUFFER_TOO_SMALL: output buffer too small";
    case HF_ERR_NOT_FOUND: return "HF_ERR_NOT_FOUND: not found";
    case HF_ERR_ALREADY_EXISTS: return "HF_ERR_ALREADY_EXISTS: already exists";
    case HF_ERR_PERMISSION_DENIED: return "HF_ERR_PERMISSION_DENIED: permission denied";
    case HF_ERR_FAILED_PRECONDITION: return "HF_ERR_FAILED_PRECONDITION: failed precondition";
    case HF_ERR_CRYPTO_FAILURE: return "HF_ERR_CRYPTO_FAILURE: cryptographic check failed";
    case HF_ERR_RNG_FAILURE: return "HF_ERR_RNG_FAILURE: randomness source failed";
    case HF_ERR_OUT_OF_MEMORY: return "HF_ERR_OUT_OF_MEMORY: out of memory";
    case HF_ERR_INTERNAL: return "HF_ERR_INTERNAL: internal error";
  }
  return "unknown hf_error";
}

const char* hf_last_error_message(void) { return t_last_error.c_str(); }

hf_error hf_device_create(const char* user, int64_t now_ms, const hf_rng* rng, hf_device** out) {
  return Guard([&]() -> hf_error { return Create(user, now_ms, rng, /*with_master=*/true, out); });
}

hf_error hf_device_create_without_master(const char* user, int64_t now_ms, const hf_rng* rng,
                                         hf_device** out) {
  return Guard(
      [&]() -> hf_error { return Create(user, now_ms, rng, /*with_master=*/false, out); });
}

void hf_device_free(hf_device** device) {
  if (device == nullptr) return;
  delete *device;  // SecretBytes members wipe themselves
  *device = nullptr;
}

hf_error hf_device_protect_with_passphrase(hf_device* device, const uint8_t* passphrase,
                                           size_t passphrase_len, const hf_kdf_params* params) {
  return Guard([&]() -> hf_error {
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    auto wrapper = MakePassphraseWrapper(passphrase, passphrase_len, params);
    if (!wrapper.ok()) return FromStatus(wrapper.status());
    auto store = hfc::KeyStore::Create(*wrapper);
    if (!store.ok()) return FromStatus(store.status());
    device->store.emplace(std::move(store).value());
    return HF_OK;
  });
}

hf_error hf_device_protect_with_wrapper(hf_device* device, const hf_key_wrapper* wrapper) {
  return Guard([&]() -> hf_error {
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    if (Status s = CheckWrapper(wrapper); !s.ok()) return FromStatus(s);
    auto store = hfc::KeyStore::Create(CallbackWrapper(*wrapper));
    if (!store.ok()) return FromStatus(store.status());
    device->store.emplace(std::move(store).value());
    return HF_OK;
  });
}

hf_error hf_device_export(const hf_device* device, uint8_t* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    if (!device->store) {
      return Fail(HF_ERR_FAILED_PRECONDITION,
                  "no key store protection set: call hf_device_protect_with_*");
    }
    auto text = hfc::EncodeProfile(device->device.profile(), *device->store);
    if (!text.ok()) return FromStatus(text.status());
    return WriteOut(*text, out, out_len);
  });
}

hf_error hf_device_import_with_passphrase(const uint8_t* store, size_t store_len,
                                          const uint8_t* passphrase, size_t passphrase_len,
                                          hf_device** out) {
  return Guard([&]() -> hf_error {
    if (out == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = nullptr;
    auto wrapper = MakePassphraseWrapper(passphrase, passphrase_len, nullptr);
    if (!wrapper.ok()) return FromStatus(wrapper.status());
    return Import(store, store_len, *wrapper, out);
  });
}

hf_error hf_device_import_with_wrapper(const uint8_t* store, size_t store_len,
                                       const hf_key_wrapper* wrapper, hf_device** out) {
  return Guard([&]() -> hf_error {
    if (out == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (Status s = CheckWrapper(wrapper); !s.ok()) return FromStatus(s);
    return Import(store, store_len, CallbackWrapper(*wrapper), out);
  });
}

hf_error hf_device_id(const hf_device* device, uint8_t* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    return WriteOut(holdfast::protocol::DeviceIdFor(device->device.identity_public()), out,
                    out_len);
  });
}

hf_error hf_device_user(const hf_device* device, char* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    const std::string& user = device->device.profile().user;
    const ByteView with_nul(reinterpret_cast<const uint8_t*>(user.c_str()), user.size() + 1);
    return WriteOut(with_nul, reinterpret_cast<uint8_t*>(out), out_len);
  });
}

int hf_device_is_registered(const hf_device* device) {
  return device != nullptr && device->device.registered() ? 1 : 0;
}

hf_error hf_device_identity_key(const hf_device* device, uint8_t* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    return WriteOut(device->device.identity_public(), out, out_len);
  });
}

hf_error hf_device_set_org_root(hf_device* device, const uint8_t* org_root_key,
                                size_t org_root_key_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    auto key = Input(org_root_key, org_root_key_len);
    if (!key) return Fail(HF_ERR_INVALID_ARGUMENT, "org root key pointer is NULL");
    return FromStatus(device->device.PinOrgRoot(*key));
  });
}

hf_error hf_device_register_request(const hf_device* device, const char* enrollment_code,
                                    int64_t now_ms, uint8_t* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || enrollment_code == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device, enrollment_code or out_len is NULL");
    }
    if (*enrollment_code == '\0') return Fail(HF_ERR_INVALID_ARGUMENT, "enrollment code is empty");
    auto request = device->device.MakeRegisterRequest(enrollment_code, now_ms);
    if (!request.ok()) return FromStatus(request.status());
    return WriteOut(request->SerializeAsString(), out, out_len);
  });
}

hf_error hf_device_accept_registration(hf_device* device, const uint8_t* response,
                                       size_t response_len, const char* server_url) {
  return Guard([&]() -> hf_error {
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    auto r = Parse<hfc::wire::RegisterResponse>(response, response_len);
    if (!r) return Fail(HF_ERR_INVALID_ARGUMENT, "not a RegisterResponse");
    return FromStatus(
        device->device.AcceptRegistration(*r, server_url ? server_url : "", /*ca_file=*/""));
  });
}

hf_error hf_device_certify_new_device(const hf_device* device, const uint8_t* identity_key,
                                      size_t identity_key_len, int64_t now_ms, uint8_t* out,
                                      size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    auto key = Input(identity_key, identity_key_len);
    if (!key) return Fail(HF_ERR_INVALID_ARGUMENT, "identity key pointer is NULL");
    auto cert = device->device.CertifyNewDevice(*key, now_ms);
    if (!cert.ok()) return FromStatus(cert.status());
    return WriteOut(cert->SerializeAsString(), out, out_len);
  });
}

hf_error hf_device_use_certificate(hf_device* device, const uint8_t* certificate,
                                   size_t certificate_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    auto cert = Parse<hfc::wire::DeviceCertificate>(certificate, certificate_len);
    if (!cert) return Fail(HF_ERR_INVALID_ARGUMENT, "not a DeviceCertificate");
    return FromStatus(device->device.UseCertificate(*cert));
  });
}

hf_error hf_device_hello(const hf_device* device, uint8_t* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    if (!device->device.registered()) {
      return Fail(HF_ERR_FAILED_PRECONDITION, "device is not registered");
    }
    return WriteOut(device->device.MakeHello().SerializeAsString(), out, out_len);
  });
}

hf_error hf_device_answer_challenge(const hf_device* device, const uint8_t* challenge,
                                    size_t challenge_len, uint8_t* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    auto c = Parse<hfc::wire::Challenge>(challenge, challenge_len);
    if (!c) return Fail(HF_ERR_INVALID_ARGUMENT, "not a Challenge");
    auto auth = device->device.AnswerChallenge(*c);
    if (!auth.ok()) return FromStatus(auth.status());
    return WriteOut(auth->SerializeAsString(), out, out_len);
  });
}

int hf_device_prekey_rotation_due(const hf_device* device, int64_t now_ms, int64_t rotation_ms) {
  if (device == nullptr) return 0;
  return device->device.PrekeyRotationDue(
             now_ms, rotation_ms > 0 ? rotation_ms : hfc::kDefaultPrekeyRotationMs)
             ? 1
             : 0;
}

hf_error hf_device_begin_prekey_rotation(hf_device* device, int64_t now_ms, const hf_rng* rng,
                                         uint64_t request_id, uint8_t* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    if (!device->device.registered()) {
      return Fail(HF_ERR_FAILED_PRECONDITION, "device is not registered");
    }
    SecretBytes ikm;
    // A pending rotation is answered again without drawing.
    if (rng != nullptr && device->device.profile().pending_prekeys.empty()) {
      if (rng->fill == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "rng has no fill function");
      ikm = SecretBytes(32);
      if (rng->fill(rng->context, ikm.data(), ikm.size()) != 0) {
        return Fail(HF_ERR_RNG_FAILURE, "the caller's rng reported failure");
      }
    }
    auto update = device->device.BeginPrekeyRotation(now_ms, ikm.view());
    if (!update.ok()) return FromStatus(update.status());
    hfc::wire::ClientFrame frame;
    frame.set_request_id(request_id);
    *frame.mutable_update_prekey() = std::move(update).value();
    return WriteOut(frame.SerializeAsString(), out, out_len);
  });
}

hf_error hf_device_complete_prekey_rotation(hf_device* device, const uint8_t* prekey_updated,
                                            size_t prekey_updated_len, int64_t now_ms) {
  return Guard([&]() -> hf_error {
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    auto confirmation = Parse<hfc::wire::PrekeyUpdated>(prekey_updated, prekey_updated_len);
    if (!confirmation) return Fail(HF_ERR_INVALID_ARGUMENT, "not a PrekeyUpdated");
    return FromStatus(device->device.CompletePrekeyRotation(*confirmation, now_ms));
  });
}

hf_error hf_device_expire_prekeys(hf_device* device, int64_t now_ms, int64_t grace_ms,
                                  size_t* removed) {
  return Guard([&]() -> hf_error {
    if (removed != nullptr) *removed = 0;
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    if (grace_ms < 0) return Fail(HF_ERR_INVALID_ARGUMENT, "grace_ms is negative");
    const size_t n = device->device.ExpireRetiredPrekeys(
        now_ms, grace_ms > 0 ? grace_ms : hfc::kDefaultPrekeyGraceMs);
    if (removed != nullptr) *removed = n;
    return HF_OK;
  });
}

hf_error hf_device_observe_conversation(hf_device* device, const uint8_t* conversation,
                                        size_t conversation_len, int64_t now_ms,
                                        hf_notices** out) {
  return Guard([&]() -> hf_error {
    if (out == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    auto c = Parse<hfc::wire::ConversationInfo>(conversation, conversation_len);
    if (!c) return Fail(HF_ERR_INVALID_ARGUMENT, "not a ConversationInfo");
    auto notices = device->device.ObserveConversation(*c, now_ms);
    if (!notices.ok()) return FromStatus(notices.status());
    *out = new hf_notices{std::move(notices).value()};
    return HF_OK;
  });
}

size_t hf_notices_count(const hf_notices* notices) {
  return notices == nullptr ? 0 : notices->items.size();
}

hf_error hf_notices_get(const hf_notices* notices, size_t index, hf_notice_kind* kind,
                        const char** text, size_t* text_len, const char** user,
                        size_t* user_len) {
  return Guard([&]() -> hf_error {
    if (notices == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "notices is NULL");
    if (index >= notices->items.size()) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "notice index " + std::to_string(index) +
                                               " out of range (" +
                                               std::to_string(notices->items.size()) + ")");
    }
    const hfc::Notice& n = notices->items[index];
    if (kind != nullptr) *kind = KindOf(n.kind);
    if (text != nullptr) *text = n.text.c_str();
    if (text_len != nullptr) *text_len = n.text.size();
    if (user != nullptr) *user = n.user.c_str();
    if (user_len != nullptr) *user_len = n.user.size();
    return HF_OK;
  });
}

void hf_notices_free(hf_notices** notices) {
  if (notices == nullptr) return;
  delete *notices;
  *notices = nullptr;
}

hf_error hf_device_prepare_message(const hf_device* device, const uint8_t* conversation,
                                   size_t conversation_len, const uint8_t* text,
                                   size_t text_len, int64_t now_ms, hf_output_kind kind,
                                   uint64_t request_id, uint8_t* out, size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    if (kind != HF_OUTPUT_ENVELOPE && kind != HF_OUTPUT_SUBMIT_FRAME) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "unknown output kind");
    }
    auto c = Parse<hfc::wire::ConversationInfo>(conversation, conversation_len);
    if (!c) return Fail(HF_ERR_INVALID_ARGUMENT, "not a ConversationInfo");
    auto body = Input(text, text_len);
    if (!body) return Fail(HF_ERR_INVALID_ARGUMENT, "text pointer is NULL");
    auto envelope = device->device.PrepareMessage(
        *c, std::string_view(reinterpret_cast<const char*>(body->data()), body->size()), now_ms);
    if (!envelope.ok()) return FromStatus(envelope.status());
    if (kind == HF_OUTPUT_ENVELOPE) return WriteOut(envelope->SerializeAsString(), out, out_len);
    hfc::wire::ClientFrame frame;
    frame.set_request_id(request_id);
    *frame.mutable_submit()->mutable_envelope() = std::move(*envelope);
    return WriteOut(frame.SerializeAsString(), out, out_len);
  });
}

hf_error hf_device_open_delivery(hf_device* device, const uint8_t* deliver, size_t deliver_len,
                                 int64_t now_ms, hf_message** out) {
  return Guard([&]() -> hf_error {
    if (out == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (device == nullptr) return Fail(HF_ERR_INVALID_ARGUMENT, "device is NULL");
    device->last_report.reset();
    auto d = Parse<hfc::wire::Deliver>(deliver, deliver_len);
    if (!d) return Fail(HF_ERR_INVALID_ARGUMENT, "not a Deliver");
    auto opened = device->device.OpenDelivery(*d, now_ms);
    if (!opened.ok()) {
      device->last_report = hfc::ReportFor(*d, opened.status());
      return FromStatus(opened.status());
    }
    if (!device->device.MarkReceived(*opened)) {
      return Fail(HF_ERR_ALREADY_EXISTS, "message " + holdfast::ToHex(opened->message_id) +
                                             " was already opened (duplicate delivery)");
    }
    auto message = std::make_unique<hf_message>();
    message->opened = std::move(opened).value();
    message->notices.items = std::move(message->opened.notices);
    message->notice = d->archive_notice();
    *out = message.release();
    return HF_OK;
  });
}

hf_error hf_device_last_report(const hf_device* device, uint64_t request_id, uint8_t* out,
                               size_t* out_len) {
  return Guard([&]() -> hf_error {
    if (device == nullptr || out_len == nullptr) {
      return Fail(HF_ERR_INVALID_ARGUMENT, "device or out_len is NULL");
    }
    if (!device->last_report) {
      return Fail(HF_ERR_NOT_FOUND, "the most recent delivery warrants no report");
    }
    hfc::wire::ClientFrame frame;
    frame.set_request_id(request_id);
    *frame.mutable_report_delivery() = *device->last_report;
    return WriteOut(frame.SerializeAsString(), out, out_len);
  });
}

const char* hf_message_text(const hf_message* m, size_t* len) {
  return Text(m, &hfc::ReceivedMessage::text, len);
}
const char* hf_message_sender_user(const hf_message* m, size_t* len) {
  return Text(m, &hfc::ReceivedMessage::sender_user, len);
}
const char* hf_message_conversation_id(const hf_message* m, size_t* len) {
  return Text(m, &hfc::ReceivedMessage::conversation_id, len);
}
const char* hf_message_archive_notice(const hf_message* m, size_t* len) {
  if (len) *len = m ? m->notice.size() : 0;
  return m ? m->notice.c_str() : nullptr;
}
const uint8_t* hf_message_id(const hf_message* m, size_t* len) {
  return Data(m, &hfc::ReceivedMessage::message_id, len);
}
const uint8_t* hf_message_sender_device(const hf_message* m, size_t* len) {
  return Data(m, &hfc::ReceivedMessage::sender_device, len);
}
const uint8_t* hf_message_resend_of(const hf_message* m, size_t* len) {
  return Data(m, &hfc::ReceivedMessage::resend_of, len);
}
int64_t hf_message_sent_at_ms(const hf_message* m) { return m ? m->opened.sent_at_ms : 0; }
const hf_notices* hf_message_notices(const hf_message* m) { return m ? &m->notices : nullptr; }

void hf_message_free(hf_message** message) {
  if (message == nullptr) return;
  delete *message;
  *message = nullptr;
}

}  // extern "C"
