// seal_bench — client sealing cost against the cost of its primitives.
//
// Measures protocol::SealMessage of a 1 KiB message to 1, 10 and 100
// recipient devices (plus the archive capsule) and OpenMessage for one
// recipient. The limit is computed in the same process from the OpenSSL EVP
// operations one seal cannot avoid, timed here directly (not through
// protocol/):
//   per recipient: X25519 key generation + X25519 derive  (HPKE Encap)
//   archive:       P-256 key generation + P-256 derive    (DeriveKeyPair + Encap)
//   envelope:      one Ed25519 signature over the signed content
// Opening needs: Ed25519 verify + X25519 derive + the archive recompute
// (P-256 key generation + P-256 derive).
// P-256 key generation stands in for DeriveKeyPair's scalar-base
// multiplication; the HKDF calls around it are not counted in the limit.
//
// Target: seal time <= 1.3 x the sum of its primitives, at every recipient
// count. Optionally also runs `openssl speed` for the CLI's own figures.

#include <openssl/evp.h>
#include <openssl/core_names.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "bench_util.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"

namespace {

using namespace holdfast;
using namespace holdfast::bench;
namespace hpke = holdfast::protocol::hpke;

// ------------------------------------------------------------ OpenSSL RAII

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

struct PipeClose {
  void operator()(FILE* f) const { pclose(f); }
};

Pkey Generate(const char* algorithm, const char* group) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1) Fail("keygen", algorithm);
  if (group != nullptr && EVP_PKEY_CTX_set_group_name(ctx.get(), group) != 1) Fail("keygen", group);
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_keygen(ctx.get(), &key) != 1) Fail("keygen", algorithm);
  return Pkey(key);
}

// The primitive operations, each a complete single use as a sealing client
// would make it (context creation included), written against EVP directly.
class Primitives {
 public:
  Primitives()
      : x25519_peer_(Generate("X25519", nullptr)),
        x25519_own_(Generate("X25519", nullptr)),
        p256_peer_(Generate("EC", "P-256")),
        p256_own_(Generate("EC", "P-256")),
        ed25519_(Generate("ED25519", nullptr)),
        x25519_keygen_(EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr)),
        p256_keygen_(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr)) {
    if (!x25519_keygen_ || EVP_PKEY_keygen_init(x25519_keygen_.get()) != 1) Fail("init", "x25519");
    if (!p256_keygen_ || EVP_PKEY_keygen_init(p256_keygen_.get()) != 1 ||
        EVP_PKEY_CTX_set_group_name(p256_keygen_.get(), "P-256") != 1) {
      Fail("init", "p256");
    }
  }

  // Fresh ephemeral X25519 key, its encoded public key, and DH with a peer.
  bool X25519KeygenDerive() {
    EVP_PKEY* raw = nullptr;
    if (EVP_PKEY_keygen(x25519_keygen_.get(), &raw) != 1) return false;
    Pkey eph(raw);
    uint8_t pub[32];
    size_t pub_len = sizeof pub;
    if (EVP_PKEY_get_raw_public_key(eph.get(), pub, &pub_len) != 1) return false;
    return Derive(eph.get(), x25519_peer_.get(), 32);
  }
  bool X25519Derive() { return Derive(x25519_own_.get(), x25519_peer_.get(), 32); }

  // Fresh P-256 key pair with its encoded (uncompressed) public point.
  bool P256Keygen() {
    EVP_PKEY* raw = nullptr;
    if (EVP_PKEY_keygen(p256_keygen_.get(), &raw) != 1) return false;
    Pkey key(raw);
    uint8_t pub[65];
    size_t pub_len = 0;
    return EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
                                           sizeof pub, &pub_len) == 1 &&
           pub_len == sizeof pub;
  }
  bool P256Derive() { return Derive(p256_own_.get(), p256_peer_.get(), 32); }

  bool Ed25519Sign(const std::vector<uint8_t>& message) {
    MdCtx ctx(EVP_MD_CTX_new());
    uint8_t sig[64];
    size_t sig_len = sizeof sig;
    if (!ctx || EVP_DigestSignInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr,
                                      ed25519_.get(), nullptr) != 1) {
      return false;
    }
    if (EVP_DigestSign(ctx.get(), sig, &sig_len, message.data(), message.size()) != 1) {
      return false;
    }
    last_signature_.assign(sig, sig + sig_len);
    return true;
  }
  bool Ed25519Verify(const std::vector<uint8_t>& message, const std::vector<uint8_t>& sig) {
    MdCtx ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr,
                                        ed25519_.get(), nullptr) != 1) {
      return false;
    }
    return EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), message.data(), message.size()) ==
           1;
  }
  const std::vector<uint8_t>& last_signature() const { return last_signature_; }

 private:
  static bool Derive(EVP_PKEY* own, EVP_PKEY* peer, size_t expected) {
    PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, own, nullptr));
    uint8_t secret[64];
    size_t len = sizeof secret;
    return ctx && EVP_PKEY_derive_init(ctx.get()) == 1 &&
           EVP_PKEY_derive_set_peer_ex(ctx.get(), peer, 0) == 1 &&
           EVP_PKEY_derive(ctx.get(), secret, &len) == 1 && len == expected;
  }

  Pkey x25519_peer_, x25519_own_, p256_peer_, p256_own_, ed25519_;
  PkeyCtx x25519_keygen_, p256_keygen_;
  std::vector<uint8_t> last_signature_;
};

