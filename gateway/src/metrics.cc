#include "metrics.h"

#include <prometheus/text_serializer.h>

#include <sstream>

#include "holdfast/archive/store.h"

namespace holdfast::gateway {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  connections_total = &BuildCounter().Name("holdfast_client_connections_total")
                           .Help("Client TCP connections accepted.").Register(r).Add({});
  connections_active = &BuildGauge().Name("holdfast_client_connections")
                            .Help("Client connections currently open.").Register(r).Add({});
  sessions_authenticated = &BuildGauge().Name("holdfast_client_sessions_authenticated")
                                .Help("Sessions that completed device authentication and are open.")
                                .Register(r).Add({});
  tls_handshake_failures = &BuildCounter().Name("holdfast_tls_handshake_failures_total")
                                .Help("Client TLS handshakes that failed.").Register(r).Add({});
  auto& handshakes = BuildCounter().Name("holdfast_tls_handshakes_total")
                         .Help("Client TLS handshakes completed, by whether a session was resumed.")
                         .Register(r);
  tls_handshakes_resumed = &handshakes.Add({{"resumed", "true"}});
  tls_handshakes_full = &handshakes.Add({{"resumed", "false"}});
  frames_received = &BuildCounter().Name("holdfast_client_frames_received_total")
                         .Help("WebSocket frames received from clients.").Register(r).Add({});
  messages_received = &BuildCounter().Name("holdfast_messages_received_total")
                           .Help("Envelopes submitted by clients.").Register(r).Add({});
  messages_stored = &BuildCounter().Name("holdfast_messages_stored_total")
                         .Help("Envelopes committed to PostgreSQL and acknowledged.").Register(r).Add({});
  messages_duplicate = &BuildCounter().Name("holdfast_messages_duplicate_total")
                            .Help("Submissions of a message id already stored (acknowledged again).")
                            .Register(r).Add({});
  deliveries_pushed = &BuildCounter().Name("holdfast_deliveries_pushed_total")
                           .Help("Deliver frames sent to devices.").Register(r).Add({});
  deliveries_acked = &BuildCounter().Name("holdfast_deliveries_acked_total")
                          .Help("Delivery acknowledgements received from devices.").Register(r).Add({});
  history_pages = &BuildCounter().Name("holdfast_history_pages_total")
                       .Help("History pages served to devices.").Register(r).Add({});
  devices_registered = &BuildCounter().Name("holdfast_devices_registered_total")
                            .Help("Devices enrolled through this gateway.").Register(r).Add({});
  ack_latency = &BuildHistogram().Name("holdfast_ack_latency_seconds")
                     .Help("Time from receiving an envelope to acknowledging it after commit.")
                     .Register(r)
                     .Add({}, prometheus::Histogram::BucketBoundaries{
                                  0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5});
  ingest_batch_size = &BuildHistogram().Name("holdfast_ingest_batch_size")
                           .Help("Envelopes per group commit.")
                           .Register(r)
                           .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128,
                                                                            256, 512});
  ingest_commit_seconds = &BuildHistogram().Name("holdfast_ingest_commit_seconds")
                               .Help("Duration of one group commit transaction.")
                               .Register(r)
                               .Add({}, prometheus::Histogram::BucketBoundaries{
                                            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 1});
  ingest_queue_depth = &BuildGauge().Name("holdfast_ingest_queue_depth")
                            .Help("Envelopes waiting for group commit.").Register(r).Add({});
  ingest_backlogged = &BuildGauge().Name("holdfast_ingest_backlogged")
                           .Help("1 while the ingest queue is over database.ingest_queue_max and "
                                 "sessions do not read new frames.")
                           .Register(r).Add({});
  ingest_backpressure_pauses = &BuildCounter().Name("holdfast_ingest_backpressure_pauses_total")
                                    .Help("Times a session stopped reading because the ingest "
                                          "queue was over its bound.")
                                    .Register(r).Add({});
  database_up = &BuildGauge().Name("holdfast_database_up")
                     .Help("1 if the last database check succeeded.").Register(r).Add({});
  auto& hsm_up_family = BuildGauge().Name("holdfast_hsm_up")
                            .Help("1 if the HSM token is present with a usable user PIN (probed without logging in).")
                            .Register(r);
  hsm_up = &hsm_up_family.Add({{"token", "archive"}});
  hsm_enrollment_up = &hsm_up_family.Add({{"token", "enrollment"}});
  epoch_remaining_seconds = &BuildGauge().Name("holdfast_archive_epoch_remaining_seconds")
                                 .Help("Seconds until the latest certified archive epoch ends.")
                                 .Register(r).Add({});
  maintenance_failures = &BuildCounter().Name("holdfast_maintenance_failures_total")
                              .Help("Periodic checks (HSM probe, epoch expiry) that failed.").Register(r).Add({});
  deliveries_expired = &BuildCounter().Name("holdfast_deliveries_expired_total")
                            .Help("Deliveries not acknowledged within delivery.queue_ttl_days, no longer offered.")
                            .Register(r).Add({});
  delivery_queue_depth = &BuildGauge().Name("holdfast_delivery_queue_depth")
                              .Help("Deliveries queued for devices, neither acknowledged nor expired.")
                              .Register(r).Add({});
  auto& hsm_operations = BuildCounter().Name("holdfast_hsm_operations_total")
                             .Help("Operations with the enrollment key, by result.").Register(r);
  countersign_ok = &hsm_operations.Add({{"op", "countersign"}, {"result", "ok"}});
  countersign_error = &hsm_operations.Add({{"op", "countersign"}, {"result", "error"}});
  auto& binds = BuildCounter().Name("holdfast_directory_binds_total")
                    .Help("Directory sign-ins at enrollment, by result.").Register(r);
  directory_bind_ok = &binds.Add({{"result", "ok"}});
  directory_bind_bad_credentials = &binds.Add({{"result", "bad_credentials"}});
  directory_bind_not_permitted = &binds.Add({{"result", "not_permitted"}});
  directory_bind_error = &binds.Add({{"result", "error"}});
  auto& limited = BuildCounter().Name("holdfast_enrollment_rate_limited_total")
                      .Help("Enrollment attempts refused for too many recent failures, by the limit hit.")
                      .Register(r);
  enrollment_limited_user = &limited.Add({{"scope", "user"}});
  enrollment_limited_ip = &limited.Add({{"scope", "ip"}});
  outbox_notifications = &BuildCounter().Name("holdfast_outbox_notifications_total")
                              .Help("Outbox notifications received from other gateway nodes.")
                              .Register(r).Add({});
  outbox_polls = &BuildCounter().Name("holdfast_outbox_polls_total")
                      .Help("Outbox reads after a second without a notification (the fallback poll).")
                      .Register(r).Add({});
  cross_node_deliveries = &BuildCounter().Name("holdfast_cross_node_deliveries_total")
                               .Help("Deliver frames pushed for envelopes stored by another gateway node.")
                               .Register(r).Add({});
  outbox_reconnects = &BuildCounter().Name("holdfast_outbox_reconnects_total")
                           .Help("Times the outbox reader reopened its database connection.")
                           .Register(r).Add({});
  outbox_lag_seconds = &BuildGauge().Name("holdfast_outbox_lag_seconds")
                            .Help("Age of the newest outbox row of another node when this node read it "
                                  "(0 when a read found nothing new).")
                            .Register(r).Add({});
  rejects_ = &BuildCounter().Name("holdfast_client_rejects_total")
                  .Help("Client requests refused, by reason.").Register(r);
  // Pre-create the common reasons so dashboards see zeros.
  for (const char* reason : {"malformed_frame", "unauthenticated", "bad_envelope", "bad_signature",
                             "wrong_sender", "stale_epoch", "recipients_mismatch", "not_member",
                             "enrollment_refused", "unknown_device", "auth_failed", "unavailable",
                             "frame_too_large", "auth_timeout", "clock_skew",
                             "message_id_conflict", "master_key_mismatch",
                             "bad_prekey", "stale_prekey", "rate_limited", "bad_credentials",
                             "not_permitted"}) {
    rejects_->Add({{"reason", reason}});
  }
  admin_requests_ = &BuildCounter().Name("holdfast_admin_api_requests_total")
                         .Help("Admin API requests answered, by status class.")
                         .Register(r);
  admin_denied_ = &BuildCounter().Name("holdfast_admin_api_denied_total")
                       .Help("Admin API requests refused for lack of authentication or rights.")
                       .Register(r);
  admin_sign_ins_ = &BuildCounter().Name("holdfast_admin_sign_ins_total")
                         .Help("Officer sign-ins to the admin API, by result.")
                         .Register(r);
  for (const char* klass : {"2xx", "4xx", "5xx"}) admin_requests_->Add({{"status", klass}});
  for (const char* reason : {"unauthenticated", "forbidden", "not_visible", "step_up"}) {
    admin_denied_->Add({{"reason", reason}});
  }
  for (const char* result : {"ok", "failed", "locked"}) admin_sign_ins_->Add({{"result", result}});
  delivery_reports_ = &BuildCounter().Name("holdfast_delivery_reports_total")
                           .Help("Deliveries that devices reported as failing a check, by reason.")
                           .Register(r);
  for (std::string_view reason : archive::kDeliveryReportReasons) {
    delivery_reports_->Add({{"reason", std::string(reason)}});
  }
  auto& resend = BuildCounter().Name("holdfast_resend_requests_total")
                     .Help("Resend requests: created at enrollment, sent to sender devices, "
                           "answered by a re-sent message, closed by the sender device.")
                     .Register(r);
  resend_created = &resend.Add({{"event", "created"}});
  resend_sent = &resend.Add({{"event", "sent"}});
  resend_resent = &resend.Add({{"event", "resent"}});
  resend_closed = &resend.Add({{"event", "closed"}});
}

void Metrics::SetPolicyVersion(const std::string& version) {
  BuildGauge().Name("holdfast_policy_info")
      .Help("The policy file in force, by version (SHA-256 of the file).")
      .Register(*registry_)
      .Add({{"version", version}})
      .Set(1);
}

prometheus::Counter& Metrics::admin_request(int status) {
  const char* klass = status < 300 ? "2xx" : status < 400 ? "3xx" : status < 500 ? "4xx" : "5xx";
  return admin_requests_->Add({{"status", klass}});
}

prometheus::Counter& Metrics::admin_denied(std::string_view reason) {
  return admin_denied_->Add({{"reason", std::string(reason)}});
}

prometheus::Counter& Metrics::admin_sign_in(std::string_view result) {
  return admin_sign_ins_->Add({{"result", std::string(result)}});
}

prometheus::Counter& Metrics::reject(const std::string& reason) {
  return rejects_->Add({{"reason", reason}});
}

prometheus::Counter& Metrics::delivery_report(std::string_view reason) {
  return delivery_reports_->Add({{"reason", std::string(archive::DeliveryReportReason(reason))}});
}

std::string Metrics::Serialize() const {
  prometheus::TextSerializer serializer;
  std::ostringstream out;
  serializer.Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace holdfast::gateway
