// Fixed keys for the fuzz harnesses and the seed generator.
//
// Every key is derived from a constant, so a seed written by fuzz_make_seeds
// (sealed to, or signed by, these keys) opens or verifies in the harness and
// lets the fuzzer start from inputs that pass the cryptographic checks.
// WARNING: these keys are public; they exist only for fuzzing.
#pragma once

#include <cstdint>

#include "holdfast/base/bytes.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::fuzz {

struct FixedKeys {
  protocol::Ed25519KeyPair sender;     // identity key of the envelope's sender
  Bytes sender_device;                 // DeviceIdFor(sender.public_key)
  protocol::Ed25519KeyPair recipient;  // identity key of the device the harness opens as
  Bytes recipient_device;              // DeviceIdFor(recipient.public_key)
  protocol::hpke::KeyPair recipient_prekey;  // X25519, the recipient's prekey
  protocol::hpke::KeyPair archive;           // P-256 archive epoch key
  protocol::hpke::KeyPair org_root;          // P-256 org root (ECDSA)
};

inline constexpr uint32_t kEpochId = 7;
inline constexpr int64_t kNowMs = 1'700'000'000'000;

// Built on first use; aborts if OpenSSL cannot derive a key.
const FixedKeys& Keys();

// ECDSA P-256 SHA-256 signature by Keys().org_root, as 64-byte r||s.
// Aborts on failure: a harness that cannot sign is broken, not fuzzed.
Bytes OrgRootSign(ByteView message);

// Ed25519 signature by Keys().sender; aborts on failure.
Bytes SenderSign(ByteView message);

}  // namespace holdfast::fuzz
