#include "admin_plane.h"

#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/URI.h>

#include <chrono>
#include <mutex>

#include "admin_api.h"
#include "holdfast/archive/database.h"

namespace holdfast::gateway {
namespace {

using Poco::Net::HTTPRequestHandler;
using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

void Reply(HTTPServerResponse& res, HTTPResponse::HTTPStatus status, const std::string& type,
           const std::string& body) {
  res.setStatus(status);
  res.setContentType(type);
  res.setContentLength(static_cast<std::streamsize>(body.size()));
  res.add("Cache-Control", "no-store");
  res.send() << body;
}

class LiveHandler final : public HTTPRequestHandler {
 public:
  void handleRequest(HTTPServerRequest&, HTTPServerResponse& res) override {
    Reply(res, HTTPResponse::HTTP_OK, "text/plain", "ok\n");
  }
};

class MetricsHandler final : public HTTPRequestHandler {
 public:
  explicit MetricsHandler(Metrics& m) : metrics_(m) {}
  void handleRequest(HTTPServerRequest&, HTTPServerResponse& res) override {
    Reply(res, HTTPResponse::HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", metrics_.Serialize());
  }

 private:
  Metrics& metrics_;
};

// Whether PostgreSQL answers, from a connection opened per check; the
// answer is reused for two seconds so that /readyz cannot hammer the server.
class DatabaseProbe {
 public:
  explicit DatabaseProbe(std::string conninfo) : conninfo_(std::move(conninfo)) {}
  Status Check() {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (checked_ != std::chrono::steady_clock::time_point{} && now - checked_ < std::chrono::seconds(2)) {
      return last_;
    }
    auto conn = archive::Connection::Open(conninfo_);
    last_ = conn.ok() ? conn->Ping() : conn.status();
    checked_ = now;
    return last_;
  }

 private:
  const std::string conninfo_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point checked_{};
  Status last_;
};

// Ready means PostgreSQL answers: message ingest needs nothing else. The
// HSM tokens are probed without logging in; one that is down makes the
// gateway "degraded" (200: ingest and delivery still work, while
// enrollment, or disclosures and ceremonies run elsewhere with the archive
// token, fail closed). The body says which dependency is down so an
// operator need not guess.
class ReadyHandler final : public HTTPRequestHandler {
 public:
  ReadyHandler(DatabaseProbe& d, Metrics& m, HsmProbe& h, HsmProbe& e)
      : db_(d), metrics_(m), hsm_(h), enrollment_hsm_(e) {}
  void handleRequest(HTTPServerRequest&, HTTPServerResponse& res) override {
    const Status db = db_.Check();
    const Status hsm = hsm_.Check();
    const Status enrollment = enrollment_hsm_.Check();
    metrics_.database_up->Set(db.ok() ? 1 : 0);
    metrics_.hsm_up->Set(hsm.ok() ? 1 : 0);
    metrics_.hsm_enrollment_up->Set(enrollment.ok() ? 1 : 0);
    auto line = [](const char* name, const Status& s) {
      return std::string(name) + ": " + (s.ok() ? "up" : "down (" + s.ToString() + ")") + "\n";
    };
    const char* state = !db.ok() ? "not ready\n" : hsm.ok() && enrollment.ok() ? "ready\n" : "degraded\n";
    Reply(res, db.ok() ? HTTPResponse::HTTP_OK : HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "text/plain",
          state + line("database", db) + line("hsm", hsm) + line("enrollment hsm", enrollment));
  }

