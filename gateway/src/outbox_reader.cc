#include "outbox_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "delivery.h"
#include "holdfast/archive/history_restore.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "session.h"

namespace holdfast::gateway {
namespace {

using namespace std::chrono_literals;

// The fallback poll: a lost notification delays a push by at most this.
constexpr auto kPollInterval = 1s;
constexpr auto kMinBackoff = 100ms;
constexpr auto kMaxBackoff = 5s;
// Outbox rows per read, and delivery ids per query for the deliveries.
constexpr int kRowsPerRead = 64;
constexpr size_t kIdsPerQuery = 2000;

void Log(const std::string& what, const Status& s) {
  std::fprintf(stderr, "holdfast-gateway: outbox: %s: %s\n", what.c_str(), s.ToString().c_str());
}

}  // namespace

OutboxReader::OutboxReader(Hub& hub) : hub_(hub) {
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) wake_[0] = wake_[1] = -1;
}

OutboxReader::~OutboxReader() {
  Stop();
  for (int fd : wake_) {
    if (fd >= 0) ::close(fd);
  }
}

Status OutboxReader::Start() {
  if (thread_.joinable()) return Status::Ok();
  HF_RETURN_IF_ERROR(Open().WithContext("outbox reader"));
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void OutboxReader::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (wake_[1] >= 0) {
    const char byte = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_[1], &byte, 1);
  }
  if (thread_.joinable()) thread_.join();
}

bool OutboxReader::Stopping() {
  std::lock_guard lock(mu_);
  return stop_;
}

Status OutboxReader::Open() {
  const std::string& node = hub_.config.gateway.node_id;
  HF_ASSIGN_OR_RETURN(archive::Connection c,
                      archive::Connection::Open(hub_.config.database.conninfo));
  HF_RETURN_IF_ERROR(c.SetApplicationName(ApplicationName(node)));
  HF_RETURN_IF_ERROR(c.Listen(std::string(archive::kOutboxChannel)));
  HF_RETURN_IF_ERROR(c.Listen(std::string(archive::kRestoreChannel)));
  if (!initialised_) {
    // Only what is stored from now on: devices read older deliveries at
    // login. A node that first appears later is read from its first row.
    archive::Store store(c);
    HF_ASSIGN_OR_RETURN(auto heads, store.LastOutboxSeqs());
    for (const auto& [id, seq] : heads) last_seen_[id] = seq;
    initialised_ = true;
  } else {
    hub_.metrics.outbox_reconnects->Increment();
  }
  conn_.emplace(std::move(c));
  return Status::Ok();
}

void OutboxReader::Run() {
  const std::string& node = hub_.config.gateway.node_id;
  std::optional<archive::Connection>& conn = conn_;
  auto backoff = std::chrono::milliseconds(kMinBackoff);
  bool read = true;
  auto last_read = std::chrono::steady_clock::now();
  // Waits before the next attempt after a failed one, longer each time.
  auto back_off = [&](const std::string& what, const Status& s) {
    Log(what + " (retrying in " + std::to_string(backoff.count()) + " ms)", s);
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, backoff, [this] { return stop_; });
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, kMaxBackoff);
  };
  while (!Stopping()) {
    if (!conn) {
      if (Status s = Open(); !s.ok()) {
        back_off("cannot open the connection", s);
        continue;
      }
      read = true;  // whatever was stored while the connection was down
    }
    if (read) {
      if (Status s = ReadNew(*conn); !s.ok()) {
        // Any error may have been a lost connection, which the next
        // statement would silently replace by one without LISTEN.
        conn.reset();
        back_off("read", s);
        continue;
      }
      backoff = kMinBackoff;
      last_read = std::chrono::steady_clock::now();
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max<std::chrono::steady_clock::duration>(
            kPollInterval - (std::chrono::steady_clock::now() - last_read), 0ms));
    auto got = conn->AwaitNotifications(wait, wake_[0]);
    if (!got.ok()) {
      Log("connection lost", got.status());
      conn.reset();
      continue;
    }
    // Completed history restores: their notices go to the devices online
    // here now; the others get them at login.
    std::vector<int64_t> restores;
    for (const std::string& payload : *got) {
      const std::string_view prefix = archive::kRestorePayload;
      if (payload.compare(0, prefix.size(), prefix) != 0) continue;
      try {
        restores.push_back(std::stoll(payload.substr(prefix.size())));
      } catch (const std::exception&) {
      }
    }
    if (!restores.empty()) {
      if (Status s = PushRestoreNotices(*conn, restores); !s.ok()) {
        Log("restore notices", s);
        conn.reset();
        continue;
      }
    }
    // This node's own batches were pushed when they were stored.
    const auto others = std::count_if(got->begin(), got->end(), [&](const std::string& payload) {
      return payload != node && payload.find(':') == std::string::npos;
    });
    hub_.metrics.outbox_notifications->Increment(static_cast<double>(others));
    read = others > 0 || std::chrono::steady_clock::now() - last_read >= kPollInterval;
    if (read && others == 0) hub_.metrics.outbox_polls->Increment();
  }
}

