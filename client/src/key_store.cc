#include "holdfast/client/key_store.h"

#include <argon2.h>

#include <charconv>
#include <limits>

#include "holdfast/protocol/primitives.h"
#include "key_store_encoding.h"

namespace holdfast::client {
namespace {

using protocol::Aead;

constexpr size_t kSaltSize = 16;
constexpr size_t kMaxSaltSize = 64;
constexpr size_t kKeyCheckSize = 16;
constexpr size_t kMaxSchemeSize = 32;

// Labels of this file format (local to a device, not part of the wire protocol).
constexpr std::string_view kWrapLabel = "holdfast/client key-store wrap v1";
constexpr std::string_view kSealLabel = "holdfast/client key-store seal v1";
constexpr std::string_view kKeyCheckLabel = "holdfast/client key-store key-check v1";

Result<uint32_t> ParamU32(const WrappedKey& w, const std::string& name) {
  auto it = w.params.find(name);
  if (it == w.params.end()) {
    return Status::InvalidArgument("key store: missing parameter \"" + name + "\"");
  }
  const std::string& s = it->second;
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() ||
      (s.size() > 1 && s[0] == '0')) {
    return Status::InvalidArgument("key store: parameter \"" + name + "\" is not a number");
  }
  return v;
}

// Associated data of the wrapped store key: the scheme and its parameters.
Bytes WrapAad(const WrappedKey& w) {
  internal::FieldEncoder e(kWrapLabel);
  e.Add(w.scheme);
  e.AddCount(w.params.size());
  for (const auto& [k, v] : w.params) {
    e.Add(k);
    e.Add(v);
  }
  return std::move(e).Finish();
}

Bytes SealAad(ByteView bound, const WrappedKey& w, ByteView key_check) {
  internal::FieldEncoder e(kSealLabel);
  e.Add(bound);
  e.Add(w.scheme);
  e.AddCount(w.params.size());
  for (const auto& [k, v] : w.params) {
    e.Add(k);
    e.Add(v);
  }
  e.Add(w.wrapped);
  e.Add(key_check);
  return std::move(e).Finish();
}

Result<SecretBytes> Argon2id(ByteView passphrase, ByteView salt, const Argon2idParams& p) {
  SecretBytes out(kStoreKeySize);
  if (passphrase.size() > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument("passphrase too long");
  }
  int rc = argon2id_hash_raw(p.time_cost(), p.memory_kib(), p.parallelism(), passphrase.data(),
                             passphrase.size(), salt.data(), salt.size(), out.data(), out.size());
  if (rc == ARGON2_MEMORY_ALLOCATION_ERROR) {
    return Status::Unavailable("argon2id: cannot allocate " + std::to_string(p.memory_kib()) +
                               " KiB");
  }
  if (rc != ARGON2_OK) {
    return Status::Internal(std::string("argon2id: ") + argon2_error_message(rc));
  }
  return out;
}

Result<Bytes> KeyCheck(const SecretBytes& key) {
  HF_ASSIGN_OR_RETURN(SecretBytes check,
                      protocol::Hkdf({}, key.view(), AsBytes(kKeyCheckLabel), kKeyCheckSize));
  // A commitment to the key, not a secret.
  return check.Reveal();
}

}  // namespace

