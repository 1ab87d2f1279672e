#include "holdfast/hsm/token.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "ec_point.h"
#include "module.h"
#include "p11.h"
#include "slots.h"

namespace holdfast::hsm {

using internal::FindSlot;
using internal::ModuleInit;
using internal::ModuleLibrary;
using internal::RvStatus;
using internal::ScopedObject;
using internal::Session;

std::string EpochKeyLabel(uint32_t epoch_id) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "holdfast-epoch-%06u", static_cast<unsigned>(epoch_id));
  return buffer;
}

namespace {

constexpr std::string_view kHoldfastLabelPrefix = "holdfast-";
constexpr size_t kKeyIdSize = 16;
constexpr size_t kSharedSecretSize = 32;
constexpr size_t kP1363SignatureSize = 64;

constexpr CK_BBOOL kTrue = CK_TRUE;
constexpr CK_BBOOL kFalse = CK_FALSE;

// Templates are inputs the module only reads, but the C API takes void*.
CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, const void* value, size_t size) {
  return CK_ATTRIBUTE{type, const_cast<void*>(value), static_cast<CK_ULONG>(size)};
}
CK_ATTRIBUTE BoolAttr(CK_ATTRIBUTE_TYPE type, bool value) {
  return Attr(type, value ? &kTrue : &kFalse, sizeof(CK_BBOOL));
}
CK_ATTRIBUTE ULongAttr(CK_ATTRIBUTE_TYPE type, const CK_ULONG& value) {
  return Attr(type, &value, sizeof value);
}
CK_ATTRIBUTE BytesAttr(CK_ATTRIBUTE_TYPE type, ByteView value) {
  return Attr(type, value.data(), value.size());
}
CK_ATTRIBUTE StringAttr(CK_ATTRIBUTE_TYPE type, std::string_view value) {
  return Attr(type, value.data(), value.size());
}

enum class KeyRole { kSign, kDerive };

// Whether a session can no longer be used and a fresh one might work: it
// was closed (also by C_CloseAllSessions elsewhere in the process), its
// device went away, or it is no longer logged in (a C_Logout elsewhere).
bool SessionLost(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE session) {
  CK_SESSION_INFO info{};
  CK_RV rv = f->C_GetSessionInfo(session, &info);
  if (rv != CKR_OK) {
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
           rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
  }
  return info.state != CKS_RW_USER_FUNCTIONS && info.state != CKS_RO_USER_FUNCTIONS;
}

// Up to `capacity` logged-in sessions on one token, opened on demand and
// kept for reuse. Login state is per process and token, so C_Login runs on
// each new session and CKR_USER_ALREADY_LOGGED_IN counts as success.
// WARNING: a session handle dropped here must never be reused by the module
// for another session of the process; SoftHSM2 numbers handles without reuse.
class SessionPool {
 public:
  class Lease;

  SessionPool(CK_FUNCTION_LIST* f, CK_SLOT_ID slot, std::string token_label, SecretBytes pin,
              size_t capacity)
      : f_(f),
        slot_(slot),
        token_label_(std::move(token_label)),
        pin_(std::move(pin)),
        capacity_(std::max<size_t>(capacity, 1)) {}

  // Waits while every session is lent out.
  Result<Lease> Acquire();

  // Closes the idle sessions: after a lost session they are most likely
  // lost too, and the single retry must not land on one of them.
  void DropIdle() {
    std::vector<Session> dropped;
    std::lock_guard lock(mu_);
    open_ -= idle_.size();
    dropped.swap(idle_);
    available_.notify_all();
  }

 private:
  Result<Session> OpenLoggedIn() {
    HF_ASSIGN_OR_RETURN(Session session, Session::Open(f_, slot_));
    // C_Login does not write through the PIN pointer.
    CK_RV rv = f_->C_Login(session.handle(), CKU_USER, const_cast<uint8_t*>(pin_.data()),
                           pin_.size());
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      return RvStatus(Code::kUnavailable, "C_Login", rv)
          .WithContext("token \"" + token_label_ + "\"");
    }
    return session;
  }

  void Return(Session session, bool keep) {
    std::lock_guard lock(mu_);
    if (keep) {
      idle_.push_back(std::move(session));
    } else {
      --open_;
    }
    available_.notify_one();
  }

  CK_FUNCTION_LIST* const f_;
  const CK_SLOT_ID slot_;
  const std::string token_label_;
  const SecretBytes pin_;
  const size_t capacity_;

  std::mutex mu_;  // guards idle_ and open_
  std::condition_variable available_;
  std::vector<Session> idle_;
  size_t open_ = 0;  // idle plus lent out
};

