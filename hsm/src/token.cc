#include "holdfast/hsm/token.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

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

class Pkcs11Token final : public Token {
 public:
  Pkcs11Token(ModuleLibrary library, ModuleInit init, Session session)
      : library_(std::move(library)),
        init_(std::move(init)),
        session_(std::move(session)),
        f_(library_.functions()) {}

  Result<Bytes> GenerateSigningKey(std::string_view label) override {
    if (label.empty()) return Status::InvalidArgument("empty key label");
    return Generate(std::string(label), KeyRole::kSign);
  }
  Result<Bytes> GenerateOrgRoot() override { return GenerateSigningKey(kOrgRootLabel); }
  Result<Bytes> GenerateEpochKey(uint32_t epoch_id) override {
    return Generate(EpochKeyLabel(epoch_id), KeyRole::kDerive);
  }

  Result<Bytes> PublicKey(std::string_view label) override {
    std::lock_guard lock(mutex_);
    HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(label));
    HF_ASSIGN_OR_RETURN(Bytes point, PublicPointOf(key, label));
    if (point.empty()) return Status::NotFound(std::string(label) + ": no public key object");
    return point;
  }

  Result<KeyInfo> Describe(std::string_view label) override {
    std::lock_guard lock(mutex_);
    HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(label));
    return DescribeKey(key);
  }

  Result<std::vector<KeyInfo>> ListKeys() override {
    std::lock_guard lock(mutex_);
    CK_OBJECT_CLASS key_class = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE query[] = {ULongAttr(CKA_CLASS, key_class)};
    HF_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> keys, FindObjects(query, SIZE_MAX));
    std::vector<KeyInfo> infos;
    for (CK_OBJECT_HANDLE key : keys) {
      HF_ASSIGN_OR_RETURN(Bytes label, GetAttribute(key, CKA_LABEL));
      if (!AsString(label).starts_with(kHoldfastLabelPrefix)) continue;
      HF_ASSIGN_OR_RETURN(KeyInfo info, DescribeKey(key));
      infos.push_back(std::move(info));
    }
    std::sort(infos.begin(), infos.end(),
              [](const KeyInfo& a, const KeyInfo& b) { return a.label < b.label; });
    return infos;
  }

  Result<Bytes> SignWithOrgRoot(ByteView message) override { return Sign(kOrgRootLabel, message); }

  Result<Bytes> Sign(std::string_view label, ByteView message) override {
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned digest_size = 0;
    if (EVP_Digest(message.data(), message.size(), digest, &digest_size, EVP_sha256(),
                   nullptr) != 1) {
      return Status::Internal("EVP_Digest(SHA-256) failed");
    }
    std::lock_guard lock(mutex_);
    HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, CachedPrivateKey(label));
    CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
    if (CK_RV rv = f_->C_SignInit(session(), &mechanism, key); rv != CKR_OK) {
      return RvStatus("C_SignInit", rv);
    }
    // Sized by a length query so that the second call always completes the
    // operation; a CKR_BUFFER_TOO_SMALL would leave it active on the session.
    CK_ULONG size = 0;
    if (CK_RV rv = f_->C_Sign(session(), digest, digest_size, nullptr, &size); rv != CKR_OK) {
      return RvStatus("C_Sign", rv);
    }
    Bytes signature(size);
    if (CK_RV rv = f_->C_Sign(session(), digest, digest_size, signature.data(), &size);
        rv != CKR_OK) {
      return RvStatus("C_Sign", rv);
    }
    if (size != kP1363SignatureSize) {
      return Status::Internal("C_Sign returned " + std::to_string(size) +
                              " bytes, expected a 64-byte P-256 signature");
    }
    return signature;
  }

  Result<SecretBytes> DeriveEcdh(uint32_t epoch_id, ByteView peer_public) override {
    HF_RETURN_IF_ERROR(internal::CheckP256Point(peer_public));
    std::string label = EpochKeyLabel(epoch_id);
    std::lock_guard lock(mutex_);
    HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, CachedPrivateKey(label));
    CK_OBJECT_HANDLE derived = CK_INVALID_HANDLE;
    CK_RV rv = DeriveSecret(key, peer_public, peer_point_as_der_, &derived);
    if (rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_DOMAIN_PARAMS_INVALID) {
      // PKCS#11 2.40 allows the peer point raw or DER-wrapped and modules
      // differ in which they take; remember the one that works.
      if (DeriveSecret(key, peer_public, !peer_point_as_der_, &derived) == CKR_OK) {
        peer_point_as_der_ = !peer_point_as_der_;
        rv = CKR_OK;
      }
    }
    if (rv != CKR_OK) return RvStatus("C_DeriveKey", rv);
    ScopedObject secret(f_, session(), derived);
    return GetSecretValue(secret.get());
  }

  Status Ping() override {
    std::lock_guard lock(mutex_);
    CK_SESSION_INFO info{};
    if (CK_RV rv = f_->C_GetSessionInfo(session(), &info); rv != CKR_OK) {
      return RvStatus(Code::kUnavailable, "C_GetSessionInfo", rv);
    }
    if (info.state != CKS_RW_USER_FUNCTIONS && info.state != CKS_RO_USER_FUNCTIONS) {
      return Status::Unavailable("session is not logged in as user (state " +
                                 std::to_string(info.state) + ")");
    }
    return Status::Ok();
  }

 private:
  CK_SESSION_HANDLE session() const { return session_.handle(); }

  Result<Bytes> Generate(std::string label, KeyRole role) {
    std::lock_guard lock(mutex_);
    CK_OBJECT_CLASS private_class = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE query[] = {ULongAttr(CKA_CLASS, private_class), StringAttr(CKA_LABEL, label)};
    HF_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> existing, FindObjects(query, 1));
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
        BoolAttr(CKA_DERIVE, !sign),
        BoolAttr(CKA_DECRYPT, false),
        BoolAttr(CKA_UNWRAP, false),
    };
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
    CK_RV rv = f_->C_GenerateKeyPair(session(), &mechanism, public_template,
                                     std::size(public_template), private_template,
                                     std::size(private_template), &public_key, &private_key);
    if (rv != CKR_OK) return RvStatus("C_GenerateKeyPair", rv);
    // A pair whose public point cannot be read is useless: remove it so that
    // generation can be retried.
    ScopedObject public_guard(f_, session(), public_key);
    ScopedObject private_guard(f_, session(), private_key);
    HF_ASSIGN_OR_RETURN(Bytes point, ReadPoint(public_key));
    public_guard.Release();
    private_guard.Release();
    return point;
  }

  // The single private key with this label; kNotFound if none, kInternal if
  // several (the token was edited by something else and the key is ambiguous).
  Result<CK_OBJECT_HANDLE> FindPrivateKey(std::string_view label) {
    CK_OBJECT_CLASS key_class = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE query[] = {ULongAttr(CKA_CLASS, key_class), StringAttr(CKA_LABEL, label)};
    HF_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> keys, FindObjects(query, 2));
    if (keys.empty()) return Status::NotFound("no private key labelled " + std::string(label));
    if (keys.size() > 1) {
      return Status::Internal("several private keys labelled " + std::string(label));
    }
    return keys.front();
  }

  // FindPrivateKey for the hot paths. A search costs about half an ECDH in
  // SoftHSM, so handles are remembered; a remembered handle is used only if
  // it is still a private key with that label, which catches keys deleted by
  // another client and modules that reuse handles.
  Result<CK_OBJECT_HANDLE> CachedPrivateKey(std::string_view label) {
    if (auto it = key_handles_.find(label); it != key_handles_.end()) {
      CK_OBJECT_CLASS key_class = CK_UNAVAILABLE_INFORMATION;
      std::string current(label.size(), '\0');
      CK_ATTRIBUTE attributes[] = {
          {CKA_CLASS, &key_class, sizeof key_class},
          {CKA_LABEL, current.data(), static_cast<CK_ULONG>(current.size())}};
      if (f_->C_GetAttributeValue(session(), it->second, attributes, 2) == CKR_OK &&
          key_class == CKO_PRIVATE_KEY && attributes[1].ulValueLen == label.size() &&
          current == label) {
        return it->second;
      }
      key_handles_.erase(it);
    }
    HF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE key, FindPrivateKey(label));
    key_handles_.emplace(std::string(label), key);
    return key;
  }

  // The point of the public key object with the private key's label and
  // CKA_ID; empty if there is none.
  Result<Bytes> PublicPointOf(CK_OBJECT_HANDLE private_key, std::string_view label) {
    HF_ASSIGN_OR_RETURN(Bytes id, GetAttribute(private_key, CKA_ID));
    CK_OBJECT_CLASS key_class = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE query[] = {ULongAttr(CKA_CLASS, key_class), StringAttr(CKA_LABEL, label),
                            BytesAttr(CKA_ID, id)};
    HF_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> keys,
                        FindObjects(std::span(query, id.empty() ? 2 : 3), 2));
    if (keys.empty()) return Bytes{};
    if (keys.size() > 1) {
      return Status::Internal("several public keys match " + std::string(label));
    }
    return ReadPoint(keys.front());
  }

  Result<KeyInfo> DescribeKey(CK_OBJECT_HANDLE key) {
    KeyInfo info;
    HF_ASSIGN_OR_RETURN(Bytes label, GetAttribute(key, CKA_LABEL));
    info.label = AsString(label);
    HF_ASSIGN_OR_RETURN(info.sensitive, GetBool(key, CKA_SENSITIVE));
    HF_ASSIGN_OR_RETURN(info.extractable, GetBool(key, CKA_EXTRACTABLE));
    HF_ASSIGN_OR_RETURN(info.can_sign, GetBool(key, CKA_SIGN));
    HF_ASSIGN_OR_RETURN(info.can_derive, GetBool(key, CKA_DERIVE));
    HF_ASSIGN_OR_RETURN(info.public_key, PublicPointOf(key, info.label));
    return info;
  }

  Result<Bytes> ReadPoint(CK_OBJECT_HANDLE public_key) {
    HF_ASSIGN_OR_RETURN(Bytes value, GetAttribute(public_key, CKA_EC_POINT));
    return internal::DecodeEcPointAttribute(value);
  }

  Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(std::span<CK_ATTRIBUTE> query,
                                                    size_t max_count) {
    if (CK_RV rv = f_->C_FindObjectsInit(session(), query.data(), query.size());
        rv != CKR_OK) {
      return RvStatus("C_FindObjectsInit", rv);
    }
    std::vector<CK_OBJECT_HANDLE> found;
    CK_RV rv = CKR_OK;
    while (found.size() < max_count) {
      CK_OBJECT_HANDLE batch[16];
      CK_ULONG n = 0;
      CK_ULONG want = std::min<size_t>(std::size(batch), max_count - found.size());
      rv = f_->C_FindObjects(session(), batch, want, &n);
      if (rv != CKR_OK || n == 0) break;
      found.insert(found.end(), batch, batch + n);
    }
    CK_RV final_rv = f_->C_FindObjectsFinal(session());
    if (rv != CKR_OK) return RvStatus("C_FindObjects", rv);
    if (final_rv != CKR_OK) return RvStatus("C_FindObjectsFinal", final_rv);
    return found;
  }

  Result<Bytes> GetAttribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE attribute{type, nullptr, 0};
    if (CK_RV rv = f_->C_GetAttributeValue(session(), object, &attribute, 1); rv != CKR_OK) {
      return RvStatus("C_GetAttributeValue", rv);
    }
    if (attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
      return Status::Internal("C_GetAttributeValue: attribute unavailable");
    }
    Bytes value(attribute.ulValueLen);
    attribute.pValue = value.data();
    if (CK_RV rv = f_->C_GetAttributeValue(session(), object, &attribute, 1); rv != CKR_OK) {
      return RvStatus("C_GetAttributeValue", rv);
    }
    value.resize(attribute.ulValueLen);
    return value;
  }

  Result<bool> GetBool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE attribute{type, &value, sizeof value};
    if (CK_RV rv = f_->C_GetAttributeValue(session(), object, &attribute, 1); rv != CKR_OK) {
      return RvStatus("C_GetAttributeValue", rv);
    }
    return value == CK_TRUE;
  }

  Result<SecretBytes> GetSecretValue(CK_OBJECT_HANDLE object) {
    SecretBytes value(kSharedSecretSize);
    CK_ATTRIBUTE attribute{CKA_VALUE, value.data(), static_cast<CK_ULONG>(value.size())};
    if (CK_RV rv = f_->C_GetAttributeValue(session(), object, &attribute, 1); rv != CKR_OK) {
      return RvStatus("C_GetAttributeValue(CKA_VALUE)", rv);
    }
    if (attribute.ulValueLen != kSharedSecretSize) {
      return Status::Internal("derived secret has " + std::to_string(attribute.ulValueLen) +
                              " bytes, expected 32");
    }
    return value;
  }

  // On CKR_OK the caller owns *derived.
  CK_RV DeriveSecret(CK_OBJECT_HANDLE key, ByteView peer, bool as_der,
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
    return f_->C_DeriveKey(session(), &mechanism, key, secret_template,
                           std::size(secret_template), derived);
  }

  // Destroyed in reverse: session, then C_Finalize, then dlclose.
  ModuleLibrary library_;
  ModuleInit init_;
  Session session_;
  CK_FUNCTION_LIST* const f_;

  std::mutex mutex_;  // serialises every call on session_; guards the fields below
  bool peer_point_as_der_ = false;
  std::map<std::string, CK_OBJECT_HANDLE, std::less<>> key_handles_;
};

}  // namespace

