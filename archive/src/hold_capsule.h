// Opening archived envelopes whose epoch key may have been crypto-shredded,
// shared by the disclosure export, the history restore and the shredding
// ceremony.
#pragma once

#include "holdfast/archive/store.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/protocol/envelope.h"

namespace holdfast::hsm {
class Token;
}

namespace holdfast::archive::internal {

// Opens `parsed` through the epoch key while the token holds it; once that
// key is gone (kNotFound from the token), through the envelope's hold
// capsule and the hold key, and then the archive capsule is recomputed from
// the recovered CEK with `epoch_public` and compared byte for byte.
// kFailedPrecondition if the epoch key is gone and there is no hold capsule.
// Uses `store` only when the epoch key is gone.
Result<protocol::OpenedMessage> OpenArchived(Store& store, hsm::Token& token,
                                             const protocol::ParsedEnvelope& parsed,
                                             ByteView epoch_public);

// OpenArchived without decrypting the body: the CEK, checked against the
// archive capsule (recomputed and compared byte for byte) on either path.
Result<SecretBytes> RecoverArchivedCek(Store& store, hsm::Token& token,
                                       const protocol::ParsedEnvelope& parsed,
                                       ByteView epoch_public);

// The CEK of an envelope whose epoch key is gone, from its hold capsule.
// kFailedPrecondition if it has none.
Result<SecretBytes> CekOfShredded(Store& store, hsm::Token& token,
                                  const protocol::ParsedEnvelope& parsed);

// The CEK in a hold capsule, opened with ECDH by the key labelled
// capsule.hold_key_label in the token. kCryptoFailure if it does not open.
Result<SecretBytes> OpenHoldCapsule(hsm::Token& token, const protocol::ParsedEnvelope& parsed,
                                    const HoldCapsuleRecord& capsule);

}  // namespace holdfast::archive::internal
