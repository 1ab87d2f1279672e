// load_gen — drives a running gateway over many TLS WebSocket connections
// from one thread (one io_context, asynchronous), for bench/load.py and
// tests/integration/fault_test.py, which start the deployment and enrol the
// users it is given.
//
// Modes:
//   load   senders submit pre-sealed envelopes to receivers that are online
//          and acknowledge their deliveries: first as fast as a window of
//          outstanding submits per connection allows, then at half the rate
//          reached, open loop. Then PostgreSQL's own batched insert of the
//          same rows (pg_raw.h) into plain tables of the same database.
//   idle   N authenticated connections that only answer pings; reports the
//          gateway's RSS growth per session.
//   fault  window-bound submits until <out>/stop exists; every connection
//          reconnects with client::Backoff when dropped and resends what was
//          not acknowledged. Writes acked.txt, received.txt, refused.txt
//          and status.json into --out.
//
// Setup (registration, conversations) uses the blocking client SDK; only
// the timed traffic runs on the asynchronous connections below.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "bench_util.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/time.h"
#include "holdfast/client/connection.h"
#include "holdfast/client/device.h"
#include "holdfast/client/reconnect.h"
#include "holdfast/client/session.h"
#include "pg_raw.h"

namespace {

using namespace holdfast;
using namespace holdfast::bench;
namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
namespace wv1 = ::holdfast::wire::v1;
using std::chrono::milliseconds;

// ------------------------------------------------------------------ state

struct Message {
  std::string frame_body;    // serialised Envelope
  std::string submit_frame;  // serialised ClientFrame{submit}, without a request id
  std::string message_id;
  uint32_t epoch_id = 0;
  int sender = 0;
};

// A sender's queue: indices into the message pool, oldest first.
struct Outbox {
  std::deque<size_t> ready;
};

struct Stats {
  std::vector<double> latency_us;
  uint64_t acked = 0;
  uint64_t deliveries = 0;
  std::map<std::string, uint64_t> refused;  // reason -> count
  uint64_t reconnects = 0;
  uint64_t handshakes = 0;
  uint64_t resumed = 0;
  uint64_t connect_failures = 0;
};

struct World {
  net::io_context io{1};
  ssl::context tls{ssl::context::tls_client};
  tcp::endpoint server;
  std::vector<net::ip::address> local_addrs;
  size_t next_local = 0;
  size_t per_local = 20000;
  std::vector<client::Device> devices;
  std::vector<Message> pool;
  std::vector<Outbox> outbox;  // per sender
  Stats stats;
  bool fault = false;
  bool stop_sending = false;
  // fault mode: files
  std::ofstream acked_file, received_file, refused_file;
  std::set<std::string> acked_ids;                   // hex
  std::map<std::string, std::set<std::string>> got;  // receiver -> hex ids
  // TLS session for resumption: the newest ticket any connection received.
  SSL_SESSION* session = nullptr;
  size_t connections_opened = 0;
};

World* g_world = nullptr;

int OnNewSession(SSL*, SSL_SESSION* s) {
  if (g_world->session) SSL_SESSION_free(g_world->session);
  g_world->session = s;
  return 1;  // we keep the reference
}

net::ip::address NextLocal(World& w) {
  const size_t i = (w.connections_opened++ / w.per_local) % w.local_addrs.size();
  return w.local_addrs[i];
}

// --------------------------------------------------------------- connection

enum class Role { kSender, kReceiver, kIdle };

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(World& w, Role role, int device, int sender_index, size_t window)
      : w_(w), role_(role), device_(device), sender_(sender_index), window_(window),
        retry_timer_(w.io), resend_timer_(w.io) {}

  std::function<void()> on_ready;  // called once, after the first authentication
  bool authenticated() const { return authenticated_; }
  size_t outstanding() const { return inflight_.size(); }

