#include "holdfast/archive/merkle.h"

#include <algorithm>
#include <bit>
#include <string>
#include <string_view>
#include <utility>

#include "holdfast/protocol/primitives.h"

namespace holdfast::archive::merkle {
namespace {

constexpr uint8_t kLeafPrefix = 0x00;
constexpr uint8_t kNodePrefix = 0x01;

// The k of RFC 6962: the largest power of two smaller than n, for n >= 2.
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

Status CheckHash(ByteView hash, std::string_view what) {
  if (hash.size() != kHashSize) {
    return Status::InvalidArgument(std::string(what) + " is " + std::to_string(hash.size()) +
                                   " bytes, want " + std::to_string(kHashSize));
  }
  return Status::Ok();
}

Status CheckProofHashes(std::span<const Bytes> proof) {
  for (size_t i = 0; i < proof.size(); ++i) {
    if (proof[i].size() != kHashSize) {
      return Status::InvalidArgument("proof hash " + std::to_string(i) + " is " +
                                     std::to_string(proof[i].size()) + " bytes, want " +
                                     std::to_string(kHashSize));
    }
  }
  return Status::Ok();
}

Status WrongProofLength(size_t got, size_t want) {
  return Status::InvalidArgument("proof has " + std::to_string(got) + " hashes, want " +
                                 std::to_string(want));
}

// One step of the RFC 9162 verification loops when the proof hash is on the
// left: if fn is a right border node (even, fn == sn), climb to where the
// path next turns.
void SkipRightBorder(uint64_t& fn, uint64_t& sn) {
  if ((fn & 1) == 0) {
    while (fn != 0 && (fn & 1) == 0) {
      fn >>= 1;
      sn >>= 1;
    }
  }
}

// How many hashes the RFC 9162 loop consumes from (fn, sn) until sn is 0.
size_t PathLength(uint64_t fn, uint64_t sn) {
  size_t n = 0;
  while (sn != 0) {
    if ((fn & 1) != 0 || fn == sn) SkipRightBorder(fn, sn);
    fn >>= 1;
    sn >>= 1;
    ++n;
  }
  return n;
}

Result<Bytes> Subtree(const SubtreeHashFn& subtree_hash, uint64_t begin, uint64_t end) {
  HF_ASSIGN_OR_RETURN(Bytes hash, subtree_hash(begin, end));
  if (hash.size() != kHashSize) {
    return Status::Internal("subtree hash of [" + std::to_string(begin) + ", " +
                            std::to_string(end) + ") is " + std::to_string(hash.size()) +
                            " bytes");
  }
  return hash;
}

SubtreeHashFn FromLeaves(std::span<const Bytes> leaf_hashes) {
  return [leaf_hashes](uint64_t begin, uint64_t end) -> Result<Bytes> {
    return RootHash(leaf_hashes.subspan(begin, end - begin));
  };
}

}  // namespace

Bytes LeafHash(ByteView data) {
  const uint8_t prefix = kLeafPrefix;
  return protocol::Sha256(Concat({{&prefix, 1}, data}));
}

Bytes NodeHash(ByteView left, ByteView right) {
  const uint8_t prefix = kNodePrefix;
  return protocol::Sha256(Concat({{&prefix, 1}, left, right}));
}

Bytes RootHash(std::span<const Bytes> leaf_hashes) {
  if (leaf_hashes.empty()) return protocol::Sha256({});
  // Perfect subtrees of decreasing size, left to right: after leaf i there are
  // ctz(i + 1) pairs to merge. MTH then folds them from the right.
  std::vector<Bytes> stack;
  for (uint64_t i = 0; i < leaf_hashes.size(); ++i) {
    Bytes hash = leaf_hashes[i];
    for (uint64_t j = i + 1; (j & 1) == 0; j >>= 1) {
      hash = NodeHash(stack.back(), hash);
      stack.pop_back();
    }
    stack.push_back(std::move(hash));
  }
  Bytes root = std::move(stack.back());
  stack.pop_back();
  while (!stack.empty()) {
    root = NodeHash(stack.back(), root);
    stack.pop_back();
  }
  return root;
}

Result<std::vector<Bytes>> InclusionProof(uint64_t index, uint64_t tree_size,
                                          const SubtreeHashFn& subtree_hash) {
  if (index >= tree_size) {
    return Status::InvalidArgument("leaf index " + std::to_string(index) +
                                   " is not below tree size " + std::to_string(tree_size));
  }
  // Walk down from the root; PATH lists the siblings bottom-up.
  std::vector<Bytes> path;
  uint64_t begin = 0;
  uint64_t end = tree_size;
  while (end - begin > 1) {
    const uint64_t mid = begin + SplitPoint(end - begin);
    if (index < mid) {
      HF_ASSIGN_OR_RETURN(Bytes sibling, Subtree(subtree_hash, mid, end));
      path.push_back(std::move(sibling));
      end = mid;
    } else {
      HF_ASSIGN_OR_RETURN(Bytes sibling, Subtree(subtree_hash, begin, mid));
      path.push_back(std::move(sibling));
      begin = mid;
    }
  }
  std::reverse(path.begin(), path.end());
  return path;
}

Result<std::vector<Bytes>> ConsistencyProof(uint64_t old_size, uint64_t new_size,
                                            const SubtreeHashFn& subtree_hash) {
  if (old_size == 0 || old_size > new_size) {
    return Status::InvalidArgument("no consistency proof from size " + std::to_string(old_size) +
                                   " to size " + std::to_string(new_size));
  }
  // SUBPROOF(m, D[begin:end], whole) walked from the top; the siblings come
  // out top-down and the proof lists them bottom-up.
  std::vector<Bytes> siblings;
  std::vector<Bytes> proof;
  uint64_t begin = 0;
  uint64_t end = new_size;
  bool whole = true;  // D[begin:end] is the old tree's own prefix of D[n]
  while (true) {
    if (old_size == end) {
      // The old tree's root is known to the verifier only when `whole`.
      if (!whole) {
        HF_ASSIGN_OR_RETURN(Bytes hash, Subtree(subtree_hash, begin, end));
        proof.push_back(std::move(hash));
      }
      break;
    }
    const uint64_t mid = begin + SplitPoint(end - begin);
    if (old_size <= mid) {
      HF_ASSIGN_OR_RETURN(Bytes sibling, Subtree(subtree_hash, mid, end));
      siblings.push_back(std::move(sibling));
      end = mid;
    } else {
      HF_ASSIGN_OR_RETURN(Bytes sibling, Subtree(subtree_hash, begin, mid));
      siblings.push_back(std::move(sibling));
      begin = mid;
      whole = false;
    }
  }
  proof.insert(proof.end(), std::make_move_iterator(siblings.rbegin()),
               std::make_move_iterator(siblings.rend()));
  return proof;
}

Result<std::vector<Bytes>> InclusionProof(std::span<const Bytes> leaf_hashes, uint64_t index) {
  return InclusionProof(index, leaf_hashes.size(), FromLeaves(leaf_hashes));
}

Result<std::vector<Bytes>> ConsistencyProof(std::span<const Bytes> leaf_hashes,
                                            uint64_t old_size) {
  return ConsistencyProof(old_size, leaf_hashes.size(), FromLeaves(leaf_hashes));
}

// RFC 9162 section 2.1.3.2.
Status VerifyInclusion(ByteView leaf_hash, uint64_t index, uint64_t tree_size,
                       std::span<const Bytes> proof, ByteView root) {
  if (index >= tree_size) {
    return Status::InvalidArgument("leaf index " + std::to_string(index) +
                                   " is not below tree size " + std::to_string(tree_size));
  }
  HF_RETURN_IF_ERROR(CheckHash(leaf_hash, "leaf hash"));
  HF_RETURN_IF_ERROR(CheckHash(root, "root hash"));
  HF_RETURN_IF_ERROR(CheckProofHashes(proof));
  const size_t want = PathLength(index, tree_size - 1);
  if (proof.size() != want) return WrongProofLength(proof.size(), want);

  uint64_t fn = index;
  uint64_t sn = tree_size - 1;
  Bytes r(leaf_hash.begin(), leaf_hash.end());
  for (const Bytes& p : proof) {
    if ((fn & 1) != 0 || fn == sn) {
      r = NodeHash(p, r);
      SkipRightBorder(fn, sn);
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  // The length check above guarantees sn == 0 here.
  if (!ConstantTimeEqual(r, root)) {
    return Status::CryptoFailure("inclusion proof does not lead to the root hash");
  }
  return Status::Ok();
}

// RFC 9162 section 2.1.4.2, for 0 < old_size < new_size.
Status VerifyConsistency(uint64_t old_size, uint64_t new_size, ByteView old_root,
                         ByteView new_root, std::span<const Bytes> proof) {
  if (old_size == 0) {
    return Status::InvalidArgument("consistency with the empty tree needs no proof");
  }
  if (old_size > new_size) {
    return Status::InvalidArgument("old tree size " + std::to_string(old_size) +
                                   " is larger than new tree size " + std::to_string(new_size));
  }
  HF_RETURN_IF_ERROR(CheckHash(old_root, "old root hash"));
  HF_RETURN_IF_ERROR(CheckHash(new_root, "new root hash"));
  HF_RETURN_IF_ERROR(CheckProofHashes(proof));
  if (old_size == new_size) {
    if (!proof.empty()) return WrongProofLength(proof.size(), 0);
    if (!ConstantTimeEqual(old_root, new_root)) {
      return Status::CryptoFailure("trees of equal size have different root hashes");
    }
    return Status::Ok();
  }

  // When old_size is a power of two, the old root is itself the first node
  // of the path and the proof omits it.
  const bool old_is_subtree = std::has_single_bit(old_size);
  uint64_t fn = old_size - 1;
  uint64_t sn = new_size - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  const size_t want = (old_is_subtree ? 0 : 1) + PathLength(fn, sn);
  if (proof.size() != want) return WrongProofLength(proof.size(), want);

  const ByteView seed = old_is_subtree ? old_root : ByteView(proof[0]);
  Bytes fr(seed.begin(), seed.end());
  Bytes sr = fr;
  for (const Bytes& c : proof.subspan(old_is_subtree ? 0 : 1)) {
    if ((fn & 1) != 0 || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      SkipRightBorder(fn, sn);
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  // The length check above guarantees sn == 0 here.
  if (!ConstantTimeEqual(fr, old_root)) {
    return Status::CryptoFailure("consistency proof does not lead to the old root hash");
  }
  if (!ConstantTimeEqual(sr, new_root)) {
    return Status::CryptoFailure("consistency proof does not lead to the new root hash");
  }
  return Status::Ok();
}

}  // namespace holdfast::archive::merkle
