// Request/response exchanges with the gateway over a Connection: request
// ids, matching answers, and buffering of pushed deliveries that arrive
// while an answer is awaited.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "holdfast/base/status.h"
#include "holdfast/client/connection.h"
#include "holdfast/client/device.h"

namespace holdfast::client {

class Session {
 public:
  // `timeout` bounds each request's wait for its answer.
  explicit Session(Connection connection,
                   std::chrono::milliseconds timeout = std::chrono::seconds(15))
      : connection_(std::move(connection)), timeout_(timeout) {}

  Result<wire::RegisterResponse> Register(const wire::RegisterRequest& request);
  // Hello, Challenge, Authenticate. Checks the gateway authenticated us as
  // the profile's user.
  Result<wire::Authenticated> Login(const Device& device);
  Result<wire::ConversationInfo> OpenConversation(const std::vector<std::string>& members);
  Result<wire::ConversationInfo> CreateGroup(const std::string& title,
                                             const std::vector<std::string>& members);
  Result<wire::ConversationInfo> ChangeMembers(const std::string& conversation_id,
                                               const std::vector<std::string>& add,
                                               const std::vector<std::string>& remove);
  Result<wire::ConversationInfo> GetConversation(const std::string& conversation_id);
  Result<wire::PrekeyUpdated> UpdatePrekey(const wire::UpdatePrekey& update);
  Result<wire::ReportReceived> Report(const wire::ReportDelivery& report);
  // One page of this user's history in a conversation, newest first; pass
  // the answer's `next` as `before` for the page after it.
  Result<wire::History> GetHistory(const std::string& conversation_id,
                                   const wire::HistoryCursor& before, uint32_t limit);
  // Returns once the gateway acknowledged the envelope as durably stored; a
  // refusal is kFailedPrecondition naming the gateway's error code.
  Result<wire::SubmitAck> Submit(const wire::Envelope& envelope);

  // The next pushed delivery, or nullopt if none arrived within `timeout`.
  Result<std::optional<wire::Deliver>> NextDelivery(std::chrono::milliseconds timeout);
  Status Ack(const std::vector<uint64_t>& delivery_ids);

  // Resend requests (docs/protocol.md 9.11) pushed so far, oldest first;
  // they arrive interleaved with deliveries and are kept here until taken.
  std::optional<wire::ResendRequest> TakeResendRequest();
  bool HasResendRequests() const { return !resend_requests_.empty(); }
  // Closes resend requests; like a DeliveryAck, nothing answers it.
  Status AckResendRequests(const std::vector<uint64_t>& request_ids);

  // History-restore notices (docs/protocol.md 9.12) pushed so far, oldest
  // first, kept here until taken.
  std::optional<wire::HistoryRestored> TakeRestoreNotice();
  // Acknowledges restore notices once shown; nothing answers it. A notice
  // not acknowledged comes again at the next login.
  Status AckRestoreNotices(const std::vector<uint64_t>& notice_ids);

  Status Close() { return connection_.Close(std::chrono::seconds(2)); }

 private:
  // Sends `frame` with a fresh request id and waits for the frame answering it.
  Result<wire::ServerFrame> Call(wire::ClientFrame frame);
  // Files a frame that is not the awaited answer; errors on anything unexpected.
  Status Stash(wire::ServerFrame frame);
  // Sends an acknowledgement with a fresh request id, without waiting: the
  // gateway answers it only with an error, which Stash then reports.
  Status SendAck(wire::ClientFrame frame);

  Connection connection_;
  std::chrono::milliseconds timeout_;
  uint64_t next_request_id_ = 1;
  std::deque<wire::Deliver> pushed_;
  std::deque<wire::ResendRequest> resend_requests_;
  std::deque<wire::HistoryRestored> restore_notices_;
  // Request ids of sent DeliveryAcks; the gateway need not answer them.
  std::set<uint64_t> acks_;
};

// "server refused (<code>): <message>" as kFailedPrecondition.
Status ServerError(const wire::Error& error);

}  // namespace holdfast::client