bool IsValidWrapperScheme(std::string_view scheme) {
  if (scheme.empty() || scheme.size() > kMaxSchemeSize) return false;
  for (char c : scheme) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

// ------------------------------------------------------------- Argon2id

Result<Argon2idParams> Argon2idParams::Create(uint32_t time_cost, uint32_t memory_kib,
                                              uint32_t parallelism) {
  if (time_cost < 1 || time_cost > kMaxTimeCost) {
    return Status::InvalidArgument("argon2id: time cost must be 1.." +
                                   std::to_string(kMaxTimeCost));
  }
  if (parallelism < 1 || parallelism > kMaxParallelism) {
    return Status::InvalidArgument("argon2id: parallelism must be 1.." +
                                   std::to_string(kMaxParallelism));
  }
  if (memory_kib < 8 * parallelism || memory_kib > kMaxMemoryKib) {
    return Status::InvalidArgument("argon2id: memory must be 8 * parallelism.." +
                                   std::to_string(kMaxMemoryKib) + " KiB");
  }
  Argon2idParams p;
  p.time_cost_ = time_cost;
  p.memory_kib_ = memory_kib;
  p.parallelism_ = parallelism;
  return p;
}

Result<PassphraseWrapper> PassphraseWrapper::Create(ByteView passphrase, Argon2idParams params) {
  if (passphrase.empty()) return Status::InvalidArgument("passphrase is empty");
  return PassphraseWrapper(SecretBytes(passphrase), params);
}

Result<WrappedKey> PassphraseWrapper::Wrap(const SecretBytes& key) const {
  if (key.size() != kStoreKeySize) return Status::InvalidArgument("store key is not 32 bytes");
  WrappedKey w;
  w.scheme = std::string(kArgon2idScheme);
  Bytes salt(kSaltSize);
  HF_RETURN_IF_ERROR(protocol::RandomBytes(std::span<uint8_t>(salt)));
  w.params["salt"] = ToHex(salt);
  w.params["t"] = std::to_string(params_.time_cost());
  w.params["m_kib"] = std::to_string(params_.memory_kib());
  w.params["p"] = std::to_string(params_.parallelism());
  HF_ASSIGN_OR_RETURN(SecretBytes kek, Argon2id(passphrase_.view(), salt, params_));
  Bytes nonce(protocol::kAeadNonceSize);
  HF_RETURN_IF_ERROR(protocol::RandomBytes(std::span<uint8_t>(nonce)));
  HF_ASSIGN_OR_RETURN(Bytes sealed, protocol::AeadSeal(Aead::kChaCha20Poly1305, kek.view(), nonce,
                                                       WrapAad(w), key.view()));
  w.wrapped = Concat({nonce, sealed});
  return w;
}

Result<SecretBytes> PassphraseWrapper::Unwrap(const WrappedKey& w) const {
  if (w.scheme != kArgon2idScheme) {
    return Status::FailedPrecondition("key store is protected by \"" + w.scheme +
                                      "\", not by a passphrase");
  }
  if (w.params.size() != 4) return Status::InvalidArgument("key store: unexpected parameters");
  auto salt = w.params.count("salt") ? FromHex(w.params.at("salt")) : std::nullopt;
  if (!salt || salt->size() < kSaltSize || salt->size() > kMaxSaltSize) {
    return Status::InvalidArgument("key store: bad argon2id salt");
  }
  HF_ASSIGN_OR_RETURN(uint32_t t, ParamU32(w, "t"));
  HF_ASSIGN_OR_RETURN(uint32_t m, ParamU32(w, "m_kib"));
  HF_ASSIGN_OR_RETURN(uint32_t p, ParamU32(w, "p"));
  auto params = Argon2idParams::Create(t, m, p);
  if (!params.ok()) return params.status().WithContext("key store");
  constexpr size_t kWrappedSize = protocol::kAeadNonceSize + kStoreKeySize + protocol::kAeadTagSize;
  if (w.wrapped.size() != kWrappedSize) {
    return Status::InvalidArgument("key store: wrapped key has the wrong size");
  }
  HF_ASSIGN_OR_RETURN(SecretBytes kek, Argon2id(passphrase_.view(), *salt, *params));
  const ByteView all(w.wrapped);
  auto key = protocol::AeadOpen(Aead::kChaCha20Poly1305, kek.view(),
                                all.first(protocol::kAeadNonceSize), WrapAad(w),
                                all.subspan(protocol::kAeadNonceSize));
  if (!key.ok()) {
    if (key.status().code() == Code::kCryptoFailure) {
      return Status::PermissionDenied("wrong passphrase");
    }
    return key.status();
  }
  return std::move(key).value();
}

// ------------------------------------------------------------- KeyStore

Result<KeyStore> KeyStore::Create(const KeyWrapper& wrapper) {
  SecretBytes key(kStoreKeySize);
  HF_RETURN_IF_ERROR(protocol::RandomBytes(key.span()));
  HF_ASSIGN_OR_RETURN(WrappedKey wrapped, wrapper.Wrap(key));
  if (!IsValidWrapperScheme(wrapped.scheme) || wrapped.scheme == kInsecurePlaintextScheme) {
    return Status::InvalidArgument("key wrapper returned an invalid scheme name");
  }
  return KeyStore(std::move(key), std::move(wrapped));
}

Result<SealedKeys> KeyStore::Seal(ByteView secrets, ByteView bound) const {
  if (!encrypted()) return Status::FailedPrecondition("key store is not encrypted");
  SealedKeys s;
  s.key = wrapped_;
  HF_ASSIGN_OR_RETURN(s.key_check, KeyCheck(key_));
  s.nonce.resize(protocol::kAeadNonceSize);
  HF_RETURN_IF_ERROR(protocol::RandomBytes(std::span<uint8_t>(s.nonce)));
  HF_ASSIGN_OR_RETURN(s.ciphertext,
                      protocol::AeadSeal(Aead::kChaCha20Poly1305, key_.view(), s.nonce,
                                         SealAad(bound, s.key, s.key_check), secrets));
  return s;
}

Result<KeyStore::Opened> KeyStore::Open(const SealedKeys& sealed, ByteView bound,
                                        const KeyWrapper& wrapper) {
  if (!IsValidWrapperScheme(sealed.key.scheme) || sealed.key.scheme == kInsecurePlaintextScheme) {
    return Status::InvalidArgument("key store: bad scheme name");
  }
  if (sealed.nonce.size() != protocol::kAeadNonceSize) {
    return Status::InvalidArgument("key store: nonce is not 12 bytes");
  }
  if (sealed.key_check.size() != kKeyCheckSize) {
    return Status::InvalidArgument("key store: key check is not 16 bytes");
  }
  HF_ASSIGN_OR_RETURN(SecretBytes key, wrapper.Unwrap(sealed.key));
  if (key.size() != kStoreKeySize) {
    return Status::InvalidArgument("key wrapper returned a key that is not 32 bytes");
  }
  HF_ASSIGN_OR_RETURN(Bytes check, KeyCheck(key));
  if (!ConstantTimeEqual(check, sealed.key_check)) {
    return Status::PermissionDenied("key wrapper returned the wrong key for this key store");
  }
  auto secrets = protocol::AeadOpen(Aead::kChaCha20Poly1305, key.view(), sealed.nonce,
                                    SealAad(bound, sealed.key, sealed.key_check),
                                    sealed.ciphertext);
  if (!secrets.ok()) {
    if (secrets.status().code() == Code::kCryptoFailure) {
      return Status::CryptoFailure("key store: file was altered (authentication tag mismatch)");
    }
    return secrets.status();
  }
  return Opened{KeyStore(std::move(key), sealed.key), std::move(secrets).value()};
}

}  // namespace holdfast::client
