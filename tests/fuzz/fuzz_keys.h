// Fixed keys for the fuzz harnesses and the seed generator.
//
// Every key is derived from a constant, so a seed written by fuzz_make_seeds
// (sealed to, or signed by, these keys) opens or verifies in the harness and
// lets the fuzzer start from inputs that pass the cryptographic checks.
// WARNING: these keys are public; they exist only for fuzzing.
#pragma once

#include <cstdint>
#include <string>

#include "holdfast/base/bytes.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::fuzz {

struct FixedKeys {
  protocol::Ed25519KeyPair sender;     // identity key of the envelope's sender
  Bytes sender_device;                 // DeviceIdFor(sender.public_key)
  protocol::hpke::KeyPair sender_prekey;  // X25519, the sender's prekey
  protocol::Ed25519KeyPair recipient;  // identity key of the device the harness opens as
  Bytes recipient_device;              // DeviceIdFor(recipient.public_key)
  protocol::hpke::KeyPair recipient_prekey;  // X25519, the recipient's prekey
  protocol::hpke::KeyPair archive;           // P-256 archive epoch key
  protocol::hpke::KeyPair org_root;          // P-256 org root (ECDSA)
  protocol::hpke::KeyPair enrollment;        // P-256 enrollment key (ECDSA)
  // The one user master key of the fuzz world: it certifies every device,
  // of every user, so that a harness can re-sign any certificate body that
  // names it.
  protocol::Ed25519KeyPair master;
};

inline constexpr uint32_t kEpochId = 7;
inline constexpr int64_t kNowMs = 1'700'000'000'000;
inline constexpr int64_t kDayMs = 86'400'000;
inline constexpr char kOrg[] = "Holdfast Demo Org";
// The recipient's seeds: client::Device::FromSeed on identity || prekey ||
// master gives a device with the keys of FixedKeys::recipient,
// recipient_prekey and master.
Bytes RecipientDeviceSeed();

// Built on first use; aborts if OpenSSL cannot derive a key.
const FixedKeys& Keys();

// ECDSA P-256 SHA-256 signature by Keys().org_root, as 64-byte r||s.
// Aborts on failure: a harness that cannot sign is broken, not fuzzed.
Bytes OrgRootSign(ByteView message);

// Ed25519 signature by Keys().sender; aborts on failure.
Bytes SenderSign(ByteView message);

// ECDSA P-256 SHA-256 signature by Keys().enrollment, as 64-byte r||s.
Bytes EnrollmentSign(ByteView message);

// Ed25519 signature by Keys().master; aborts on failure.
Bytes MasterSign(ByteView message);

// The enrollment key's certificate, signed by the org root, valid for a year
// either side of kNowMs.
const protocol::wire::EnrollmentKeyCertificate& EnrollmentCertificate();

// A device certificate for (user, identity) issued at issued_at_ms, signed by
// the master key and countersigned as the gateway does (EnrollmentSign, with
// EnrollmentCertificate() attached).
protocol::wire::DeviceCertificate CertifyDevice(const std::string& user, ByteView identity_public,
                                                int64_t issued_at_ms);
// Replaces every signature of `cert` by one of the fixed keys over the bytes
// it carries: master and org signatures over its body, the enrollment key
// certificate's over that body (if there is one).
void Resign(protocol::wire::DeviceCertificate& cert);
// Re-signs `prekey` with the private key of `identity_public` if that is the
// fixed sender's or recipient's identity (and the prekey is 32 bytes, which
// SignPrekey requires); leaves it as it is otherwise.
void ResignPrekey(ByteView identity_public, protocol::wire::SignedPrekey& prekey);
// The same for everything signed in a DeviceInfo: its prekey and certificate.
void Resign(protocol::wire::DeviceInfo& device);

}  // namespace holdfast::fuzz
