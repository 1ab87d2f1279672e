// The audit append shared by Compliance and the disclosure export.
#pragma once

#include <string_view>

#include "pg.h"

namespace holdfast::archive::internal {

// Appends one event to the hash chain. Must run inside the transaction of
// the change it records.
Status AppendAudit(Connection::Impl& c, std::string_view actor, std::string_view action,
                   std::string_view detail_json);

}  // namespace holdfast::archive::internal
