// The C API of holdfast/client.h, driven the way an app would: only bytes
// cross it. The test plays the gateway with the C++ wire types.
#include "holdfast/client.h"

#include <cstring>
#include <map>
#include <new>
#include <set>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"
#include "test_org.h"

extern "C" int holdfast_c_api_smoke(void);  // c_api_c_test.c, compiled as C

namespace holdfast::client {
namespace {

constexpr int64_t kNow = 1'714'564'800'000;
constexpr int64_t kDay = 86'400'000;
// Cheap Argon2id for tests; the defaults are exercised in key_store_test.
const hf_kdf_params kCheap = {1, 64, 1};
const std::string kPassphrase = "c api passphrase";

// ------------------------------------------------------------ helpers

// Deterministic RNG: bytes counter-derived from a seed byte.
struct SeededRng {
  uint8_t seed;
  uint32_t counter = 0;
  static int Fill(void* ctx, uint8_t* out, size_t len) {
    auto* self = static_cast<SeededRng*>(ctx);
    for (size_t i = 0; i < len; ++i) {
      out[i] = static_cast<uint8_t>(self->seed * 31 + self->counter++);
    }
    return 0;
  }
  hf_rng rng() { return hf_rng{this, &SeededRng::Fill}; }
};

// Records every error code a test saw.
std::set<hf_error>& Seen() {
  static std::set<hf_error> seen;
  return seen;
}

hf_error Note(hf_error e) {
  Seen().insert(e);
  return e;
}

// Calls a query-size function twice (size, then bytes).
template <typename F>
std::string Bytes2(F call) {
  size_t len = 0;
  EXPECT_EQ(Note(call(nullptr, &len)), HF_OK) << hf_last_error_message();
  std::string out(len, '\0');
  EXPECT_EQ(Note(call(reinterpret_cast<uint8_t*>(out.data()), &len)), HF_OK)
      << hf_last_error_message();
  out.resize(len);
  return out;
}

// Owns a handle for the test's duration.
struct Dev {
  hf_device* d = nullptr;
  Dev() = default;
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { hf_device_free(&d); }
};

struct Msg {
  hf_message* m = nullptr;
  Msg() = default;
  Msg(const Msg&) = delete;
  Msg& operator=(const Msg&) = delete;
  ~Msg() { hf_message_free(&m); }
};

class CApiTest : public ::testing::Test {
 protected:
  CApiTest() {
    auto archive = protocol::hpke::GenerateKeyPair(protocol::hpke::KemId::kP256HkdfSha256);
    EXPECT_TRUE(archive.ok());
    wire::EpochCertificateBody body;
    body.set_version(1);
    body.set_epoch_id(5);
    body.set_public_key(AsString(archive->public_key));
    body.set_not_before_ms(kNow - kDay);
    body.set_not_after_ms(kNow + kDay);
    body.set_org("acme");
    epoch_ = root_.Certify(body);
  }

  // hf_device_create with a seeded RNG, then the registration exchange
  // with the test acting as gateway. Returns the DeviceInfo the gateway
  // would publish.
  wire::DeviceInfo CreateAndRegister(Dev& dev, const char* user, uint8_t seed) {
    SeededRng rng{seed};
    hf_rng r = rng.rng();
    EXPECT_EQ(Note(hf_device_create(user, kNow, &r, &dev.d)), HF_OK) << hf_last_error_message();
    std::string req_bytes = Bytes2([&](uint8_t* out, size_t* len) {
      return hf_device_register_request(dev.d, "ENROL", out, len);
    });
    wire::RegisterRequest req;
    EXPECT_TRUE(req.ParseFromString(req_bytes));
    EXPECT_EQ(req.user(), user);
    EXPECT_EQ(req.enrollment_code(), "ENROL");
    wire::RegisterResponse resp;
    resp.set_device_id(AsString(protocol::DeviceIdFor(AsBytes(req.identity_key()))));
    resp.set_org_root_key(AsString(root_.public_key()));
    resp.set_org("acme");
    const std::string resp_bytes = resp.SerializeAsString();
    EXPECT_EQ(hf_device_is_registered(dev.d), 0);
    EXPECT_EQ(Note(hf_device_accept_registration(
                  dev.d, reinterpret_cast<const uint8_t*>(resp_bytes.data()), resp_bytes.size(),
                  "wss://gw/v1")),
              HF_OK)
        << hf_last_error_message();
    EXPECT_EQ(hf_device_is_registered(dev.d), 1);
    wire::DeviceInfo info;
    info.set_user(user);
    info.set_device_id(resp.device_id());
    info.set_identity_key(req.identity_key());
    *info.mutable_prekey() = req.prekey();
    return info;
  }

