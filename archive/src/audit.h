// The audit append shared by Compliance and the disclosure export.
#pragma once

#include <string_view>

#include "pg.h"

namespace holdfast::archive::internal {

// Appends one entry to the audit log's Merkle tree (audit_log.h) as the
// next leaf, with the subtree hashes it completes. Must run inside the
// transaction of the change it records; appends of concurrent transactions
// wait for it to end.
Status AppendAudit(Connection::Impl& c, std::string_view actor, std::string_view action,
                   std::string_view detail_json);

}  // namespace holdfast::archive::internal