  void Start() {
    ws_.reset(new Stream(w_.io, w_.tls));
    buf_.clear();
    reading_ = writing_ = false;
    authenticated_ = false;
    auto& sock = beast::get_lowest_layer(*ws_).socket();
    beast::error_code ec;
    sock.open(w_.server.protocol(), ec);
    if (!ec) sock.bind(tcp::endpoint(NextLocal(w_), 0), ec);
    if (ec) return Fail(ec);
    SSL* ssl = ws_->next_layer().native_handle();
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), w_.server.address().to_string().c_str());
    if (w_.session) SSL_set_session(ssl, w_.session);
    beast::get_lowest_layer(*ws_).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(*ws_).async_connect(w_.server, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Fail(ec);
      self->ws_->next_layer().async_handshake(ssl::stream_base::client, [self](beast::error_code ec) {
        if (ec) return self->Fail(ec);
        ++self->w_.stats.handshakes;
        if (SSL_session_reused(self->ws_->next_layer().native_handle())) ++self->w_.stats.resumed;
        beast::get_lowest_layer(*self->ws_).expires_never();
        self->ws_->set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
        self->ws_->binary(true);
        self->ws_->async_handshake(self->w_.server.address().to_string(), "/v1",
                                   [self](beast::error_code ec) {
                                     if (ec) return self->Fail(ec);
                                     self->Read();
                                     wv1::ClientFrame hello;
                                     hello.set_request_id(1);
                                     *hello.mutable_hello() = self->w_.devices[self->device_].MakeHello();
                                     self->Send(hello.SerializeAsString());
                                   });
      });
    });
  }

  // Sender: submits from its outbox while under the window, at most `budget`.
  size_t Pump(size_t budget) {
    if (!authenticated_ || role_ != Role::kSender || w_.stop_sending) return 0;
    size_t sent = 0;
    auto& q = w_.outbox[sender_].ready;
    while (sent < budget && inflight_.size() < window_ && !q.empty()) {
      const size_t m = q.front();
      q.pop_front();
      const uint64_t rid = next_rid_++;
      inflight_[rid] = {m, bench::Clock::now()};
      // Serialised protobuf messages concatenate as a merge: the request id,
      // then the submit sealed and serialised before the timed phase.
      wv1::ClientFrame id;
      id.set_request_id(rid);
      Send(id.SerializeAsString() + w_.pool[m].submit_frame);
      ++sent;
    }
    return sent;
  }

  void FlushAcks() {
    if (pending_acks_.empty() || !authenticated_) return;
    wv1::ClientFrame f;
    f.set_request_id(next_rid_++);
    for (uint64_t id : pending_acks_) f.mutable_delivery_ack()->add_delivery_ids(id);
    pending_acks_.clear();
    Send(f.SerializeAsString());
  }

 private:
  using Stream = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

  void Send(std::string bytes) {
    out_.push_back(std::move(bytes));
    if (!writing_) Write();
  }

  void Write() {
    writing_ = true;
    ws_->async_write(net::buffer(out_.front()), [self = shared_from_this(), ws = ws_.get()](beast::error_code ec, size_t) {
      if (ws != self->ws_.get()) return;  // a previous connection
      self->writing_ = false;
      if (ec) return self->Fail(ec);
      self->out_.pop_front();
      if (!self->out_.empty()) self->Write();
    });
  }

  void Read() {
    reading_ = true;
    ws_->async_read(buf_, [self = shared_from_this(), ws = ws_.get()](beast::error_code ec, size_t) {
      if (ws != self->ws_.get()) return;
      self->reading_ = false;
      if (ec) return self->Fail(ec);
      wv1::ServerFrame f;
      const bool ok = f.ParseFromArray(self->buf_.data().data(), static_cast<int>(self->buf_.size()));
      self->buf_.consume(self->buf_.size());
      if (ok) self->OnFrame(f);
      if (self->ws_.get() == ws) self->Read();
    });
  }

  void OnFrame(wv1::ServerFrame& f) {
    switch (f.kind_case()) {
      case wv1::ServerFrame::kChallenge: {
        auto auth = w_.devices[device_].AnswerChallenge(f.challenge());
        if (!auth.ok()) Fail("challenge: " + auth.status().ToString());
        wv1::ClientFrame a;
        a.set_request_id(2);
        *a.mutable_authenticate() = *auth;
        return Send(a.SerializeAsString());
      }
      case wv1::ServerFrame::kAuthenticated: {
        authenticated_ = true;
        backoff_.Reset();
        if (on_ready) {
          auto ready = std::move(on_ready);
          on_ready = nullptr;
          ready();
        }
        if (role_ == Role::kSender && w_.fault) Pump(window_);
        return;
      }
      case wv1::ServerFrame::kSubmitAck: {
        auto it = inflight_.find(f.request_id());
        if (it == inflight_.end()) return;
        const double us = std::chrono::duration<double, std::micro>(bench::Clock::now() - it->second.sent).count();
        w_.stats.latency_us.push_back(us);
        ++w_.stats.acked;
        if (w_.fault) {
          const std::string hex = ToHex(AsBytes(w_.pool[it->second.message].message_id));
          if (w_.acked_ids.insert(hex).second) w_.acked_file << hex << "\n";
        }
        inflight_.erase(it);
        resend_backoff_.Reset();
        if (w_.fault) Pump(window_);
        return;
      }
      case wv1::ServerFrame::kDeliver: {
        ++w_.stats.deliveries;
        pending_acks_.push_back(f.deliver().delivery_id());
        if (w_.fault) {
          if (auto h = client::UnverifiedHeader(f.deliver())) {
            const std::string hex = ToHex(AsBytes(h->message_id()));
            const std::string& me = w_.devices[device_].profile().user;
            if (w_.got[me].insert(hex).second) w_.received_file << me << " " << hex << "\n";
          }
        }
        if (pending_acks_.size() >= 64) FlushAcks();
        return;
      }
      case wv1::ServerFrame::kError: {
        const std::string& code = f.error().code();
        ++w_.stats.refused[code];
        if (w_.fault) w_.refused_file << code << "\n";
        auto it = inflight_.find(f.request_id());
        if (it != inflight_.end()) {
          // Only `unavailable` is worth a resend; the message goes back first in line.
          if (code == "unavailable") w_.outbox[sender_].ready.push_front(it->second.message);
          inflight_.erase(it);
          if (code == "unavailable" && w_.fault) ScheduleResend();
        }
        if (f.request_id() == 1 || f.request_id() == 2) {
          // Login refused (the database is down): try again later.
          return Fail("login refused: " + code);
        }
        return;
      }
      default:
        return;
    }
  }

  // After an `unavailable` refusal: send again once the backoff has passed.
  void ScheduleResend() {
    if (resend_pending_) return;
    resend_pending_ = true;
    resend_timer_.expires_after(resend_backoff_.Next());
    resend_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      self->resend_pending_ = false;
      if (!ec) self->Pump(self->window_);
    });
  }

  void Fail(beast::error_code ec) { Fail(ec.message()); }
  void Fail(const std::string& why) {
    if (!ws_) return;
    if (!w_.fault) {
      if (role_ == Role::kIdle || !w_.stop_sending) {
        ++w_.stats.connect_failures;
        if (w_.stats.connect_failures <= 5) std::cerr << "load_gen: connection failed: " << why << "\n";
      }
      CloseStream();
      return;
    }
    // Everything not acknowledged goes back to the outbox, in order.
    std::vector<std::pair<uint64_t, size_t>> back;
    for (auto& [rid, f] : inflight_) back.emplace_back(rid, f.message);
    std::sort(back.rbegin(), back.rend());
    for (auto& [rid, m] : back) w_.outbox[sender_].ready.push_front(m);
    inflight_.clear();
    pending_acks_.clear();  // the gateway delivers them again
    CloseStream();
    ++w_.stats.reconnects;
    retry_timer_.expires_after(backoff_.Next());
    retry_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->Start();
    });
  }

  void CloseStream() {
    beast::error_code ignored;
    beast::get_lowest_layer(*ws_).socket().close(ignored);
    // Handlers of this stream still pending hold it alive through the
    // shared pointer and see it is no longer current.
    graveyard_.push_back(std::move(ws_));
    if (graveyard_.size() > 4) graveyard_.pop_front();
    out_.clear();
    writing_ = reading_ = false;
    authenticated_ = false;
  }

  struct Inflight {
    size_t message;
    bench::Clock::time_point sent;
  };

  World& w_;
  Role role_;
  int device_;
  int sender_;
  size_t window_;
  std::unique_ptr<Stream> ws_;
  std::deque<std::unique_ptr<Stream>> graveyard_;
  beast::flat_buffer buf_;
  std::deque<std::string> out_;
  bool writing_ = false, reading_ = false, authenticated_ = false;
  uint64_t next_rid_ = 3;
  std::unordered_map<uint64_t, Inflight> inflight_;
  std::vector<uint64_t> pending_acks_;
  client::Backoff backoff_{milliseconds(100), milliseconds(2000)};
  net::steady_timer retry_timer_;
  client::Backoff resend_backoff_{milliseconds(100), milliseconds(2000)};
  net::steady_timer resend_timer_;
  bool resend_pending_ = false;
};

