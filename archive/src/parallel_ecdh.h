// The archive epoch key's ECDH for a batch of archive capsules, on several
// HSM sessions at once: shared by the disclosure export and the history
// restore, which differ only in what they do with each DH value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::hsm {
class Token;
}

namespace holdfast::archive::internal {

struct EcdhJob {
  uint32_t epoch_id = 0;
  ByteView enc;  // the archive capsule's enc; must outlive the call
};

// Computes DH(epoch key, enc) in `token` for every job on up to `workers`
// threads (give it the token's session count) and calls use(i, dh) for job
// i on the thread that computed it, with the DH value or the token's error
// for that job (kNotFound once the epoch key is destroyed). `use` runs
// concurrently for distinct jobs: it may touch only software crypto and
// its own slot of the caller's results, never a database connection.
//
// Fails closed: the first kUnavailable from the token (after the token's own
// retry) stops the workers early and is returned, with context "HSM"; the
// jobs not yet reached are then never passed to `use`, and the caller must
// not treat the batch as done.
Status ParallelEcdh(hsm::Token& token, const std::vector<EcdhJob>& jobs, size_t workers,
                    const std::function<void(size_t, Result<SecretBytes>)>& use);

}  // namespace holdfast::archive::internal
