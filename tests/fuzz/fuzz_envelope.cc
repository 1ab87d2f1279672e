// ParseEnvelope on untrusted bytes, then every check a recipient and the
// archive make on an envelope that parses. All of them must return a Status;
// none may crash, leak or read out of bounds.
//
// Each parsed envelope is tried twice: as received (the fuzzer rarely forges
// the Ed25519 signature, so this mostly exercises the refusal path), and
// re-signed with the fixed sender key, as a malicious but authenticated
// sender would, so mutations behind the signature reach the capsule and body
// decoders.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_keys.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::protocol {
namespace {

ByteView View(const std::string& s) { return AsBytes(s); }

void Check(bool condition) {
  if (!condition) std::abort();
}

void OpenAll(const ParsedEnvelope& parsed) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  const Status signature = VerifyEnvelopeSignature(parsed, k.sender.public_key);
  auto opened = OpenMessage(parsed, k.sender.public_key, k.recipient_device,
                            k.recipient_prekey.private_key.view(), k.archive.public_key);
  // OpenMessage checks the signature first: it cannot succeed where the
  // signature alone fails.
  if (opened.ok()) {
    Check(signature.ok());
    Check(opened->header.message_id() == parsed.header.message_id());
  }

  // The disclosure path, with DH(sk_epoch, enc) as the HSM would compute it.
  auto dh = EcdhP256(k.archive.private_key.view(), View(parsed.content.archive().enc()));
  if (dh.ok()) {
    auto disclosed = OpenWithArchiveDh(parsed, dh->view(), k.archive.public_key);
    // Recipient and archive decrypt the same body under the same header.
    if (opened.ok() && disclosed.ok()) Check(opened->text == disclosed->text);
  }
}

int FuzzOne(const uint8_t* data, size_t size) {
  auto parsed = ParseEnvelope(ByteView(data, size));
  if (!parsed.ok()) return 0;
  OpenAll(*parsed);

  wire::Envelope resigned = parsed->envelope;
  resigned.set_signature(AsString(
      fuzz::SenderSign(Concat({AsBytes(labels::kEnvelopeSig), View(resigned.content())}))));
  auto reparsed = ParseEnvelope(resigned);
  // Only the signature bytes changed, and they are still 64 bytes.
  Check(reparsed.ok());
  Check(VerifyEnvelopeSignature(*reparsed, fuzz::Keys().sender.public_key).ok() ==
        (reparsed->header.sender_device() == AsString(fuzz::Keys().sender_device)));
  OpenAll(*reparsed);
  return 0;
}

}  // namespace
}  // namespace holdfast::protocol

// Protobuf logs every string field with invalid UTF-8 it refuses; at
// thousands of inputs a second that is noise and a slowdown.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return holdfast::protocol::FuzzOne(data, size);
}