// ------------------------------------------------------------ openssl speed

struct SpeedFigures {
  bool ok = false;
  double x25519 = 0, p256 = 0, ed25519_sign = 0, ed25519_verify = 0;  // ops/s
};

double LastNumber(const std::string& line) {
  static const std::regex number(R"(([0-9]+\.[0-9]+)\s*$)");
  std::smatch m;
  return std::regex_search(line, m, number) ? std::stod(m[1]) : 0;
}

SpeedFigures RunOpensslSpeed(int seconds) {
  SpeedFigures out;
  const std::string command = "openssl speed -seconds " + std::to_string(seconds) +
                              " ecdhx25519 ecdhp256 ed25519 2>/dev/null";
  std::unique_ptr<FILE, PipeClose> pipe(popen(command.c_str(), "r"));
  if (!pipe) return out;
  char buffer[512];
  static const std::regex two(R"(([0-9]+\.[0-9]+)\s+([0-9]+\.[0-9]+)\s*$)");
  while (fgets(buffer, sizeof buffer, pipe.get()) != nullptr) {
    const std::string line(buffer);
    std::smatch m;
    if (line.find("ecdh (X25519)") != std::string::npos) {
      out.x25519 = LastNumber(line);
    } else if (line.find("ecdh (nistp256)") != std::string::npos) {
      out.p256 = LastNumber(line);
    } else if (line.find("EdDSA (Ed25519)") != std::string::npos &&
               std::regex_search(line, m, two)) {
      out.ed25519_sign = std::stod(m[1]);
      out.ed25519_verify = std::stod(m[2]);
    }
  }
  out.ok = out.x25519 > 0 && out.p256 > 0 && out.ed25519_sign > 0 && out.ed25519_verify > 0;
  return out;
}

// --------------------------------------------------------------- workload

struct Party {
  std::string user;
  Bytes device_id;
  hpke::KeyPair prekey;
};

std::vector<uint8_t> RandomBuffer(size_t n) { return protocol::RandomBytes(n); }

}  // namespace

