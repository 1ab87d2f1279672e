#include "holdfast/archive/audit_log.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <map>
#include <numeric>
#include <utility>

#include "audit.h"
#include "holdfast/archive/merkle.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "holdfast/hsm/token.h"
#include "holdfast/protocol/identity.h"
#include "pg.h"

namespace holdfast::archive {

using internal::Exec;
using internal::Params;
using internal::PgResult;
using internal::Transaction;

namespace {

// pg_advisory_xact_lock keys serialising appends, and tree head signing.
constexpr int64_t kAuditLock = 0x686f6c64'61756474;     // "holdaudt"
constexpr int64_t kTreeHeadLock = 0x686f6c64'68656164;  // "holdhead"

constexpr int64_t kVerifyPageRows = 5000;
// Mismatched entries kept to tell moved from changed ones (pairwise).
constexpr size_t kMaxMismatchesExplained = 256;
constexpr size_t kMaxProblems = 200;

constexpr std::string_view kEntryColumns =
    "leaf_index, hf_ms(at), actor, action, detail::text, leaf_hash";
constexpr std::string_view kHeadColumns =
    "head_id, tree_size, root_hash, hf_ms(signed_at), signature, key_fingerprint";

AuditEvent EntryFromRow(const PgResult& r, int row) {
  return AuditEvent{static_cast<uint64_t>(r.Int(row, 0)), r.Int(row, 1), r.Text(row, 2),
                    r.Text(row, 3), r.Text(row, 4), r.Bytea(row, 5)};
}

StoredTreeHead HeadFromRow(const PgResult& r, int row) {
  return StoredTreeHead{r.Int(row, 0), TreeHead{static_cast<uint64_t>(r.Int(row, 1)),
                                                r.Bytea(row, 2), r.Int(row, 3), r.Bytea(row, 4),
                                                r.Text(row, 5)}};
}

std::string Describe(const StoredTreeHead& h) {
  return "tree head #" + std::to_string(h.head_id) + " (size " +
         std::to_string(h.head.tree_size) + ", signed " +
         FormatUtc(h.head.signed_at_ms, TimePrecision::kMillis) + ")";
}

std::string EntryRange(uint64_t first, uint64_t last) {
  return first == last ? "entry " + std::to_string(first)
                       : "entries " + std::to_string(first) + ".." + std::to_string(last);
}

// A perfect subtree: leaves [index << level, (index + 1) << level).
struct NodeId {
  int level = 0;
  uint64_t index = 0;
  auto operator<=>(const NodeId&) const = default;
};

// The perfect subtrees that MTH(D[begin:end]) is built from, following the
// RFC 6962 split; begin < end.
void CollectNodes(uint64_t begin, uint64_t end, std::vector<NodeId>& out) {
  const uint64_t size = end - begin;
  if (std::has_single_bit(size) && begin % size == 0) {
    const int level = std::countr_zero(size);
    out.push_back({level, begin >> level});
    return;
  }
  const uint64_t split = std::bit_floor(size - 1);
  CollectNodes(begin, begin + split, out);
  CollectNodes(begin + split, end, out);
}

// Subtree hashes as stored: leaf hashes in audit_events (level 0), larger
// perfect subtrees in audit_tree_nodes.
class StoredNodes {
 public:
  void Put(NodeId id, Bytes hash) { hashes_[id] = std::move(hash); }

  // Reads those of `ids` not read yet, in one statement. kInternal if one is
  // not stored.
  Status Fetch(Connection::Impl& c, const std::vector<NodeId>& ids) {
    std::vector<int64_t> levels;
    std::vector<int64_t> indexes;
    for (const NodeId& id : ids) {
      if (hashes_.contains(id)) continue;
      levels.push_back(id.level);
      indexes.push_back(static_cast<int64_t>(id.index));
    }
    if (levels.empty()) return Status::Ok();
    HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                     "SELECT u.l, u.i, CASE WHEN u.l = 0 THEN e.leaf_hash"
                                     " ELSE n.hash END"
                                     " FROM unnest($1::int8[], $2::int8[]) AS u(l, i)"
                                     " LEFT JOIN audit_tree_nodes n"
                                     "   ON u.l > 0 AND n.level = u.l AND n.node_index = u.i"
                                     " LEFT JOIN audit_events e"
                                     "   ON u.l = 0 AND e.leaf_index = u.i",
                                     Params().Int8Array(levels).Int8Array(indexes)));
    for (int row = 0; row < r.rows(); ++row) {
      const NodeId id{static_cast<int>(r.Int(row, 0)), static_cast<uint64_t>(r.Int(row, 1))};
      if (r.IsNull(row, 2)) {
        const uint64_t first = id.index << id.level;
        return Status::Internal("the stored audit tree lacks the hash of " +
                                EntryRange(first, first + (uint64_t{1} << id.level) - 1));
      }
      hashes_[id] = r.Bytea(row, 2);
    }
    return Status::Ok();
  }

