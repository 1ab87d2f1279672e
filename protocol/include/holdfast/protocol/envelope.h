// The Holdfast v1 message layer: seal a message to devices and to the
// archive, open and verify it, and the checks the gateway makes.
//
// Wire types are the generated protobuf classes of proto/holdfast.proto
// (namespace holdfast::wire::v1); this header adds the cryptography.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/protocol/holdfast.pb.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::protocol {

namespace wire = ::holdfast::wire::v1;

inline constexpr size_t kDeviceIdSize = 16;
inline constexpr size_t kMessageIdSize = 16;
inline constexpr size_t kCekSize = 32;

// Structural limits ParseEnvelope enforces on untrusted input.
inline constexpr size_t kMaxEnvelopeSize = 1 << 20;
inline constexpr size_t kMaxDeviceCapsules = 1024;
inline constexpr size_t kMaxNameSize = 256;  // user names and conversation ids, in bytes

// device_id = SHA-256(labels::kDeviceId || identity_key)[0..16).
Bytes DeviceIdFor(ByteView identity_public_key);

// ---------------------------------------------------------------- prekeys

// Builds a SignedPrekey for `prekey_public`, signed by the identity key.
Result<wire::SignedPrekey> SignPrekey(ByteView identity_private, ByteView prekey_public,
                                      int64_t created_at_ms);
Status VerifyPrekey(ByteView identity_public, const wire::SignedPrekey& prekey);
// Checks a DeviceInfo: device id matches the identity key, prekey signature valid.
Status VerifyDeviceInfo(const wire::DeviceInfo& device);

// -------------------------------------------------------- authentication

Bytes AuthTranscript(ByteView nonce, ByteView device_id);

// ------------------------------------------------------ epoch certificate

// The exact bytes the org root signs for an epoch certificate body.
Bytes EpochCertificateSigningInput(ByteView body);
// Verifies the signature with the pinned org root key and, when now_ms is not
// zero, that now_ms lies in the validity window (not_before_ms <= now_ms <
// not_after_ms; kFailedPrecondition otherwise). Returns the parsed body.
Result<wire::EpochCertificateBody> VerifyEpochCertificate(const wire::EpochCertificate& cert,
                                                          ByteView org_root_public,
                                                          int64_t now_ms);

// ----------------------------------------------------------------- sealing

struct Recipient {
  std::string user;
  Bytes device_id;
  Bytes prekey_public;  // X25519
};

struct SealRequest {
  Bytes message_id;  // 16 bytes; drawn at random when empty
  std::string conversation_id;
  std::string sender_user;
  Bytes sender_device;  // DeviceIdFor(sender identity); filled in when empty
  int64_t sent_at_ms = 0;
  uint32_t epoch_id = 0;
  Bytes archive_public;  // P-256 epoch public key, from a verified certificate
  std::vector<Recipient> recipients;
  std::string text;
  Bytes resend_of;  // a re-sent message: the original's 16-byte id; else empty
};

// Draws a fresh CEK, encrypts the body, seals the CEK to every recipient and
// deterministically to the archive, and signs the envelope.
Result<wire::Envelope> SealMessage(const SealRequest& request, ByteView sender_identity_private);
// The same with the identity key loaded once (Ed25519Signer), as a device
// that sends many messages does.
Result<wire::Envelope> SealMessage(const SealRequest& request, const Ed25519Signer& sender);

// The CEK sealed to one device (docs/protocol.md 7.1 step 6): device suite,
// a fresh ephemeral key, info labels::kDeviceCapsuleInfo, the header bytes as
// associated data. The recipient's user and device id are copied into the
// capsule; only prekey_public is used for sealing. Also how a history
// restore (docs/protocol.md 9.10) re-seals an archived message's CEK to a
// new device, so that the device opens it with its ordinary capsule code.
Result<wire::DeviceCapsule> SealDeviceCapsule(ByteView cek, ByteView header_bytes,
                                              const Recipient& recipient);

// The archive capsule for a CEK, message id and header; deterministic.
Result<wire::ArchiveCapsule> ComputeArchiveCapsule(ByteView cek, ByteView message_id,
                                                   uint32_t epoch_id, ByteView archive_public,
                                                   ByteView header_bytes);