int main(int argc, char** argv) {
  Args args(argc, argv);
  const double seconds = args.Number("--seconds", 0.3);
  const int rounds = static_cast<int>(args.Number("--rounds", 3));
  const int speed_seconds = static_cast<int>(args.Number("--speed-seconds", 2));
  const bool skip_speed = args.Flag("--no-openssl-speed");
  args.Done(
      "seal_bench [--seconds S per measurement, default 0.3] [--rounds R, default 3]"
      " [--speed-seconds N, default 2] [--no-openssl-speed]");
  if (rounds < 1 || seconds <= 0) Fail("argument", "rounds and seconds must be positive");

  // ---- keys and requests
  const protocol::Ed25519KeyPair sender = Take(protocol::Ed25519Generate(), "sender key");
  // A device loads its identity key once and signs every message with it.
  const protocol::Ed25519Signer signer =
      Take(protocol::Ed25519Signer::Load(sender.private_key.view()), "sender signer");
  const hpke::KeyPair archive = Take(hpke::GenerateKeyPair(hpke::KemId::kP256HkdfSha256),
                                     "archive key");
  std::vector<Party> parties;
  for (int i = 0; i < 100; ++i) {
    parties.push_back(Party{"user" + std::to_string(i), RandomBuffer(protocol::kDeviceIdSize),
                            Take(hpke::GenerateKeyPair(hpke::KemId::kX25519HkdfSha256),
                                 "recipient prekey")});
  }
  const std::vector<int> recipient_counts = {1, 10, 100};
  std::vector<protocol::SealRequest> requests;
  for (int n : recipient_counts) {
    protocol::SealRequest r;
    r.conversation_id = "c_00112233445566ff";
    r.sender_user = "sender";
    r.sent_at_ms = 1767225600000;
    r.epoch_id = 1;
    r.archive_public = archive.public_key;
    r.text.assign(1024, 'm');
    for (int i = 0; i < n; ++i) {
      r.recipients.push_back({parties[i].user, parties[i].device_id,
                              parties[i].prekey.public_key});
    }
    requests.push_back(std::move(r));
  }

  // Sizes of the signed content per recipient count: the Ed25519 part of
  // the limit signs a buffer of the same length.
  std::vector<std::vector<uint8_t>> sign_inputs;
  for (const auto& r : requests) {
    auto env = Take(protocol::SealMessage(r, signer), "seal");
    sign_inputs.push_back(RandomBuffer(env.content().size()));
  }
  // The envelope the single recipient (parties[0]) opens.
  const auto one = Take(protocol::SealMessage(requests[0], signer), "seal");
  const std::string one_bytes = one.SerializeAsString();
  {
    auto parsed = Take(protocol::ParseEnvelope(AsBytes(one_bytes)), "parse");
    auto opened = Take(protocol::OpenMessage(parsed, sender.public_key, parties[0].device_id,
                                             parties[0].prekey.private_key.view(),
                                             archive.public_key),
                       "open");
    if (opened.text != requests[0].text) Fail("open", "text differs");
  }

  Primitives prim;
  Check(prim.Ed25519Sign(sign_inputs[0]) ? Status::Ok() : Status::Internal("sign"), "ed25519");
  const std::vector<uint8_t> verify_sig = prim.last_signature();

  // ---- measurements, interleaved so that background load hits both sides
  std::vector<Best> seal(recipient_counts.size()), sign(recipient_counts.size());
  Best open, x_kd, x_d, p_kg, p_d, verify;
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < requests.size(); ++i) {
      const auto& request = requests[i];
      seal[i].Add(SecondsPerOp(
          [&] { return protocol::SealMessage(request, signer).ok(); },
          seconds));
    }
    open.Add(SecondsPerOp(
        [&] {
          auto parsed = protocol::ParseEnvelope(AsBytes(one_bytes));
          if (!parsed.ok()) return false;
          return protocol::OpenMessage(*parsed, sender.public_key, parties[0].device_id,
                                       parties[0].prekey.private_key.view(), archive.public_key)
              .ok();
        },
        seconds));
    x_kd.Add(SecondsPerOp([&] { return prim.X25519KeygenDerive(); }, seconds));
    x_d.Add(SecondsPerOp([&] { return prim.X25519Derive(); }, seconds));
    p_kg.Add(SecondsPerOp([&] { return prim.P256Keygen(); }, seconds));
    p_d.Add(SecondsPerOp([&] { return prim.P256Derive(); }, seconds));
    for (size_t i = 0; i < sign_inputs.size(); ++i) {
      sign[i].Add(SecondsPerOp([&] { return prim.Ed25519Sign(sign_inputs[i]); }, seconds));
    }
    verify.Add(
        SecondsPerOp([&] { return prim.Ed25519Verify(sign_inputs[0], verify_sig); }, seconds));
  }

  SpeedFigures speed;
  if (!skip_speed) speed = RunOpensslSpeed(speed_seconds);

  // ---- report
  const double us = 1e6;
  std::cout << "seal_bench: 1 KiB message, best of " << rounds << " rounds of " << seconds
            << " s per measurement, one thread\n\n";

  Table prims({"primitive (EVP, this process)", "us/op", "op/s", "openssl speed op/s"});
  auto speed_cell = [&](double v) { return speed.ok ? Fixed(v, 0) : std::string("-"); };
  prims.Row({"X25519 keygen + derive", Fixed(x_kd.value() * us, 2), Fixed(1 / x_kd.value(), 0),
             "-"});
  prims.Row({"X25519 derive", Fixed(x_d.value() * us, 2), Fixed(1 / x_d.value(), 0),
             speed_cell(speed.x25519)});
  prims.Row({"P-256 keygen", Fixed(p_kg.value() * us, 2), Fixed(1 / p_kg.value(), 0), "-"});
  prims.Row({"P-256 ECDH derive", Fixed(p_d.value() * us, 2), Fixed(1 / p_d.value(), 0),
             speed_cell(speed.p256)});
  for (size_t i = 0; i < sign_inputs.size(); ++i) {
    prims.Row({"Ed25519 sign " + std::to_string(sign_inputs[i].size()) + " B",
               Fixed(sign[i].value() * us, 2), Fixed(1 / sign[i].value(), 0),
               i == 0 ? speed_cell(speed.ed25519_sign) + " (64 B)" : "-"});
  }
  prims.Row({"Ed25519 verify " + std::to_string(sign_inputs[0].size()) + " B",
             Fixed(verify.value() * us, 2), Fixed(1 / verify.value(), 0),
             speed_cell(speed.ed25519_verify) + " (64 B)"});
  prims.Print(std::cout);
  std::cout << "\n";

  Table table({"operation", "holdfast us/op", "op/s", "limit us/op", "ratio", "target",
               "noise max/min"});
  std::vector<JsonObject> rows;
  double worst = 0;
  double worst_limit = 0;
  std::string worst_name;
  for (size_t i = 0; i < requests.size(); ++i) {
    const int n = recipient_counts[i];
    const double limit =
        n * x_kd.value() + p_kg.value() + p_d.value() + sign[i].value();
    const double ratio = seal[i].value() / limit;
    const std::string name = "seal_" + std::to_string(n);
    if (ratio > worst) {
      worst = ratio;
      worst_limit = limit;
      worst_name = name;
    }
    table.Row({"SealMessage, " + std::to_string(n) + " device" + (n == 1 ? "" : "s") +
                   " + archive",
               Fixed(seal[i].value() * us, 1), Fixed(1 / seal[i].value(), 0),
               Fixed(limit * us, 1), Fixed(ratio, 2), "<= 1.30", Fixed(seal[i].spread(), 2)});
    rows.push_back(JsonObject()
                       .Str("name", name)
                       .Int("recipients", n)
                       .Num("us_per_op", seal[i].value() * us, 2)
                       .Num("limit_us_per_op", limit * us, 2)
                       .Num("ratio", ratio, 3)
                       .Num("noise", seal[i].spread(), 2));
  }
  const double open_limit = verify.value() + x_d.value() + p_kg.value() + p_d.value();
  const double open_ratio = open.value() / open_limit;
  table.Row({"ParseEnvelope + OpenMessage, 1 device", Fixed(open.value() * us, 1),
             Fixed(1 / open.value(), 0), Fixed(open_limit * us, 1), Fixed(open_ratio, 2),
             "(info)", Fixed(open.spread(), 2)});
  rows.push_back(JsonObject()
                     .Str("name", "open_1")
                     .Int("recipients", 1)
                     .Num("us_per_op", open.value() * us, 2)
                     .Num("limit_us_per_op", open_limit * us, 2)
                     .Num("ratio", open_ratio, 3)
                     .Num("noise", open.spread(), 2));
  table.Print(std::cout);
  std::cout << "\nlimit per seal = n x (X25519 keygen + derive) + P-256 keygen + P-256 derive"
               " + Ed25519 sign of the signed content;\n"
               "limit per open = Ed25519 verify + X25519 derive + P-256 keygen + P-256 derive.\n"
               "worst seal ratio "
            << Fixed(worst, 2) << " (" << worst_name << "), target <= 1.30: "
            << (worst <= 1.3 ? "PASS" : "FAIL") << "\n\n";

  JsonObject primitives;
  primitives.Num("x25519_keygen_derive_per_s", 1 / x_kd.value(), 0)
      .Num("x25519_derive_per_s", 1 / x_d.value(), 0)
      .Num("p256_keygen_per_s", 1 / p_kg.value(), 0)
      .Num("p256_derive_per_s", 1 / p_d.value(), 0)
      .Num("ed25519_sign_per_s", 1 / sign[0].value(), 0)
      .Num("ed25519_verify_per_s", 1 / verify.value(), 0)
      .Int("ed25519_message_bytes", static_cast<long long>(sign_inputs[0].size()));
  JsonObject json;
  json.Str("bench", "seal")
      .Str("unit", "us_per_op")
      .Arr("rows", rows)
      .Obj("primitives", primitives);
  if (speed.ok) {
    json.Obj("openssl_speed", JsonObject()
                                  .Num("x25519_per_s", speed.x25519, 0)
                                  .Num("p256_per_s", speed.p256, 0)
                                  .Num("ed25519_sign_per_s", speed.ed25519_sign, 0)
                                  .Num("ed25519_verify_per_s", speed.ed25519_verify, 0));
  }
  json.Str("worst_row", worst_name)
      .Num("limit", worst_limit * us, 2)
      .Num("ratio", worst, 3)
      .Num("target", 1.3, 2)
      .Bool("pass", worst <= 1.3);
  std::cout << json.str() << std::endl;
  return 0;
}
