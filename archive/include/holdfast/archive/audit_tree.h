// The audit log as an RFC 6962 Merkle tree: the bytes of an entry, signed
// tree heads, and the proof bundles an auditor checks offline. Pure
// functions: no database, no HSM; thread-safe. docs/archive.md specifies
// every byte.
//
// Entry i of the log is leaf i of the tree (merkle.h):
//   entry bytes = LP(kAuditEntryLabel) || BE64(i) || BE64(at_ms) ||
//                 LP(actor) || LP(action) || LP(detail)
//   leaf hash   = SHA-256(0x00 || entry bytes)
// where LP(x) is x's length as 4-byte big-endian followed by x (UTF-8), and
// BE64 is 8-byte big-endian two's complement. A tree head is signed by the
// org root (ECDSA P-256 with SHA-256, 64-byte P1363 r||s) over
//   labels::kAuditTreeHeadSig || BE64(tree_size) || root_hash || BE64(signed_at_ms)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::archive {

inline constexpr std::string_view kAuditEntryLabel = "holdfast/v1 audit-entry";
// The "format" member of every proof bundle.
inline constexpr std::string_view kAuditProofFormat = "holdfast-audit-proof/1";

struct AuditEvent {
  uint64_t index = 0;        // leaf index: 0, 1, 2, ... without gaps
  int64_t at_ms = 0;
  std::string actor;
  std::string action;
  std::string detail;        // JSON, exactly the text that is hashed
  Bytes leaf_hash;           // as stored or sent; not part of the entry bytes
};

// The entry bytes and leaf hash of `e`; e.leaf_hash is ignored.
Bytes AuditEntryBytes(const AuditEvent& e);
Bytes AuditLeafHash(const AuditEvent& e);

struct TreeHead {
  uint64_t tree_size = 0;
  Bytes root_hash;               // 32 bytes
  int64_t signed_at_ms = 0;
  Bytes signature;               // P1363 r||s by the org root
  std::string key_fingerprint;   // protocol::Fingerprint of the signing key
};

// What the org root signs for a tree head.
Bytes TreeHeadSigningInput(uint64_t tree_size, ByteView root_hash, int64_t signed_at_ms);

// kCryptoFailure unless `head` is signed by `org_root_public` (65-byte
// uncompressed P-256 point) and names that key's fingerprint;
// kInvalidArgument if a field or the key is malformed.
Status VerifyTreeHead(const TreeHead& head, ByteView org_root_public);

// Entry `entry.index` is in the tree of `head`. entry.leaf_hash must be the
// leaf hash of the entry's fields.
struct InclusionBundle {
  AuditEvent entry;
  std::vector<Bytes> proof;      // merkle::InclusionProof
  TreeHead head;
  Bytes org_root_public;
};

// The tree of `new_head` extends the tree of `old_head`.
struct ConsistencyBundle {
  TreeHead old_head;
  TreeHead new_head;
  std::vector<Bytes> proof;      // merkle::ConsistencyProof
  Bytes org_root_public;
};

using ProofBundle = std::variant<InclusionBundle, ConsistencyBundle>;

// Checks everything in the bundle against the org root key it carries:
// the head signatures, the entry's leaf hash, and the proof. Whoever relies
// on the result must compare org_root_public with the org root key they
// hold (its fingerprint is in the heads). kCryptoFailure when a check fails,
// kInvalidArgument when the bundle is malformed.
Status VerifyBundle(const InclusionBundle& bundle);
// Also kInvalidArgument unless 0 < old size <= new size.
Status VerifyBundle(const ConsistencyBundle& bundle);

// One JSON object per bundle, on one line, with a trailing newline. Hashes,
// signatures and keys are lower-case hex; the entry's detail is a string
// holding the exact JSON text that was hashed.
std::string BundleJson(const InclusionBundle& bundle);
std::string BundleJson(const ConsistencyBundle& bundle);
// The inverse of BundleJson; parses, does not verify. kInvalidArgument
// unless `json` is one such object with exactly the members BundleJson
// writes, each of the right type and size.
Result<ProofBundle> ParseProofBundle(std::string_view json);

}  // namespace holdfast::archive