// ----------------------------------------------------------------- parsing

// An envelope whose structure was checked but whose signature was not.
struct ParsedEnvelope {
  wire::Envelope envelope;
  wire::EnvelopeContent content;
  wire::MessageHeader header;
};

// Parses and checks structure: sizes of ids, version, non-empty capsules,
// one archive capsule whose epoch matches the header. No cryptography.
Result<ParsedEnvelope> ParseEnvelope(ByteView serialized);
Result<ParsedEnvelope> ParseEnvelope(const wire::Envelope& envelope);

// Checks the Ed25519 signature and that the header's sender_device is
// DeviceIdFor(sender_identity_public). kCryptoFailure on either mismatch.
Status VerifyEnvelopeSignature(const ParsedEnvelope& parsed, ByteView sender_identity_public);

// ----------------------------------------------------------------- opening

struct OpenedMessage {
  wire::MessageHeader header;
  std::string text;
};

// Full recipient-side check, in the order of docs/protocol.md: signature,
// device capsule, archive capsule recomputed and compared byte for byte,
// body. A mismatching archive capsule is kCryptoFailure with a message that
// starts with "archive capsule mismatch".
Result<OpenedMessage> OpenMessage(const ParsedEnvelope& parsed, ByteView sender_identity_public,
                                  ByteView my_device_id, ByteView my_prekey_private,
                                  ByteView archive_public);
// The same for a device that holds several prekeys (the current one, one
// awaiting the gateway's confirmation, and retired ones in their grace
// period): capsules name the device, not the prekey, so each key is tried in
// the order given until one opens the device capsule.
Result<OpenedMessage> OpenMessage(const ParsedEnvelope& parsed, ByteView sender_identity_public,
                                  ByteView my_device_id,
                                  const std::vector<ByteView>& my_prekey_privates,
                                  ByteView archive_public);

// OpenMessage with a capsule carried outside the envelope: a restored
// capsule of a history entry (docs/protocol.md 9.10), sealed to this device
// after the fact by a history restore. The same checks in the same order:
// signature, the capsule opened with one of the prekeys, the archive capsule
// recomputed from the CEK and compared byte for byte, body. `capsule` must
// name `my_device_id`.
Result<OpenedMessage> OpenMessageWithCapsule(const ParsedEnvelope& parsed,
                                             ByteView sender_identity_public,
                                             const wire::DeviceCapsule& capsule,
                                             ByteView my_device_id,
                                             const std::vector<ByteView>& my_prekey_privates,
                                             ByteView archive_public);

// Disclosure side: opens the archive capsule given DH(sk_epoch, enc) computed
// in the HSM, checks the capsule is the deterministic one for the recovered
// CEK, and decrypts the body. The signature is checked separately.
Result<OpenedMessage> OpenWithArchiveDh(const ParsedEnvelope& parsed, ByteView dh,
                                        ByteView archive_public);
// OpenWithArchiveDh without decrypting the body: the checked CEK. A history
// restore uses it: it re-seals the CEK to the user's new device and never
// reads a body.
Result<SecretBytes> RecoverArchiveCek(const ParsedEnvelope& parsed, ByteView dh,
                                      ByteView archive_public);
// Checks that `cek` (obtained elsewhere, e.g. from a hold capsule) is the one
// the envelope's archive capsule carries: recomputes the capsule with the
// epoch public key and compares it byte for byte. kCryptoFailure starting
// "archive capsule mismatch" if not. Decrypts nothing.
Status VerifyArchiveCapsule(const ParsedEnvelope& parsed, ByteView cek, ByteView archive_public);
// Opens with a CEK obtained elsewhere (a hold capsule, docs/archive.md):
// recomputes the archive capsule from it with the epoch public key alone,
// compares it byte for byte, and decrypts the body.
Result<OpenedMessage> OpenWithCek(const ParsedEnvelope& parsed, ByteView cek,
                                  ByteView archive_public);

}  // namespace holdfast::protocol
