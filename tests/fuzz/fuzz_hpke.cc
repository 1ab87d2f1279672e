// HPKE base-mode receivers on a fuzzed encapsulated key and ciphertext, for
// both KEMs and every AEAD, against fixed recipient keys.
//
// Input layout (fuzz_make_seeds writes the same):
//   [0] suite: bit 0 KEM (0 X25519, 1 P-256), bits 1-2 AEAD
//       (0 ChaCha20-Poly1305, 1 AES-128-GCM, 2 AES-256-GCM, 3 export-only)
//   [1] mode: 0 single-shot Open
//             1 context: several ciphertexts in sequence, then Export
//             2 as 1, through SetupBaseReceiverWithDh with a DH computed
//               outside HPKE (the HSM path)
//             3 SetupBaseReceiverWithDh with a fuzzed DH
//   [2] enc length, [3] info length, [4] aad length, then enc, info, aad;
//   mode 3: [dh length] dh; then the ciphertext (mode 0) or a sequence of
//   [length][ciphertext] (modes 1-3).
//
// Modes 1 and 2 also run the other setup and require the same answer: the
// in-process decapsulation and the HSM-style one must agree on every input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz_keys.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::protocol {
namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), left_(size) {}
  bool Byte(uint8_t& out) {
    if (left_ == 0) return false;
    out = *p_++;
    --left_;
    return true;
  }
  bool Take(size_t n, ByteView& out) {
    if (n > left_) return false;
    out = ByteView(p_, n);
    p_ += n;
    left_ -= n;
    return true;
  }
  ByteView Rest() {
    ByteView out(p_, left_);
    p_ += left_;
    left_ = 0;
    return out;
  }
  bool empty() const { return left_ == 0; }

 private:
  const uint8_t* p_;
  size_t left_;
};

constexpr hpke::AeadId kAeads[] = {hpke::AeadId::kChaCha20Poly1305, hpke::AeadId::kAes128Gcm,
                                   hpke::AeadId::kAes256Gcm, hpke::AeadId::kExportOnly};

struct Recipient {
  ByteView private_key;
  ByteView public_key;
};

Recipient RecipientFor(hpke::KemId kem) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  const hpke::KeyPair& pair =
      kem == hpke::KemId::kX25519HkdfSha256 ? k.recipient_prekey : k.archive;
  return {pair.private_key.view(), pair.public_key};
}

// DH(skR, pkE) computed the way a caller of SetupBaseReceiverWithDh would.
Result<SecretBytes> OutsideDh(hpke::KemId kem, ByteView enc) {
  const Recipient r = RecipientFor(kem);
  return kem == hpke::KemId::kX25519HkdfSha256 ? X25519(r.private_key, enc)
                                               : EcdhP256(r.private_key, enc);
}

bool SameResult(const Result<SecretBytes>& a, const Result<SecretBytes>& b) {
  if (a.ok() != b.ok()) return false;
  return !a.ok() || ConstantTimeEqual(a->view(), b->view());
}

std::vector<ByteView> Chunks(Reader& in) {
  std::vector<ByteView> out;
  uint8_t len = 0;
  ByteView chunk;
  while (in.Byte(len) && in.Take(len, chunk)) out.push_back(chunk);
  return out;
}

void OpenSequence(const hpke::Suite suite, ByteView enc, ByteView info, ByteView aad,
                  ByteView dh, bool through_dh, bool differential,
                  const std::vector<ByteView>& cts) {
  const Recipient r = RecipientFor(suite.kem);
  auto direct = hpke::SetupBaseReceiver(suite, enc, r.private_key, info);
  auto via_dh = hpke::SetupBaseReceiverWithDh(suite, enc, dh, r.public_key, info);
  if (differential) Check(direct.ok() == via_dh.ok());
  auto& primary = through_dh ? via_dh : direct;
  if (!primary.ok()) return;
  for (ByteView ct : cts) {
    auto pt = primary->Open(aad, ct);
    if (differential) Check(SameResult(pt, (through_dh ? direct : via_dh)->Open(aad, ct)));
    if (pt.ok()) Check(pt->size() + 16 == ct.size());
  }
  for (size_t length : {size_t{0}, size_t{32}, size_t{255 * 32 + 1}}) {
    auto secret = primary->Export(aad, length);
    if (differential) Check(SameResult(secret, (through_dh ? direct : via_dh)->Export(aad, length)));
    if (secret.ok()) Check(secret->size() == length);
  }
}

int FuzzOne(const uint8_t* data, size_t size) {
  Reader in(data, size);
  uint8_t suite_byte = 0, mode = 0, enc_len = 0, info_len = 0, aad_len = 0;
  ByteView enc, info, aad;
  if (!in.Byte(suite_byte) || !in.Byte(mode) || !in.Byte(enc_len) || !in.Byte(info_len) ||
      !in.Byte(aad_len) || !in.Take(enc_len, enc) || !in.Take(info_len, info) ||
      !in.Take(aad_len, aad)) {
    return 0;
  }
  const hpke::Suite suite{
      (suite_byte & 1) ? hpke::KemId::kP256HkdfSha256 : hpke::KemId::kX25519HkdfSha256,
      hpke::KdfId::kHkdfSha256, kAeads[(suite_byte >> 1) & 3]};

  switch (mode & 3) {
    case 0: {
      const Recipient r = RecipientFor(suite.kem);
      auto pt = hpke::Open(suite, r.private_key, enc, info, aad, in.Rest());
      if (pt.ok()) Check(suite.aead != hpke::AeadId::kExportOnly);
      return 0;
    }
    case 1:
    case 2: {
      auto dh = OutsideDh(suite.kem, enc);
      const std::vector<ByteView> cts = Chunks(in);
      if (!dh.ok()) {
        // No DH, so no HSM-style setup; the direct one must refuse too.
        Check(!hpke::SetupBaseReceiver(suite, enc, RecipientFor(suite.kem).private_key, info)
                   .ok());
        return 0;
      }
      OpenSequence(suite, enc, info, aad, dh->view(), (mode & 3) == 2, true, cts);
      return 0;
    }
    default: {
      uint8_t dh_len = 0;
      ByteView dh;
      if (!in.Byte(dh_len) || !in.Take(dh_len, dh)) return 0;
      OpenSequence(suite, enc, info, aad, dh, true, false, Chunks(in));
      return 0;
    }
  }
}

}  // namespace
}  // namespace holdfast::protocol

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return holdfast::protocol::FuzzOne(data, size);
}
