#include "holdfast/protocol/hpke.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <vector>

#include "holdfast/protocol/primitives.h"
#include "hpke_internal.h"
#include "primitives_internal.h"

namespace holdfast::protocol::hpke {

namespace prim = ::holdfast::protocol::internal;
namespace {

constexpr std::string_view kVersionLabel = "HPKE-v1";
constexpr size_t kNh = 32;        // HKDF-SHA256
constexpr size_t kNsecret = 32;   // both DHKEMs
constexpr size_t kNsk = 32;       // both DHKEMs
constexpr size_t kNn = 12;
constexpr uint8_t kModeBase = 0x00;

bool KnownKem(KemId kem) {
  return kem == KemId::kP256HkdfSha256 || kem == KemId::kX25519HkdfSha256;
}

Status CheckSuite(Suite suite) {
  if (!KnownKem(suite.kem)) return Status::InvalidArgument("hpke: unsupported KEM");
  if (suite.kdf != KdfId::kHkdfSha256) return Status::InvalidArgument("hpke: unsupported KDF");
  switch (suite.aead) {
    case AeadId::kAes128Gcm:
    case AeadId::kAes256Gcm:
    case AeadId::kChaCha20Poly1305:
    case AeadId::kExportOnly:
      return Status::Ok();
  }
  return Status::InvalidArgument("hpke: unsupported AEAD");
}

Aead PrimitiveAead(AeadId id) {
  switch (id) {
    case AeadId::kAes128Gcm:
      return Aead::kAes128Gcm;
    case AeadId::kAes256Gcm:
      return Aead::kAes256Gcm;
    default:
      return Aead::kChaCha20Poly1305;
  }
}

size_t KeySize(AeadId id) { return id == AeadId::kExportOnly ? 0 : AeadKeySize(PrimitiveAead(id)); }

void PutU16(uint8_t* out, uint16_t v) {
  out[0] = static_cast<uint8_t>(v >> 8);
  out[1] = static_cast<uint8_t>(v);
}

// suite_id for the KEM: "KEM" || I2OSP(kem_id, 2).
Bytes KemSuiteId(KemId kem) {
  Bytes id = {'K', 'E', 'M', 0, 0};
  PutU16(id.data() + 3, static_cast<uint16_t>(kem));
  return id;
}

// suite_id for the key schedule: "HPKE" || kem_id || kdf_id || aead_id.
Bytes HpkeSuiteId(Suite suite) {
  Bytes id = {'H', 'P', 'K', 'E', 0, 0, 0, 0, 0, 0};
  PutU16(id.data() + 4, static_cast<uint16_t>(suite.kem));
  PutU16(id.data() + 6, static_cast<uint16_t>(suite.kdf));
  PutU16(id.data() + 8, static_cast<uint16_t>(suite.aead));
  return id;
}

// Concatenation into a buffer that is wiped, for inputs that carry secrets.
SecretBytes SecretConcat(std::initializer_list<ByteView> parts) {
  size_t total = 0;
  for (ByteView p : parts) total += p.size();
  SecretBytes out(total);
  size_t at = 0;
  for (ByteView p : parts) {
    if (!p.empty()) std::memcpy(out.data() + at, p.data(), p.size());
    at += p.size();
  }
  return out;
}

SecretBytes LabeledExtract(ByteView suite_id, ByteView salt, std::string_view label,
                           ByteView ikm) {
  SecretBytes labeled = SecretConcat({AsBytes(kVersionLabel), suite_id, AsBytes(label), ikm});
  return HkdfExtract(salt, labeled.view());
}

Result<SecretBytes> LabeledExpand(ByteView suite_id, ByteView prk, std::string_view label,
                                  ByteView info, size_t length) {
  if (length > std::numeric_limits<uint16_t>::max()) {
    return Status::InvalidArgument("hpke: output length exceeds 2^16 - 1");
  }
  uint8_t l[2];
  PutU16(l, static_cast<uint16_t>(length));
  Bytes labeled = Concat({ByteView(l, 2), AsBytes(kVersionLabel), suite_id, AsBytes(label), info});
  return HkdfExpand(prk, labeled, length);
}

Result<SecretBytes> ExtractAndExpand(KemId kem, ByteView dh, ByteView kem_context) {
  Bytes suite_id = KemSuiteId(kem);
  SecretBytes eae_prk = LabeledExtract(suite_id, {}, "eae_prk", dh);
  return LabeledExpand(suite_id, eae_prk.view(), "shared_secret", kem_context, kNsecret);
}

Status ValidatePublic(KemId kem, ByteView pk) {
  if (kem == KemId::kP256HkdfSha256) return prim::ValidateP256Public(pk);
  if (pk.size() != prim::kX25519KeySize) {
    return Status::InvalidArgument("x25519: public key must be 32 bytes");
  }
  return Status::Ok();
}

// key_schedule_context = mode || psk_id_hash || info_hash (RFC 9180 5.1).
// In base mode it depends only on the suite and on info, both public, and
// Holdfast uses a handful of (suite, info) pairs (the device capsule info,
// the archive info of the current epochs), so it is kept per thread instead
// of being recomputed with two HMACs for every capsule.
Bytes KeyScheduleContext(Suite suite, ByteView suite_id, ByteView info) {
  struct Entry {
    Suite suite;
    Bytes info;
    Bytes context;
  };
  constexpr size_t kMaxEntries = 8;
  thread_local std::vector<Entry> memo;
  for (const Entry& e : memo) {
    if (e.suite.kem == suite.kem && e.suite.kdf == suite.kdf && e.suite.aead == suite.aead &&
        std::equal(e.info.begin(), e.info.end(), info.begin(), info.end())) {
      return e.context;
    }
  }
  SecretBytes psk_id_hash = LabeledExtract(suite_id, {}, "psk_id_hash", {});
  SecretBytes info_hash = LabeledExtract(suite_id, {}, "info_hash", info);
  const uint8_t mode[1] = {kModeBase};
  if (memo.size() == kMaxEntries) memo.erase(memo.begin());
  memo.push_back(Entry{suite, Bytes(info.begin(), info.end()),
                       Concat({ByteView(mode, 1), psk_id_hash.view(), info_hash.view()})});
  return memo.back().context;
}

Status ScheduleInto(Suite suite, ByteView shared_secret, ByteView info, SecretBytes& key,
                    SecretBytes& base_nonce, SecretBytes& exporter_secret) {
  HF_RETURN_IF_ERROR(CheckSuite(suite));
  if (shared_secret.size() != kNsecret) {
    return Status::InvalidArgument("hpke: shared secret must be 32 bytes");
  }
  Bytes suite_id = HpkeSuiteId(suite);
  const Bytes context = KeyScheduleContext(suite, suite_id, info);
  SecretBytes secret = LabeledExtract(suite_id, shared_secret, "secret", {});
  if (suite.aead != AeadId::kExportOnly) {
    HF_ASSIGN_OR_RETURN(key, LabeledExpand(suite_id, secret.view(), "key", context,
                                           KeySize(suite.aead)));
    HF_ASSIGN_OR_RETURN(base_nonce,
                        LabeledExpand(suite_id, secret.view(), "base_nonce", context, kNn));
  }
  HF_ASSIGN_OR_RETURN(exporter_secret,
                      LabeledExpand(suite_id, secret.view(), "exp", context, kNh));
  return Status::Ok();
}

std::array<uint8_t, kNn> ComputeNonce(const SecretBytes& base_nonce, uint64_t seq) {
  std::array<uint8_t, kNn> nonce{};
  std::memcpy(nonce.data(), base_nonce.data(), kNn);
  for (size_t i = 0; i < 8; ++i) {
    nonce[kNn - 1 - i] ^= static_cast<uint8_t>(seq >> (8 * i));
  }
  return nonce;
}

Result<SecretBytes> ExportFrom(Suite suite, const SecretBytes& exporter_secret,
                               ByteView exporter_context, size_t length) {
  if (length > 255 * kNh) return Status::InvalidArgument("hpke: export length too large");
  return LabeledExpand(HpkeSuiteId(suite), exporter_secret.view(), "sec", exporter_context,
                       length);
}

}  // namespace

// ------------------------------------------------------------------ KEM

namespace internal {

Result<Encapsulation> EncapWithEphemeral(KemId kem, const KeyPair& ephemeral,
                                         ByteView recipient_public) {
  if (!KnownKem(kem)) return Status::InvalidArgument("hpke: unsupported KEM");
  if (kem == KemId::kP256HkdfSha256) {
    HF_ASSIGN_OR_RETURN(prim::P256PublicKey recipient,
                        prim::P256PublicKey::Parse(recipient_public));
    HF_RETURN_IF_ERROR(ValidatePublic(kem, ephemeral.public_key));
    return EncapP256(ephemeral, recipient);
  }
  HF_RETURN_IF_ERROR(ValidatePublic(kem, recipient_public));
  HF_RETURN_IF_ERROR(ValidatePublic(kem, ephemeral.public_key));
  HF_ASSIGN_OR_RETURN(SecretBytes dh, X25519(ephemeral.private_key.view(), recipient_public));
  Bytes kem_context = Concat({ephemeral.public_key, recipient_public});
  HF_ASSIGN_OR_RETURN(SecretBytes shared, ExtractAndExpand(kem, dh.view(), kem_context));
  return Encapsulation{std::move(shared), ephemeral.public_key};
}

Result<Encapsulation> EncapP256(const KeyPair& ephemeral, const prim::P256PublicKey& recipient) {
  HF_ASSIGN_OR_RETURN(SecretBytes dh, prim::P256Dh(ephemeral.private_key.view(), recipient));
  Bytes kem_context = Concat({ephemeral.public_key, recipient.encoded()});
  HF_ASSIGN_OR_RETURN(SecretBytes shared,
                      ExtractAndExpand(KemId::kP256HkdfSha256, dh.view(), kem_context));
  return Encapsulation{std::move(shared), ephemeral.public_key};
}

Result<SecretBytes> Decap(KemId kem, ByteView enc, ByteView recipient_private) {
  if (kem == KemId::kP256HkdfSha256) {
    HF_ASSIGN_OR_RETURN(Bytes recipient_public, prim::P256PublicFromPrivate(recipient_private));
    HF_ASSIGN_OR_RETURN(prim::P256PublicKey pk_e, prim::P256PublicKey::Parse(enc));
    HF_ASSIGN_OR_RETURN(SecretBytes dh, prim::P256Dh(recipient_private, pk_e));
    Bytes kem_context = Concat({enc, recipient_public});
    return ExtractAndExpand(kem, dh.view(), kem_context);
  }
  if (kem != KemId::kX25519HkdfSha256) return Status::InvalidArgument("hpke: unsupported KEM");
  // Loaded once: OpenSSL computes the public key (needed for kem_context)
  // while loading, and the same key object then does the DH.
  HF_ASSIGN_OR_RETURN(prim::X25519PrivateKey own, prim::X25519PrivateKey::Load(recipient_private));
  HF_RETURN_IF_ERROR(ValidatePublic(kem, enc));
  HF_ASSIGN_OR_RETURN(SecretBytes dh, own.Dh(enc));
  Bytes kem_context = Concat({enc, own.public_key()});
  return ExtractAndExpand(kem, dh.view(), kem_context);
}

Result<SecretBytes> DecapWithDh(KemId kem, ByteView enc, ByteView dh, ByteView recipient_public) {
  if (!KnownKem(kem)) return Status::InvalidArgument("hpke: unsupported KEM");
  HF_RETURN_IF_ERROR(ValidatePublic(kem, enc));
  HF_RETURN_IF_ERROR(ValidatePublic(kem, recipient_public));
  if (dh.size() != 32) return Status::InvalidArgument("hpke: DH output must be 32 bytes");
  static const std::array<uint8_t, 32> kZero{};
  if (ConstantTimeEqual(dh, kZero)) return Status::CryptoFailure("hpke: all-zero DH output");
  Bytes kem_context = Concat({enc, recipient_public});
  return ExtractAndExpand(kem, dh, kem_context);
}

Result<Bytes> SealWithScheduleOf(const ReceiverContext& c, uint64_t seq, ByteView aad,
                                 ByteView plaintext) {
  const Suite suite = ContextAccess::SuiteOf(c);
  if (suite.aead == AeadId::kExportOnly) {
    return Status::FailedPrecondition("hpke: export-only context cannot seal");
  }
  const std::array<uint8_t, kNn> nonce = ComputeNonce(ContextAccess::BaseNonce(c), seq);
  return AeadSeal(PrimitiveAead(suite.aead), ContextAccess::Key(c).view(), nonce, aad,
                  plaintext);
}

}  // namespace internal

// ----------------------------------------------------------------- keys

Result<KeyPair> GenerateKeyPair(KemId kem) {
  SecretBytes ikm(kNsk);
  HF_RETURN_IF_ERROR(RandomBytes(ikm.span()));
  return DeriveKeyPair(kem, ikm.view());
}

Result<KeyPair> DeriveKeyPair(KemId kem, ByteView ikm) {
  if (!KnownKem(kem)) return Status::InvalidArgument("hpke: unsupported KEM");
  if (ikm.size() < kNsk) return Status::InvalidArgument("hpke: ikm shorter than Nsk");
  Bytes suite_id = KemSuiteId(kem);
  SecretBytes dkp_prk = LabeledExtract(suite_id, {}, "dkp_prk", ikm);
  KeyPair pair;
  if (kem == KemId::kX25519HkdfSha256) {
    HF_ASSIGN_OR_RETURN(pair.private_key, LabeledExpand(suite_id, dkp_prk.view(), "sk", {}, kNsk));
  } else {
    // RFC 9180 section 7.1.3: rejection sampling with bitmask 0xff for P-256.
    bool found = false;
    for (unsigned counter = 0; counter <= 255 && !found; ++counter) {
      const uint8_t c[1] = {static_cast<uint8_t>(counter)};
      HF_ASSIGN_OR_RETURN(SecretBytes candidate,
                          LabeledExpand(suite_id, dkp_prk.view(), "candidate", ByteView(c, 1),
                                        kNsk));
      candidate.data()[0] &= 0xff;
      if (prim::P256ScalarInRange(candidate.view())) {
        pair.private_key = std::move(candidate);
        found = true;
      }
    }
    if (!found) return Status::Internal("hpke: DeriveKeyPair found no valid scalar");
  }
  HF_ASSIGN_OR_RETURN(pair.public_key, PublicKeyFromPrivate(kem, pair.private_key.view()));
  return pair;
}

Result<Bytes> PublicKeyFromPrivate(KemId kem, ByteView private_key) {
  switch (kem) {
    case KemId::kP256HkdfSha256:
      return prim::P256PublicFromPrivate(private_key);
    case KemId::kX25519HkdfSha256:
      return prim::X25519PublicFromPrivate(private_key);
  }
  return Status::InvalidArgument("hpke: unsupported KEM");
}

// ------------------------------------------------------------- contexts

Status ContextAccess::Init(SenderContext& c, Suite suite, ByteView shared_secret, ByteView info) {
  c.suite_ = suite;
  return ScheduleInto(suite, shared_secret, info, c.key_, c.base_nonce_, c.exporter_secret_);
}

Status ContextAccess::Init(ReceiverContext& c, Suite suite, ByteView shared_secret,
                           ByteView info) {
  c.suite_ = suite;
  return ScheduleInto(suite, shared_secret, info, c.key_, c.base_nonce_, c.exporter_secret_);
}

Result<Bytes> SenderContext::Seal(ByteView aad, ByteView plaintext) {
  if (suite_.aead == AeadId::kExportOnly) {
    return Status::FailedPrecondition("hpke: export-only context cannot seal");
  }
  if (seq_ == std::numeric_limits<uint64_t>::max()) {
    return Status::FailedPrecondition("hpke: message limit reached");
  }
  const std::array<uint8_t, kNn> nonce = ComputeNonce(base_nonce_, seq_);
  HF_ASSIGN_OR_RETURN(Bytes ct, AeadSeal(PrimitiveAead(suite_.aead), key_.view(), nonce, aad,
                                         plaintext));
  ++seq_;
  return ct;
}

Result<SecretBytes> SenderContext::Export(ByteView exporter_context, size_t length) const {
  return ExportFrom(suite_, exporter_secret_, exporter_context, length);
}

Result<SecretBytes> ReceiverContext::Open(ByteView aad, ByteView ciphertext) {
  if (suite_.aead == AeadId::kExportOnly) {
    return Status::FailedPrecondition("hpke: export-only context cannot open");
  }
  if (seq_ == std::numeric_limits<uint64_t>::max()) {
    return Status::FailedPrecondition("hpke: message limit reached");
  }
  const std::array<uint8_t, kNn> nonce = ComputeNonce(base_nonce_, seq_);
  HF_ASSIGN_OR_RETURN(SecretBytes pt, AeadOpen(PrimitiveAead(suite_.aead), key_.view(), nonce,
                                               aad, ciphertext));
  ++seq_;
  return pt;
}

Result<SecretBytes> ReceiverContext::Export(ByteView exporter_context, size_t length) const {
  return ExportFrom(suite_, exporter_secret_, exporter_context, length);
}

// ---------------------------------------------------------------- setup

Result<SenderContext> SetupBaseSender(Suite suite, ByteView recipient_public, ByteView info) {
  HF_RETURN_IF_ERROR(CheckSuite(suite));
  if (suite.kem == KemId::kX25519HkdfSha256) {
    // A fresh ephemeral key straight from the DRBG (RFC 9180 only asks that
    // GenerateKeyPair be random), used as one key object for its public key
    // and for the DH, so X25519's base multiplication runs once.
    HF_RETURN_IF_ERROR(ValidatePublic(suite.kem, recipient_public));
    HF_ASSIGN_OR_RETURN(prim::X25519PrivateKey ephemeral, prim::X25519PrivateKey::Generate());
    HF_ASSIGN_OR_RETURN(SecretBytes dh, ephemeral.Dh(recipient_public));
    Bytes kem_context = Concat({ephemeral.public_key(), recipient_public});
    HF_ASSIGN_OR_RETURN(SecretBytes shared, ExtractAndExpand(suite.kem, dh.view(), kem_context));
    SenderContext context;
    HF_RETURN_IF_ERROR(ContextAccess::Init(context, suite, shared.view(), info));
    ContextAccess::SetEnc(context, ephemeral.public_key());
    return context;
  }
  HF_ASSIGN_OR_RETURN(KeyPair ephemeral, GenerateKeyPair(suite.kem));
  return SetupBaseSenderWithEphemeral(suite, ephemeral, recipient_public, info);
}

Result<SenderContext> SetupBaseSenderWithEphemeral(Suite suite, const KeyPair& ephemeral,
                                                   ByteView recipient_public, ByteView info) {
  HF_RETURN_IF_ERROR(CheckSuite(suite));
  HF_ASSIGN_OR_RETURN(Encapsulation encap,
                      internal::EncapWithEphemeral(suite.kem, ephemeral, recipient_public));
  SenderContext context;
  HF_RETURN_IF_ERROR(ContextAccess::Init(context, suite, encap.shared_secret.view(), info));
  ContextAccess::SetEnc(context, std::move(encap.enc));
  return context;
}

Result<ReceiverContext> SetupBaseReceiver(Suite suite, ByteView enc, ByteView recipient_private,
                                          ByteView info) {
  HF_RETURN_IF_ERROR(CheckSuite(suite));
  HF_ASSIGN_OR_RETURN(SecretBytes shared, internal::Decap(suite.kem, enc, recipient_private));
  ReceiverContext context;
  HF_RETURN_IF_ERROR(ContextAccess::Init(context, suite, shared.view(), info));
  return context;
}

Result<ReceiverContext> SetupBaseReceiverWithDh(Suite suite, ByteView enc, ByteView dh,
                                                ByteView recipient_public, ByteView info) {
  HF_RETURN_IF_ERROR(CheckSuite(suite));
  HF_ASSIGN_OR_RETURN(SecretBytes shared,
                      internal::DecapWithDh(suite.kem, enc, dh, recipient_public));
  ReceiverContext context;
  HF_RETURN_IF_ERROR(ContextAccess::Init(context, suite, shared.view(), info));
  return context;
}

Result<Sealed> Seal(Suite suite, ByteView recipient_public, ByteView info, ByteView aad,
                    ByteView plaintext) {
  HF_ASSIGN_OR_RETURN(SenderContext context, SetupBaseSender(suite, recipient_public, info));
  HF_ASSIGN_OR_RETURN(Bytes ct, context.Seal(aad, plaintext));
  return Sealed{context.enc(), std::move(ct)};
}

Result<SecretBytes> Open(Suite suite, ByteView recipient_private, ByteView enc, ByteView info,
                         ByteView aad, ByteView ciphertext) {
  HF_ASSIGN_OR_RETURN(ReceiverContext context,
                      SetupBaseReceiver(suite, enc, recipient_private, info));
  return context.Open(aad, ciphertext);
}

}  // namespace holdfast::protocol::hpke