  Result<Bytes> Get(NodeId id) const {
    auto it = hashes_.find(id);
    if (it == hashes_.end()) return Status::Internal("audit subtree hash not read");
    return it->second;
  }

  // MTH(D[begin:end]) from what Fetch read.
  Result<Bytes> Subtree(uint64_t begin, uint64_t end) const {
    const uint64_t size = end - begin;
    if (std::has_single_bit(size) && begin % size == 0) {
      const int level = std::countr_zero(size);
      return Get({level, begin >> level});
    }
    const uint64_t split = std::bit_floor(size - 1);
    HF_ASSIGN_OR_RETURN(Bytes left, Subtree(begin, begin + split));
    HF_ASSIGN_OR_RETURN(Bytes right, Subtree(begin + split, end));
    return merkle::NodeHash(left, right);
  }

 private:
  std::map<NodeId, Bytes> hashes_;
};

using ProofFn = std::function<Result<std::vector<Bytes>>(const merkle::SubtreeHashFn&)>;

// Runs `proof` twice: first to learn which subtrees it asks for (that
// depends only on the sizes, never on the hashes), then over those
// subtrees read in one statement.
Result<std::vector<Bytes>> ProofFromStore(Connection::Impl& c, const ProofFn& proof) {
  std::vector<NodeId> needed;
  HF_RETURN_IF_ERROR(proof([&needed](uint64_t begin, uint64_t end) -> Result<Bytes> {
                       CollectNodes(begin, end, needed);
                       return Bytes(merkle::kHashSize, 0);
                     }).status());
  StoredNodes nodes;
  HF_RETURN_IF_ERROR(nodes.Fetch(c, needed));
  return proof([&nodes](uint64_t begin, uint64_t end) { return nodes.Subtree(begin, end); });
}

Result<Bytes> RootFromStore(Connection::Impl& c, uint64_t tree_size) {
  if (tree_size == 0) return merkle::RootHash({});
  std::vector<NodeId> needed;
  CollectNodes(0, tree_size, needed);
  StoredNodes nodes;
  HF_RETURN_IF_ERROR(nodes.Fetch(c, needed));
  return nodes.Subtree(0, tree_size);
}

Result<std::vector<Bytes>> ConsistencyFromStore(Connection::Impl& c, uint64_t old_size,
                                                uint64_t new_size) {
  return ProofFromStore(c, [&](const merkle::SubtreeHashFn& subtree) {
    return merkle::ConsistencyProof(old_size, new_size, subtree);
  });
}

// The root of a growing prefix of the leaves in O(log n) memory: the perfect
// subtrees of the prefix, largest first, as in merkle::RootHash.
class PrefixTree {
 public:
  void Push(Bytes leaf) {
    ++size_;
    for (uint64_t n = size_; (n & 1) == 0; n >>= 1) {
      leaf = merkle::NodeHash(stack_.back(), leaf);
      stack_.pop_back();
    }
    stack_.push_back(std::move(leaf));
  }
  uint64_t size() const { return size_; }
  Bytes Root() const {
    if (stack_.empty()) return merkle::RootHash({});
    Bytes root = stack_.back();
    for (auto it = stack_.rbegin() + 1; it != stack_.rend(); ++it) {
      root = merkle::NodeHash(*it, root);
    }
    return root;
  }

 private:
  uint64_t size_ = 0;
  std::vector<Bytes> stack_;
};

Result<Bytes> OrgRootPublic(Connection::Impl& c) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(c, "SELECT value FROM settings WHERE name = $1",
                                   Params().Text(kOrgRootPublicKeySetting)));
  if (r.rows() == 0) {
    return Status::FailedPrecondition(
        "no org root public key is recorded (run `holdfast-admin init`)");
  }
  return r.Bytea(0, 0);
}

