// hsm_bench — disclosure decapsulation against the HSM's raw ECDH rate.
//
// A temporary SoftHSM2 token holds an archive epoch key made by
// hsm::Token::GenerateEpochKey. N envelopes (1 KiB text, one recipient) are
// sealed with protocol::SealMessage to that key. Per message, Holdfast's
// disclosure path is
//     hsm::Token::DeriveEcdh(epoch, capsule.enc) + protocol::OpenWithArchiveDh
// (ECDH in the token, then HKDF, capsule open, deterministic-capsule check
// and body decryption in software). The limit is the module's own rate for
// the part only the HSM can do, measured in the same process through a
// second dlopen of the same module: C_DeriveKey(CKM_ECDH1_DERIVE) with the
// same epoch key and the same capsule points, then C_DestroyObject.
// Target: Holdfast >= 0.7 x raw, one thread each.

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "holdfast/hsm/token.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"
#include "holdfast/testing/softhsm.h"

namespace {

using namespace holdfast;
using namespace holdfast::bench;
namespace hpke = holdfast::protocol::hpke;

// -------------------------------------------------------- PKCS#11, raw

std::string Rv(CK_RV rv) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "CKR 0x%lx", static_cast<unsigned long>(rv));
  return buffer;
}

// dlopen handle of the module.
class Library {
 public:
  explicit Library(const std::string& path) : handle_(dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
    if (handle_ == nullptr) Fail("dlopen " + path, dlerror());
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle_, "C_GetFunctionList"));
    if (get_list == nullptr) Fail("dlsym", "C_GetFunctionList missing");
    if (CK_RV rv = get_list(&f_); rv != CKR_OK || f_ == nullptr) Fail("C_GetFunctionList", Rv(rv));
  }
  ~Library() { dlclose(handle_); }
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  CK_FUNCTION_LIST* f() const { return f_; }

 private:
  void* handle_;
  CK_FUNCTION_LIST* f_ = nullptr;
};

// C_Initialize; C_Finalize on destruction only if this object initialised
// the module (the Token of this process may have done so first).
class Initialized {
 public:
  explicit Initialized(CK_FUNCTION_LIST* f) : f_(f) {
    CK_C_INITIALIZE_ARGS init{};
    init.flags = CKF_OS_LOCKING_OK;
    const CK_RV rv = f_->C_Initialize(&init);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) Fail("C_Initialize", Rv(rv));
    owner_ = rv == CKR_OK;
  }
  ~Initialized() {
    if (owner_) f_->C_Finalize(nullptr);
  }
  Initialized(const Initialized&) = delete;
  Initialized& operator=(const Initialized&) = delete;

 private:
  CK_FUNCTION_LIST* f_;
  bool owner_ = false;
};

class Session {
 public:
  Session(CK_FUNCTION_LIST* f, CK_SLOT_ID slot) : f_(f) {
    if (CK_RV rv = f_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                     &handle_);
        rv != CKR_OK) {
      Fail("C_OpenSession", Rv(rv));
    }
  }
  ~Session() { f_->C_CloseSession(handle_); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  CK_SESSION_HANDLE get() const { return handle_; }

 private:
  CK_FUNCTION_LIST* f_;
  CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
};

// Ends a C_FindObjectsInit whatever happens.
class FindGuard {
 public:
  FindGuard(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s) : f_(f), s_(s) {}
  ~FindGuard() { f_->C_FindObjectsFinal(s_); }
  FindGuard(const FindGuard&) = delete;
  FindGuard& operator=(const FindGuard&) = delete;

 private:
  CK_FUNCTION_LIST* f_;
  CK_SESSION_HANDLE s_;
};

