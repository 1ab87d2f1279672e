#include "holds.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace holdfast::archive::internal {

Status ForEachHeldEnvelope(Connection& conn, std::optional<int64_t> sent_before_ms,
                           const std::function<Status(int64_t hold_id, StoredEnvelope&&)>& visit) {
  HF_ASSIGN_OR_RETURN(auto holds, Exec(conn.impl(),
                                       "SELECT hold_id, custodian, hf_ms(from_at), hf_ms(to_at),"
                                       " conversations"
                                       " FROM holds WHERE state = 'active' ORDER BY hold_id"));
  Store store(conn);
  for (int i = 0; i < holds.rows(); ++i) {
    const int64_t from_ms = holds.Int(i, 2);
    int64_t to_ms = holds.Int(i, 3);
    if (sent_before_ms) to_ms = std::min(to_ms, *sent_before_ms);
    if (from_ms >= to_ms) continue;
    HF_ASSIGN_OR_RETURN(std::vector<StoredEnvelope> found,
                        store.EnvelopesOfCustodian(holds.Text(i, 1), from_ms, to_ms));
    const std::vector<std::string> conversations = holds.TextArray(i, 4);
    for (StoredEnvelope& e : found) {
      if (!conversations.empty() &&
          std::find(conversations.begin(), conversations.end(), e.conversation_id) ==
              conversations.end()) {
        continue;
      }
      HF_RETURN_IF_ERROR(visit(holds.Int(i, 0), std::move(e)));
    }
  }
  return Status::Ok();
}

Result<std::string> ActiveHoldsDigest(Connection::Impl& c) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "SELECT coalesce(md5(string_agg(h::text, E'\\n'"
                                   " ORDER BY h.hold_id)), '') FROM holds h"
                                   " WHERE h.state = 'active'"));
  return r.Text(0, 0);
}

Status LockHolds(Connection::Impl& c) {
  return Exec(c, "LOCK TABLE holds IN SHARE MODE").status();
}

}  // namespace holdfast::archive::internal