// The newest head, or the newest of `tree_size` entries.
Result<std::optional<StoredTreeHead>> NewestHead(Connection::Impl& c,
                                                 std::optional<uint64_t> tree_size) {
  std::string sql = "SELECT ";
  sql += kHeadColumns;
  sql += " FROM audit_tree_heads";
  Params p;
  if (tree_size) {
    sql += " WHERE tree_size = $1";
    p.Int8(static_cast<int64_t>(*tree_size));
  }
  sql += " ORDER BY head_id DESC LIMIT 1";
  HF_ASSIGN_OR_RETURN(auto r, Exec(c, sql, p));
  if (r.rows() == 0) return std::optional<StoredTreeHead>();
  return std::optional<StoredTreeHead>(HeadFromRow(r, 0));
}

Result<StoredTreeHead> RequireHead(Connection::Impl& c, std::optional<uint64_t> tree_size) {
  HF_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> head, NewestHead(c, tree_size));
  if (!head) {
    return Status::NotFound(tree_size ? "no signed tree head of size " + std::to_string(*tree_size)
                                      : "no tree head is signed yet (run `holdfast-admin audit "
                                        "sign-head`)");
  }
  return *std::move(head);
}

Status SelfCheck(Status verified, const std::string& what) {
  if (verified.ok()) return verified;
  return Status::FailedPrecondition("the stored audit log does not match " + what + ": " +
                                    verified.message() + " (run `holdfast-admin audit verify`)");
}

}  // namespace

namespace internal {

Status AppendAudit(Connection::Impl& c, std::string_view actor, std::string_view action,
                   std::string_view detail_json) {
  if (!c.in_transaction) return Status::Internal("audit append outside a transaction");
  if (actor.empty()) return Status::InvalidArgument("audit event without an actor");
  AuditEvent e;
  e.actor = actor;
  e.action = action;
  e.detail = detail_json.empty() ? "{}" : std::string(detail_json);
  HF_RETURN_IF_ERROR(
      Exec(c, "SELECT pg_advisory_xact_lock($1)", Params().Int8(kAuditLock)).status());
  // Read after the lock, so index and time follow commit order.
  HF_ASSIGN_OR_RETURN(auto last, Exec(c,
                                      "SELECT hf_ms(clock_timestamp()), a.leaf_index, a.leaf_hash"
                                      " FROM (SELECT 1) AS one LEFT JOIN"
                                      " (SELECT leaf_index, leaf_hash FROM audit_events"
                                      "  ORDER BY leaf_index DESC LIMIT 1) AS a ON true"));
  e.at_ms = last.Int(0, 0);
  e.index = last.IsNull(0, 1) ? 0 : static_cast<uint64_t>(last.Int(0, 1)) + 1;
  e.leaf_hash = AuditLeafHash(e);

  // Leaf i completes one perfect subtree per trailing 1 bit of i: at level
  // k, node i >> k, whose left half is node (i >> (k - 1)) - 1 of level k - 1.
  const int completes = std::countr_one(e.index);
  std::vector<NodeId> left_halves;
  for (int k = 1; k <= completes; ++k) {
    left_halves.push_back({k - 1, (e.index >> (k - 1)) - 1});
  }
  StoredNodes stored;
  if (completes > 0) stored.Put({0, e.index - 1}, last.Bytea(0, 2));
  HF_RETURN_IF_ERROR(stored.Fetch(c, left_halves));
  std::vector<int64_t> levels;
  std::vector<int64_t> indexes;
  std::vector<Bytes> hashes;
  Bytes hash = e.leaf_hash;
  for (int k = 1; k <= completes; ++k) {
    HF_ASSIGN_OR_RETURN(Bytes left, stored.Get(left_halves[k - 1]));
    hash = merkle::NodeHash(left, hash);
    levels.push_back(k);
    indexes.push_back(static_cast<int64_t>(e.index >> k));
    hashes.push_back(hash);
  }
  // A node can exist already only if entries were deleted from the end of
  // the log; the nodes then follow the entries as they are now, and Verify
  // reports the removal against the signed heads.
  return Exec(c,
              "WITH entry AS (INSERT INTO audit_events"
              "  (leaf_index, at, actor, action, detail, leaf_hash)"
              "  VALUES ($1, hf_ts($2), $3, $4, $5::json, $6))"
              " INSERT INTO audit_tree_nodes (level, node_index, hash)"
              " SELECT l, i, h FROM unnest($7::int8[], $8::int8[], $9::bytea[]) AS u(l, i, h)"
              " ON CONFLICT (level, node_index) DO UPDATE SET hash = excluded.hash",
              Params()
                  .Int8(static_cast<int64_t>(e.index))
                  .Int8(e.at_ms)
                  .Text(e.actor)
                  .Text(e.action)
                  .Text(e.detail)
                  .Bytea(e.leaf_hash)
                  .Int8Array(levels)
                  .Int8Array(indexes)
                  .ByteaArray(hashes))
      .status();
}

}  // namespace internal

