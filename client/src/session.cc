#include "holdfast/client/session.h"

namespace holdfast::client {

Status ServerError(const wire::Error& error) {
  return Status::FailedPrecondition("server refused (" +
                                    (error.code().empty() ? std::string("unknown") : error.code()) +
                                    "): " + error.message());
}

Status Session::Stash(wire::ServerFrame frame) {
  if (frame.request_id() == 0 && frame.kind_case() == wire::ServerFrame::kDeliver) {
    pushed_.push_back(std::move(*frame.mutable_deliver()));
    return Status::Ok();
  }
  if (frame.request_id() == 0 && frame.kind_case() == wire::ServerFrame::kResendRequest) {
    resend_requests_.push_back(std::move(*frame.mutable_resend_request()));
    return Status::Ok();
  }
  if (frame.request_id() == 0 && frame.kind_case() == wire::ServerFrame::kHistoryRestored) {
    restore_notices_.push_back(std::move(*frame.mutable_history_restored()));
    return Status::Ok();
  }
  if (frame.request_id() == 0 && frame.kind_case() == wire::ServerFrame::kError) {
    return ServerError(frame.error());
  }
  if (acks_.count(frame.request_id()) != 0) {
    acks_.erase(frame.request_id());
    if (frame.kind_case() == wire::ServerFrame::kError) return ServerError(frame.error());
    return Status::Ok();
  }
  // A pushed frame of a kind this client does not know (a later protocol
  // addition) is skipped rather than fatal.
  if (frame.request_id() == 0 && frame.kind_case() == wire::ServerFrame::KIND_NOT_SET) {
    return Status::Ok();
  }
  return Status::InvalidArgument("gateway sent an unexpected frame (request id " +
                                 std::to_string(frame.request_id()) + ")");
}

Result<wire::ServerFrame> Session::Call(wire::ClientFrame frame) {
  const uint64_t id = next_request_id_++;
  frame.set_request_id(id);
  HF_RETURN_IF_ERROR(connection_.Send(frame, timeout_));
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    HF_ASSIGN_OR_RETURN(auto answer, connection_.Receive(left));
    if (!answer) return Status::Unavailable("no answer from the gateway in time");
    if (answer->request_id() == id) {
      if (answer->kind_case() == wire::ServerFrame::kError) return ServerError(answer->error());
      return std::move(*answer);
    }
    HF_RETURN_IF_ERROR(Stash(std::move(*answer)));
  }
}

Result<wire::RegisterResponse> Session::Register(const wire::RegisterRequest& request) {
  wire::ClientFrame f;
  *f.mutable_register_() = request;
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  if (answer.kind_case() != wire::ServerFrame::kRegistered) {
    return Status::InvalidArgument("gateway answered registration with an unexpected frame");
  }
  return std::move(*answer.mutable_registered());
}

Result<wire::Authenticated> Session::Login(const Device& device) {
  wire::ClientFrame hello;
  *hello.mutable_hello() = device.MakeHello();
  HF_ASSIGN_OR_RETURN(auto challenge, Call(std::move(hello)));
  if (challenge.kind_case() != wire::ServerFrame::kChallenge) {
    return Status::InvalidArgument("gateway answered hello with an unexpected frame");
  }
  HF_ASSIGN_OR_RETURN(auto auth, device.AnswerChallenge(challenge.challenge()));
  wire::ClientFrame f;
  *f.mutable_authenticate() = std::move(auth);
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  if (answer.kind_case() != wire::ServerFrame::kAuthenticated) {
    return Status::InvalidArgument("gateway answered authentication with an unexpected frame");
  }
  if (answer.authenticated().user() != device.profile().user) {
    return Status::PermissionDenied("gateway authenticated this device as " +
                                    answer.authenticated().user() + ", not " +
                                    device.profile().user);
  }
  return std::move(*answer.mutable_authenticated());
}

Result<wire::ConversationInfo> Session::OpenConversation(const std::vector<std::string>& members) {
  wire::ClientFrame f;
  for (const auto& m : members) f.mutable_open_conversation()->add_members(m);
  if (members.empty()) f.mutable_open_conversation();
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  if (answer.kind_case() != wire::ServerFrame::kConversation) {
    return Status::InvalidArgument("gateway answered open-conversation with an unexpected frame");
  }
  return std::move(*answer.mutable_conversation());
}

namespace {

Result<wire::ConversationInfo> ExpectConversation(wire::ServerFrame answer, const char* what) {
  if (answer.kind_case() != wire::ServerFrame::kConversation) {
    return Status::InvalidArgument(std::string("gateway answered ") + what +
                                   " with an unexpected frame");
  }
  return std::move(*answer.mutable_conversation());
}

}  // namespace

Result<wire::ConversationInfo> Session::CreateGroup(const std::string& title,
                                                    const std::vector<std::string>& members) {
  wire::ClientFrame f;
  auto* g = f.mutable_create_group();
  g->set_title(title);
  for (const auto& m : members) g->add_members(m);
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  return ExpectConversation(std::move(answer), "create-group");
}

