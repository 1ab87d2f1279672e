#include "holdfast/client/connection.h"

#include <deque>
#include <functional>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace holdfast::client {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxFrameSize = 16 << 20;

}  // namespace

Result<ServerUrl> ParseServerUrl(std::string_view url) {
  constexpr std::string_view kScheme = "wss://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Status::InvalidArgument("server URL must start with wss://");
  }
  std::string_view rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  ServerUrl out;
  out.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.find('@') != std::string_view::npos) {
    return Status::InvalidArgument("server URL must not carry credentials");
  }
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Status::InvalidArgument("bad IPv6 literal in URL");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Status::InvalidArgument("bad server URL authority");
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return Status::InvalidArgument("server URL has no host");
  if (port.empty()) {
    out.port = "443";
  } else {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoul(std::string(port)) == 0 || std::stoul(std::string(port)) > 65535) {
      return Status::InvalidArgument("bad port in server URL");
    }
    out.port = std::string(port);
  }
  return out;
}

struct Connection::Impl {
  explicit Impl(asio::ssl::context context) : tls(std::move(context)), ws(ioc, tls) {}

  ~Impl() {
    // Complete every outstanding operation before the stream goes away.
    beast::error_code ec;
    beast::get_lowest_layer(ws).socket().close(ec);
    ioc.restart();
    ioc.run_for(std::chrono::seconds(2));
  }

  // Runs handlers until done() holds or the deadline passes.
  bool RunUntil(const std::function<bool()>& done, Clock::time_point deadline) {
    // One non-blocking pass first, so that a zero timeout still picks up
    // whatever is ready.
    ioc.restart();
    ioc.poll();
    while (!done()) {
      auto now = Clock::now();
      if (now >= deadline) return false;
      ioc.restart();
      if (ioc.run_one_for(deadline - now) == 0 && ioc.stopped() && !done()) {
        // No work left: nothing can make done() true.
        return false;
      }
    }
    return true;
  }

  // Aborts whatever is outstanding and waits for the handlers to run.
  void Abort(const std::function<bool()>& done) {
    beast::error_code ec;
    beast::get_lowest_layer(ws).socket().close(ec);
    RunUntil(done, Clock::now() + std::chrono::seconds(2));
    broken = true;
  }

  void StartRead() {
    read_pending = true;
    ws.async_read(read_buffer, [this](beast::error_code ec, size_t) {
      read_pending = false;
      if (ec) {
        read_error = ec;
        broken = true;
        return;
      }
      wire::ServerFrame frame;
      auto data = read_buffer.cdata();
      bool ok = ws.got_binary() &&
                frame.ParseFromArray(data.data(), static_cast<int>(data.size()));
      read_buffer.consume(read_buffer.size());
      if (!ok) {
        protocol_error = true;
        return;
      }
      inbox.push_back(std::move(frame));
    });
  }

  asio::io_context ioc;
  asio::ssl::context tls;
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws;
  beast::flat_buffer read_buffer;
  bool read_pending = false;
  bool broken = false;
  bool protocol_error = false;
  beast::error_code read_error;
  std::deque<wire::ServerFrame> inbox;
};

namespace {

Result<asio::ssl::context> MakeTlsContext(const std::filesystem::path& ca_file) {
  asio::ssl::context tls(asio::ssl::context::tls_client);
  SSL_CTX* ctx = tls.native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return Status::Internal("cannot require TLS 1.2");
  }
  beast::error_code ec;
  tls.set_verify_mode(asio::ssl::verify_peer, ec);
  // Only the pinned file: no system trust store.
  if (!ec) tls.load_verify_file(ca_file.string(), ec);
  if (ec) return Status::InvalidArgument("cannot load trust anchor " + ca_file.string());
  // The pinned file may hold the server's own certificate rather than a CA.
  if (X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN) != 1) {
    return Status::Internal("cannot set verification flags");
  }
  return tls;
}

std::string TlsErrorDetail(SSL* ssl, const beast::error_code& ec) {
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    return std::string("certificate verification failed: ") +
           X509_verify_cert_error_string(verify);
  }
  return ec.message();
}

}  // namespace

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() = default;