// One borrowed session, given back when the lease ends, or closed if
// Discard() was called.
class SessionPool::Lease {
 public:
  Lease(SessionPool* pool, Session session) : pool_(pool), session_(std::move(session)) {}
  Lease(Lease&& other) noexcept
      : pool_(std::exchange(other.pool_, nullptr)),
        session_(std::move(other.session_)),
        keep_(other.keep_) {
    other.session_.reset();
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (pool_ != nullptr && session_) pool_->Return(std::move(*session_), keep_);
  }

  CK_SESSION_HANDLE handle() const { return session_->handle(); }
  void Discard() { keep_ = false; }

 private:
  SessionPool* pool_;
  std::optional<Session> session_;
  bool keep_ = true;
};

Result<SessionPool::Lease> SessionPool::Acquire() {
  {
    std::unique_lock lock(mu_);
    available_.wait(lock, [this] { return !idle_.empty() || open_ < capacity_; });
    if (!idle_.empty()) {
      Session session = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(session));
    }
    ++open_;
  }
  auto session = OpenLoggedIn();
  if (!session.ok()) {
    std::lock_guard lock(mu_);
    --open_;
    available_.notify_one();
    return session.status();
  }
  return Lease(this, std::move(session).value());
}

class Pkcs11Token final : public Token {
 public:
  Pkcs11Token(ModuleLibrary library, ModuleInit init, CK_SLOT_ID slot, std::string token_label,
              SecretBytes pin, size_t sessions)
      : library_(std::move(library)),
        init_(std::move(init)),
        f_(library_.functions()),
        pool_(f_, slot, std::move(token_label), std::move(pin), sessions) {}

  // Opens and logs in the first session, so that a bad PIN fails Open.
  Status Start() {
    HF_ASSIGN_OR_RETURN(SessionPool::Lease lease, pool_.Acquire());
    return Status::Ok();
  }

  Result<Bytes> GenerateSigningKey(std::string_view label) override {
    if (label.empty()) return Status::InvalidArgument("empty key label");
    return Generate(std::string(label), KeyRole::kSign);
  }
  Result<Bytes> GenerateOrgRoot() override { return GenerateSigningKey(kOrgRootLabel); }
  Result<Bytes> GenerateEpochKey(uint32_t epoch_id) override {
    return Generate(EpochKeyLabel(epoch_id), KeyRole::kDerive);
  }