Result<std::unique_ptr<Token>> Token::Open(const TokenConfig& config) {
  if (!internal::IsValidTokenLabel(config.token_label)) {
    return Status::Unavailable(std::string(internal::kTokenLabelRule));
  }
  if (config.pin.empty()) return Status::Unavailable("empty user PIN");
  HF_ASSIGN_OR_RETURN(ModuleLibrary library, ModuleLibrary::Load(config.module_path));
  HF_ASSIGN_OR_RETURN(ModuleInit init, ModuleInit::Acquire(library.functions()));
  CK_FUNCTION_LIST* f = library.functions();
  HF_ASSIGN_OR_RETURN(CK_SLOT_ID slot, FindSlot(f, config.token_label));
  HF_ASSIGN_OR_RETURN(Session session, Session::Open(f, slot));
  // C_Login does not write through the PIN pointer.
  CK_RV rv = f->C_Login(session.handle(), CKU_USER, const_cast<uint8_t*>(config.pin.data()),
                        config.pin.size());
  // Another Token of this process on the same token has logged in already;
  // login state is per application, so this session is logged in too.
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    return RvStatus(Code::kUnavailable, "C_Login", rv)
        .WithContext("token \"" + config.token_label + "\"");
  }
  return std::unique_ptr<Token>(
      new Pkcs11Token(std::move(library), std::move(init), std::move(session)));
}

}  // namespace holdfast::hsm