Result<Connection> Connection::Connect(std::string_view url, const std::filesystem::path& ca_file,
                                       std::chrono::milliseconds timeout) {
  HF_ASSIGN_OR_RETURN(ServerUrl target, ParseServerUrl(url));
  const auto deadline = Clock::now() + timeout;
  HF_ASSIGN_OR_RETURN(asio::ssl::context tls, MakeTlsContext(ca_file));
  // SSL_new copies the context's settings, so the context is complete first.
  auto impl = std::make_unique<Impl>(std::move(tls));
  Impl& c = *impl;
  beast::error_code ec;

  SSL* ssl = c.ws.next_layer().native_handle();
  boost::system::error_code addr_ec;
  asio::ip::make_address(target.host, addr_ec);
  const bool is_ip = !addr_ec;
  if (is_ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), target.host.c_str()) != 1) {
      return Status::InvalidArgument("bad IP address " + target.host);
    }
  } else {
    if (SSL_set1_host(ssl, target.host.c_str()) != 1 ||
        SSL_set_tlsext_host_name(ssl, target.host.c_str()) != 1) {
      return Status::InvalidArgument("bad host name " + target.host);
    }
  }

  const std::string where = target.host + ":" + target.port;
  bool done = false;
  auto is_done = [&] { return done; };
  auto step = [&](std::string_view what) -> Status {
    if (!c.RunUntil(is_done, deadline)) {
      c.Abort(is_done);
      return Status::Unavailable(std::string(what) + " " + where + ": timed out");
    }
    done = false;
    if (ec) {
      std::string detail =
          what == std::string_view("TLS handshake with") ? TlsErrorDetail(ssl, ec) : ec.message();
      return Status::Unavailable(std::string(what) + " " + where + ": " + detail);
    }
    return Status::Ok();
  };

  tcp::resolver resolver(c.ioc);
  tcp::resolver::results_type endpoints;
  resolver.async_resolve(target.host, target.port,
                         [&](beast::error_code e, tcp::resolver::results_type r) {
                           ec = e;
                           endpoints = std::move(r);
                           done = true;
                         });
  if (!c.RunUntil(is_done, deadline)) {
    resolver.cancel();
    c.RunUntil(is_done, Clock::now() + std::chrono::seconds(2));
    return Status::Unavailable("resolve " + where + ": timed out");
  }
  done = false;
  if (ec) return Status::Unavailable("resolve " + where + ": " + ec.message());

  beast::get_lowest_layer(c.ws).async_connect(
      endpoints, [&](beast::error_code e, const tcp::endpoint&) {
        ec = e;
        done = true;
      });
  HF_RETURN_IF_ERROR(step("connect to"));

  c.ws.next_layer().async_handshake(asio::ssl::stream_base::client, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  HF_RETURN_IF_ERROR(step("TLS handshake with"));
  if (SSL_get0_peer_certificate(ssl) == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) {
    c.Abort(is_done);
    return Status::Internal("TLS handshake with " + where + " completed without a verified peer");
  }

  c.ws.binary(true);
  c.ws.read_message_max(kMaxFrameSize);
  c.ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
    req.set(beast::http::field::user_agent, "holdfast-client");
  }));
  const std::string host_header =
      (target.host.find(':') != std::string::npos ? "[" + target.host + "]" : target.host) + ":" +
      target.port;
  c.ws.async_handshake(host_header, target.path, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  HF_RETURN_IF_ERROR(step("WebSocket handshake with"));
  return Connection(std::move(impl));
}

Status Connection::Send(const wire::ClientFrame& frame, std::chrono::milliseconds timeout) {
  Impl& c = *impl_;
  if (c.broken) return Status::Unavailable("connection to the gateway is closed");
  std::string bytes;
  if (!frame.SerializeToString(&bytes)) return Status::Internal("cannot serialise frame");
  bool done = false;
  beast::error_code ec;
  c.ws.async_write(asio::buffer(bytes), [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  auto is_done = [&] { return done; };
  if (!c.RunUntil(is_done, Clock::now() + timeout)) {
    c.Abort(is_done);
    return Status::Unavailable("send to the gateway timed out");
  }
  if (ec) {
    c.broken = true;
    return Status::Unavailable("send to the gateway: " + ec.message());
  }
  return Status::Ok();
}

Result<std::optional<wire::ServerFrame>> Connection::Receive(std::chrono::milliseconds timeout) {
  Impl& c = *impl_;
  auto take = [&]() -> std::optional<wire::ServerFrame> {
    wire::ServerFrame f = std::move(c.inbox.front());
    c.inbox.pop_front();
    return f;
  };
  if (!c.inbox.empty()) return take();
  if (c.protocol_error) return Status::InvalidArgument("gateway sent a malformed frame");
  if (c.broken) {
    if (c.read_error == websocket::error::closed) {
      return Status::Unavailable("gateway closed the connection");
    }
    return Status::Unavailable("connection to the gateway is closed" +
                               (c.read_error ? ": " + c.read_error.message() : std::string()));
  }
  if (!c.read_pending) c.StartRead();
  auto arrived = [&] { return !c.inbox.empty() || !c.read_pending; };
  c.RunUntil(arrived, Clock::now() + timeout);
  if (!c.inbox.empty()) return take();
  if (c.read_pending) return std::optional<wire::ServerFrame>();
  return Receive(std::chrono::milliseconds(0));
}

Status Connection::Close(std::chrono::milliseconds timeout) {
  Impl& c = *impl_;
  if (c.broken) return Status::Ok();
  bool done = false;
  beast::error_code ec;
  c.ws.async_close(websocket::close_code::normal, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  auto is_done = [&] { return done; };
  if (!c.RunUntil(is_done, Clock::now() + timeout)) {
    c.Abort(is_done);
    return Status::Unavailable("closing the connection timed out");
  }
  c.broken = true;
  if (ec) return Status::Unavailable("closing the connection: " + ec.message());
  return Status::Ok();
}

}  // namespace holdfast::client
