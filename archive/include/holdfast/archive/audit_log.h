// The audit log in PostgreSQL: an append-only RFC 6962 Merkle tree of
// AuditEvents (audit_tree.h) whose tree heads the org root signs in the HSM.
//
// audit_events holds the entries and their leaf hashes; audit_tree_nodes
// the hash of every complete power-of-two subtree of two or more leaves,
// written by the append that completes it; audit_tree_heads the signed
// heads. Roots and proofs are built from those stored hashes, reading
// O(log n) rows. Verify trusts none of them: it recomputes every leaf and
// root from the entries' fields.
//
// Not thread-safe, like the Connection it uses. Entries are appended by the
// archive itself, in the transaction of the change they record.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "holdfast/archive/audit_tree.h"
#include "holdfast/archive/database.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::hsm {
class Token;
}

namespace holdfast::archive {

struct StoredTreeHead {
  int64_t head_id = 0;           // signing order
  TreeHead head;
};

// What Verify found. Problems name entries by index and heads by id.
struct AuditVerifyReport {
  uint64_t entries = 0;                  // rows read
  std::vector<StoredTreeHead> heads;     // signing order
  // The newest head whose signature, root and consistency with the head
  // before it all check out, if any.
  std::optional<StoredTreeHead> newest_good_head;
  std::vector<std::string> problems;     // empty: intact
  bool intact() const { return problems.empty(); }
};

class AuditLog {
 public:
  explicit AuditLog(Connection& conn) : conn_(conn) {}

  // The number of entries: the highest leaf index + 1.
  Result<uint64_t> Size();
  // kNotFound past the end.
  Result<AuditEvent> Entry(uint64_t index);
  Result<std::vector<StoredTreeHead>> Heads();

  // Signs the tree of every entry committed so far: checks that it extends
  // the newest signed head (a consistency proof from the stored hashes),
  // signs with the org root in `token`, checks the signature and records
  // the head. Signing is not itself an audit entry: the stored head is its
  // record. Nothing is signed, with kFailedPrecondition, when the database
  // records no org root key or another one than the token holds, or when
  // the log does not extend the newest head (fewer entries, or another
  // history).
  Result<TreeHead> SignTreeHead(hsm::Token& token, int64_t now_ms);

  // Entry `index` with its inclusion proof in the newest signed head of
  // `head_size` entries, by default in the newest signed head. kNotFound
  // if there is no such head or it does not cover the entry. The bundle is
  // verified before it is returned (kFailedPrecondition if the stored tree
  // does not match the head).
  Result<InclusionBundle> ProveInclusion(uint64_t index,
                                         std::optional<uint64_t> head_size = std::nullopt);
  // A consistency proof between the newest signed heads of from_size and
  // to_size entries (0 < from_size <= to_size), verified before it is
  // returned.
  Result<ConsistencyBundle> ProveConsistency(uint64_t from_size, uint64_t to_size);

  // Reads every entry (in pages, O(log n) memory besides them) and checks:
  // indexes run 0, 1, 2, ... without gaps; each entry's fields hash to its
  // stored leaf hash; the root recomputed from the entries at each signed
  // head's size equals the signed root; each head is signed by
  // `org_root_public` (empty: every head is reported unchecked); each head
  // extends the one signed before it. Errors only when the database cannot
  // be read; what is wrong with the log is in the report.
  Result<AuditVerifyReport> Verify(ByteView org_root_public);

 private:
  Connection& conn_;
};

}  // namespace holdfast::archive
