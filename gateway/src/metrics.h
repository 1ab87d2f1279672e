// Prometheus metrics of one gateway process. prometheus-cpp metric objects
// are thread-safe; the references stay valid for the registry's lifetime.
// No user, device or conversation ids are ever used as labels.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <string_view>

namespace holdfast::gateway {

class Metrics {
 public:
  Metrics();

  prometheus::Registry& registry() { return *registry_; }
  // Text exposition format 0.0.4 of everything registered.
  std::string Serialize() const;

  prometheus::Counter& reject(const std::string& reason);
  // holdfast_delivery_reports_total{reason}: `reason` as
  // archive::DeliveryReportReason gives it, so the label values are closed.
  prometheus::Counter& delivery_report(std::string_view reason);

  prometheus::Counter* connections_total;
  prometheus::Gauge* connections_active;
  prometheus::Gauge* sessions_authenticated;
  prometheus::Counter* tls_handshake_failures;
  prometheus::Counter* frames_received;
  prometheus::Counter* messages_received;
  prometheus::Counter* messages_stored;
  prometheus::Counter* messages_duplicate;
  prometheus::Counter* deliveries_pushed;
  prometheus::Counter* deliveries_acked;
  prometheus::Counter* devices_registered;
  prometheus::Histogram* ack_latency;
  prometheus::Histogram* ingest_batch_size;
  prometheus::Histogram* ingest_commit_seconds;
  prometheus::Gauge* ingest_queue_depth;
  prometheus::Gauge* database_up;
  // holdfast_hsm_up{token="archive"|"enrollment"}, from ProbeToken (no login).
  prometheus::Gauge* hsm_up;
  prometheus::Gauge* hsm_enrollment_up;
  prometheus::Gauge* epoch_remaining_seconds;
  prometheus::Counter* maintenance_failures;
  // holdfast_hsm_operations_total{op="countersign",result="ok"|"error"}
  prometheus::Counter* countersign_ok;
  prometheus::Counter* countersign_error;
  // holdfast_resend_requests_total{event="created"|"sent"|"resent"|"closed"}
  prometheus::Counter* resend_created;
  prometheus::Counter* resend_sent;
  prometheus::Counter* resend_resent;
  prometheus::Counter* resend_closed;
  // Sets holdfast_policy_info{version="sha256:..."} to 1.
  void SetPolicyVersion(const std::string& version);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* rejects_;
  prometheus::Family<prometheus::Counter>* delivery_reports_;
};

}  // namespace holdfast::gateway