Result<uint64_t> AuditLog::Size() {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT coalesce(max(leaf_index) + 1, 0) FROM audit_events"));
  return static_cast<uint64_t>(r.Int(0, 0));
}

Result<AuditEvent> AuditLog::Entry(uint64_t index) {
  std::string sql = "SELECT ";
  sql += kEntryColumns;
  sql += " FROM audit_events WHERE leaf_index = $1";
  HF_ASSIGN_OR_RETURN(auto r,
                      Exec(conn_.impl(), sql, Params().Int8(static_cast<int64_t>(index))));
  if (r.rows() == 0) return Status::NotFound("no audit entry " + std::to_string(index));
  return EntryFromRow(r, 0);
}

Result<std::vector<StoredTreeHead>> AuditLog::Heads() {
  std::string sql = "SELECT ";
  sql += kHeadColumns;
  sql += " FROM audit_tree_heads ORDER BY head_id";
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), sql));
  std::vector<StoredTreeHead> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(HeadFromRow(r, i));
  return out;
}

Result<TreeHead> AuditLog::SignTreeHead(hsm::Token& token, int64_t now_ms) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Bytes org_root, OrgRootPublic(c));
  HF_ASSIGN_OR_RETURN(Bytes token_root, token.PublicKey(hsm::kOrgRootLabel));
  if (token_root != org_root) {
    return Status::FailedPrecondition(
        "the database records a different org root key than the HSM holds; refusing to sign");
  }
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(
      Exec(c, "SELECT pg_advisory_xact_lock($1)", Params().Int8(kTreeHeadLock)).status());
  HF_ASSIGN_OR_RETURN(uint64_t size, Size());
  HF_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> newest, NewestHead(c, std::nullopt));
  HF_ASSIGN_OR_RETURN(Bytes root, RootFromStore(c, size));
  if (newest && newest->head.tree_size > size) {
    return Status::FailedPrecondition(
        "the audit log has " + std::to_string(size) + " entries, fewer than " + Describe(*newest) +
        ": entries were removed; refusing to sign (run `holdfast-admin audit verify`)");
  }
  if (newest && newest->head.tree_size > 0) {
    auto proof = ConsistencyFromStore(c, newest->head.tree_size, size);
    Status consistent = proof.ok() ? merkle::VerifyConsistency(newest->head.tree_size, size,
                                                               newest->head.root_hash, root,
                                                               *proof)
                                   : proof.status();
    if (!consistent.ok()) {
      return Status::FailedPrecondition("the audit log does not extend " + Describe(*newest) +
                                        ": " + consistent.message() +
                                        "; refusing to sign (run `holdfast-admin audit verify`)");
    }
  }
  TreeHead head{size, root, now_ms, {}, protocol::Fingerprint(org_root)};
  HF_ASSIGN_OR_RETURN(head.signature, token.SignWithOrgRoot(TreeHeadSigningInput(
                                          head.tree_size, head.root_hash, head.signed_at_ms)));
  HF_RETURN_IF_ERROR(VerifyTreeHead(head, org_root).WithContext("the HSM's tree head signature"));
  HF_RETURN_IF_ERROR(Exec(c,
                          "INSERT INTO audit_tree_heads"
                          " (tree_size, root_hash, signed_at, signature, key_fingerprint)"
                          " VALUES ($1, $2, hf_ts($3), $4, $5)",
                          Params()
                              .Int8(static_cast<int64_t>(head.tree_size))
                              .Bytea(head.root_hash)
                              .Int8(head.signed_at_ms)
                              .Bytea(head.signature)
                              .Text(head.key_fingerprint))
                         .status());
  HF_RETURN_IF_ERROR(tx.Commit());
  return head;
}

