#include "holdfast/protocol/envelope.h"

#include <set>

#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "hpke_internal.h"
#include "primitives_internal.h"

namespace holdfast::protocol {
namespace {

constexpr size_t kX25519PublicSize = 32;
constexpr size_t kEd25519PublicSize = 32;
constexpr size_t kEd25519SignatureSize = 64;
constexpr size_t kP256PointSize = 65;
constexpr size_t kDeviceEncSize = kX25519PublicSize;
constexpr size_t kCapsuleCtSize = kCekSize + kAeadTagSize;

Bytes BigEndian32(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

Bytes BigEndian64(int64_t signed_value) {
  auto v = static_cast<uint64_t>(signed_value);
  Bytes out(8);
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(v);
    v >>= 8;
  }
  return out;
}

ByteView View(const std::string& s) { return AsBytes(s); }

Bytes PrekeySigningInput(ByteView public_key, int64_t created_at_ms) {
  return Concat({AsBytes(labels::kPrekeySig), public_key, BigEndian64(created_at_ms)});
}

Bytes EnvelopeSigningInput(ByteView content) {
  return Concat({AsBytes(labels::kEnvelopeSig), content});
}

Result<SecretBytes> BodyKey(ByteView cek) {
  return Hkdf({}, cek, AsBytes(labels::kBodyKey), AeadKeySize(Aead::kChaCha20Poly1305));
}

// The CEK is used for exactly one body, so a fixed nonce is safe.
constexpr uint8_t kBodyNonce[kAeadNonceSize] = {};

Result<Bytes> EncryptBody(ByteView cek, ByteView header_bytes, const std::string& text) {
  HF_ASSIGN_OR_RETURN(SecretBytes key, BodyKey(cek));
  wire::MessageBody body;
  body.set_text(text);
  std::string plaintext = body.SerializeAsString();
  auto ct = AeadSeal(Aead::kChaCha20Poly1305, key.view(), kBodyNonce, header_bytes,
                     View(plaintext));
  SecureWipe(plaintext.data(), plaintext.size());
  SecureWipe(body.mutable_text()->data(), body.text().size());
  return ct;
}

Result<std::string> DecryptBody(ByteView cek, ByteView header_bytes, ByteView body_ct) {
  HF_ASSIGN_OR_RETURN(SecretBytes key, BodyKey(cek));
  auto plaintext = AeadOpen(Aead::kChaCha20Poly1305, key.view(), kBodyNonce, header_bytes,
                            body_ct);
  if (!plaintext.ok()) return plaintext.status().WithContext("body");
  wire::MessageBody body;
  if (!body.ParseFromArray(plaintext->data(), static_cast<int>(plaintext->size()))) {
    return Status::InvalidArgument("body: bad protobuf");
  }
  return std::move(*body.mutable_text());
}

Bytes ArchiveInfo(uint32_t epoch_id) {
  return Concat({AsBytes(labels::kArchiveCapsuleInfo), BigEndian32(epoch_id)});
}

// The archive ephemeral key pair for a CEK and message id:
// ikmE = HKDF(salt = message_id, ikm = CEK, info = kArchiveEphemeral), then
// DeriveKeyPair(ikmE), whose public key pkE is the capsule's enc.
Result<hpke::KeyPair> ArchiveEphemeral(ByteView cek, ByteView message_id) {
  HF_ASSIGN_OR_RETURN(SecretBytes ikm_e,
                      Hkdf(message_id, cek, AsBytes(labels::kArchiveEphemeral), 32));
  return hpke::DeriveKeyPair(hpke::KemId::kP256HkdfSha256, ikm_e.view());
}

Result<internal::P256PublicKey> ParseArchiveKey(ByteView archive_public) {
  auto key = internal::P256PublicKey::Parse(archive_public);
  if (!key.ok()) return key.status().WithContext("archive capsule");
  return key;
}

// The HPKE part of the archive capsule, given the ephemeral pair already
// derived and the archive key already decoded: Encap (one ECDH), key
// schedule, and the seal of the CEK with the header as associated data.
Result<wire::ArchiveCapsule> SealArchiveCapsule(const hpke::KeyPair& ephemeral,
                                                const internal::P256PublicKey& archive,
                                                ByteView cek, uint32_t epoch_id,
                                                ByteView header_bytes) {
  auto encap = hpke::internal::EncapP256(ephemeral, archive);
  if (!encap.ok()) return encap.status().WithContext("archive capsule");
  hpke::SenderContext context;
  HF_RETURN_IF_ERROR(hpke::ContextAccess::Init(context, hpke::kArchiveSuite,
                                               encap->shared_secret.view(),
                                               ArchiveInfo(epoch_id)));
  hpke::ContextAccess::SetEnc(context, std::move(encap->enc));
  HF_ASSIGN_OR_RETURN(Bytes ct, context.Seal(header_bytes, cek));
  wire::ArchiveCapsule capsule;
  capsule.set_epoch_id(epoch_id);
  capsule.set_enc(AsString(context.enc()));
  capsule.set_ct(AsString(ct));
  return capsule;
}

Status EncMismatch() {
  return Status::CryptoFailure("archive capsule mismatch: enc differs from the recomputed one");
}
Status CtMismatch() {
  return Status::CryptoFailure("archive capsule mismatch: ct differs from the recomputed one");
}

// Recomputes the deterministic archive capsule for `cek` and compares it with
// the one carried in the envelope. enc is compared first: it needs only the
// ephemeral key (one fixed-base multiplication), and a capsule whose enc
// differs is rejected without the ECDH that recomputing ct takes.
Status CheckArchiveCapsule(const ParsedEnvelope& parsed, ByteView cek, ByteView archive_public) {
  const wire::ArchiveCapsule& carried = parsed.content.archive();
  HF_ASSIGN_OR_RETURN(internal::P256PublicKey archive, ParseArchiveKey(archive_public));
  HF_ASSIGN_OR_RETURN(hpke::KeyPair ephemeral,
                      ArchiveEphemeral(cek, View(parsed.header.message_id())));
  if (!ConstantTimeEqual(ephemeral.public_key, View(carried.enc()))) return EncMismatch();
  HF_ASSIGN_OR_RETURN(wire::ArchiveCapsule expected,
                      SealArchiveCapsule(ephemeral, archive, cek, parsed.header.epoch_id(),
                                         View(parsed.content.header())));
  if (!ConstantTimeEqual(View(expected.ct()), View(carried.ct()))) return CtMismatch();
  return Status::Ok();
}

Result<SecretBytes> CheckCek(Result<SecretBytes> cek, std::string_view what) {
  if (!cek.ok()) return cek.status().WithContext(what);
  if (cek->size() != kCekSize) {
    return Status::CryptoFailure(std::string(what) + ": CEK is not 32 bytes");
  }
  return cek;
}

Result<OpenedMessage> OpenVerifiedWithCapsule(const ParsedEnvelope& parsed,
                                              const wire::DeviceCapsule& capsule,
                                              const std::vector<ByteView>& my_prekey_privates,
                                              ByteView archive_public);

Status CheckName(const std::string& name, std::string_view what) {
  if (name.size() > kMaxNameSize) {
    return Status::InvalidArgument(std::string("envelope: ") + std::string(what) + " too long");
  }
  return Status::Ok();
}

}  // namespace

Bytes DeviceIdFor(ByteView identity_public_key) {
  Bytes digest = Sha256(Concat({AsBytes(labels::kDeviceId), identity_public_key}));
  digest.resize(kDeviceIdSize);
  return digest;
}

// ---------------------------------------------------------------- prekeys

Result<wire::SignedPrekey> SignPrekey(ByteView identity_private, ByteView prekey_public,
                                      int64_t created_at_ms) {
  if (prekey_public.size() != kX25519PublicSize) {
    return Status::InvalidArgument("prekey: public key must be 32 bytes");
  }
  HF_ASSIGN_OR_RETURN(Bytes signature,
                      Ed25519Sign(identity_private, PrekeySigningInput(prekey_public,
                                                                       created_at_ms)));
  wire::SignedPrekey prekey;
  prekey.set_public_key(AsString(prekey_public));
  prekey.set_created_at_ms(created_at_ms);
  prekey.set_signature(AsString(signature));
  return prekey;
}

Status VerifyPrekey(ByteView identity_public, const wire::SignedPrekey& prekey) {
  if (prekey.public_key().size() != kX25519PublicSize) {
    return Status::InvalidArgument("prekey: public key must be 32 bytes");
  }
  Status status = Ed25519Verify(identity_public,
                                PrekeySigningInput(View(prekey.public_key()),
                                                   prekey.created_at_ms()),
                                View(prekey.signature()));
  return status.ok() ? status : status.WithContext("prekey");
}

Status VerifyDeviceInfo(const wire::DeviceInfo& device) {
  if (device.identity_key().size() != kEd25519PublicSize) {
    return Status::InvalidArgument("device: identity key must be 32 bytes");
  }
  if (device.device_id() != AsString(DeviceIdFor(View(device.identity_key())))) {
    return Status::InvalidArgument("device: device id does not match the identity key");
  }
  if (!device.has_prekey()) return Status::InvalidArgument("device: missing prekey");
  return VerifyPrekey(View(device.identity_key()), device.prekey());
}

// -------------------------------------------------------- authentication

Bytes AuthTranscript(ByteView nonce, ByteView device_id) {
  return Concat({AsBytes(labels::kAuthSig), nonce, device_id});
}

// ------------------------------------------------------ epoch certificate

Bytes EpochCertificateSigningInput(ByteView body) {
  return Concat({AsBytes(labels::kEpochCertSig), body});
}

Result<wire::EpochCertificateBody> VerifyEpochCertificate(const wire::EpochCertificate& cert,
                                                          ByteView org_root_public,
                                                          int64_t now_ms) {
  Status status = EcdsaP256Verify(org_root_public, EpochCertificateSigningInput(View(cert.body())),
                                  View(cert.signature()));
  if (!status.ok()) return status.WithContext("epoch certificate");
  wire::EpochCertificateBody body;
  if (!body.ParseFromString(cert.body())) {
    return Status::InvalidArgument("epoch certificate: bad protobuf");
  }
  if (body.version() != labels::kProtocolVersion) {
    return Status::InvalidArgument("epoch certificate: unsupported version");
  }
  if (!internal::ValidateP256Public(View(body.public_key())).ok()) {
    return Status::InvalidArgument("epoch certificate: public key is not a valid P-256 point");
  }
  if (now_ms != 0 && (now_ms < body.not_before_ms() || now_ms >= body.not_after_ms())) {
    return Status::FailedPrecondition("epoch certificate: outside its validity window");
  }
  return body;
}

// ----------------------------------------------------------------- sealing

Result<wire::DeviceCapsule> SealDeviceCapsule(ByteView cek, ByteView header_bytes,
                                              const Recipient& recipient) {
  if (cek.size() != kCekSize) return Status::InvalidArgument("device capsule: CEK must be 32 bytes");
  HF_ASSIGN_OR_RETURN(hpke::Sealed sealed,
                      hpke::Seal(hpke::kDeviceSuite, recipient.prekey_public,
                                 AsBytes(labels::kDeviceCapsuleInfo), header_bytes, cek));
  wire::DeviceCapsule capsule;
  capsule.set_user(recipient.user);
  capsule.set_device_id(AsString(recipient.device_id));
  capsule.set_enc(AsString(sealed.enc));
  capsule.set_ct(AsString(sealed.ct));
  return capsule;
}

Result<wire::ArchiveCapsule> ComputeArchiveCapsule(ByteView cek, ByteView message_id,
                                                   uint32_t epoch_id, ByteView archive_public,
                                                   ByteView header_bytes) {
  if (cek.size() != kCekSize) return Status::InvalidArgument("archive capsule: CEK must be 32 bytes");
  if (message_id.size() != kMessageIdSize) {
    return Status::InvalidArgument("archive capsule: message id must be 16 bytes");
  }
  HF_ASSIGN_OR_RETURN(hpke::KeyPair ephemeral, ArchiveEphemeral(cek, message_id));
  HF_ASSIGN_OR_RETURN(internal::P256PublicKey archive, ParseArchiveKey(archive_public));
  return SealArchiveCapsule(ephemeral, archive, cek, epoch_id, header_bytes);
}

Result<wire::Envelope> SealMessage(const SealRequest& request, ByteView sender_identity_private) {
  HF_ASSIGN_OR_RETURN(Ed25519Signer identity, Ed25519Signer::Load(sender_identity_private));
  return SealMessage(request, identity);
}

Result<wire::Envelope> SealMessage(const SealRequest& request, const Ed25519Signer& sender) {
  // The public key (for the device id) and the signature both come from
  // this one key object.
  const internal::Ed25519SigningKey& identity = sender.key();
  const Bytes own_device = DeviceIdFor(identity.public_key());
  if (!request.sender_device.empty() && request.sender_device != own_device) {
    return Status::InvalidArgument("seal: sender_device is not the identity key's device id");
  }
  Bytes message_id = request.message_id.empty() ? RandomBytes(kMessageIdSize) : request.message_id;
  if (message_id.size() != kMessageIdSize) {
    return Status::InvalidArgument("seal: message id must be 16 bytes");
  }
  if (!request.resend_of.empty() &&
      (request.resend_of.size() != kMessageIdSize || request.resend_of == message_id)) {
    return Status::InvalidArgument("seal: resend_of must be another 16-byte message id");
  }
  if (request.recipients.empty()) return Status::InvalidArgument("seal: no recipients");
  if (request.recipients.size() > kMaxDeviceCapsules) {
    return Status::InvalidArgument("seal: too many recipient devices");
  }
  HF_RETURN_IF_ERROR(CheckName(request.conversation_id, "conversation id"));
  HF_RETURN_IF_ERROR(CheckName(request.sender_user, "sender user"));
  std::set<Bytes> seen;
  for (const Recipient& r : request.recipients) {
    HF_RETURN_IF_ERROR(CheckName(r.user, "recipient user"));
    if (r.device_id.size() != kDeviceIdSize) {
      return Status::InvalidArgument("seal: recipient device id must be 16 bytes");
    }
    if (!seen.insert(r.device_id).second) {
      return Status::InvalidArgument("seal: duplicate recipient device " + ToHex(r.device_id));
    }
  }

  wire::MessageHeader header;
  header.set_version(labels::kProtocolVersion);
  header.set_message_id(AsString(message_id));
  header.set_conversation_id(request.conversation_id);
  header.set_sender_user(request.sender_user);
  header.set_sender_device(AsString(own_device));
  header.set_sent_at_ms(request.sent_at_ms);
  header.set_epoch_id(request.epoch_id);
  if (!request.resend_of.empty()) header.set_resend_of(AsString(request.resend_of));
  const std::string header_bytes = header.SerializeAsString();

  SecretBytes cek(kCekSize);
  HF_RETURN_IF_ERROR(RandomBytes(cek.span()));

  wire::EnvelopeContent content;
  content.set_header(header_bytes);
  HF_ASSIGN_OR_RETURN(Bytes body, EncryptBody(cek.view(), View(header_bytes), request.text));
  content.set_body(AsString(body));
  for (const Recipient& r : request.recipients) {
    auto capsule = SealDeviceCapsule(cek.view(), View(header_bytes), r);
    if (!capsule.ok()) return capsule.status().WithContext("seal: device " + ToHex(r.device_id));
    *content.add_devices() = std::move(capsule).value();
  }
  HF_ASSIGN_OR_RETURN(*content.mutable_archive(),
                      ComputeArchiveCapsule(cek.view(), message_id, request.epoch_id,
                                            request.archive_public, View(header_bytes)));

  wire::Envelope envelope;
  envelope.set_content(content.SerializeAsString());
  HF_ASSIGN_OR_RETURN(Bytes signature,
                      identity.Sign(EnvelopeSigningInput(View(envelope.content()))));
  envelope.set_signature(AsString(signature));
  return envelope;
}

// ----------------------------------------------------------------- parsing

Result<ParsedEnvelope> ParseEnvelope(ByteView serialized) {
  if (serialized.size() > kMaxEnvelopeSize) {
    return Status::InvalidArgument("envelope: larger than the size limit");
  }
  wire::Envelope envelope;
  if (!envelope.ParseFromArray(serialized.data(), static_cast<int>(serialized.size()))) {
    return Status::InvalidArgument("envelope: bad protobuf");
  }
  return ParseEnvelope(envelope);
}

Result<ParsedEnvelope> ParseEnvelope(const wire::Envelope& envelope) {
  if (envelope.content().size() > kMaxEnvelopeSize) {
    return Status::InvalidArgument("envelope: content larger than the size limit");
  }
  if (envelope.signature().size() != kEd25519SignatureSize) {
    return Status::InvalidArgument("envelope: signature must be 64 bytes");
  }
  ParsedEnvelope parsed;
  parsed.envelope = envelope;
  if (!parsed.content.ParseFromString(envelope.content())) {
    return Status::InvalidArgument("envelope: content is a bad protobuf");
  }
  if (!parsed.header.ParseFromString(parsed.content.header())) {
    return Status::InvalidArgument("envelope: header is a bad protobuf");
  }
  const wire::MessageHeader& header = parsed.header;
  if (header.version() != labels::kProtocolVersion) {
    return Status::InvalidArgument("envelope: unsupported version " +
                                   std::to_string(header.version()));
  }
  if (header.message_id().size() != kMessageIdSize) {
    return Status::InvalidArgument("envelope: message id must be 16 bytes");
  }
  if (header.sender_device().size() != kDeviceIdSize) {
    return Status::InvalidArgument("envelope: sender device must be 16 bytes");
  }
  if (!header.resend_of().empty() && (header.resend_of().size() != kMessageIdSize ||
                                      header.resend_of() == header.message_id())) {
    return Status::InvalidArgument("envelope: resend_of must be empty or another 16-byte id");
  }
  HF_RETURN_IF_ERROR(CheckName(header.conversation_id(), "conversation id"));
  HF_RETURN_IF_ERROR(CheckName(header.sender_user(), "sender user"));
  if (parsed.content.body().size() < kAeadTagSize) {
    return Status::InvalidArgument("envelope: body shorter than an AEAD tag");
  }

  const auto& devices = parsed.content.devices();
  if (devices.empty()) return Status::InvalidArgument("envelope: no device capsules");
  if (static_cast<size_t>(devices.size()) > kMaxDeviceCapsules) {
    return Status::InvalidArgument("envelope: too many device capsules");
  }
  std::set<std::string> seen;
  for (const wire::DeviceCapsule& d : devices) {
    HF_RETURN_IF_ERROR(CheckName(d.user(), "capsule user"));
    if (d.device_id().size() != kDeviceIdSize) {
      return Status::InvalidArgument("envelope: capsule device id must be 16 bytes");
    }
    if (d.enc().size() != kDeviceEncSize) {
      return Status::InvalidArgument("envelope: device capsule enc must be 32 bytes");
    }
    if (d.ct().size() != kCapsuleCtSize) {
      return Status::InvalidArgument("envelope: device capsule ct must be 48 bytes");
    }
    if (!seen.insert(d.device_id()).second) {
      return Status::InvalidArgument("envelope: duplicate device id " +
                                     ToHex(View(d.device_id())));
    }
  }

  if (!parsed.content.has_archive()) {
    return Status::InvalidArgument("envelope: missing archive capsule");
  }
  const wire::ArchiveCapsule& archive = parsed.content.archive();
  if (archive.epoch_id() != header.epoch_id()) {
    return Status::InvalidArgument("envelope: archive capsule epoch differs from header epoch");
  }
  if (archive.enc().size() != kP256PointSize) {
    return Status::InvalidArgument("envelope: archive capsule enc must be 65 bytes");
  }
  if (archive.ct().size() != kCapsuleCtSize) {
    return Status::InvalidArgument("envelope: archive capsule ct must be 48 bytes");
  }
  return parsed;
}

Status VerifyEnvelopeSignature(const ParsedEnvelope& parsed, ByteView sender_identity_public) {
  Status status = Ed25519Verify(sender_identity_public,
                                EnvelopeSigningInput(View(parsed.envelope.content())),
                                View(parsed.envelope.signature()));
  if (!status.ok()) return status.WithContext("envelope signature");
  if (!ConstantTimeEqual(View(parsed.header.sender_device()),
                         DeviceIdFor(sender_identity_public))) {
    return Status::CryptoFailure("envelope: sender device is not the signing key's device");
  }
  return Status::Ok();
}

// ----------------------------------------------------------------- opening

Result<OpenedMessage> OpenMessage(const ParsedEnvelope& parsed, ByteView sender_identity_public,
                                  ByteView my_device_id, ByteView my_prekey_private,
                                  ByteView archive_public) {
  return OpenMessage(parsed, sender_identity_public, my_device_id,
                     std::vector<ByteView>{my_prekey_private}, archive_public);
}

Result<OpenedMessage> OpenMessage(const ParsedEnvelope& parsed, ByteView sender_identity_public,
                                  ByteView my_device_id,
                                  const std::vector<ByteView>& my_prekey_privates,
                                  ByteView archive_public) {
  if (my_prekey_privates.empty()) return Status::InvalidArgument("open: no prekey");
  HF_RETURN_IF_ERROR(VerifyEnvelopeSignature(parsed, sender_identity_public));
  const wire::DeviceCapsule* mine = nullptr;
  for (const wire::DeviceCapsule& d : parsed.content.devices()) {
    if (d.device_id() == AsString(my_device_id)) {
      mine = &d;
      break;
    }
  }
  if (mine == nullptr) return Status::NotFound("envelope: no capsule for this device");
  return OpenVerifiedWithCapsule(parsed, *mine, my_prekey_privates, archive_public);
}

Result<OpenedMessage> OpenMessageWithCapsule(const ParsedEnvelope& parsed,
                                             ByteView sender_identity_public,
                                             const wire::DeviceCapsule& capsule,
                                             ByteView my_device_id,
                                             const std::vector<ByteView>& my_prekey_privates,
                                             ByteView archive_public) {
  if (my_prekey_privates.empty()) return Status::InvalidArgument("open: no prekey");
  HF_RETURN_IF_ERROR(VerifyEnvelopeSignature(parsed, sender_identity_public));
  if (capsule.device_id() != AsString(my_device_id)) {
    return Status::InvalidArgument("open: the capsule is for another device");
  }
  if (capsule.enc().size() != 32 || capsule.ct().size() != 48) {
    return Status::CryptoFailure("device capsule: enc must be 32 bytes and ct 48");
  }
  return OpenVerifiedWithCapsule(parsed, capsule, my_prekey_privates, archive_public);
}

Status VerifyArchiveCapsule(const ParsedEnvelope& parsed, ByteView cek, ByteView archive_public) {
  if (cek.size() != kCekSize) return Status::CryptoFailure("CEK is not 32 bytes");
  return CheckArchiveCapsule(parsed, cek, archive_public);
}

namespace {

// OpenMessage after the signature check, with the device capsule found.
Result<OpenedMessage> OpenVerifiedWithCapsule(const ParsedEnvelope& parsed,
                                              const wire::DeviceCapsule& capsule,
                                              const std::vector<ByteView>& my_prekey_privates,
                                              ByteView archive_public) {
  const wire::DeviceCapsule* mine = &capsule;
  const ByteView header_bytes = View(parsed.content.header());
  // Opening with a wrong X25519 key fails the AEAD tag (kCryptoFailure);
  // any other failure is about the capsule itself and ends the search.
  Result<SecretBytes> opened = Status::Internal("unreachable");
  for (ByteView prekey : my_prekey_privates) {
    opened = hpke::Open(hpke::kDeviceSuite, prekey, View(mine->enc()),
                        AsBytes(labels::kDeviceCapsuleInfo), header_bytes, View(mine->ct()));
    if (opened.ok() || opened.status().code() != Code::kCryptoFailure) break;
  }
  HF_ASSIGN_OR_RETURN(SecretBytes cek, CheckCek(std::move(opened), "device capsule"));
  HF_RETURN_IF_ERROR(CheckArchiveCapsule(parsed, cek.view(), archive_public));
  HF_ASSIGN_OR_RETURN(std::string text,
                      DecryptBody(cek.view(), header_bytes, View(parsed.content.body())));
  return OpenedMessage{parsed.header, std::move(text)};
}

}  // namespace

Result<OpenedMessage> OpenWithArchiveDh(const ParsedEnvelope& parsed, ByteView dh,
                                        ByteView archive_public) {
  HF_ASSIGN_OR_RETURN(SecretBytes cek, RecoverArchiveCek(parsed, dh, archive_public));
  HF_ASSIGN_OR_RETURN(std::string text, DecryptBody(cek.view(), View(parsed.content.header()),
                                                    View(parsed.content.body())));
  return OpenedMessage{parsed.header, std::move(text)};
}

Result<OpenedMessage> OpenWithCek(const ParsedEnvelope& parsed, ByteView cek,
                                  ByteView archive_public) {
  if (cek.size() != kCekSize) return Status::CryptoFailure("CEK is not 32 bytes");
  HF_RETURN_IF_ERROR(CheckArchiveCapsule(parsed, cek, archive_public));
  HF_ASSIGN_OR_RETURN(std::string text, DecryptBody(cek, View(parsed.content.header()),
                                                    View(parsed.content.body())));
  return OpenedMessage{parsed.header, std::move(text)};
}

Result<SecretBytes> RecoverArchiveCek(const ParsedEnvelope& parsed, ByteView dh,
                                      ByteView archive_public) {
  const wire::ArchiveCapsule& archive = parsed.content.archive();
  const ByteView header_bytes = View(parsed.content.header());
  auto context = hpke::SetupBaseReceiverWithDh(hpke::kArchiveSuite, View(archive.enc()), dh,
                                               archive_public, ArchiveInfo(archive.epoch_id()));
  if (!context.ok()) return context.status().WithContext("archive capsule");
  HF_ASSIGN_OR_RETURN(SecretBytes cek, CheckCek(context->Open(header_bytes, View(archive.ct())),
                                                "archive capsule"));

  // Check that the capsule is the deterministic one for this CEK, without a
  // second ECDH. Full recomputation (ComputeArchiveCapsule) would derive
  // (skE, pkE) from the CEK, set enc' = pkE, compute DH(skE, pkArchive), run
  // the key schedule on it with kem_context = enc' || pkArchive and the info
  // of header.epoch_id, and seal the CEK as message 0 with the header as AAD.
  // Here:
  //  - pkE is derived the same way and compared with the carried enc; if
  //    they are equal, enc' = enc.
  //  - then DH(skE, pkArchive) = skE * skArchive * G = DH(skArchive, enc),
  //    which is `dh`, the value the HSM computed for this enc (the caller's
  //    contract); kem_context and info are the same bytes (the archive epoch
  //    equals the header epoch, checked below), so the shared secret and the
  //    key schedule are those `context` already holds.
  //  - so the recomputed ct is the seal of the CEK as message 0 under
  //    `context`'s key and base nonce, compared byte for byte as before.
  // Each step yields the same bytes as the full recomputation, and the same
  // mismatch is reported for enc and for ct. The one input taken on trust is
  // `dh` itself, exactly as for the opening above: a `dh` that is not
  // DH(skArchive, enc) gives a schedule under which the carried ct fails
  // to open, unless whoever made the envelope could predict that wrong value.
  HF_ASSIGN_OR_RETURN(hpke::KeyPair ephemeral,
                      ArchiveEphemeral(cek.view(), View(parsed.header.message_id())));
  if (!ConstantTimeEqual(ephemeral.public_key, View(archive.enc()))) return EncMismatch();
  if (archive.epoch_id() != parsed.header.epoch_id()) return CtMismatch();
  HF_ASSIGN_OR_RETURN(Bytes expected_ct,
                      hpke::internal::SealWithScheduleOf(*context, 0, header_bytes, cek.view()));
  if (!ConstantTimeEqual(expected_ct, View(archive.ct()))) return CtMismatch();
  return cek;
}

}  // namespace holdfast::protocol
