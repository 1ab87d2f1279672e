// Deliver frames built from stored rows: shared by a session's queue fetch
// at login and the outbox reader's cross-node pushes. Runs on a thread that
// owns the store's connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "holdfast/archive/store.h"
#include "holdfast/base/status.h"
#include "holdfast/protocol/envelope.h"

namespace holdfast::gateway {

Result<protocol::wire::DeviceInfo> ToDeviceInfo(const archive::DeviceRecord& d);
Result<protocol::wire::EpochCertificate> ToEpochCert(const archive::EpochRecord& e);

// The parts of a Deliver or HistoryEntry that come from the database: the
// parsed envelope, its sender's DeviceInfo and its epoch certificate, each
// sender and epoch read once per FrameParts. A part that is gone (or an
// envelope that no longer parses) is left unset: the item still goes out
// and the client refuses it, so one bad item never blocks a queue.
class FrameParts {
 public:
  explicit FrameParts(archive::Store& store) : store_(store) {}

  struct Parts {
    std::optional<protocol::wire::Envelope> envelope;
    const protocol::wire::DeviceInfo* sender = nullptr;       // owned by the FrameParts
    const protocol::wire::EpochCertificate* epoch = nullptr;  // owned by the FrameParts

    template <typename Frame>
    void Into(Frame& f) && {
      if (envelope) *f.mutable_envelope() = std::move(*envelope);
      if (sender) *f.mutable_sender() = *sender;
      if (epoch) *f.mutable_epoch() = *epoch;
    }
  };

  Result<Parts> Get(ByteView stored_envelope, ByteView sender_device);

 private:
  archive::Store& store_;
  std::map<std::string, std::optional<protocol::wire::DeviceInfo>> senders_;
  std::map<uint32_t, std::optional<protocol::wire::EpochCertificate>> epochs_;
};

// One serialised ServerFrame (Deliver) per pending delivery, in order, with
// its sender's DeviceInfo, its epoch certificate and `notice`. A delivery
// whose sender device or epoch is gone is still sent, without that part:
// the client rejects and acknowledges it, so one bad item never blocks a
// queue. Stops once the frames reach `max_bytes` (after at least one).
Result<std::vector<std::string>> DeliverFrames(
    archive::Store& store, const std::vector<archive::PendingDelivery>& pending,
    const std::string& notice, size_t max_bytes = std::numeric_limits<size_t>::max());

}  // namespace holdfast::gateway