 private:
  DatabaseProbe& db_;
  Metrics& metrics_;
  HsmProbe& hsm_;
  HsmProbe& enrollment_hsm_;
};

// /api/v1: the admin REST API (admin_api.h).
class ApiHandler final : public HTTPRequestHandler {
 public:
  explicit ApiHandler(AdminApi& api) : api_(api) {}
  void handleRequest(HTTPServerRequest& req, HTTPServerResponse& res) override {
    constexpr std::streamsize kMaxBody = 1 << 20;
    ApiRequest request;
    request.method = req.getMethod();
    Poco::URI uri(req.getURI());
    request.path = uri.getPath();
    for (const auto& [key, value] : uri.getQueryParameters()) request.query[key] = value;
    request.authorization = req.get("Authorization", "");
    request.address = req.clientAddress().host().toString();
    std::istream& in = req.stream();
    std::string body;
    char buf[8192];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
      body.append(buf, static_cast<size_t>(in.gcount()));
      if (static_cast<std::streamsize>(body.size()) > kMaxBody) {
        Reply(res, HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE, "application/json",
              "{\"error\":{\"code\":\"too_large\",\"message\":\"the body is over 1 MiB\"}}");
        return;
      }
    }
    request.body = std::move(body);
    ApiResponse response = api_.Handle(request);
    res.add("X-Content-Type-Options", "nosniff");
    res.add("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox");
    res.add("Strict-Transport-Security", "max-age=31536000");
    if (!response.file_path.empty()) {
      res.setStatus(static_cast<HTTPResponse::HTTPStatus>(response.status));
      res.add("Cache-Control", "no-store");
      res.add("Content-Disposition", "attachment; filename=\"" + response.download_name + "\"");
      try {
        res.sendFile(response.file_path, response.content_type);
      } catch (const Poco::Exception&) {
        Reply(res, HTTPResponse::HTTP_GONE, "application/json",
              "{\"error\":{\"code\":\"gone\",\"message\":\"the file is no longer on this host\"}}");
      }
      return;
    }
    if (response.status == 204) {
      res.setStatus(HTTPResponse::HTTP_NO_CONTENT);
      res.add("Cache-Control", "no-store");
      res.send();
      return;
    }
    Reply(res, static_cast<HTTPResponse::HTTPStatus>(response.status), response.content_type,
          response.body);
  }

 private:
  AdminApi& api_;
};

class NotFoundHandler final : public HTTPRequestHandler {
 public:
  void handleRequest(HTTPServerRequest&, HTTPServerResponse& res) override {
    Reply(res, HTTPResponse::HTTP_NOT_FOUND, "text/plain", "not found\n");
  }
};

class Factory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Factory(const Config& c, Metrics& m, HsmProbe& h, HsmProbe& e)
      : db_(c.database.conninfo), metrics_(m), hsm_(h), enrollment_hsm_(e), api_(c, m) {}
  HTTPRequestHandler* createRequestHandler(const HTTPServerRequest& req) override {
    std::string path = req.getURI();
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    if (path.rfind("/api/", 0) == 0) return new ApiHandler(api_);
    if (req.getMethod() == "GET" || req.getMethod() == "HEAD") {
      if (path == "/livez") return new LiveHandler;
      if (path == "/readyz") return new ReadyHandler(db_, metrics_, hsm_, enrollment_hsm_);
      if (path == "/metrics") return new MetricsHandler(metrics_);
    }
    return new NotFoundHandler;
  }

 private:
  DatabaseProbe db_;
  Metrics& metrics_;
  HsmProbe& hsm_;
  HsmProbe& enrollment_hsm_;
  AdminApi api_;
};

class AdminPlaneImpl final : public AdminPlane {
 public:
  explicit AdminPlaneImpl(std::unique_ptr<Poco::Net::HTTPServer> server, uint16_t port)
      : server_(std::move(server)), port_(port) {}
  ~AdminPlaneImpl() override { Stop(); }
  uint16_t port() const override { return port_; }
  void Stop() override {
    if (server_) {
      server_->stopAll(true);
      server_.reset();
    }
  }

 private:
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  uint16_t port_;
};

}  // namespace

Result<std::unique_ptr<AdminPlane>> AdminPlane::Start(const Config& config, Metrics& metrics,
                                                      HsmProbe& hsm, HsmProbe& enrollment_hsm) {
  static std::once_flag ssl_once;
  std::call_once(ssl_once, [] { Poco::Net::initializeSSL(); });
  try {
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(
        Poco::Net::Context::TLS_SERVER_USE, config.admin.tls_key, config.admin.tls_cert, "",
        Poco::Net::Context::VERIFY_NONE, 9, false,
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:"
        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256");
    ctx->disableProtocols(Poco::Net::Context::PROTO_SSLV2 | Poco::Net::Context::PROTO_SSLV3 |
                          Poco::Net::Context::PROTO_TLSV1 | Poco::Net::Context::PROTO_TLSV1_1);
    Poco::Net::SecureServerSocket socket(
        Poco::Net::SocketAddress(config.admin.listen.host, config.admin.listen.port), 64, ctx);
    const uint16_t port = socket.address().port();
    auto params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(4);
    params->setKeepAlive(true);
    auto server = std::make_unique<Poco::Net::HTTPServer>(new Factory(config, metrics, hsm, enrollment_hsm), socket, params);
    server->start();
    return std::unique_ptr<AdminPlane>(new AdminPlaneImpl(std::move(server), port));
  } catch (const Poco::Exception& e) {
    return Status::Unavailable("admin plane on " + config.admin.listen.host + ":" +
                               std::to_string(config.admin.listen.port) + ": " + e.displayText());
  }
}

}  // namespace holdfast::gateway