Result<wire::ConversationInfo> Session::ChangeMembers(const std::string& conversation_id,
                                                      const std::vector<std::string>& add,
                                                      const std::vector<std::string>& remove) {
  wire::ClientFrame f;
  auto* c = f.mutable_change_members();
  c->set_conversation_id(conversation_id);
  for (const auto& m : add) c->add_add(m);
  for (const auto& m : remove) c->add_remove(m);
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  return ExpectConversation(std::move(answer), "change-members");
}

Result<wire::ConversationInfo> Session::GetConversation(const std::string& conversation_id) {
  wire::ClientFrame f;
  f.mutable_get_conversation()->set_conversation_id(conversation_id);
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  return ExpectConversation(std::move(answer), "get-conversation");
}

Result<wire::History> Session::GetHistory(const std::string& conversation_id,
                                          const wire::HistoryCursor& before, uint32_t limit) {
  wire::ClientFrame f;
  auto* g = f.mutable_get_history();
  g->set_conversation_id(conversation_id);
  if (before.sent_at_ms() != 0 || before.envelope_id() != 0) *g->mutable_before() = before;
  g->set_limit(limit);
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  if (answer.kind_case() != wire::ServerFrame::kHistory) {
    return Status::InvalidArgument("gateway answered get-history with an unexpected frame");
  }
  if (answer.history().conversation_id() != conversation_id) {
    return Status::InvalidArgument("gateway answered get-history for another conversation");
  }
  return std::move(*answer.mutable_history());
}

Result<wire::PrekeyUpdated> Session::UpdatePrekey(const wire::UpdatePrekey& update) {
  wire::ClientFrame f;
  *f.mutable_update_prekey() = update;
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  if (answer.kind_case() != wire::ServerFrame::kPrekeyUpdated) {
    return Status::InvalidArgument("gateway answered update-prekey with an unexpected frame");
  }
  return std::move(*answer.mutable_prekey_updated());
}

Result<wire::ReportReceived> Session::Report(const wire::ReportDelivery& report) {
  wire::ClientFrame f;
  *f.mutable_report_delivery() = report;
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  if (answer.kind_case() != wire::ServerFrame::kReportReceived) {
    return Status::InvalidArgument("gateway answered a report with an unexpected frame");
  }
  return std::move(*answer.mutable_report_received());
}

Result<wire::SubmitAck> Session::Submit(const wire::Envelope& envelope) {
  wire::ClientFrame f;
  *f.mutable_submit()->mutable_envelope() = envelope;
  HF_ASSIGN_OR_RETURN(auto answer, Call(std::move(f)));
  if (answer.kind_case() != wire::ServerFrame::kSubmitAck) {
    return Status::InvalidArgument("gateway answered submit with an unexpected frame");
  }
  return std::move(*answer.mutable_submit_ack());
}

Result<std::optional<wire::Deliver>> Session::NextDelivery(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pushed_.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    HF_ASSIGN_OR_RETURN(auto frame, connection_.Receive(left));
    if (!frame) return std::optional<wire::Deliver>();
    HF_RETURN_IF_ERROR(Stash(std::move(*frame)));
  }
  wire::Deliver d = std::move(pushed_.front());
  pushed_.pop_front();
  return std::optional<wire::Deliver>(std::move(d));
}

Status Session::SendAck(wire::ClientFrame frame) {
  frame.set_request_id(next_request_id_++);
  acks_.insert(frame.request_id());
  // Answers to acks are optional; forget the oldest ids rather than grow forever.
  while (acks_.size() > 1024) acks_.erase(acks_.begin());
  return connection_.Send(frame, timeout_);
}

Status Session::Ack(const std::vector<uint64_t>& delivery_ids) {
  if (delivery_ids.empty()) return Status::Ok();
  wire::ClientFrame f;
  for (uint64_t id : delivery_ids) f.mutable_delivery_ack()->add_delivery_ids(id);
  return SendAck(std::move(f));
}

std::optional<wire::ResendRequest> Session::TakeResendRequest() {
  if (resend_requests_.empty()) return std::nullopt;
  wire::ResendRequest r = std::move(resend_requests_.front());
  resend_requests_.pop_front();
  return r;
}

Status Session::AckResendRequests(const std::vector<uint64_t>& request_ids) {
  if (request_ids.empty()) return Status::Ok();
  wire::ClientFrame f;
  for (uint64_t id : request_ids) f.mutable_resend_ack()->add_request_ids(id);
  return SendAck(std::move(f));
}

std::optional<wire::HistoryRestored> Session::TakeRestoreNotice() {
  if (restore_notices_.empty()) return std::nullopt;
  wire::HistoryRestored n = std::move(restore_notices_.front());
  restore_notices_.pop_front();
  return n;
}

Status Session::AckRestoreNotices(const std::vector<uint64_t>& notice_ids) {
  if (notice_ids.empty()) return Status::Ok();
  wire::ClientFrame f;
  for (uint64_t id : notice_ids) f.mutable_history_restored_ack()->add_notice_ids(id);
  return SendAck(std::move(f));
}

}  // namespace holdfast::client