CK_SLOT_ID FindSlot(CK_FUNCTION_LIST* f, const std::string& label) {
  CK_ULONG count = 0;
  if (CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
    Fail("C_GetSlotList", Rv(rv));
  }
  std::vector<CK_SLOT_ID> slots(count);
  if (CK_RV rv = f->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
    Fail("C_GetSlotList", Rv(rv));
  }
  for (CK_ULONG i = 0; i < count; ++i) {
    CK_TOKEN_INFO info{};
    if (f->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
    std::string have(reinterpret_cast<const char*>(info.label), sizeof info.label);
    have.erase(have.find_last_not_of(' ') + 1);
    if (have == label) return slots[i];
  }
  Fail("token", "no token labelled " + label);
}

// The epoch private key and the raw derive, in a session of our own.
class RawDeriver {
 public:
  RawDeriver(const std::string& module, const std::string& token_label, const std::string& pin,
             const std::string& key_label)
      : lib_(module), init_(lib_.f()), session_(lib_.f(), FindSlot(lib_.f(), token_label)) {
    CK_FUNCTION_LIST* f = lib_.f();
    std::string pin_copy = pin;
    const CK_RV rv = f->C_Login(session_.get(), CKU_USER,
                                reinterpret_cast<CK_UTF8CHAR*>(pin_copy.data()), pin_copy.size());
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) Fail("C_Login", Rv(rv));

    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    std::string label = key_label;
    CK_ATTRIBUTE query[] = {{CKA_CLASS, &cls, sizeof cls},
                            {CKA_LABEL, label.data(), static_cast<CK_ULONG>(label.size())}};
    if (CK_RV r = f->C_FindObjectsInit(session_.get(), query, 2); r != CKR_OK) {
      Fail("C_FindObjectsInit", Rv(r));
    }
    FindGuard guard(f, session_.get());
    CK_ULONG found = 0;
    if (CK_RV r = f->C_FindObjects(session_.get(), &key_, 1, &found); r != CKR_OK || found != 1) {
      Fail("C_FindObjects", "epoch key " + key_label + " not found");
    }
  }

  // One ECDH in the token: derive a session secret from the peer point,
  // then destroy it. `as_der` wraps the point in a DER OCTET STRING.
  CK_RV Derive(ByteView peer, bool as_der) {
    Bytes data;
    if (as_der) {
      data = {0x04, static_cast<uint8_t>(peer.size())};  // OCTET STRING, short length
    }
    data.insert(data.end(), peer.begin(), peer.end());
    CK_ECDH1_DERIVE_PARAMS params{};
    params.kdf = CKD_NULL;
    params.pPublicData = data.data();
    params.ulPublicDataLen = data.size();
    CK_MECHANISM mechanism{CKM_ECDH1_DERIVE, &params, sizeof params};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_ULONG length = 32;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                           {CKA_KEY_TYPE, &type, sizeof type},
                           {CKA_VALUE_LEN, &length, sizeof length},
                           {CKA_TOKEN, &no, sizeof no},
                           {CKA_SENSITIVE, &no, sizeof no},
                           {CKA_EXTRACTABLE, &yes, sizeof yes}};
    CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE;
    CK_FUNCTION_LIST* f = lib_.f();
    const CK_RV rv = f->C_DeriveKey(session_.get(), &mechanism, key_, tmpl, 6, &secret);
    if (rv == CKR_OK) f->C_DestroyObject(session_.get(), secret);
    return rv;
  }

 private:
  Library lib_;
  Initialized init_;
  Session session_;
  CK_OBJECT_HANDLE key_ = CK_INVALID_HANDLE;
};

}  // namespace