  Result<Bytes> PublicKey(std::string_view label) override {
    return WithSession([&](CK_SESSION_HANDLE s) -> Result<Bytes> {
      HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(s, label));
      HF_ASSIGN_OR_RETURN(Bytes point, PublicPointOf(s, key, label));
      if (point.empty()) return Status::NotFound(std::string(label) + ": no public key object");
      return point;
    });
  }

  Result<KeyInfo> Describe(std::string_view label) override {
    return WithSession([&](CK_SESSION_HANDLE s) -> Result<KeyInfo> {
      HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(s, label));
      return DescribeKey(s, key);
    });
  }

  Result<std::vector<KeyInfo>> ListKeys() override {
    return WithSession([&](CK_SESSION_HANDLE s) -> Result<std::vector<KeyInfo>> {
      CK_OBJECT_CLASS key_class = CKO_PRIVATE_KEY;
      CK_ATTRIBUTE query[] = {ULongAttr(CKA_CLASS, key_class)};
      HF_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> keys, FindObjects(s, query, SIZE_MAX));
      std::vector<KeyInfo> infos;
      for (CK_OBJECT_HANDLE key : keys) {
        HF_ASSIGN_OR_RETURN(Bytes label, GetAttribute(s, key, CKA_LABEL));
        if (!AsString(label).starts_with(kHoldfastLabelPrefix)) continue;
        HF_ASSIGN_OR_RETURN(KeyInfo info, DescribeKey(s, key));
        infos.push_back(std::move(info));
      }
      std::sort(infos.begin(), infos.end(),
                [](const KeyInfo& a, const KeyInfo& b) { return a.label < b.label; });
      return infos;
    });
  }

  Result<Bytes> SignWithOrgRoot(ByteView message) override { return Sign(kOrgRootLabel, message); }

  Result<Bytes> Sign(std::string_view label, ByteView message) override {
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned digest_size = 0;
    if (EVP_Digest(message.data(), message.size(), digest, &digest_size, EVP_sha256(),
                   nullptr) != 1) {
      return Status::Internal("EVP_Digest(SHA-256) failed");
    }
    return WithSession([&](CK_SESSION_HANDLE s) -> Result<Bytes> {
      HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, CachedPrivateKey(s, label));
      CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
      if (CK_RV rv = f_->C_SignInit(s, &mechanism, key); rv != CKR_OK) {
        return RvStatus("C_SignInit", rv);
      }
      // Sized by a length query so that the second call always completes the
      // operation; a CKR_BUFFER_TOO_SMALL would leave it active on the session.
      CK_ULONG size = 0;
      if (CK_RV rv = f_->C_Sign(s, digest, digest_size, nullptr, &size); rv != CKR_OK) {
        return RvStatus("C_Sign", rv);
      }
      Bytes signature(size);
      if (CK_RV rv = f_->C_Sign(s, digest, digest_size, signature.data(), &size); rv != CKR_OK) {
        return RvStatus("C_Sign", rv);
      }
      if (size != kP1363SignatureSize) {
        return Status::Internal("C_Sign returned " + std::to_string(size) +
                                " bytes, expected a 64-byte P-256 signature");
      }
      return signature;
    });
  }

  Result<SecretBytes> DeriveEcdh(uint32_t epoch_id, ByteView peer_public) override {
    return DeriveEcdhWith(EpochKeyLabel(epoch_id), peer_public);
  }

  Result<Bytes> GenerateDeriveKey(std::string_view label) override {
    if (label.empty()) return Status::InvalidArgument("empty key label");
    return Generate(std::string(label), KeyRole::kDerive);
  }

  Status DestroyKey(std::string_view label) override {
    return WithSession([&](CK_SESSION_HANDLE s) -> Status {
      HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(s, label));
      if (CK_RV rv = f_->C_DestroyObject(s, key); rv != CKR_OK) {
        return RvStatus("C_DestroyObject", rv);
      }
      std::lock_guard lock(cache_mu_);
      key_handles_.erase(std::string(label));
      return Status::Ok();
    });
  }

  Result<SecretBytes> DeriveEcdhWith(std::string_view label, ByteView peer_public) override {
    HF_RETURN_IF_ERROR(internal::CheckP256Point(peer_public));
    return WithSession([&](CK_SESSION_HANDLE s) -> Result<SecretBytes> {
      HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, CachedPrivateKey(s, label));
      CK_OBJECT_HANDLE derived = CK_INVALID_HANDLE;
      const bool as_der = peer_point_as_der_.load();
      CK_RV rv = DeriveSecret(s, key, peer_public, as_der, &derived);
      if (rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_DOMAIN_PARAMS_INVALID) {
        // PKCS#11 2.40 allows the peer point raw or DER-wrapped and modules
        // differ in which they take; remember the one that works.
        if (DeriveSecret(s, key, peer_public, !as_der, &derived) == CKR_OK) {
          peer_point_as_der_.store(!as_der);
          rv = CKR_OK;
        }
      }
      if (rv != CKR_OK) return RvStatus("C_DeriveKey", rv);
      ScopedObject secret(f_, s, derived);
      return GetSecretValue(s, secret.get());
    });
  }

  Status Ping() override {
    return WithSession([&](CK_SESSION_HANDLE s) -> Status {
      CK_SESSION_INFO info{};
      if (CK_RV rv = f_->C_GetSessionInfo(s, &info); rv != CKR_OK) {
        return RvStatus(Code::kUnavailable, "C_GetSessionInfo", rv);
      }
      if (info.state != CKS_RW_USER_FUNCTIONS && info.state != CKS_RO_USER_FUNCTIONS) {
        return Status::Unavailable("session is not logged in as user (state " +
                                   std::to_string(info.state) + ")");
      }
      return Status::Ok();
    });
  }

 private:
  // Runs fn(session) on a borrowed session. If fn fails and the session
  // turns out lost (SessionLost), it is closed with the idle ones and fn
  // runs once more on a new session; the second failure is final.
  template <typename Fn>
  auto WithSession(Fn&& fn) -> decltype(fn(CK_SESSION_HANDLE{})) {
    for (int attempt = 0;; ++attempt) {
      HF_ASSIGN_OR_RETURN(SessionPool::Lease lease, pool_.Acquire());
      auto result = fn(lease.handle());
      if (result.ok() || !SessionLost(f_, lease.handle())) return result;
      lease.Discard();
      pool_.DropIdle();
      if (attempt == 1) return Status(Code::kUnavailable, StatusOf(result).message());
    }
  }
  static const Status& StatusOf(const Status& s) { return s; }
  template <typename T>
  static const Status& StatusOf(const Result<T>& r) { return r.status(); }

  Result<Bytes> Generate(std::string label, KeyRole role) {
    // One generation at a time, so two callers cannot both pass the
    // existence check for the same label.
    std::lock_guard generating(generate_mu_);
    return WithSession([&](CK_SESSION_HANDLE s) -> Result<Bytes> {
      CK_OBJECT_CLASS private_class = CKO_PRIVATE_KEY;
      CK_ATTRIBUTE query[] = {ULongAttr(CKA_CLASS, private_class), StringAttr(CKA_LABEL, label)};
      HF_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> existing, FindObjects(s, query, 1));
      if (!existing.empty()) return Status::AlreadyExists(label + " already exists on the token");

      // Links the two halves; random so that a regenerated pair never pairs up
      // with a stale public key object.
      Bytes id(kKeyIdSize);
      if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) {
        return Status::Internal("RAND_bytes failed");
      }
      const bool sign = role == KeyRole::kSign;
      CK_OBJECT_CLASS public_class = CKO_PUBLIC_KEY;
      CK_KEY_TYPE key_type = CKK_EC;
      CK_ATTRIBUTE public_template[] = {
          ULongAttr(CKA_CLASS, public_class),
          ULongAttr(CKA_KEY_TYPE, key_type),
          BytesAttr(CKA_EC_PARAMS, internal::kP256EcParams),
          StringAttr(CKA_LABEL, label),
          BytesAttr(CKA_ID, id),
          BoolAttr(CKA_TOKEN, true),
          BoolAttr(CKA_PRIVATE, false),
          BoolAttr(CKA_VERIFY, sign),
          BoolAttr(CKA_ENCRYPT, false),
          BoolAttr(CKA_WRAP, false),
      };
      CK_ATTRIBUTE private_template[] = {
          ULongAttr(CKA_CLASS, private_class),
          ULongAttr(CKA_KEY_TYPE, key_type),
          StringAttr(CKA_LABEL, label),
          BytesAttr(CKA_ID, id),
          BoolAttr(CKA_TOKEN, true),
          BoolAttr(CKA_PRIVATE, true),
          BoolAttr(CKA_SENSITIVE, true),
          BoolAttr(CKA_EXTRACTABLE, false),
          BoolAttr(CKA_SIGN, sign),
          BoolAttr(CKA_SIGN_RECOVER, false),
          BoolAttr(CKA_DERIVE, !sign),
          BoolAttr(CKA_DECRYPT, false),
          BoolAttr(CKA_UNWRAP, false),
      };
      CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
      CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
      CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
      CK_RV rv = f_->C_GenerateKeyPair(s, &mechanism, public_template,
                                       std::size(public_template), private_template,
                                       std::size(private_template), &public_key, &private_key);
      if (rv != CKR_OK) return RvStatus("C_GenerateKeyPair", rv);
      // A pair whose public point cannot be read is useless: remove it so that
      // generation can be retried.
      ScopedObject public_guard(f_, s, public_key);
      ScopedObject private_guard(f_, s, private_key);
      HF_ASSIGN_OR_RETURN(Bytes point, ReadPoint(s, public_key));
      public_guard.Release();
      private_guard.Release();
      return point;
    });
  }

  // The single private key with this label; kNotFound if none, kInternal if
  // several (the token was edited by something else and the key is ambiguous).
  Result<CK_OBJECT_HANDLE> FindPrivateKey(CK_SESSION_HANDLE s, std::string_view label) {
    CK_OBJECT_CLASS key_class = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE query[] = {ULongAttr(CKA_CLASS, key_class), StringAttr(CKA_LABEL, label)};
    HF_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> keys, FindObjects(s, query, 2));
    if (keys.empty()) return Status::NotFound("no private key labelled " + std::string(label));
    if (keys.size() > 1) {
      return Status::Internal("several private keys labelled " + std::string(label));
    }
    return keys.front();
  }

  // FindPrivateKey for the hot paths. A search costs about half an ECDH in
  // SoftHSM, so handles are remembered; a remembered handle is used only if
  // it is still a private key with that label, which catches keys deleted by
  // another client and modules that reuse handles. Object handles are valid
  // in every session of the process.
  Result<CK_OBJECT_HANDLE> CachedPrivateKey(CK_SESSION_HANDLE s, std::string_view label) {
    std::optional<CK_OBJECT_HANDLE> remembered;
    {
      std::lock_guard lock(cache_mu_);
      if (auto it = key_handles_.find(label); it != key_handles_.end()) remembered = it->second;
    }
    if (remembered) {
      CK_OBJECT_CLASS key_class = CK_UNAVAILABLE_INFORMATION;
      std::string current(label.size(), '\0');
      CK_ATTRIBUTE attributes[] = {
          {CKA_CLASS, &key_class, sizeof key_class},
          {CKA_LABEL, current.data(), static_cast<CK_ULONG>(current.size())}};
      if (f_->C_GetAttributeValue(s, *remembered, attributes, 2) == CKR_OK &&
          key_class == CKO_PRIVATE_KEY && attributes[1].ulValueLen == label.size() &&
          current == label) {
        return *remembered;
      }
    }
    HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(s, label));
    std::lock_guard lock(cache_mu_);
    key_handles_.insert_or_assign(std::string(label), key);
    return key;
  }

  // The point of the public key object with the private key's label and
  // CKA_ID; empty if there is none.
  Result<Bytes> PublicPointOf(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE private_key,
                              std::string_view label) {
    HF_ASSIGN_OR_RETURN(Bytes id, GetAttribute(s, private_key, CKA_ID));
    CK_OBJECT_CLASS key_class = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE query[] = {ULongAttr(CKA_CLASS, key_class), StringAttr(CKA_LABEL, label),
                            BytesAttr(CKA_ID, id)};
    HF_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> keys,
                        FindObjects(s, std::span(query, id.empty() ? 2 : 3), 2));
    if (keys.empty()) return Bytes{};
    if (keys.size() > 1) {
      return Status::Internal("several public keys match " + std::string(label));
    }
    return ReadPoint(s, keys.front());
  }

  Result<KeyInfo> DescribeKey(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key) {
    KeyInfo info;
    HF_ASSIGN_OR_RETURN(Bytes label, GetAttribute(s, key, CKA_LABEL));
    info.label = AsString(label);
    HF_ASSIGN_OR_RETURN(info.is_private, GetBool(s, key, CKA_PRIVATE));
    HF_ASSIGN_OR_RETURN(info.sensitive, GetBool(s, key, CKA_SENSITIVE));
    HF_ASSIGN_OR_RETURN(info.extractable, GetBool(s, key, CKA_EXTRACTABLE));
    HF_ASSIGN_OR_RETURN(info.always_sensitive, GetBool(s, key, CKA_ALWAYS_SENSITIVE));
    HF_ASSIGN_OR_RETURN(info.never_extractable, GetBool(s, key, CKA_NEVER_EXTRACTABLE));
    HF_ASSIGN_OR_RETURN(info.can_sign, GetBool(s, key, CKA_SIGN));
    HF_ASSIGN_OR_RETURN(info.can_derive, GetBool(s, key, CKA_DERIVE));
    HF_ASSIGN_OR_RETURN(info.can_decrypt, GetBool(s, key, CKA_DECRYPT));
    HF_ASSIGN_OR_RETURN(info.can_unwrap, GetBool(s, key, CKA_UNWRAP));
    HF_ASSIGN_OR_RETURN(info.can_sign_recover, GetBool(s, key, CKA_SIGN_RECOVER));
    HF_ASSIGN_OR_RETURN(info.public_key, PublicPointOf(s, key, info.label));
    return info;
  }

  Result<Bytes> ReadPoint(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE public_key) {
    HF_ASSIGN_OR_RETURN(Bytes value, GetAttribute(s, public_key, CKA_EC_POINT));
    return internal::DecodeEcPointAttribute(value);
  }

  Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(CK_SESSION_HANDLE s,
                                                    std::span<CK_ATTRIBUTE> query,
                                                    size_t max_count) {
    if (CK_RV rv = f_->C_FindObjectsInit(s, query.data(), query.size()); rv != CKR_OK) {
      return RvStatus("C_FindObjectsInit", rv);
    }
    std::vector<CK_OBJECT_HANDLE> found;
    CK_RV rv = CKR_OK;
    while (found.size() < max_count) {
      CK_OBJECT_HANDLE batch[16];
      CK_ULONG n = 0;
      CK_ULONG want = std::min<size_t>(std::size(batch), max_count - found.size());
      rv = f_->C_FindObjects(s, batch, want, &n);
      if (rv != CKR_OK || n == 0) break;
      found.insert(found.end(), batch, batch + n);
    }
    CK_RV final_rv = f_->C_FindObjectsFinal(s);
    if (rv != CKR_OK) return RvStatus("C_FindObjects", rv);
    if (final_rv != CKR_OK) return RvStatus("C_FindObjectsFinal", final_rv);
    return found;
  }

  Result<Bytes> GetAttribute(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object,
                             CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE attribute{type, nullptr, 0};
    if (CK_RV rv = f_->C_GetAttributeValue(s, object, &attribute, 1); rv != CKR_OK) {
      return RvStatus("C_GetAttributeValue", rv);
    }
    if (attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
      return Status::Internal("C_GetAttributeValue: attribute unavailable");
    }
    Bytes value(attribute.ulValueLen);
    attribute.pValue = value.data();
    if (CK_RV rv = f_->C_GetAttributeValue(s, object, &attribute, 1); rv != CKR_OK) {
      return RvStatus("C_GetAttributeValue", rv);
    }
    value.resize(attribute.ulValueLen);
    return value;
  }

  Result<bool> GetBool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE attribute{type, &value, sizeof value};
    if (CK_RV rv = f_->C_GetAttributeValue(s, object, &attribute, 1); rv != CKR_OK) {
      return RvStatus("C_GetAttributeValue", rv);
    }
    return value == CK_TRUE;
  }

  Result<SecretBytes> GetSecretValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object) {
    SecretBytes value(kSharedSecretSize);
    CK_ATTRIBUTE attribute{CKA_VALUE, value.data(), static_cast<CK_ULONG>(value.size())};
    if (CK_RV rv = f_->C_GetAttributeValue(s, object, &attribute, 1); rv != CKR_OK) {
      return RvStatus("C_GetAttributeValue(CKA_VALUE)", rv);
    }
    if (attribute.ulValueLen != kSharedSecretSize) {
      return Status::Internal("derived secret has " + std::to_string(attribute.ulValueLen) +
                              " bytes, expected 32");
    }
    return value;
  }

  // On CKR_OK the caller owns *derived.
  CK_RV DeriveSecret(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, ByteView peer, bool as_der,
                     CK_OBJECT_HANDLE* derived) {
    Bytes encoded = as_der ? internal::DerOctetString(peer) : Bytes(peer.begin(), peer.end());
    CK_ECDH1_DERIVE_PARAMS params{};
    params.kdf = CKD_NULL;
    params.pPublicData = encoded.data();
    params.ulPublicDataLen = encoded.size();
    CK_MECHANISM mechanism{CKM_ECDH1_DERIVE, &params, sizeof params};
    CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;
    CK_KEY_TYPE key_type = CKK_GENERIC_SECRET;
    CK_ULONG value_len = kSharedSecretSize;
    // Session object, readable: the token has no HKDF, so the caller runs it
    // on the shared secret in software.
    CK_ATTRIBUTE secret_template[] = {
        ULongAttr(CKA_CLASS, secret_class),
        ULongAttr(CKA_KEY_TYPE, key_type),
        ULongAttr(CKA_VALUE_LEN, value_len),
        BoolAttr(CKA_TOKEN, false),
        BoolAttr(CKA_SENSITIVE, false),
        BoolAttr(CKA_EXTRACTABLE, true),
    };
    return f_->C_DeriveKey(s, &mechanism, key, secret_template, std::size(secret_template),
                           derived);
  }

  // Destroyed in reverse: sessions, then C_Finalize, then dlclose.
  ModuleLibrary library_;
  ModuleInit init_;
  CK_FUNCTION_LIST* const f_;
  SessionPool pool_;

  std::mutex generate_mu_;
  std::atomic<bool> peer_point_as_der_{false};
  std::mutex cache_mu_;  // guards key_handles_
  std::map<std::string, CK_OBJECT_HANDLE, std::less<>> key_handles_;
};

}  // namespace