// ------------------------------------------------------------------ helpers

void Percentiles(std::vector<double> v, JsonObject& json, std::vector<std::string>& cells) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    if (v.empty()) return 0.0;
    return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
  };
  const std::pair<const char*, double> qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}};
  for (auto& [name, q] : qs) {
    json.Num(std::string(name) + "_ms", at(q) / 1000, 3);
    cells.push_back(Fixed(at(q) / 1000, 2));
  }
  json.Num("max_ms", v.empty() ? 0 : v.back() / 1000, 3);
  cells.push_back(Fixed(v.empty() ? 0 : v.back() / 1000, 2));
}

long ReadStatusKb(int pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

// User + system CPU seconds of a process, from /proc/<pid>/stat; 0 if gone.
double CpuSeconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields;
  std::string field;
  for (char ch : stat.substr(close + 2)) {
    if (ch == ' ') {
      fields.push_back(field);
      field.clear();
    } else {
      field += ch;
    }
  }
  // After the command: state is the 1st field, utime the 12th, stime the 13th.
  if (fields.size() < 13) return 0;
  return static_cast<double>(std::stoll(fields[11]) + std::stoll(fields[12])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds of every process named "postgres" (the server and its backends).
double PostgresCpuSeconds() {
  double total = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream comm(entry.path() / "comm");
    std::string command;
    if (std::getline(comm, command) && command == "postgres") total += CpuSeconds(std::stoi(name));
  }
  return total;
}

// Pages of memory all TCP sockets hold ("TCP: ... mem N" in /proc/net/sockstat).
long TcpMemPages() {
  std::ifstream in("/proc/net/sockstat");
  std::string word;
  while (in >> word) {
    if (word == "mem") {
      long pages = 0;
      in >> pages;
      return pages;
    }
  }
  return -1;
}

void RaiseFileLimit(size_t need) {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  if (r.rlim_cur >= need) return;
  r.rlim_cur = std::max<rlim_t>(r.rlim_cur, std::min<rlim_t>(r.rlim_max, need));
  if (r.rlim_max < need) r.rlim_max = r.rlim_cur = need;  // needs CAP_SYS_RESOURCE
  if (setrlimit(RLIMIT_NOFILE, &r) != 0) {
    getrlimit(RLIMIT_NOFILE, &r);
    std::cerr << "load_gen: open files limit " << r.rlim_cur << " < " << need
              << "; raise it (ulimit -n) or run as root\n";
  }
}

// Runs the io_context until pred() or the deadline; false on the deadline.
bool RunUntil(World& w, const std::function<bool()>& pred, double seconds) {
  const auto deadline = bench::Clock::now() + std::chrono::duration_cast<bench::Clock::duration>(
                                                  std::chrono::duration<double>(seconds));
  while (!pred()) {
    if (bench::Clock::now() >= deadline) return false;
    w.io.run_for(milliseconds(5));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // String options come first, by position: --url URL --ca FILE --codes FILE --mode MODE.
  std::map<std::string, std::string> str;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--url" || a == "--ca" || a == "--codes" || a == "--mode" || a == "--conninfo" ||
         a == "--out") && i + 1 < argc) {
      str[a] = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  Args num(static_cast<int>(rest.size()), rest.data());
  const int connections = static_cast<int>(num.Number("--connections", 0));
  const int senders = static_cast<int>(num.Number("--senders", 8));
  double rate = num.Number("--rate", 0);
  const size_t size = static_cast<size_t>(num.Number("--size", 1024));
  const int fanout = static_cast<int>(num.Number("--fanout", 2));
  const double seconds = num.Number("--seconds", 10);
  const size_t idle = static_cast<size_t>(num.Number("--idle", 0));
  const size_t window = static_cast<size_t>(num.Number("--window", 16));
  const size_t max_messages = static_cast<size_t>(num.Number("--messages", 40000));
  const int gateway_pid = static_cast<int>(num.Number("--gateway-pid", 0));
  const int local_addrs = static_cast<int>(num.Number("--local-addrs", 1));
  const int batch = static_cast<int>(num.Number("--raw-batch", 512));
  num.Done(
      "load_gen --url wss://IP:PORT/v1 --ca FILE --codes FILE (lines: user code) --mode load|idle|fault"
      " [--conninfo PG] [--out DIR] [--senders 8] [--fanout 2] [--connections extra receivers]"
      " [--rate msgs/s, 0 = window-bound] [--window 16] [--size 1024] [--seconds 10]"
      " [--messages 40000] [--idle N] [--gateway-pid PID] [--local-addrs K] [--raw-batch 512]");
  const std::string mode = str.count("--mode") ? str["--mode"] : "load";
  if (!str.count("--url") || !str.count("--ca") || !str.count("--codes")) {
    Fail("argument", "--url, --ca and --codes are required");
  }
  const std::string url = str["--url"];

  World w;
  g_world = &w;
  w.fault = mode == "fault";
  {
    auto parsed = Take(client::ParseServerUrl(url), "url");
    w.server = tcp::endpoint(net::ip::make_address(parsed.host), static_cast<uint16_t>(std::stoi(parsed.port)));
  }
  for (int i = 0; i < std::max(1, local_addrs); ++i) {
    w.local_addrs.push_back(net::ip::make_address("127.0.0." + std::to_string(i + 1)));
  }
  {
    SSL_CTX* ctx = w.tls.native_handle();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    w.tls.set_verify_mode(ssl::verify_peer);
    w.tls.load_verify_file(str["--ca"]);
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, OnNewSession);
  }

  // ---- enrol one device per listed user
  std::vector<std::pair<std::string, std::string>> users;
  {
    std::ifstream in(str["--codes"]);
    std::string u, c;
    while (in >> u >> c) users.emplace_back(u, c);
  }
  std::cerr << "load_gen: registering " << users.size() << " devices\n";
  for (auto& [user, code] : users) {
    auto d = Take(client::Device::Generate(user, NowMs()), "generate device");
    auto req = Take(d.MakeRegisterRequest(code, NowMs()), "register request");
    client::Session s(Take(client::Connection::Connect(url, str["--ca"], std::chrono::seconds(10)), "connect"));
    auto resp = Take(s.Register(req), "register " + user);
    Check(d.AcceptRegistration(resp, url, ""), "accept registration");
    (void)s.Close();
    w.devices.push_back(std::move(d));
  }

  // ================================================================ idle
  if (mode == "idle") {
    RaiseFileLimit(idle + 1024);
    const long rss0 = gateway_pid ? ReadStatusKb(gateway_pid, "VmRSS:") : -1;
    const long tcp0 = TcpMemPages();
    std::vector<std::shared_ptr<Conn>> conns;
    conns.reserve(idle);
    size_t ready = 0, started = 0;
    const size_t concurrency = 256;
    const auto t0 = bench::Clock::now();
    std::function<void()> start_one = [&] {
      if (started >= idle) return;
      auto c = std::make_shared<Conn>(w, Role::kIdle, static_cast<int>(started % w.devices.size()), 0, 0);
      ++started;
      c->on_ready = [&] {
        ++ready;
        start_one();
      };
      conns.push_back(c);
      c->Start();
    };
    for (size_t i = 0; i < concurrency; ++i) start_one();
    size_t last_failures = 0;
    RunUntil(w, [&] {
      // A failed connection is not retried here; start another in its place.
      while (last_failures < w.stats.connect_failures) {
        ++last_failures;
        start_one();
      }
      return ready + w.stats.connect_failures >= idle || (started >= idle && ready + w.stats.connect_failures >= started);
    }, 600);
    const double open_s = SecondsSince(t0);
    // Let the gateway settle (pending frees, the last handshakes).
    RunUntil(w, [] { return false; }, 2);
    const long rss1 = gateway_pid ? ReadStatusKb(gateway_pid, "VmRSS:") : -1;
    const long tcp1 = TcpMemPages();
    const double per_kib = ready ? static_cast<double>(rss1 - rss0) / static_cast<double>(ready) : 0;
    const double tcp_kib = ready ? static_cast<double>(tcp1 - tcp0) * 4.0 / 2.0 / static_cast<double>(ready) : 0;
    Table t({"idle sessions", "opened in s", "TLS resumed", "gateway RSS before MiB", "after MiB",
             "RSS per session KiB", "target KiB", "kernel TCP KiB/socket"});
    t.Row({std::to_string(ready), Fixed(open_s, 1),
           std::to_string(w.stats.resumed) + "/" + std::to_string(w.stats.handshakes),
           Fixed(rss0 / 1024.0, 1), Fixed(rss1 / 1024.0, 1), Fixed(per_kib, 1), "<= 40",
           Fixed(tcp_kib, 2)});
    std::cout << "load_gen idle: authenticated sessions held open on one gateway\n\n";
    t.Print(std::cout);
    std::cout << "\n";
    JsonObject row;
    row.Int("sessions", static_cast<long long>(ready))
        .Int("failed", static_cast<long long>(w.stats.connect_failures))
        .Num("open_seconds", open_s, 1)
        .Int("tls_handshakes", static_cast<long long>(w.stats.handshakes))
        .Int("tls_resumed", static_cast<long long>(w.stats.resumed))
        .Int("gateway_rss_before_kib", rss0)
        .Int("gateway_rss_after_kib", rss1)
        .Num("rss_per_session_kib", per_kib, 2)
        .Num("kernel_tcp_kib_per_socket", tcp_kib, 2);
    JsonObject json;
    json.Str("bench", "load_idle").Arr("rows", {row}).Num("limit", 40, 0).Num("ratio", per_kib / 40, 3)
        .Num("target", 1.0, 2).Bool("pass", ready >= idle && per_kib <= 40);
    std::cout << json.str() << std::endl;
    return ready >= idle ? 0 : 1;
  }

  // ================================================================ traffic
  const int nusers = static_cast<int>(w.devices.size());
  if (senders < 1 || senders >= nusers) Fail("argument", "need 1 <= --senders < number of users");
  const int receivers = nusers - senders;
  if (fanout < 1 || fanout > receivers) Fail("argument", "need 1 <= --fanout <= receivers");

  // Conversations: sender i with `fanout` receivers.
  std::vector<wv1::ConversationInfo> convs(senders);
  for (int i = 0; i < senders; ++i) {
    std::vector<std::string> members;
    for (int k = 0; k < fanout; ++k) {
      members.push_back(w.devices[senders + (i * fanout + k) % receivers].profile().user);
    }
    client::Session s(Take(client::Connection::Connect(url, str["--ca"], std::chrono::seconds(10)), "connect"));
    Take(s.Login(w.devices[i]), "login");
    convs[i] = Take(s.OpenConversation(members), "open conversation");
    (void)s.Close();
  }

  // Seals `count` messages round-robin over the senders, in parallel.
  auto seal = [&](size_t count) {
    const size_t first = w.pool.size();
    w.pool.resize(first + count);
    const std::string text(size, 'x');
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> pool;
    std::atomic<bool> failed{false};
    for (unsigned t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (size_t i = first + t; i < first + count; i += threads) {
          const int s = static_cast<int>(i % static_cast<size_t>(senders));
          auto env = w.devices[s].PrepareMessage(convs[s], text, NowMs());
          if (!env.ok()) {
            failed = true;
            return;
          }
          auto parsed = protocol::ParseEnvelope(*env);
          if (!parsed.ok()) {
            failed = true;
            return;
          }
          wv1::ClientFrame submit;
          *submit.mutable_submit()->mutable_envelope() = *env;
          w.pool[i] = {env->SerializeAsString(), submit.SerializeAsString(), parsed->header.message_id(),
                       parsed->header.epoch_id(), s};
        }
      });
    }
    for (auto& th : pool) th.join();
    if (failed) Fail("seal", "PrepareMessage failed");
    w.outbox.assign(senders, {});
    for (size_t i = first; i < first + count; ++i) w.outbox[w.pool[i].sender].ready.push_back(i);
  };

  // Fault mode submits from authentication on, so its messages exist first.
  if (w.fault) seal(max_messages);

  // Connections: senders, receivers, then extra idle receivers of the same users.
  std::vector<std::shared_ptr<Conn>> conns;
  RaiseFileLimit(static_cast<size_t>(nusers + connections) + 1024);
  size_t ready = 0;
  auto open = [&](Role role, int device, int sender) {
    auto c = std::make_shared<Conn>(w, role, device, sender, window);
    c->on_ready = [&] { ++ready; };
    conns.push_back(c);
    c->Start();
  };
  std::vector<Conn*> sender_conns;
  for (int i = 0; i < senders; ++i) {
    open(Role::kSender, i, i);
    sender_conns.push_back(conns.back().get());
  }
  for (int i = senders; i < nusers; ++i) open(Role::kReceiver, i, 0);
  for (int i = 0; i < connections; ++i) open(Role::kReceiver, senders + i % receivers, 0);
  if (!RunUntil(w, [&] { return ready == conns.size(); }, 60)) Fail("connect", "sessions did not authenticate");
  std::vector<Conn*> receiver_conns;
  for (auto& c : conns) receiver_conns.push_back(c.get());

  // Acks go out every 50 ms (and at 64 deliveries), as a client batches
  // them: each DeliveryAck frame is a database job on the gateway.
  net::steady_timer ack_timer(w.io);
  std::function<void()> arm_acks = [&] {
    ack_timer.expires_after(milliseconds(50));
    ack_timer.async_wait([&](beast::error_code ec) {
      if (ec) return;
      for (Conn* c : receiver_conns) c->FlushAcks();
      arm_acks();
    });
  };
  arm_acks();

  // One timed phase: rate 0 keeps every sender's window full; otherwise an
  // open-loop schedule hands out sends every millisecond.
  struct Phase {
    double seconds = 0;
    uint64_t acked = 0, deliveries = 0;
    std::vector<double> latency_us;
    double offered = 0;
    // Cores busy on average during the phase: which of the three is the bound.
    double cores_load_gen = 0, cores_gateway = 0, cores_postgres = 0;
  };
  const int self_pid = static_cast<int>(getpid());
  auto run_phase = [&](double phase_rate, double phase_seconds, const std::function<bool()>& stop) {
    w.stats.latency_us.clear();
    const double cpu_self0 = CpuSeconds(self_pid);
    const double cpu_gateway0 = gateway_pid ? CpuSeconds(gateway_pid) : 0;
    const double cpu_postgres0 = PostgresCpuSeconds();
    const uint64_t acked0 = w.stats.acked, deliveries0 = w.stats.deliveries;
    const auto t0 = bench::Clock::now();
    uint64_t handed = 0;
    size_t rr = 0;
    auto queued = [&] {
      size_t n = 0;
      for (auto& o : w.outbox) n += o.ready.size();
      return n;
    };
    while (!stop() && SecondsSince(t0) < phase_seconds) {
      if (phase_rate <= 0) {
        for (Conn* c : sender_conns) c->Pump(window);
        if (queued() == 0) break;
      } else {
        const auto due = static_cast<uint64_t>(phase_rate * SecondsSince(t0));
        for (size_t tries = 0; handed < due && tries < sender_conns.size();) {
          if (sender_conns[rr++ % sender_conns.size()]->Pump(1)) {
            ++handed;
            tries = 0;
          } else {
            ++tries;
          }
        }
      }
      w.io.run_for(milliseconds(1));
    }
    Phase p;
    p.seconds = SecondsSince(t0);
    // Wait for the submits in flight, so every sent message is counted.
    RunUntil(w, [&] {
      size_t n = 0;
      for (Conn* c : sender_conns) n += c->outstanding();
      return n == 0;
    }, 30);
    p.acked = w.stats.acked - acked0;
    p.deliveries = w.stats.deliveries - deliveries0;
    p.latency_us = w.stats.latency_us;
    p.offered = phase_rate;
    // The clock for throughput stops when the last acknowledgement came.
    p.seconds = SecondsSince(t0);
    p.cores_load_gen = (CpuSeconds(self_pid) - cpu_self0) / p.seconds;
    p.cores_gateway = gateway_pid ? (CpuSeconds(gateway_pid) - cpu_gateway0) / p.seconds : 0;
    p.cores_postgres = (PostgresCpuSeconds() - cpu_postgres0) / p.seconds;
    return p;
  };

  // ================================================================ fault
  if (w.fault) {
    const std::filesystem::path out = str.count("--out") ? str["--out"] : ".";
    w.acked_file.open(out / "acked.txt");
    w.received_file.open(out / "received.txt");
    w.refused_file.open(out / "refused.txt");
    std::cerr << "load_gen: sealed " << w.pool.size() << " messages; running until " << (out / "stop") << "\n";
    auto write_status = [&] {
      uint64_t received = 0;
      for (auto& [u, ids] : w.got) received += ids.size();
      std::ofstream s(out / "status.json.tmp");
      s << "{\"acked\":" << w.acked_ids.size() << ",\"received\":" << received
        << ",\"reconnects\":" << w.stats.reconnects << ",\"refused_unavailable\":"
        << w.stats.refused["unavailable"] << ",\"resumed\":" << w.stats.resumed << "}\n";
      s.close();
      std::filesystem::rename(out / "status.json.tmp", out / "status.json");
      w.acked_file.flush();
      w.received_file.flush();
      w.refused_file.flush();
    };
    net::steady_timer status_timer(w.io);
    std::function<void()> arm_status = [&] {
      status_timer.expires_after(milliseconds(200));
      status_timer.async_wait([&](beast::error_code ec) {
        if (ec) return;
        write_status();
        arm_status();
      });
    };
    arm_status();
    // Senders keep their windows full from authentication on (kAuthenticated).
    RunUntil(w, [&] { return std::filesystem::exists(out / "stop"); }, 1e9);
    w.stop_sending = true;
    // Drain: wait until every acknowledged message reached all its receivers.
    auto expected = [&] {
      return static_cast<uint64_t>(w.acked_ids.size()) * static_cast<uint64_t>(fanout);
    };
    auto received = [&] {
      uint64_t n = 0;
      for (auto& [u, ids] : w.got) {
        for (const auto& id : ids) n += w.acked_ids.count(id);
      }
      return n;
    };
    const bool drained = RunUntil(w, [&] {
      size_t n = 0;
      for (Conn* c : sender_conns) n += c->outstanding();
      return n == 0 && received() >= expected();
    }, 90);
    write_status();
    std::cout << "load_gen fault: acked " << w.acked_ids.size() << ", received " << received() << " of "
              << expected() << ", reconnects " << w.stats.reconnects << ", refused unavailable "
              << w.stats.refused["unavailable"] << (drained ? "" : " (drain timed out)") << "\n";
    return drained ? 0 : 1;
  }

  // ================================================================ load
  std::cerr << "load_gen: sealing " << max_messages << " messages of " << size << " bytes to "
            << fanout << " recipient(s)\n";
  seal(max_messages);
  const size_t envelope_bytes = w.pool.front().frame_body.size();
  std::cerr << "load_gen: phase 1, " << (rate > 0 ? Fixed(rate, 0) + " msgs/s" : "window " + std::to_string(window))
            << " for " << seconds << " s\n";
  Phase max_phase = run_phase(rate, seconds, [] { return false; });
  const double max_tput = static_cast<double>(max_phase.acked) / max_phase.seconds;
  if (max_phase.acked == 0) Fail("phase 1", "no submit was acknowledged");

  // Phase 2: half that rate, freshly sealed (sent_at stays within the skew window).
  w.pool.clear();
  const double half = max_tput / 2;
  const size_t need = static_cast<size_t>(half * seconds * 1.1) + 100;
  std::cerr << "load_gen: sealing " << need << " more; phase 2 at " << Fixed(half, 0) << " msgs/s\n";
  seal(need);
  Phase half_phase = run_phase(half, seconds, [] { return false; });

  // PostgreSQL's own batched insert of the same rows, same database.
  double raw_rate = 0;
  if (str.count("--conninfo") && w.pool.size() >= static_cast<size_t>(batch)) {
    std::cerr << "load_gen: raw batched insert, batch " << batch << "\n";
    PgConn admin = Connect(str["--conninfo"]);
    Exec(admin.get(),
         "DROP TABLE IF EXISTS bench_plain_deliveries, bench_plain_envelopes;"
         "CREATE TABLE bench_plain_envelopes (LIKE envelopes INCLUDING DEFAULTS);"
         "CREATE TABLE bench_plain_deliveries (LIKE deliveries INCLUDING DEFAULTS);");
    RawWriter raw(str["--conninfo"], "bench_plain_envelopes", "bench_plain_deliveries", false);
    std::vector<IngestItem> rows;
    for (size_t i = 0; i < w.pool.size(); ++i) {
      const Message& m = w.pool[i];
      IngestItem r;
      r.message_id.assign(m.message_id.begin(), m.message_id.end());
      r.conversation_id = convs[m.sender].conversation_id();
      r.sender_user = w.devices[m.sender].profile().user;
      r.sender_device = w.devices[m.sender].device_id();
      r.epoch_id = m.epoch_id;
      r.sent_at_ms = NowMs();
      r.envelope.assign(m.frame_body.begin(), m.frame_body.end());
      for (int k = 0; k < fanout; ++k) {
        r.recipient_devices.push_back(w.devices[senders + (m.sender * fanout + k) % receivers].device_id());
      }
      rows.push_back(std::move(r));
    }
    // Best of three rounds of up to `seconds` each, the tables emptied and
    // checkpointed first, as ingest_bench does.
    for (int round = 0; round < 3; ++round) {
      Exec(admin.get(), "TRUNCATE bench_plain_deliveries, bench_plain_envelopes; CHECKPOINT");
      raw.ResetIds();
      size_t done = 0;
      const auto t0 = bench::Clock::now();
      while (SecondsSince(t0) < std::min(seconds, 3.0)) {
        const size_t at = done % (rows.size() - rows.size() % batch);
        if (!raw.InsertUnnest(rows.data() + at, static_cast<size_t>(batch))) Fail("raw insert", "failed");
        done += static_cast<size_t>(batch);
      }
      raw_rate = std::max(raw_rate, static_cast<double>(done) / SecondsSince(t0));
    }
    Exec(admin.get(), "DROP TABLE bench_plain_deliveries, bench_plain_envelopes");
  }

  // ---- report
  std::cout << "load_gen: " << senders << " senders, " << conns.size() - senders << " receiver connections, "
            << size << "-byte messages (" << envelope_bytes << "-byte envelopes) to " << fanout
            << " recipient device(s), " << seconds << " s per phase; acknowledgements are durable\n\n";
  Table t({"phase", "offered msg/s", "acked msg/s", "deliveries/s", "p50 ms", "p90 ms", "p99 ms",
           "p999 ms", "max ms", "cores load_gen/gateway/pg"});
  std::vector<JsonObject> rows;
  for (auto* p : {&max_phase, &half_phase}) {
    const bool is_max = p == &max_phase;
    std::vector<std::string> cells = {is_max ? (rate > 0 ? "rate" : "max (window " + std::to_string(window) + ")")
                                             : "half of max",
                                      p->offered > 0 ? Fixed(p->offered, 0) : "-",
                                      Fixed(static_cast<double>(p->acked) / p->seconds, 0),
                                      Fixed(static_cast<double>(p->deliveries) / p->seconds, 0)};
    JsonObject row;
    row.Str("phase", is_max ? "max" : "half")
        .Num("offered_per_s", p->offered, 0)
        .Num("acked_per_s", static_cast<double>(p->acked) / p->seconds, 0)
        .Num("deliveries_per_s", static_cast<double>(p->deliveries) / p->seconds, 0)
        .Int("acked", static_cast<long long>(p->acked));
    Percentiles(p->latency_us, row, cells);
    cells.push_back(Fixed(p->cores_load_gen, 2) + "/" + Fixed(p->cores_gateway, 2) + "/" +
                    Fixed(p->cores_postgres, 2));
    row.Num("cores_load_gen", p->cores_load_gen, 2)
        .Num("cores_gateway", p->cores_gateway, 2)
        .Num("cores_postgres", p->cores_postgres, 2);
    t.Row(cells);
    rows.push_back(row);
  }
  t.Print(std::cout);
  std::vector<double> half_lat = half_phase.latency_us;
  std::sort(half_lat.begin(), half_lat.end());
  const double p99_half = half_lat.empty() ? 0 : half_lat[std::min(half_lat.size() - 1, half_lat.size() * 99 / 100)] / 1000;
  const double ratio = raw_rate > 0 ? max_tput / raw_rate : 0;
  std::cout << "\nPostgreSQL raw batched insert of the same rows (unnest, batch " << batch
            << ", same database): " << Fixed(raw_rate, 0) << " envelopes/s\n"
            << "durable relay / raw insert: " << Fixed(ratio, 2) << ", target >= 0.60: "
            << (ratio >= 0.6 ? "PASS" : "FAIL") << "\n"
            << "p99 acknowledgement latency at half the maximum: " << Fixed(p99_half, 2)
            << " ms, target <= 10 ms: " << (p99_half <= 10 ? "PASS" : "FAIL") << "\n"
            << "TLS handshakes resumed: " << w.stats.resumed << "/" << w.stats.handshakes
            << "; refused: ";
  for (auto& [code, n] : w.stats.refused) std::cout << code << "=" << n << " ";
  std::cout << "\n\n";

  JsonObject json;
  JsonObject refused;
  for (auto& [code, n] : w.stats.refused) refused.Int(code, static_cast<long long>(n));
  json.Str("bench", "load")
      .Str("unit", "messages_per_s")
      .Int("senders", senders)
      .Int("connections", static_cast<long long>(conns.size()))
      .Int("fanout", fanout)
      .Int("message_bytes", static_cast<long long>(size))
      .Int("envelope_bytes", static_cast<long long>(envelope_bytes))
      .Arr("rows", rows)
      .Num("raw_insert_per_s", raw_rate, 0)
      .Int("raw_batch", batch)
      .Num("p99_half_ms", p99_half, 3)
      .Num("p99_target_ms", 10, 0)
      .Bool("p99_pass", p99_half <= 10)
      .Int("tls_handshakes", static_cast<long long>(w.stats.handshakes))
      .Int("tls_resumed", static_cast<long long>(w.stats.resumed))
      .Obj("refused", refused)
      .Num("limit", raw_rate, 0)
      .Num("ratio", ratio, 3)
      .Num("target", 0.6, 2)
      .Bool("pass", ratio >= 0.6 && p99_half <= 10);
  std::cout << json.str() << std::endl;
  return 0;
}