  wire::ConversationInfo Conversation(const std::vector<wire::DeviceInfo>& devices) const {
    wire::ConversationInfo c;
    c.set_conversation_id("c-1");
    std::set<std::string> members;
    for (const auto& d : devices) members.insert(d.user());
    for (const auto& m : members) c.add_members(m);
    for (const auto& d : devices) *c.add_devices() = d;
    *c.mutable_epoch() = epoch_;
    c.set_archive_notice("Archived by Acme.");
    return c;
  }

  std::string Prepare(hf_device* sender, const wire::ConversationInfo& c, const std::string& text,
                      hf_output_kind kind = HF_OUTPUT_ENVELOPE, uint64_t request_id = 0) {
    const std::string conv = c.SerializeAsString();
    return Bytes2([&](uint8_t* out, size_t* len) {
      return hf_device_prepare_message(
          sender, reinterpret_cast<const uint8_t*>(conv.data()), conv.size(),
          reinterpret_cast<const uint8_t*>(text.data()), text.size(), kNow, kind, request_id,
          out, len);
    });
  }

  std::string Deliver(const std::string& envelope, const wire::DeviceInfo& sender) const {
    wire::Deliver d;
    d.set_delivery_id(9);
    EXPECT_TRUE(d.mutable_envelope()->ParseFromString(envelope));
    *d.mutable_sender() = sender;
    *d.mutable_epoch() = epoch_;
    d.set_archive_notice("Archived by Acme.");
    return d.SerializeAsString();
  }

  static hf_error Open(hf_device* d, const std::string& deliver, Msg& msg) {
    return Note(hf_device_open_delivery(d, reinterpret_cast<const uint8_t*>(deliver.data()),
                                        deliver.size(), &msg.m));
  }

  static std::string Export(hf_device* d) {
    return Bytes2([&](uint8_t* out, size_t* len) { return hf_device_export(d, out, len); });
  }

  static hf_error Import(const std::string& store, const std::string& passphrase, Dev& out) {
    return Note(hf_device_import_with_passphrase(
        reinterpret_cast<const uint8_t*>(store.data()), store.size(),
        reinterpret_cast<const uint8_t*>(passphrase.data()), passphrase.size(), &out.d));
  }

  static hf_error Protect(hf_device* d, const std::string& passphrase) {
    return Note(hf_device_protect_with_passphrase(
        d, reinterpret_cast<const uint8_t*>(passphrase.data()), passphrase.size(), &kCheap));
  }

  testing::OrgRoot root_;
  wire::EpochCertificate epoch_;
};

// ------------------------------------------------------------------ tests

TEST_F(CApiTest, AliceToBobThroughTheCApiOnly) {
  Dev alice, bob;
  const auto alice_info = CreateAndRegister(alice, "alice", 1);
  const auto bob_info = CreateAndRegister(bob, "bob", 2);

  const std::string envelope = Prepare(alice.d, Conversation({alice_info, bob_info}), "hi bob");
  ASSERT_FALSE(envelope.empty());
  Msg msg;
  ASSERT_EQ(Open(bob.d, Deliver(envelope, alice_info), msg), HF_OK) << hf_last_error_message();
  size_t len = 0;
  const char* text = hf_message_text(msg.m, &len);
  EXPECT_EQ(std::string(text, len), "hi bob");
  EXPECT_STREQ(hf_message_sender_user(msg.m, nullptr), "alice");
  EXPECT_STREQ(hf_message_conversation_id(msg.m, nullptr), "c-1");
  EXPECT_STREQ(hf_message_archive_notice(msg.m, nullptr), "Archived by Acme.");
  EXPECT_EQ(hf_message_sent_at_ms(msg.m), kNow);
  const uint8_t* sender = hf_message_sender_device(msg.m, &len);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sender), len), alice_info.device_id());
  hf_message_id(msg.m, &len);
  EXPECT_EQ(len, protocol::kMessageIdSize);

  // The same delivery again is a duplicate.
  Msg again;
  EXPECT_EQ(Open(bob.d, Deliver(envelope, alice_info), again), HF_ERR_ALREADY_EXISTS);
  EXPECT_EQ(again.m, nullptr);

  // Bob answers in a Submit frame; alice opens it.
  const std::string frame_bytes =
      Prepare(bob.d, Conversation({alice_info, bob_info}), "hi alice", HF_OUTPUT_SUBMIT_FRAME, 77);
  wire::ClientFrame frame;
  ASSERT_TRUE(frame.ParseFromString(frame_bytes));
  EXPECT_EQ(frame.request_id(), 77u);
  ASSERT_TRUE(frame.has_submit());
  Msg reply;
  ASSERT_EQ(Open(alice.d, Deliver(frame.submit().envelope().SerializeAsString(), bob_info), reply),
            HF_OK)
      << hf_last_error_message();
  EXPECT_EQ(std::string(hf_message_text(reply.m, nullptr)), "hi alice");
}

