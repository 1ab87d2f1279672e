#include "delivery.h"

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

Result<FrameParts::Parts> FrameParts::Get(ByteView stored_envelope, ByteView sender_device) {
  Parts out;
  auto parsed = protocol::ParseEnvelope(stored_envelope);
  if (parsed.ok()) {
    out.envelope = std::move(parsed->envelope);
    const uint32_t id = parsed->header.epoch_id();
    auto it = epochs_.find(id);
    if (it == epochs_.end()) {
      std::optional<wire::EpochCertificate> cert;
      auto rec = store_.GetEpoch(id);
      if (!rec.ok() && rec.status().code() != Code::kNotFound) return rec.status();
      if (rec.ok()) {
        HF_ASSIGN_OR_RETURN(cert, ToEpochCert(*rec));
      }
      it = epochs_.emplace(id, std::move(cert)).first;
    }
    if (it->second) out.epoch = &*it->second;
  }
  const std::string key = AsString(sender_device);
  auto it = senders_.find(key);
  if (it == senders_.end()) {
    std::optional<wire::DeviceInfo> info;
    auto rec = store_.GetDevice(sender_device);
    if (!rec.ok() && rec.status().code() != Code::kNotFound) return rec.status();
    if (rec.ok()) {
      HF_ASSIGN_OR_RETURN(info, ToDeviceInfo(*rec));
    }
    it = senders_.emplace(key, std::move(info)).first;
  }
  if (it->second) out.sender = &*it->second;
  return out;
}

Result<std::vector<std::string>> DeliverFrames(
    archive::Store& store, const std::vector<archive::PendingDelivery>& pending,
    const std::string& notice, size_t max_bytes) {
  std::vector<std::string> frames;
  FrameParts parts(store);
  size_t bytes = 0;
  for (const auto& p : pending) {
    if (bytes >= max_bytes) break;
    wire::ServerFrame f;
    auto* d = f.mutable_deliver();
    d->set_delivery_id(static_cast<uint64_t>(p.delivery_id));
    d->set_archive_notice(notice);
    HF_ASSIGN_OR_RETURN(auto got, parts.Get(p.envelope, p.sender_device));
    std::move(got).Into(*d);
    frames.push_back(f.SerializeAsString());
    bytes += frames.back().size();
  }
  return frames;
}

}  // namespace holdfast::gateway