Result<InclusionBundle> AuditLog::ProveInclusion(uint64_t index,
                                                 std::optional<uint64_t> head_size) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(StoredTreeHead head, RequireHead(c, head_size));
  if (index >= head.head.tree_size) {
    return Status::NotFound("audit entry " + std::to_string(index) + " is not covered by " +
                            Describe(head) +
                            (head_size ? "" : "; sign a newer one with `holdfast-admin audit "
                                              "sign-head`"));
  }
  InclusionBundle bundle;
  HF_ASSIGN_OR_RETURN(bundle.entry, Entry(index));
  bundle.entry.leaf_hash = AuditLeafHash(bundle.entry);
  HF_ASSIGN_OR_RETURN(bundle.proof, ProofFromStore(c, [&](const merkle::SubtreeHashFn& subtree) {
                        return merkle::InclusionProof(index, head.head.tree_size, subtree);
                      }));
  bundle.head = head.head;
  HF_ASSIGN_OR_RETURN(bundle.org_root_public, OrgRootPublic(c));
  HF_RETURN_IF_ERROR(SelfCheck(VerifyBundle(bundle), Describe(head)));
  return bundle;
}

Result<ConsistencyBundle> AuditLog::ProveConsistency(uint64_t from_size, uint64_t to_size) {
  if (from_size == 0 || from_size > to_size) {
    return Status::InvalidArgument("no consistency proof from size " + std::to_string(from_size) +
                                   " to size " + std::to_string(to_size));
  }
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(StoredTreeHead old_head, RequireHead(c, from_size));
  HF_ASSIGN_OR_RETURN(StoredTreeHead new_head, RequireHead(c, to_size));
  ConsistencyBundle bundle;
  HF_ASSIGN_OR_RETURN(bundle.proof, ConsistencyFromStore(c, from_size, to_size));
  bundle.old_head = old_head.head;
  bundle.new_head = new_head.head;
  HF_ASSIGN_OR_RETURN(bundle.org_root_public, OrgRootPublic(c));
  HF_RETURN_IF_ERROR(
      SelfCheck(VerifyBundle(bundle), Describe(old_head) + " and " + Describe(new_head)));
  return bundle;
}