Status OutboxReader::PushRestoreNotices(archive::Connection& conn,
                                        const std::vector<int64_t>& request_ids) {
  archive::Store store(conn);
  std::vector<std::string> devices;
  for (int64_t id : request_ids) {
    HF_ASSIGN_OR_RETURN(auto found, store.DevicesToNotifyOfRestore(id));
    for (const Bytes& d : found) devices.push_back(AsString(d));
  }
  if (devices.empty()) return Status::Ok();
  boost::asio::post(hub_.io, [&hub = hub_, devices = std::move(devices)] {
    for (const auto& device : devices) {
      auto range = hub.online.equal_range(device);
      for (auto it = range.first; it != range.second; ++it) {
        if (auto s = it->second.lock()) s->RestoreNoticesCreated();
      }
    }
  });
  return Status::Ok();
}

Status OutboxReader::ReadNew(archive::Connection& conn) {
  archive::Store store(conn);
  const std::string& node = hub_.config.gateway.node_id;
  bool found = false;
  for (;;) {
    const std::vector<std::pair<std::string, int64_t>> after(last_seen_.begin(), last_seen_.end());
    HF_ASSIGN_OR_RETURN(auto rows, store.OutboxRowsAfter(after, node, kRowsPerRead));
    if (rows.empty()) break;
    found = true;
    int64_t newest_ms = 0;
    std::vector<int64_t> ids;
    for (const auto& row : rows) {
      newest_ms = std::max(newest_ms, row.created_at_ms);
      ids.insert(ids.end(), row.delivery_ids.begin(), row.delivery_ids.end());
    }
    // Taken after the rows were read: a device that comes online later
    // registers before its queue fetch, which then sees these deliveries.
    const std::vector<Bytes> devices = hub_.online_devices.Snapshot();
    for (size_t at = 0; !devices.empty() && at < ids.size(); at += kIdsPerQuery) {
      const std::vector<int64_t> chunk(ids.begin() + at,
                                       ids.begin() + std::min(ids.size(), at + kIdsPerQuery));
      HF_ASSIGN_OR_RETURN(auto pending, store.UndeliveredAmong(chunk, devices));
      if (pending.empty()) continue;
      HF_ASSIGN_OR_RETURN(auto frames,
                          DeliverFrames(store, pending, hub_.config.gateway.archive_notice));
      std::vector<std::pair<std::string, std::shared_ptr<const std::string>>> pushes;
      pushes.reserve(frames.size());
      for (size_t i = 0; i < frames.size(); ++i) {
        pushes.emplace_back(AsString(pending[i].device_id),
                            std::make_shared<const std::string>(std::move(frames[i])));
      }
      boost::asio::post(hub_.io, [&hub = hub_, pushes = std::move(pushes)] {
        for (const auto& [device, frame] : pushes) {
          auto range = hub.online.equal_range(device);
          for (auto it = range.first; it != range.second; ++it) {
            if (auto s = it->second.lock()) {
              hub.metrics.deliveries_pushed->Increment();
              hub.metrics.cross_node_deliveries->Increment();
              s->Push(frame);
            }
          }
        }
      });
    }
    hub_.metrics.outbox_lag_seconds->Set(static_cast<double>(NowMs() - newest_ms) / 1000.0);
    for (const auto& row : rows) {
      int64_t& seen = last_seen_[row.node_id];
      seen = std::max(seen, row.seq);
    }
    if (rows.size() < static_cast<size_t>(kRowsPerRead)) break;
  }
  if (!found) hub_.metrics.outbox_lag_seconds->Set(0);
  return Status::Ok();
}

}  // namespace holdfast::gateway
