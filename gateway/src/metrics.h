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
  // holdfast_tls_handshakes_total{resumed="true"|"false"}: completed handshakes.
  prometheus::Counter* tls_handshakes_resumed;
  prometheus::Counter* tls_handshakes_full;
  prometheus::Counter* frames_received;
  prometheus::Counter* messages_received;
  prometheus::Counter* messages_stored;
  prometheus::Counter* messages_duplicate;
  prometheus::Counter* deliveries_pushed;
  prometheus::Counter* deliveries_acked;
  prometheus::Counter* devices_registered;
  prometheus::Counter* history_pages;
  prometheus::Histogram* ack_latency;
  prometheus::Histogram* ingest_batch_size;
  prometheus::Histogram* ingest_commit_seconds;
  prometheus::Gauge* ingest_queue_depth;
  // 1 while the ingest queue is over database.ingest_queue_max and sessions
  // do not read new frames.
  prometheus::Gauge* ingest_backlogged;
  prometheus::Counter* ingest_backpressure_pauses;
  prometheus::Gauge* database_up;
  // holdfast_hsm_up{token="archive"|"enrollment"}, from ProbeToken (no login).
  prometheus::Gauge* hsm_up;
  prometheus::Gauge* hsm_enrollment_up;
  prometheus::Gauge* epoch_remaining_seconds;
  prometheus::Counter* maintenance_failures;
  prometheus::Counter* deliveries_expired;
  prometheus::Gauge* delivery_queue_depth;
  // holdfast_hsm_operations_total{op="countersign",result="ok"|"error"}
  prometheus::Counter* countersign_ok;
  prometheus::Counter* countersign_error;
  // holdfast_directory_binds_total{result="ok|bad_credentials|not_permitted|error"}
  prometheus::Counter* directory_bind_ok;
  prometheus::Counter* directory_bind_bad_credentials;
  prometheus::Counter* directory_bind_not_permitted;
  prometheus::Counter* directory_bind_error;
  // holdfast_enrollment_rate_limited_total{scope="user"|"ip"}
  prometheus::Counter* enrollment_limited_user;
  prometheus::Counter* enrollment_limited_ip;
  // Multi-node delivery (outbox reader).
  prometheus::Counter* outbox_notifications;
  prometheus::Counter* outbox_polls;
  prometheus::Counter* cross_node_deliveries;
  prometheus::Counter* outbox_reconnects;
  prometheus::Gauge* outbox_lag_seconds;
  // holdfast_resend_requests_total{event="created"|"sent"|"resent"|"closed"}
  prometheus::Counter* resend_created;
  prometheus::Counter* resend_sent;
  prometheus::Counter* resend_resent;
  prometheus::Counter* resend_closed;
  // holdfast_admin_api_requests_total{status="2xx|4xx|5xx"}, by status class.
  prometheus::Counter& admin_request(int status);
  // holdfast_admin_api_denied_total{reason="unauthenticated|forbidden|not_visible|step_up"}
  prometheus::Counter& admin_denied(std::string_view reason);
  // holdfast_admin_sign_ins_total{result="ok|failed|locked"}
  prometheus::Counter& admin_sign_in(std::string_view result);
  // Sets holdfast_policy_info{version="sha256:..."} to 1.
  void SetPolicyVersion(const std::string& version);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* rejects_;
  prometheus::Family<prometheus::Counter>* delivery_reports_;
  prometheus::Family<prometheus::Counter>* admin_requests_;
  prometheus::Family<prometheus::Counter>* admin_denied_;
  prometheus::Family<prometheus::Counter>* admin_sign_ins_;
};

}  // namespace holdfast::gateway