TEST_F(CApiTest, LoginAnswersTheChallenge) {
  Dev alice;
  const auto info = CreateAndRegister(alice, "alice", 3);
  const std::string hello_bytes =
      Bytes2([&](uint8_t* out, size_t* len) { return hf_device_hello(alice.d, out, len); });
  wire::Hello hello;
  ASSERT_TRUE(hello.ParseFromString(hello_bytes));
  EXPECT_EQ(hello.device_id(), info.device_id());

  wire::Challenge challenge;
  challenge.set_nonce(std::string(32, 'n'));
  const std::string c = challenge.SerializeAsString();
  const std::string auth_bytes = Bytes2([&](uint8_t* out, size_t* len) {
    return hf_device_answer_challenge(alice.d, reinterpret_cast<const uint8_t*>(c.data()),
                                      c.size(), out, len);
  });
  wire::Authenticate auth;
  ASSERT_TRUE(auth.ParseFromString(auth_bytes));
  EXPECT_TRUE(protocol::Ed25519Verify(AsBytes(info.identity_key()),
                                      protocol::AuthTranscript(AsBytes(challenge.nonce()),
                                                               AsBytes(info.device_id())),
                                      AsBytes(auth.signature()))
                  .ok());
}

TEST_F(CApiTest, BufferTooSmall) {
  Dev alice;
  CreateAndRegister(alice, "alice", 4);
  size_t needed = 0;
  ASSERT_EQ(hf_device_id(alice.d, nullptr, &needed), HF_OK);
  EXPECT_EQ(needed, protocol::kDeviceIdSize);
  uint8_t buf[64];
  std::memset(buf, 0xee, sizeof buf);
  size_t len = needed - 1;
  EXPECT_EQ(Note(hf_device_id(alice.d, buf, &len)), HF_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(len, needed);
  EXPECT_EQ(buf[0], 0xee) << "nothing is written on failure";
  EXPECT_NE(std::string(hf_last_error_message()).find("needs 16 bytes"), std::string::npos);
  len = sizeof buf;
  EXPECT_EQ(hf_device_id(alice.d, buf, &len), HF_OK);
  EXPECT_EQ(len, needed);
  EXPECT_STREQ(hf_last_error_message(), "");

  // The user name counts its NUL.
  char name[6];
  len = 5;
  EXPECT_EQ(hf_device_user(alice.d, name, &len), HF_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(len, 6u);
  EXPECT_EQ(hf_device_user(alice.d, name, &len), HF_OK);
  EXPECT_STREQ(name, "alice");

  // An export too large for the buffer.
  ASSERT_EQ(Protect(alice.d, kPassphrase), HF_OK);
  size_t store_len = 0;
  ASSERT_EQ(hf_device_export(alice.d, nullptr, &store_len), HF_OK);
  std::string small(store_len - 1, '\0');
  size_t small_len = small.size();
  EXPECT_EQ(hf_device_export(alice.d, reinterpret_cast<uint8_t*>(small.data()), &small_len),
            HF_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(small_len, store_len);
}

TEST_F(CApiTest, KeyStoreExportImport) {
  Dev alice, bob;
  const auto alice_info = CreateAndRegister(alice, "alice", 5);
  const auto bob_info = CreateAndRegister(bob, "bob", 6);

  size_t len = 0;
  EXPECT_EQ(Note(hf_device_export(bob.d, nullptr, &len)), HF_ERR_FAILED_PRECONDITION);
  ASSERT_EQ(Protect(bob.d, kPassphrase), HF_OK) << hf_last_error_message();
  const std::string store = Export(bob.d);
  EXPECT_NE(store.find("\"scheme\": \"argon2id\""), std::string::npos) << store;

  // Wrong passphrase.
  Dev wrong;
  EXPECT_EQ(Import(store, "not it", wrong), HF_ERR_PERMISSION_DENIED);
  EXPECT_STREQ(hf_last_error_message(), "wrong passphrase");
  EXPECT_EQ(wrong.d, nullptr);

  // Altered store: a bound field and the sealed keys.
  struct Edit {
    std::string anchor;
    size_t offset;  // of the character to change, from the anchor's start
  };
  for (const Edit& edit : {Edit{"\"org\": \"acme\"", 11},
                           Edit{"\"sealed_private_keys\": \"", 24}}) {
    std::string bad = store;
    const size_t at = bad.find(edit.anchor);
    ASSERT_NE(at, std::string::npos) << edit.anchor << " in " << store;
    char& c = bad[at + edit.offset];
    c = c == 'a' ? 'b' : 'a';
    Dev tampered;
    EXPECT_EQ(Import(bad, kPassphrase, tampered), HF_ERR_CRYPTO_FAILURE) << edit.anchor;
  }
  Dev garbage;
  EXPECT_EQ(Import("{not json", kPassphrase, garbage), HF_ERR_INVALID_ARGUMENT);

  // The right passphrase restores the same device, which opens messages and
  // exports again without the passphrase.
  Dev restored;
  ASSERT_EQ(Import(store, kPassphrase, restored), HF_OK) << hf_last_error_message();
  EXPECT_EQ(Bytes2([&](uint8_t* o, size_t* l) { return hf_device_id(restored.d, o, l); }),
            bob_info.device_id());
  EXPECT_EQ(hf_device_is_registered(restored.d), 1);
  const std::string envelope = Prepare(alice.d, Conversation({alice_info, bob_info}), "restored");
  Msg msg;
  ASSERT_EQ(Open(restored.d, Deliver(envelope, alice_info), msg), HF_OK) << hf_last_error_message();
  EXPECT_STREQ(hf_message_text(msg.m, nullptr), "restored");
  const std::string store2 = Export(restored.d);
  EXPECT_NE(store2, store);
  // The seen message travels with the store: a re-delivery is a duplicate.
  Dev restored2;
  ASSERT_EQ(Import(store2, kPassphrase, restored2), HF_OK) << hf_last_error_message();
  Msg dup;
  EXPECT_EQ(Open(restored2.d, Deliver(envelope, alice_info), dup), HF_ERR_ALREADY_EXISTS);
}

// A platform wrapper stand-in: XOR with a pad held in the context.
struct PadKeystore {
  uint8_t pad;
  bool locked = false;
  static hf_error Wrap(void* ctx, const uint8_t key[HF_STORE_KEY_SIZE], uint8_t* out,
                       size_t* out_len) {
    auto* self = static_cast<PadKeystore*>(ctx);
    for (size_t i = 0; i < HF_STORE_KEY_SIZE; ++i) out[i] = key[i] ^ self->pad;
    *out_len = HF_STORE_KEY_SIZE;
    return HF_OK;
  }
  static hf_error Unwrap(void* ctx, const uint8_t* wrapped, size_t len,
                         uint8_t key_out[HF_STORE_KEY_SIZE]) {
    auto* self = static_cast<PadKeystore*>(ctx);
    if (self->locked) return HF_ERR_PERMISSION_DENIED;
    if (len != HF_STORE_KEY_SIZE) return HF_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < HF_STORE_KEY_SIZE; ++i) key_out[i] = wrapped[i] ^ self->pad;
    return HF_OK;
  }
  hf_key_wrapper wrapper() { return {this, "test-keystore", &Wrap, &Unwrap}; }
};

TEST_F(CApiTest, PlatformKeyWrapper) {
  Dev bob;
  CreateAndRegister(bob, "bob", 7);
  PadKeystore keystore{0x5c};
  const hf_key_wrapper w = keystore.wrapper();
  ASSERT_EQ(Note(hf_device_protect_with_wrapper(bob.d, &w)), HF_OK) << hf_last_error_message();
  const std::string store = Export(bob.d);
  const auto* data = reinterpret_cast<const uint8_t*>(store.data());

  Dev restored;
  ASSERT_EQ(hf_device_import_with_wrapper(data, store.size(), &w, &restored.d), HF_OK)
      << hf_last_error_message();
  // Another platform key: caught by the key check.
  PadKeystore other{0x11};
  const hf_key_wrapper w2 = other.wrapper();
  Dev wrong;
  EXPECT_EQ(hf_device_import_with_wrapper(data, store.size(), &w2, &wrong.d),
            HF_ERR_PERMISSION_DENIED);
  // The keystore refuses (user not authenticated): passed on.
  keystore.locked = true;
  EXPECT_EQ(hf_device_import_with_wrapper(data, store.size(), &w, &wrong.d),
            HF_ERR_PERMISSION_DENIED);
  // A passphrase cannot open it.
  EXPECT_EQ(Import(store, kPassphrase, wrong), HF_ERR_FAILED_PRECONDITION);
  // Reserved or malformed scheme names, missing callbacks.
  for (const char* scheme : {"argon2id", "insecure-plaintext", "Bad Name", ""}) {
    hf_key_wrapper bad = w;
    bad.scheme = scheme;
    EXPECT_EQ(hf_device_protect_with_wrapper(bob.d, &bad), HF_ERR_INVALID_ARGUMENT) << scheme;
  }
  hf_key_wrapper no_unwrap = w;
  no_unwrap.unwrap = nullptr;
  EXPECT_EQ(hf_device_protect_with_wrapper(bob.d, &no_unwrap), HF_ERR_INVALID_ARGUMENT);
}

TEST_F(CApiTest, DeterministicKeysFromInjectedRng) {
  auto identity = [](uint8_t seed) {
    Dev d;
    SeededRng rng{seed};
    hf_rng r = rng.rng();
    EXPECT_EQ(hf_device_create("alice", kNow, &r, &d.d), HF_OK);
    EXPECT_EQ(rng.counter, 64u) << "the key seed is 64 bytes";
    return Bytes2([&](uint8_t* out, size_t* len) {
      return hf_device_register_request(d.d, "X", out, len);
    });
  };
  EXPECT_EQ(identity(9), identity(9));
  EXPECT_NE(identity(9), identity(10));

  // Without an RNG, OpenSSL's DRBG: two devices differ.
  Dev a, b;
  ASSERT_EQ(hf_device_create("alice", kNow, nullptr, &a.d), HF_OK);
  ASSERT_EQ(hf_device_create("alice", kNow, nullptr, &b.d), HF_OK);
  EXPECT_NE(Bytes2([&](uint8_t* o, size_t* l) { return hf_device_id(a.d, o, l); }),
            Bytes2([&](uint8_t* o, size_t* l) { return hf_device_id(b.d, o, l); }));
}

TEST_F(CApiTest, FreeIsSafeAndClearsTheHandle) {
  hf_device_free(nullptr);
  hf_device* none = nullptr;
  hf_device_free(&none);
  hf_message_free(nullptr);
  hf_message* no_message = nullptr;
  hf_message_free(&no_message);

  hf_device* d = nullptr;
  ASSERT_EQ(hf_device_create("alice", kNow, nullptr, &d), HF_OK);
  ASSERT_EQ(Protect(d, kPassphrase), HF_OK);
  hf_device_free(&d);
  EXPECT_EQ(d, nullptr);
  hf_device_free(&d);  // a second free finds NULL and does nothing
  // Calls on a freed (NULL) handle are refused, not undefined.
  size_t len = 0;
  EXPECT_EQ(hf_device_id(d, nullptr, &len), HF_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(hf_device_is_registered(d), 0);
  EXPECT_EQ(hf_message_text(nullptr, &len), nullptr);
  EXPECT_EQ(len, 0u);
}

// Each code of hf_error is produced by some call.
TEST_F(CApiTest, EveryErrorCodeIsReachable) {
  Dev alice, bob, carol, fresh;
  const auto alice_info = CreateAndRegister(alice, "alice", 11);
  const auto bob_info = CreateAndRegister(bob, "bob", 12);
  CreateAndRegister(carol, "carol", 13);
  ASSERT_EQ(hf_device_create("dave", kNow, nullptr, &fresh.d), HF_OK);

  // INVALID_ARGUMENT: NULL where a value is needed, malformed bytes.
  Dev none;
  EXPECT_EQ(Note(hf_device_create(nullptr, kNow, nullptr, &none.d)), HF_ERR_INVALID_ARGUMENT);
  const uint8_t junk[] = {0xff, 0xff, 0xff};
  EXPECT_EQ(Note(hf_device_accept_registration(fresh.d, junk, sizeof junk, "")),
            HF_ERR_INVALID_ARGUMENT);
  // FAILED_PRECONDITION: not registered.
  size_t len = 0;
  EXPECT_EQ(Note(hf_device_hello(fresh.d, nullptr, &len)), HF_ERR_FAILED_PRECONDITION);
  // PERMISSION_DENIED: a gateway presenting another org root than the pinned one.
  testing::OrgRoot other_root;
  ASSERT_EQ(Note(hf_device_set_org_root(fresh.d, root_.public_key().data(),
                                        root_.public_key().size())),
            HF_OK);
  wire::RegisterResponse resp;
  {
    size_t n = 0;
    ASSERT_EQ(hf_device_id(fresh.d, nullptr, &n), HF_OK);
    std::string id(n, '\0');
    ASSERT_EQ(hf_device_id(fresh.d, reinterpret_cast<uint8_t*>(id.data()), &n), HF_OK);
    resp.set_device_id(id);
  }
  resp.set_org_root_key(AsString(other_root.public_key()));
  resp.set_org("acme");
  std::string r = resp.SerializeAsString();
  EXPECT_EQ(Note(hf_device_accept_registration(
                fresh.d, reinterpret_cast<const uint8_t*>(r.data()), r.size(), "")),
            HF_ERR_PERMISSION_DENIED);
  // ... and the matching root is accepted; a second registration is ALREADY_EXISTS.
  resp.set_org_root_key(AsString(root_.public_key()));
  r = resp.SerializeAsString();
  EXPECT_EQ(Note(hf_device_accept_registration(
                fresh.d, reinterpret_cast<const uint8_t*>(r.data()), r.size(), "")),
            HF_OK);
  EXPECT_EQ(Note(hf_device_accept_registration(
                fresh.d, reinterpret_cast<const uint8_t*>(r.data()), r.size(), "")),
            HF_ERR_ALREADY_EXISTS);
  EXPECT_EQ(Note(hf_device_set_org_root(fresh.d, other_root.public_key().data(),
                                        other_root.public_key().size())),
            HF_ERR_FAILED_PRECONDITION);

  // NOT_FOUND: carol holds no capsule in a message to bob.
  const std::string envelope = Prepare(alice.d, Conversation({alice_info, bob_info}), "secret");
  Msg m;
  EXPECT_EQ(Open(carol.d, Deliver(envelope, alice_info), m), HF_ERR_NOT_FOUND);
  // CRYPTO_FAILURE: a flipped signature byte.
  wire::Envelope e;
  ASSERT_TRUE(e.ParseFromString(envelope));
  std::string sig = e.signature();
  sig[0] ^= 1;
  e.set_signature(sig);
  EXPECT_EQ(Open(bob.d, Deliver(e.SerializeAsString(), alice_info), m), HF_ERR_CRYPTO_FAILURE);
  // BUFFER_TOO_SMALL.
  uint8_t one[1];
  len = sizeof one;
  EXPECT_EQ(Note(hf_device_id(bob.d, one, &len)), HF_ERR_BUFFER_TOO_SMALL);
  // RNG_FAILURE: the caller's RNG gives up.
  hf_rng failing{nullptr, [](void*, uint8_t*, size_t) { return 1; }};
  EXPECT_EQ(Note(hf_device_create("x", kNow, &failing, &none.d)), HF_ERR_RNG_FAILURE);
  // OUT_OF_MEMORY and INTERNAL: exceptions thrown inside are caught at the
  // boundary (callbacks must not throw; this one does to prove the net).
  hf_rng oom{nullptr, [](void*, uint8_t*, size_t) -> int { throw std::bad_alloc(); }};
  EXPECT_EQ(Note(hf_device_create("x", kNow, &oom, &none.d)), HF_ERR_OUT_OF_MEMORY);
  hf_rng boom{nullptr, [](void*, uint8_t*, size_t) -> int { throw std::runtime_error("boom"); }};
  EXPECT_EQ(Note(hf_device_create("x", kNow, &boom, &none.d)), HF_ERR_INTERNAL);
  EXPECT_NE(std::string(hf_last_error_message()).find("boom"), std::string::npos);
  EXPECT_EQ(none.d, nullptr);

  std::set<std::string> names;
  for (int code = HF_OK; code <= HF_ERR_INTERNAL; ++code) {
    const auto e = static_cast<hf_error>(code);
    EXPECT_TRUE(Seen().count(e)) << "never produced: " << hf_error_string(e);
    names.insert(hf_error_string(e));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(HF_ERR_INTERNAL) + 1);
}

TEST(CApiCTest, HeaderCompilesAsC) { EXPECT_EQ(holdfast_c_api_smoke(), 0); }

}  // namespace
}  // namespace holdfast::client