int main(int argc, char** argv) {
  Args args(argc, argv);
  const size_t count = static_cast<size_t>(args.Number("--messages", 2000));
  const int rounds = static_cast<int>(args.Number("--rounds", 3));
  args.Done("hsm_bench [--messages N, default 2000] [--rounds R, default 3]");
  if (count < 1 || rounds < 1) Fail("argument", "need positive --messages and --rounds");

  auto softhsm = Take(testing::TempSoftHsm::Create("holdfast-bench"), "SoftHSM2 token");
  hsm::TokenConfig config;
  config.module_path = softhsm->module_path();
  config.token_label = softhsm->token_label();
  config.pin = SecretBytes(AsBytes(softhsm->user_pin()));
  std::unique_ptr<hsm::Token> token = Take(hsm::Token::Open(config), "open token");
  constexpr uint32_t kEpoch = 1;
  const Bytes archive_public = Take(token->GenerateEpochKey(kEpoch), "epoch key");

  // ---- the envelopes a disclosure job would read
  std::cerr << "hsm_bench: sealing " << count << " envelopes\n";
  const auto sender = Take(protocol::Ed25519Generate(), "sender key");
  const auto prekey = Take(hpke::GenerateKeyPair(hpke::KemId::kX25519HkdfSha256), "prekey");
  protocol::SealRequest request;
  request.conversation_id = "c_00112233445566ff";
  request.sender_user = "sender";
  request.sent_at_ms = 1767225600000;
  request.epoch_id = kEpoch;
  request.archive_public = archive_public;
  request.text.assign(1024, 'm');
  request.recipients.push_back({"peer", protocol::RandomBytes(protocol::kDeviceIdSize),
                                prekey.public_key});
  std::vector<protocol::ParsedEnvelope> parsed;
  std::vector<Bytes> points;
  for (size_t i = 0; i < count; ++i) {
    auto env = Take(protocol::SealMessage(request, sender.private_key.view()), "seal");
    parsed.push_back(Take(protocol::ParseEnvelope(env), "parse"));
    const std::string& enc = parsed.back().content.archive().enc();
    points.emplace_back(enc.begin(), enc.end());
  }
  // Shared secrets for the software-only breakdown row.
  std::vector<SecretBytes> secrets;
  for (const Bytes& p : points) secrets.push_back(Take(token->DeriveEcdh(kEpoch, p), "derive"));
  for (size_t i = 0; i < count; ++i) {
    auto opened = Take(protocol::OpenWithArchiveDh(parsed[i], secrets[i].view(), archive_public),
                       "open with archive dh");
    if (opened.text != request.text) Fail("open", "text differs");
  }

  RawDeriver raw(softhsm->module_path(), softhsm->token_label(), softhsm->user_pin(),
                 hsm::EpochKeyLabel(kEpoch));
  // PKCS#11 lets modules take the point raw or DER-wrapped; use what works.
  bool as_der = false;
  if (raw.Derive(points[0], false) != CKR_OK) {
    as_der = true;
    if (CK_RV rv = raw.Derive(points[0], true); rv != CKR_OK) Fail("C_DeriveKey", Rv(rv));
  }

  // ---- timed passes over every message, interleaved
  Best holdfast, raw_best, token_only, software_only, parallel;
  for (int round = 0; round < rounds; ++round) {
    Clock::time_point start = Clock::now();
    for (size_t i = 0; i < count; ++i) {
      auto dh = token->DeriveEcdh(kEpoch, points[i]);
      if (!dh.ok()) Fail("DeriveEcdh", dh.status().ToString());
      auto opened = protocol::OpenWithArchiveDh(parsed[i], dh->view(), archive_public);
      if (!opened.ok()) Fail("OpenWithArchiveDh", opened.status().ToString());
    }
    holdfast.Add(SecondsSince(start) / static_cast<double>(count));

    start = Clock::now();
    for (size_t i = 0; i < count; ++i) {
      if (CK_RV rv = raw.Derive(points[i], as_der); rv != CKR_OK) Fail("C_DeriveKey", Rv(rv));
    }
    raw_best.Add(SecondsSince(start) / static_cast<double>(count));

    start = Clock::now();
    for (size_t i = 0; i < count; ++i) {
      if (!token->DeriveEcdh(kEpoch, points[i]).ok()) Fail("DeriveEcdh", "failed");
    }
    token_only.Add(SecondsSince(start) / static_cast<double>(count));

    start = Clock::now();
    for (size_t i = 0; i < count; ++i) {
      if (!protocol::OpenWithArchiveDh(parsed[i], secrets[i].view(), archive_public).ok()) {
        Fail("OpenWithArchiveDh", "failed");
      }
    }
    software_only.Add(SecondsSince(start) / static_cast<double>(count));

    // What a disclosure export does: the same over the token's session
    // pool, one worker per session.
    start = Clock::now();
    std::atomic<size_t> next{0};
    std::vector<std::thread> workers;
    for (size_t t = 0; t < config.sessions; ++t) {
      workers.emplace_back([&] {
        for (size_t i = next++; i < count; i = next++) {
          auto dh = token->DeriveEcdh(kEpoch, points[i]);
          if (!dh.ok()) Fail("DeriveEcdh", dh.status().ToString());
          if (!protocol::OpenWithArchiveDh(parsed[i], dh->view(), archive_public).ok()) {
            Fail("OpenWithArchiveDh", "failed");
          }
        }
      });
    }
    for (std::thread& w : workers) w.join();
    parallel.Add(SecondsSince(start) / static_cast<double>(count));
  }

  // ---- report
  const double ratio = raw_best.value() / holdfast.value();  // rate ratio
  const double us = 1e6;
  std::cout << "hsm_bench: SoftHSM2 " << softhsm->module_path() << ", P-256 epoch key, "
            << count << " messages per pass, best of " << rounds
            << " passes, one thread unless said, " << std::thread::hardware_concurrency()
            << " cores\n\n";
  Table table({"per message", "us", "per s", "vs raw", "noise max/min"});
  auto row = [&](const std::string& name, const Best& b) {
    table.Row({name, Fixed(b.value() * us, 1), Fixed(1 / b.value(), 0),
               Fixed(raw_best.value() / b.value(), 2), Fixed(b.spread(), 2)});
  };
  row("holdfast: Token::DeriveEcdh + OpenWithArchiveDh", holdfast);
  row("raw PKCS#11: C_DeriveKey + C_DestroyObject (limit)", raw_best);
  row("  breakdown: Token::DeriveEcdh alone", token_only);
  row("  breakdown: OpenWithArchiveDh alone (software)", software_only);
  row("holdfast, " + std::to_string(config.sessions) + " threads over the session pool", parallel);
  table.Print(std::cout);
  std::cout << "\npeer point passed " << (as_der ? "DER-wrapped" : "raw")
            << " to C_DeriveKey; ratio = holdfast rate / raw rate = " << Fixed(ratio, 2)
            << ", target >= 0.70: " << (ratio >= 0.7 ? "PASS" : "FAIL") << "\n\n";

  JsonObject json;
  json.Str("bench", "hsm")
      .Str("unit", "per_s")
      .Arr("rows", {JsonObject()
                        .Str("name", "holdfast_derive_open")
                        .Num("per_s", 1 / holdfast.value(), 0)
                        .Num("us", holdfast.value() * us, 2)
                        .Num("noise", holdfast.spread(), 2),
                    JsonObject()
                        .Str("name", "raw_c_derivekey")
                        .Num("per_s", 1 / raw_best.value(), 0)
                        .Num("us", raw_best.value() * us, 2)
                        .Num("noise", raw_best.spread(), 2),
                    JsonObject()
                        .Str("name", "token_derive_only")
                        .Num("per_s", 1 / token_only.value(), 0)
                        .Num("us", token_only.value() * us, 2),
                    JsonObject()
                        .Str("name", "open_with_dh_only")
                        .Num("per_s", 1 / software_only.value(), 0)
                        .Num("us", software_only.value() * us, 2)})
      .Int("messages", static_cast<long long>(count))
      .Num("limit", 1 / raw_best.value(), 0)
      .Num("ratio", ratio, 3)
      .Num("target", 0.7, 2)
      .Bool("pass", ratio >= 0.7);
  std::cout << json.str() << std::endl;
  return 0;
}
