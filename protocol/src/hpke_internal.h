// HPKE internals exposed to hpke.cc and to the tests that check the key
// schedule against RFC 9180's vectors. Not part of the public API.
#pragma once

#include "holdfast/protocol/hpke.h"
#include "primitives_internal.h"

namespace holdfast::protocol::hpke {

struct Encapsulation {
  SecretBytes shared_secret;
  Bytes enc;
};

namespace internal {

// DHKEM Encap with a given ephemeral key pair (RFC 9180 section 4.1).
Result<Encapsulation> EncapWithEphemeral(KemId kem, const KeyPair& ephemeral,
                                         ByteView recipient_public);
Result<SecretBytes> Decap(KemId kem, ByteView enc, ByteView recipient_private);
// Decap when dh = DH(skR, pkE) was computed by someone else.
Result<SecretBytes> DecapWithDh(KemId kem, ByteView enc, ByteView dh, ByteView recipient_public);

// DHKEM(P-256) Encap to an already decoded recipient key, with an ephemeral
// pair whose public key was computed from its private key by the caller
// (DeriveKeyPair), so neither key is decoded or checked again.
Result<Encapsulation> EncapP256(const KeyPair& ephemeral,
                                const ::holdfast::protocol::internal::P256PublicKey& recipient);

// The ciphertext that a sender with the same key schedule as `c` produces
// for `plaintext` as its message number `seq`. Used to recompute a capsule
// without redoing the KEM whose shared secret `c` already holds.
Result<Bytes> SealWithScheduleOf(const ReceiverContext& c, uint64_t seq, ByteView aad,
                                 ByteView plaintext);

}  // namespace internal

// Reads and fills the private state of the context classes.
class ContextAccess {
 public:
  template <typename Context>
  static const SecretBytes& Key(const Context& c) { return c.key_; }
  template <typename Context>
  static const SecretBytes& BaseNonce(const Context& c) { return c.base_nonce_; }
  template <typename Context>
  static const SecretBytes& ExporterSecret(const Context& c) { return c.exporter_secret_; }
  template <typename Context>
  static uint64_t Sequence(const Context& c) { return c.seq_; }
  template <typename Context>
  static Suite SuiteOf(const Context& c) { return c.suite_; }

  // The key schedule for base mode (RFC 9180 section 5.1).
  static Status Init(SenderContext& c, Suite suite, ByteView shared_secret, ByteView info);
  static Status Init(ReceiverContext& c, Suite suite, ByteView shared_secret, ByteView info);
  static void SetEnc(SenderContext& c, Bytes enc) { c.enc_ = std::move(enc); }
};

}  // namespace holdfast::protocol::hpke