Result<AuditVerifyReport> AuditLog::Verify(ByteView org_root_public) {
  Connection::Impl& c = conn_.impl();
  AuditVerifyReport report;
  HF_ASSIGN_OR_RETURN(report.heads, Heads());
  const std::vector<StoredTreeHead>& heads = report.heads;
  std::vector<std::string>& problems = report.problems;

  // Heads by size, to take each one's root as the entries stream past it.
  std::vector<size_t> by_size(heads.size());
  std::iota(by_size.begin(), by_size.end(), size_t{0});
  std::stable_sort(by_size.begin(), by_size.end(), [&](size_t a, size_t b) {
    return heads[a].head.tree_size < heads[b].head.tree_size;
  });
  std::vector<std::optional<Bytes>> roots(heads.size());
  size_t next_head = 0;
  PrefixTree tree;
  auto take_roots = [&] {
    for (; next_head < by_size.size() &&
           heads[by_size[next_head]].head.tree_size == tree.size();
         ++next_head) {
      roots[by_size[next_head]] = tree.Root();
    }
  };
  take_roots();

  std::vector<AuditEvent> mismatched;  // fields that do not hash to the stored leaf hash
  uint64_t mismatch_count = 0;
  uint64_t expected = 0;               // the next index, one past the last read
  std::string sql = "SELECT ";
  sql += kEntryColumns;
  sql += " FROM audit_events WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2";
  for (int64_t from = 0;;) {
    HF_ASSIGN_OR_RETURN(auto r, Exec(c, sql, Params().Int8(from).Int8(kVerifyPageRows)));
    for (int row = 0; row < r.rows(); ++row) {
      AuditEvent e = EntryFromRow(r, row);
      if (e.index != expected) {
        problems.push_back(EntryRange(expected, e.index - 1) +
                           (e.index - expected == 1 ? " is" : " are") +
                           " missing (removed from the database)");
      }
      expected = e.index + 1;
      Bytes leaf = AuditLeafHash(e);
      if (!ConstantTimeEqual(leaf, e.leaf_hash)) {
        ++mismatch_count;
        if (mismatched.size() < kMaxMismatchesExplained) mismatched.push_back(std::move(e));
      }
      tree.Push(std::move(leaf));
      take_roots();
    }
    if (r.rows() < kVerifyPageRows) break;
    from = r.Int(r.rows() - 1, 0) + 1;
  }
  report.entries = tree.size();

  // An entry whose fields hash, at another mismatched entry's index, to its
  // own or that entry's stored leaf hash was moved there.
  for (const AuditEvent& e : mismatched) {
    std::optional<uint64_t> origin;
    for (const AuditEvent& other : mismatched) {
      if (other.index == e.index) continue;
      AuditEvent moved = e;
      moved.index = other.index;
      const Bytes hash = AuditLeafHash(moved);
      if (ConstantTimeEqual(hash, e.leaf_hash) || ConstantTimeEqual(hash, other.leaf_hash)) {
        origin = other.index;
        break;
      }
    }
    const std::string name = "entry " + std::to_string(e.index);
    problems.push_back(origin ? name + " holds the entry recorded at index " +
                                    std::to_string(*origin) + " (entries reordered)"
                              : name + " was changed: its fields do not hash to its leaf hash");
  }
  if (mismatch_count > mismatched.size()) {
    problems.push_back("and " + std::to_string(mismatch_count - mismatched.size()) +
                       " more entries whose fields do not hash to their leaf hashes");
  }

  if (org_root_public.empty() && !heads.empty()) {
    problems.push_back("the signatures of " + std::to_string(heads.size()) +
                       " tree head(s) were not checked: no org root public key");
  }
  for (size_t k = 0; k < heads.size(); ++k) {
    const StoredTreeHead& h = heads[k];
    const uint64_t size = h.head.tree_size;
    bool good = !org_root_public.empty();
    auto fail = [&](const std::string& what) {
      problems.push_back(Describe(h) + ": " + what);
      good = false;
    };
    if (!org_root_public.empty()) {
      Status signed_ok = VerifyTreeHead(h.head, org_root_public);
      if (!signed_ok.ok()) fail(signed_ok.message());
    }
    if (!roots[k]) {
      fail(expected < size ? "it covers " + std::to_string(size) + " entries, but " +
                                 EntryRange(expected, size - 1) +
                                 (size - expected == 1 ? " is" : " are") +
                                 " missing (the log was truncated)"
                           : "it covers " + std::to_string(size) + " entries, but the log holds " +
                                 std::to_string(tree.size()) + " (entries were removed)");
    } else if (!ConstantTimeEqual(*roots[k], h.head.root_hash)) {
      // The largest head that still matches bounds where the log differs.
      uint64_t intact = 0;
      for (size_t j = 0; j < heads.size(); ++j) {
        const uint64_t other = heads[j].head.tree_size;
        if (other < size && other > intact && roots[j] &&
            ConstantTimeEqual(*roots[j], heads[j].head.root_hash)) {
          intact = other;
        }
      }
      fail("its root does not match the log: one of " + EntryRange(intact, size - 1) +
           " was changed, removed, inserted or reordered" +
           (intact > 0 ? " (the first " + std::to_string(intact) + " entries match an earlier head)"
                       : ""));
    }
    // A head past the end of the log has no proof to check; that it is
    // past the end is reported above.
    if (k > 0 && roots[k]) {
      const StoredTreeHead& prev = heads[k - 1];
      const uint64_t prev_size = prev.head.tree_size;
      if (prev_size > size) {
        fail("it has fewer entries than " + Describe(prev) + ", signed before it");
      } else if (prev_size == size) {
        if (!ConstantTimeEqual(prev.head.root_hash, h.head.root_hash)) {
          fail("it has the size of " + Describe(prev) + " but another root");
        }
      } else if (prev_size > 0) {
        auto proof = ConsistencyFromStore(c, prev_size, size);
        if (!proof.ok() && proof.status().code() == Code::kUnavailable) return proof.status();
        Status consistent = proof.ok() ? merkle::VerifyConsistency(prev_size, size,
                                                                   prev.head.root_hash,
                                                                   h.head.root_hash, *proof)
                                       : proof.status();
        if (!consistent.ok()) {
          fail("no consistency with " + Describe(prev) + ": " + consistent.message());
        }
      }
    }
    if (good) report.newest_good_head = h;
  }

  if (problems.size() > kMaxProblems) {
    const size_t more = problems.size() - kMaxProblems;
    problems.resize(kMaxProblems);
    problems.push_back("and " + std::to_string(more) + " more problems");
  }
  return report;
}

}  // namespace holdfast::archive
