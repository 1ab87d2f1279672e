// Deliver frames built from stored rows: shared by a session's queue fetch
// at login and the outbox reader's cross-node pushes. Runs on a thread that
// owns the store's connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "holdfast/archive/store.h"
#include "holdfast/base/status.h"
#include "holdfast/protocol/envelope.h"

namespace holdfast::gateway {

Result<protocol::wire::DeviceInfo> ToDeviceInfo(const archive::DeviceRecord& d);
Result<protocol::wire::EpochCertificate> ToEpochCert(const archive::EpochRecord& e);

// One serialised ServerFrame (Deliver) per pending delivery, in order, with
// its sender's DeviceInfo, its epoch certificate and `notice`. A delivery
// whose sender device or epoch is gone is still sent, without that part:
// the client rejects and acknowledges it, so one bad item never blocks a
// queue. Stops once the frames reach `max_bytes` (after at least one).
Result<std::vector<std::string>> DeliverFrames(
    archive::Store& store, const std::vector<archive::PendingDelivery>& pending,
    const std::string& notice, size_t max_bytes = std::numeric_limits<size_t>::max());

}  // namespace holdfast::gateway
