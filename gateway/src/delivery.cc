#include "delivery.h"

#include <map>
#include <optional>

namespace holdfast::gateway {

namespace wire = protocol::wire;

Result<wire::DeviceInfo> ToDeviceInfo(const archive::DeviceRecord& d) {
  wire::DeviceInfo info;
  info.set_user(d.user);
  info.set_device_id(AsString(d.device_id));
  info.set_identity_key(AsString(d.identity_key));
  if (!info.mutable_prekey()->ParseFromArray(d.signed_prekey.data(),
                                              static_cast<int>(d.signed_prekey.size()))) {
    return Status::Internal("stored prekey of a device does not parse");
  }
  if (!info.mutable_certificate()->ParseFromArray(d.certificate.data(),
                                                   static_cast<int>(d.certificate.size()))) {
    return Status::Internal("stored certificate of a device does not parse");
  }
  return info;
}

Result<wire::EpochCertificate> ToEpochCert(const archive::EpochRecord& e) {
  wire::EpochCertificate cert;
  if (!cert.ParseFromArray(e.certificate.data(), static_cast<int>(e.certificate.size()))) {
    return Status::Internal("stored epoch certificate does not parse");
  }
  return cert;
}

Result<std::vector<std::string>> DeliverFrames(
    archive::Store& store, const std::vector<archive::PendingDelivery>& pending,
    const std::string& notice, size_t max_bytes) {
  std::vector<std::string> frames;
  std::map<std::string, std::optional<wire::DeviceInfo>> senders;
  std::map<uint32_t, std::optional<wire::EpochCertificate>> epochs;
  size_t bytes = 0;
  for (const auto& p : pending) {
    if (bytes >= max_bytes) break;
    wire::ServerFrame f;
    auto* d = f.mutable_deliver();
    d->set_delivery_id(static_cast<uint64_t>(p.delivery_id));
    d->set_archive_notice(notice);
    auto parsed = protocol::ParseEnvelope(p.envelope);
    if (parsed.ok()) {
      *d->mutable_envelope() = parsed->envelope;
      const uint32_t epoch = parsed->header.epoch_id();
      if (!epochs.count(epoch)) {
        auto rec = store.GetEpoch(epoch);
        if (!rec.ok() && rec.status().code() != Code::kNotFound) return rec.status();
        if (rec.ok()) {
          HF_ASSIGN_OR_RETURN(epochs[epoch], ToEpochCert(*rec));
        } else {
          epochs[epoch] = std::nullopt;
        }
      }
      if (epochs[epoch]) *d->mutable_epoch() = *epochs[epoch];
    }
    const std::string skey = AsString(p.sender_device);
    if (!senders.count(skey)) {
      auto rec = store.GetDevice(p.sender_device);
      if (!rec.ok() && rec.status().code() != Code::kNotFound) return rec.status();
      if (rec.ok()) {
        HF_ASSIGN_OR_RETURN(senders[skey], ToDeviceInfo(*rec));
      } else {
        senders[skey] = std::nullopt;
      }
    }
    if (senders[skey]) *d->mutable_sender() = *senders[skey];
    frames.push_back(f.SerializeAsString());
    bytes += frames.back().size();
  }
  return frames;
}

}  // namespace holdfast::gateway