Result<Bytes> Token::GenerateDeriveKey(std::string_view) {
  return Status::FailedPrecondition("this token cannot generate derive keys");
}
Result<SecretBytes> Token::DeriveEcdhWith(std::string_view, ByteView) {
  return Status::FailedPrecondition("this token cannot derive with a labelled key");
}
Status Token::DestroyKey(std::string_view) {
  return Status::FailedPrecondition("this token cannot destroy keys");
}

namespace {

// The usage a Holdfast key of this label must have in a token of this role;
// nullopt if the role allows no key of that label.
std::optional<KeyRole> RoleOfLabel(std::string_view label, TokenRole role) {
  if (role == TokenRole::kEnrollment) {
    return label == kEnrollmentKeyLabel ? std::optional(KeyRole::kSign) : std::nullopt;
  }
  if (label == kOrgRootLabel) return KeyRole::kSign;
  if (label == kHoldKeyLabel) return KeyRole::kDerive;
  constexpr std::string_view kEpochPrefix = "holdfast-epoch-";
  if (label.starts_with(kEpochPrefix)) {
    std::string_view digits = label.substr(kEpochPrefix.size());
    if (digits.size() >= 6 && std::all_of(digits.begin(), digits.end(),
                                          [](char c) { return c >= '0' && c <= '9'; })) {
      return KeyRole::kDerive;
    }
  }
  return std::nullopt;
}

}  // namespace

