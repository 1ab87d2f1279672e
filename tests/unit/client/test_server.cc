#include "test_server.h"

#include <sys/socket.h>

#include <memory>
#include <stdexcept>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "holdfast/protocol/envelope.h"

namespace holdfast::client::testing {
namespace {

namespace asio = boost::asio;
namespace wire = ::holdfast::wire::v1;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;

std::string BioString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}

}  // namespace

TestCert MakeSelfSignedCert(const std::string& san) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  Check(key != nullptr, "EVP_EC_gen");
  X509Ptr x(X509_new());
  Check(x != nullptr, "X509_new");
  Check(X509_set_version(x.get(), 2) == 1, "version");
  Check(ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 1) == 1, "serial");
  Check(X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600) != nullptr, "notBefore");
  Check(X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400) != nullptr, "notAfter");
  X509_NAME* name = X509_get_subject_name(x.get());
  Check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("holdfast test"), -1,
                                   -1, 0) == 1,
        "CN");
  Check(X509_set_issuer_name(x.get(), name) == 1, "issuer");
  Check(X509_set_pubkey(x.get(), key.get()) == 1, "pubkey");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str()));
  Check(ext != nullptr, "SAN");
  Check(X509_add_ext(x.get(), ext.get(), -1) == 1, "add SAN");
  Check(X509_sign(x.get(), key.get(), EVP_sha256()) > 0, "sign");

  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  Check(cert_bio && key_bio, "BIO_new");
  Check(PEM_write_bio_X509(cert_bio.get(), x.get()) == 1, "PEM cert");
  Check(PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                                 nullptr) == 1,
        "PEM key");
  return {BioString(cert_bio.get()), BioString(key_bio.get())};
}

struct TestServer::State {
  asio::io_context ioc;
  asio::ssl::context tls{asio::ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
};

Handler EchoHandler(const OrgRoot& org) {
  return [&org](const wire::ClientFrame& in) {
    std::vector<wire::ServerFrame> answers;
    if (in.request_id() == 99) return answers;
    wire::ServerFrame& out = answers.emplace_back();
    out.set_request_id(in.request_id());
    if (in.kind_case() == wire::ClientFrame::kRegister) {
      *out.mutable_registered() = org.Register(in.register_());
    } else {
      out.mutable_challenge()->set_nonce(in.SerializeAsString());
    }
    return answers;
  };
}

TestServer::TestServer(TestCert cert, Handler handler) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.tls.use_certificate_chain(asio::buffer(cert.cert_pem));
  s.tls.use_private_key(asio::buffer(cert.key_pem), asio::ssl::context::pem);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  s.acceptor.open(ep.protocol());
  s.acceptor.bind(ep);
  s.acceptor.listen();
  port_ = s.acceptor.local_endpoint().port();

  thread_ = std::thread([this, handler = std::move(handler)] {
    State& s = *state_;
    beast::error_code ec;
    tcp::socket socket(s.ioc);
    s.acceptor.accept(socket, ec);
    if (ec) return;
    beast::websocket::stream<beast::ssl_stream<tcp::socket>> ws(std::move(socket), s.tls);
    ws.next_layer().handshake(asio::ssl::stream_base::server, ec);
    if (ec) return;
    ws.accept(ec);
    if (ec) return;
    ws.binary(true);
    for (;;) {
      beast::flat_buffer buf;
      ws.read(buf, ec);
      if (ec) return;
      wire::ClientFrame in;
      auto data = buf.cdata();
      if (!in.ParseFromArray(data.data(), static_cast<int>(data.size()))) return;
      seen_.push_back(in);
      for (const wire::ServerFrame& out : handler(in)) {
        std::string bytes = out.SerializeAsString();
        ws.write(asio::buffer(bytes), ec);
        if (ec) return;
      }
    }
  });
}

std::vector<wire::ClientFrame> TestServer::Join() {
  if (thread_.joinable()) thread_.join();
  return seen_;
}

std::vector<wire::ClientFrame> TestServer::Stop() {
  // Wakes a blocked accept() when no client ever came.
  ::shutdown(state_->acceptor.native_handle(), SHUT_RDWR);
  return Join();
}

TestServer::~TestServer() { Stop(); }

}  // namespace holdfast::client::testing
