// RFC 6962 section 2.1 Merkle tree hashing, inclusion and consistency proofs,
// with SHA-256. Pure functions: no I/O, no shared state, thread-safe.
//
// Producers ask a SubtreeHashFn for the hash of ranges of leaves, so a store
// that keeps interior hashes can build proofs without loading every leaf.
// Verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 and take O(log n)
// hashes.
//
// WARNING: a root hash does not commit to its tree size, and a proof checked
// against a size other than the real one can still pass when both sizes give
// the proof the same shape. Take the size from the same signed statement as
// the root.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::archive::merkle {

// Every hash, leaf or interior, is a SHA-256 digest.
inline constexpr size_t kHashSize = 32;

// SHA-256(0x00 || data): the hash of one log entry.
Bytes LeafHash(ByteView data);
// SHA-256(0x01 || left || right).
Bytes NodeHash(ByteView left, ByteView right);

// MTH(D[n]) over leaf hashes (not raw entries). The empty tree's root is
// SHA-256 of the empty string. O(n) hashes, O(log n) memory. Every element must
// be kHashSize bytes; that is not checked here.
Bytes RootHash(std::span<const Bytes> leaf_hashes);

// Returns MTH(D[begin:end]) for 0 <= begin < end <= the tree size the proof is
// for. Producers only ask for non-empty ranges. A returned error is passed
// through unchanged; a hash that is not kHashSize bytes becomes kInternal.
using SubtreeHashFn = std::function<Result<Bytes>(uint64_t begin, uint64_t end)>;

// PATH(index, D[tree_size]), leaf sibling first. kInvalidArgument unless
// index < tree_size. Asks for at most ceil(log2(tree_size)) ranges.
Result<std::vector<Bytes>> InclusionProof(uint64_t index, uint64_t tree_size,
                                          const SubtreeHashFn& subtree_hash);
// PROOF(old_size, D[new_size]). Empty when the sizes are equal;
// kInvalidArgument unless 0 < old_size <= new_size.
Result<std::vector<Bytes>> ConsistencyProof(uint64_t old_size, uint64_t new_size,
                                            const SubtreeHashFn& subtree_hash);

// The same over leaf hashes held in memory (tree size = leaf_hashes.size()).
// O(n) hashes per proof.
Result<std::vector<Bytes>> InclusionProof(std::span<const Bytes> leaf_hashes, uint64_t index);
Result<std::vector<Bytes>> ConsistencyProof(std::span<const Bytes> leaf_hashes,
                                            uint64_t old_size);

// Checks that `leaf_hash` is entry `index` of the tree of `tree_size` leaves
// whose root is `root`. kInvalidArgument if index >= tree_size, a hash is not
// kHashSize bytes, or the proof has the wrong number of hashes for
// (index, tree_size); kCryptoFailure if the recomputed root differs.
Status VerifyInclusion(ByteView leaf_hash, uint64_t index, uint64_t tree_size,
                       std::span<const Bytes> proof, ByteView root);

// Checks that the tree of `new_size` leaves with root `new_root` extends the
// tree of `old_size` leaves with root `old_root`. Equal sizes need an empty
// proof and equal roots. kInvalidArgument if old_size is 0 (every tree extends
// the empty tree, so there is nothing to prove: callers handle it themselves),
// old_size > new_size, a hash is not kHashSize bytes, or the proof has the
// wrong number of hashes; kCryptoFailure if either recomputed root differs.
Status VerifyConsistency(uint64_t old_size, uint64_t new_size, ByteView old_root,
                         ByteView new_root, std::span<const Bytes> proof);

}  // namespace holdfast::archive::merkle