Status CheckKeyPolicy(const std::vector<KeyInfo>& keys, std::string_view token_label,
                      TokenRole role) {
  for (const KeyInfo& key : keys) {
    const std::string where =
        "key " + key.label + " in token \"" + std::string(token_label) + "\": ";
    std::optional<KeyRole> usage = RoleOfLabel(key.label, role);
    if (!usage) {
      return Status::FailedPrecondition(
          where + "not a key this token may hold (" +
          (role == TokenRole::kEnrollment
               ? std::string("the enrollment token holds ") + std::string(kEnrollmentKeyLabel) +
                     " only"
               : std::string("the archive token holds ") + std::string(kOrgRootLabel) + ", " +
                     std::string(kHoldKeyLabel) + " and holdfast-epoch-NNNNNN") +
          "); remove it or move it elsewhere");
    }
    const bool sign = *usage == KeyRole::kSign;
    const struct {
      const char* name;
      bool actual;
      bool required;
    } checks[] = {
        {"CKA_PRIVATE", key.is_private, true},
        {"CKA_SENSITIVE", key.sensitive, true},
        {"CKA_EXTRACTABLE", key.extractable, false},
        {"CKA_ALWAYS_SENSITIVE", key.always_sensitive, true},
        {"CKA_NEVER_EXTRACTABLE", key.never_extractable, true},
        {"CKA_SIGN", key.can_sign, sign},
        {"CKA_DERIVE", key.can_derive, !sign},
        {"CKA_DECRYPT", key.can_decrypt, false},
        {"CKA_UNWRAP", key.can_unwrap, false},
        {"CKA_SIGN_RECOVER", key.can_sign_recover, false},
    };
    for (const auto& check : checks) {
      if (check.actual != check.required) {
        auto name = [](bool b) { return b ? "true" : "false"; };
        return Status::FailedPrecondition(where + check.name + " is " + name(check.actual) +
                                          " (must be " + name(check.required) + ")");
      }
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<Token>> Token::Open(const TokenConfig& config) {
  if (!internal::IsValidTokenLabel(config.token_label)) {
    return Status::Unavailable(std::string(internal::kTokenLabelRule));
  }
  if (config.pin.empty()) return Status::Unavailable("empty user PIN");
  HF_ASSIGN_OR_RETURN(ModuleLibrary library, ModuleLibrary::Load(config.module_path));
  HF_ASSIGN_OR_RETURN(ModuleInit init, ModuleInit::Acquire(library.functions()));
  CK_FUNCTION_LIST* f = library.functions();
  HF_ASSIGN_OR_RETURN(CK_SLOT_ID slot, FindSlot(f, config.token_label));
  auto token = std::make_unique<Pkcs11Token>(std::move(library), std::move(init), slot,
                                             config.token_label, SecretBytes(config.pin.view()),
                                             config.sessions);
  HF_RETURN_IF_ERROR(token->Start());
  return std::unique_ptr<Token>(std::move(token));
}

}  // namespace holdfast::hsm
