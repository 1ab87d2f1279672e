// The C API of holdfast/client.h, driven the way an app would: only bytes
// cross it. The test plays the gateway with the C++ wire types.
#include "holdfast/client.h"

#include <cstring>
#include <map>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"
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
    return Register(dev, user);
  }

  // The registration exchange for a device that can make its request.
  wire::DeviceInfo Register(Dev& dev, const char* user) {
    std::string req_bytes = Bytes2([&](uint8_t* out, size_t* len) {
      return hf_device_register_request(dev.d, "ENROL", kNow, out, len);
    });
    wire::RegisterRequest req;
    EXPECT_TRUE(req.ParseFromString(req_bytes));
    EXPECT_EQ(req.user(), user);
    EXPECT_EQ(req.enrollment_code(), "ENROL");
    const wire::RegisterResponse resp = root_.Register(req);
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
    *info.mutable_certificate() = resp.certificate();
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
                                        deliver.size(), kNow, &msg.m));
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
  len = 99;
  hf_message_resend_of(msg.m, &len);
  EXPECT_EQ(len, 0u) << "not a re-sent message";
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
    EXPECT_EQ(rng.counter, 96u) << "the key seed is 96 bytes";
    return Bytes2([&](uint8_t* out, size_t* len) {
      return hf_device_register_request(d.d, "X", kNow, out, len);
    });
  };
  EXPECT_EQ(identity(9), identity(9));
  EXPECT_NE(identity(9), identity(10));

  // Without a master key: 64 bytes, the same identity from the same bytes.
  auto identity_key = [](hf_device* d) {
    return Bytes2([&](uint8_t* out, size_t* len) { return hf_device_identity_key(d, out, len); });
  };
  Dev with, without;
  SeededRng rng_with{9}, rng_without{9};
  hf_rng ra = rng_with.rng(), rb = rng_without.rng();
  ASSERT_EQ(hf_device_create("alice", kNow, &ra, &with.d), HF_OK);
  ASSERT_EQ(hf_device_create_without_master("alice", kNow, &rb, &without.d), HF_OK);
  EXPECT_EQ(rng_without.counter, 64u) << "the key seed is 64 bytes";
  EXPECT_EQ(identity_key(with.d), identity_key(without.d));
  EXPECT_EQ(identity_key(with.d).size(), 32u);

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
  wire::RegisterRequest req;
  ASSERT_TRUE(req.ParseFromString(Bytes2([&](uint8_t* out, size_t* l) {
    return hf_device_register_request(fresh.d, "CODE", kNow, out, l);
  })));
  wire::RegisterResponse resp = root_.Register(req);
  resp.set_org_root_key(AsString(other_root.public_key()));
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

// ------------------------------------------------- second device, prekeys

const uint8_t* U8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

TEST_F(CApiTest, SecondDeviceCertifiedByTheFirst) {
  Dev alice, bob, phone;
  const auto alice_info = CreateAndRegister(alice, "alice", 21);
  const auto bob_info = CreateAndRegister(bob, "bob", 22);
  ASSERT_EQ(Note(hf_device_create_without_master("alice", kNow, nullptr, &phone.d)), HF_OK);
  const std::string phone_key = Bytes2(
      [&](uint8_t* out, size_t* len) { return hf_device_identity_key(phone.d, out, len); });
  ASSERT_EQ(phone_key.size(), 32u);

  size_t len = 0;
  EXPECT_EQ(Note(hf_device_register_request(phone.d, "ENROL", kNow, nullptr, &len)),
            HF_ERR_FAILED_PRECONDITION);
  EXPECT_EQ(hf_device_certify_new_device(phone.d, U8(phone_key), phone_key.size(), kNow,
                                         nullptr, &len),
            HF_ERR_FAILED_PRECONDITION)
      << "no master key on the phone";
  EXPECT_EQ(hf_device_certify_new_device(alice.d, U8(phone_key), 31, kNow, nullptr, &len),
            HF_ERR_INVALID_ARGUMENT);

  const std::string cert = Bytes2([&](uint8_t* out, size_t* l) {
    return hf_device_certify_new_device(alice.d, U8(phone_key), phone_key.size(), kNow, out, l);
  });
  wire::DeviceCertificate parsed;
  ASSERT_TRUE(parsed.ParseFromString(cert));
  auto body = protocol::CheckCertificateRequest(parsed, "alice", AsBytes(phone_key));
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  wire::DeviceCertificateBody alice_body;
  ASSERT_TRUE(alice_body.ParseFromString(alice_info.certificate().body()));
  EXPECT_EQ(body->master_key(), alice_body.master_key());

  // Refused: another identity's certificate, a forged one, junk; a device
  // with its own master key; a registered device.
  const std::string bob_key = bob_info.identity_key();
  const std::string for_bob = Bytes2([&](uint8_t* out, size_t* l) {
    return hf_device_certify_new_device(alice.d, U8(bob_key), bob_key.size(), kNow, out, l);
  });
  EXPECT_EQ(Note(hf_device_use_certificate(phone.d, U8(for_bob), for_bob.size())),
            HF_ERR_INVALID_ARGUMENT);
  wire::DeviceCertificate forged = parsed;
  forged.mutable_master_signature()->back() ^= 1;
  const std::string forged_bytes = forged.SerializeAsString();
  EXPECT_EQ(Note(hf_device_use_certificate(phone.d, U8(forged_bytes), forged_bytes.size())),
            HF_ERR_CRYPTO_FAILURE);
  const uint8_t junk[] = {0xff, 0xff};
  EXPECT_EQ(hf_device_use_certificate(phone.d, junk, sizeof junk), HF_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(hf_device_use_certificate(nullptr, U8(cert), cert.size()), HF_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(hf_device_register_request(phone.d, "ENROL", kNow, nullptr, &len),
            HF_ERR_FAILED_PRECONDITION);
  Dev fresh;
  ASSERT_EQ(hf_device_create("alice", kNow, nullptr, &fresh.d), HF_OK);
  EXPECT_EQ(hf_device_use_certificate(fresh.d, U8(cert), cert.size()),
            HF_ERR_FAILED_PRECONDITION);
  EXPECT_EQ(hf_device_use_certificate(alice.d, U8(cert), cert.size()), HF_ERR_ALREADY_EXISTS);

  ASSERT_EQ(Note(hf_device_use_certificate(phone.d, U8(cert), cert.size())), HF_OK)
      << hf_last_error_message();
  const auto phone_info = Register(phone, "alice");
  EXPECT_EQ(phone_info.identity_key(), phone_key);
  auto certified =
      protocol::VerifyDeviceCertificate(phone_info.certificate(), root_.public_key());
  ASSERT_TRUE(certified.ok()) << certified.status().ToString();
  EXPECT_EQ(AsString(certified->master_key), body->master_key());

  // The phone talks to bob, who accepts it as alice's.
  const std::string envelope =
      Prepare(phone.d, Conversation({alice_info, phone_info, bob_info}), "from the phone");
  Msg msg;
  ASSERT_EQ(Open(bob.d, Deliver(envelope, phone_info), msg), HF_OK) << hf_last_error_message();
  EXPECT_EQ(std::string(hf_message_text(msg.m, nullptr)), "from the phone");
}

TEST_F(CApiTest, PrekeyRotation) {
  Dev alice, bob, fresh;
  const auto alice_info = CreateAndRegister(alice, "alice", 31);
  const auto bob_info = CreateAndRegister(bob, "bob", 32);
  ASSERT_EQ(hf_device_create("carol", kNow, nullptr, &fresh.d), HF_OK);
  const auto conversation = Conversation({alice_info, bob_info});

  EXPECT_EQ(hf_device_prekey_rotation_due(bob.d, kNow, 0), 0);
  EXPECT_EQ(hf_device_prekey_rotation_due(bob.d, kNow + 7 * kDay, 0), 1);
  EXPECT_EQ(hf_device_prekey_rotation_due(bob.d, kNow + 7 * kDay - 1, 0), 0);
  EXPECT_EQ(hf_device_prekey_rotation_due(bob.d, kNow + 5, 5), 1);
  EXPECT_EQ(hf_device_prekey_rotation_due(nullptr, kNow + 7 * kDay, 0), 0);

  // Two messages to the first prekey; one is opened after the rotation, the
  // other after the old prekey was wiped.
  const std::string to_old = Prepare(alice.d, conversation, "to the old prekey");
  const std::string to_wiped = Prepare(alice.d, conversation, "too late");

  size_t len = 0;
  EXPECT_EQ(Note(hf_device_begin_prekey_rotation(fresh.d, kNow + 1, nullptr, 1, nullptr, &len)),
            HF_ERR_FAILED_PRECONDITION);
  EXPECT_EQ(hf_device_begin_prekey_rotation(bob.d, kNow, nullptr, 1, nullptr, &len),
            HF_ERR_INVALID_ARGUMENT)
      << "not newer than the current prekey";

  const int64_t t1 = kNow + 1000;
  SeededRng rng{77};
  hf_rng r = rng.rng();
  const std::string frame_bytes = Bytes2([&](uint8_t* out, size_t* l) {
    return hf_device_begin_prekey_rotation(bob.d, t1, &r, 9, out, l);
  });
  EXPECT_EQ(rng.counter, 32u) << "32 bytes drawn once; the second call repeats the pending frame";
  wire::ClientFrame frame;
  ASSERT_TRUE(frame.ParseFromString(frame_bytes));
  EXPECT_EQ(frame.request_id(), 9u);
  ASSERT_TRUE(frame.has_update_prekey());
  const wire::SignedPrekey pending = frame.update_prekey().prekey();
  EXPECT_EQ(pending.created_at_ms(), t1);
  EXPECT_TRUE(protocol::VerifyPrekey(AsBytes(bob_info.identity_key()), pending).ok());
  EXPECT_NE(pending.public_key(), bob_info.prekey().public_key());
  EXPECT_EQ(hf_device_prekey_rotation_due(bob.d, kNow + 70 * kDay, 0), 0) << "one is pending";
  // A retry, even at another time, gives the same frame and draws nothing.
  EXPECT_EQ(Bytes2([&](uint8_t* out, size_t* l) {
              return hf_device_begin_prekey_rotation(bob.d, t1 + 500, &r, 9, out, l);
            }),
            frame_bytes);
  EXPECT_EQ(rng.counter, 32u);

  // The same randomness gives the same prekey on a handle with the same keys.
  {
    Dev twin;
    CreateAndRegister(twin, "bob", 32);
    SeededRng again{77};
    hf_rng ra = again.rng();
    EXPECT_EQ(Bytes2([&](uint8_t* out, size_t* l) {
                return hf_device_begin_prekey_rotation(twin.d, t1, &ra, 9, out, l);
              }),
              frame_bytes);
  }

  // Sealed to the pending prekey (the gateway stored it; its answer is late).
  wire::DeviceInfo bob_pending = bob_info;
  *bob_pending.mutable_prekey() = pending;
  const std::string to_pending =
      Prepare(alice.d, Conversation({alice_info, bob_pending}), "to the pending prekey");
  {
    Msg msg;
    ASSERT_EQ(Open(bob.d, Deliver(to_pending, alice_info), msg), HF_OK)
        << hf_last_error_message();
    EXPECT_STREQ(hf_message_text(msg.m, nullptr), "to the pending prekey");
  }

  wire::PrekeyUpdated wrong;
  wrong.set_created_at_ms(t1 + 1);
  const std::string wrong_bytes = wrong.SerializeAsString();
  EXPECT_EQ(Note(hf_device_complete_prekey_rotation(bob.d, U8(wrong_bytes), wrong_bytes.size(),
                                                    t1)),
            HF_ERR_INVALID_ARGUMENT);
  const uint8_t junk[] = {0xff};
  EXPECT_EQ(hf_device_complete_prekey_rotation(bob.d, junk, sizeof junk, t1),
            HF_ERR_INVALID_ARGUMENT);
  const int64_t t2 = t1 + 2000;
  wire::PrekeyUpdated confirmed;
  confirmed.set_created_at_ms(t1);
  const std::string confirmed_bytes = confirmed.SerializeAsString();
  ASSERT_EQ(hf_device_complete_prekey_rotation(bob.d, U8(confirmed_bytes),
                                               confirmed_bytes.size(), t2),
            HF_OK)
      << hf_last_error_message();
  EXPECT_EQ(hf_device_complete_prekey_rotation(bob.d, U8(confirmed_bytes),
                                               confirmed_bytes.size(), t2),
            HF_ERR_FAILED_PRECONDITION);

  // The retired prekey survives an export and still opens the old message.
  ASSERT_EQ(Protect(bob.d, kPassphrase), HF_OK);
  Dev restored;
  ASSERT_EQ(Import(Export(bob.d), kPassphrase, restored), HF_OK) << hf_last_error_message();
  for (hf_device* d : {bob.d, restored.d}) {
    Msg msg;
    ASSERT_EQ(Open(d, Deliver(to_old, alice_info), msg), HF_OK) << hf_last_error_message();
    EXPECT_STREQ(hf_message_text(msg.m, nullptr), "to the old prekey");
  }

  size_t removed = 99;
  EXPECT_EQ(hf_device_expire_prekeys(bob.d, t2, -1, &removed), HF_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(removed, 0u);
  ASSERT_EQ(hf_device_expire_prekeys(bob.d, t2 + 35 * kDay - 1, 0, &removed), HF_OK);
  EXPECT_EQ(removed, 0u);
  ASSERT_EQ(hf_device_expire_prekeys(bob.d, t2 + 35 * kDay, 0, &removed), HF_OK);
  EXPECT_EQ(removed, 1u);
  Msg late;
  EXPECT_EQ(Open(bob.d, Deliver(to_wiped, alice_info), late), HF_ERR_CRYPTO_FAILURE);
  EXPECT_EQ(late.m, nullptr);
  // The restored copy still holds it, until its own grace period ends.
  ASSERT_EQ(hf_device_expire_prekeys(restored.d, t2 + 1, 1, nullptr), HF_OK);
  EXPECT_EQ(Open(restored.d, Deliver(to_wiped, alice_info), late), HF_ERR_CRYPTO_FAILURE);
  EXPECT_EQ(hf_device_expire_prekeys(nullptr, t2, 0, &removed), HF_ERR_INVALID_ARGUMENT);
}

// ---------------------------------------------------------------- notices

struct NoticesHandle {
  hf_notices* n = nullptr;
  NoticesHandle() = default;
  NoticesHandle(const NoticesHandle&) = delete;
  NoticesHandle& operator=(const NoticesHandle&) = delete;
  ~NoticesHandle() { hf_notices_free(&n); }
};

struct NoticeView {
  hf_notice_kind kind;
  std::string text;
  std::string user;
};

std::vector<NoticeView> Read(const hf_notices* notices) {
  std::vector<NoticeView> out;
  for (size_t i = 0; i < hf_notices_count(notices); ++i) {
    NoticeView v{};
    const char* text = nullptr;
    const char* user = nullptr;
    size_t text_len = 0, user_len = 0;
    EXPECT_EQ(hf_notices_get(notices, i, &v.kind, &text, &text_len, &user, &user_len), HF_OK);
    v.text.assign(text, text_len);
    v.user.assign(user, user_len);
    out.push_back(v);
  }
  return out;
}

TEST_F(CApiTest, ObserveConversationNotices) {
  Dev alice, bob, phone, mallory;
  const auto alice_info = CreateAndRegister(alice, "alice", 41);
  const auto bob_info = CreateAndRegister(bob, "bob", 42);
  const auto mallory_info = CreateAndRegister(mallory, "mallory", 43);
  auto observe = [&](const wire::ConversationInfo& c, NoticesHandle& out) {
    const std::string bytes = c.SerializeAsString();
    return Note(hf_device_observe_conversation(bob.d, U8(bytes), bytes.size(), kNow, &out.n));
  };

  NoticesHandle first;
  ASSERT_EQ(observe(Conversation({alice_info, bob_info}), first), HF_OK)
      << hf_last_error_message();
  auto seen = Read(first.n);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, HF_NOTICE_ARCHIVED);
  EXPECT_EQ(seen[0].text, "Archived by Acme.");
  EXPECT_EQ(seen[0].user, "");
  // Out of range, and every output optional.
  hf_notice_kind kind = HF_NOTICE_MEMBERS_CHANGED;
  EXPECT_EQ(Note(hf_notices_get(first.n, 1, &kind, nullptr, nullptr, nullptr, nullptr)),
            HF_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(hf_notices_get(first.n, 0, &kind, nullptr, nullptr, nullptr, nullptr), HF_OK);
  EXPECT_EQ(kind, HF_NOTICE_ARCHIVED);
  EXPECT_EQ(hf_notices_get(nullptr, 0, &kind, nullptr, nullptr, nullptr, nullptr),
            HF_ERR_INVALID_ARGUMENT);

  NoticesHandle again;
  ASSERT_EQ(observe(Conversation({alice_info, bob_info}), again), HF_OK);
  ASSERT_NE(again.n, nullptr);
  EXPECT_EQ(hf_notices_count(again.n), 0u);

  // Alice's new phone: one notice naming alice.
  ASSERT_EQ(hf_device_create_without_master("alice", kNow, nullptr, &phone.d), HF_OK);
  const std::string phone_key = Bytes2(
      [&](uint8_t* out, size_t* l) { return hf_device_identity_key(phone.d, out, l); });
  const std::string cert = Bytes2([&](uint8_t* out, size_t* l) {
    return hf_device_certify_new_device(alice.d, U8(phone_key), phone_key.size(), kNow, out, l);
  });
  ASSERT_EQ(hf_device_use_certificate(phone.d, U8(cert), cert.size()), HF_OK);
  const auto phone_info = Register(phone, "alice");
  NoticesHandle added;
  ASSERT_EQ(observe(Conversation({alice_info, phone_info, bob_info}), added), HF_OK)
      << hf_last_error_message();
  seen = Read(added.n);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, HF_NOTICE_NEW_DEVICE);
  EXPECT_EQ(seen[0].user, "alice");
  EXPECT_NE(seen[0].text.find(protocol::Fingerprint(AsBytes(phone_key))), std::string::npos)
      << seen[0].text;

  // Refused listings leave no handle.
  wire::ConversationInfo bad = Conversation({alice_info, bob_info});
  bad.mutable_devices(0)->mutable_certificate()->mutable_org_signature()->back() ^= 1;
  NoticesHandle refused;
  EXPECT_EQ(observe(bad, refused), HF_ERR_CRYPTO_FAILURE);
  EXPECT_EQ(refused.n, nullptr);
  wire::ConversationInfo stranger = Conversation({alice_info, bob_info});
  *stranger.add_devices() = mallory_info;
  EXPECT_EQ(observe(stranger, refused), HF_ERR_PERMISSION_DENIED);
  EXPECT_EQ(refused.n, nullptr);
  const uint8_t junk[] = {0xff, 0xff};
  EXPECT_EQ(hf_device_observe_conversation(bob.d, junk, sizeof junk, kNow, &refused.n),
            HF_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(hf_device_observe_conversation(bob.d, junk, sizeof junk, kNow, nullptr),
            HF_ERR_INVALID_ARGUMENT);

  // The phone removed again.
  NoticesHandle removed;
  ASSERT_EQ(observe(Conversation({alice_info, bob_info}), removed), HF_OK);
  seen = Read(removed.n);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, HF_NOTICE_DEVICE_REMOVED);
  EXPECT_EQ(seen[0].user, "alice");

  // A message from the phone, now unknown to bob again, carries its notice.
  const std::string envelope =
      Prepare(phone.d, Conversation({alice_info, phone_info, bob_info}), "new phone");
  Msg msg;
  ASSERT_EQ(Open(bob.d, Deliver(envelope, phone_info), msg), HF_OK) << hf_last_error_message();
  const hf_notices* carried = hf_message_notices(msg.m);
  ASSERT_NE(carried, nullptr);
  seen = Read(carried);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, HF_NOTICE_NEW_DEVICE);
  EXPECT_EQ(seen[0].user, "alice");
  // From a device bob knows: none.
  Msg known;
  ASSERT_EQ(Open(bob.d, Deliver(Prepare(alice.d, Conversation({alice_info, bob_info}), "k"),
                                alice_info),
                 known),
            HF_OK);
  ASSERT_NE(hf_message_notices(known.m), nullptr);
  EXPECT_EQ(hf_notices_count(hf_message_notices(known.m)), 0u);
  EXPECT_EQ(hf_message_notices(nullptr), nullptr);
  EXPECT_EQ(hf_notices_count(nullptr), 0u);

  NoticesHandle freed;
  ASSERT_EQ(observe(Conversation({alice_info, bob_info}), freed), HF_OK);
  hf_notices_free(&freed.n);
  EXPECT_EQ(freed.n, nullptr);
  hf_notices_free(&freed.n);
  hf_notices_free(nullptr);
}

// ---------------------------------------------------------------- reports

TEST_F(CApiTest, LastReportAfterARejectedDelivery) {
  Dev alice, bob, carol;
  const auto alice_info = CreateAndRegister(alice, "alice", 51);
  const auto bob_info = CreateAndRegister(bob, "bob", 52);
  CreateAndRegister(carol, "carol", 53);
  const std::string envelope = Prepare(alice.d, Conversation({alice_info, bob_info}), "secret");
  size_t len = 0;
  EXPECT_EQ(Note(hf_device_last_report(bob.d, 1, nullptr, &len)), HF_ERR_NOT_FOUND)
      << "nothing failed yet";

  // Alice's client seals another key to the archive. Her identity key is the
  // first 32 bytes her seeded rng gave.
  SeededRng alice_rng{51};
  SecretBytes seed(32);
  SeededRng::Fill(&alice_rng, seed.data(), seed.size());
  auto identity = protocol::Ed25519FromSeed(seed.view());
  ASSERT_TRUE(identity.ok());
  ASSERT_EQ(AsString(identity->public_key), alice_info.identity_key());
  wire::EpochCertificateBody epoch;
  ASSERT_TRUE(epoch.ParseFromString(epoch_.body()));
  wire::Envelope e;
  ASSERT_TRUE(e.ParseFromString(envelope));
  wire::EnvelopeContent content;
  ASSERT_TRUE(content.ParseFromString(e.content()));
  wire::MessageHeader header;
  ASSERT_TRUE(header.ParseFromString(content.header()));
  auto capsule = protocol::ComputeArchiveCapsule(
      protocol::RandomBytes(protocol::kCekSize), AsBytes(header.message_id()), epoch.epoch_id(),
      AsBytes(epoch.public_key()), AsBytes(content.header()));
  ASSERT_TRUE(capsule.ok());
  *content.mutable_archive() = *capsule;
  e.set_content(content.SerializeAsString());
  auto sig = protocol::Ed25519Sign(
      identity->private_key.view(),
      Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(e.content())}));
  ASSERT_TRUE(sig.ok());
  e.set_signature(AsString(*sig));

  Msg m;
  EXPECT_EQ(Open(bob.d, Deliver(e.SerializeAsString(), alice_info), m), HF_ERR_CRYPTO_FAILURE);
  EXPECT_EQ(m.m, nullptr);
  wire::ClientFrame frame;
  ASSERT_TRUE(frame.ParseFromString(Bytes2([&](uint8_t* out, size_t* l) {
    return hf_device_last_report(bob.d, 31, out, l);
  })));
  EXPECT_EQ(frame.request_id(), 31u);
  ASSERT_TRUE(frame.has_report_delivery());
  EXPECT_EQ(frame.report_delivery().reason(), "archive_capsule_mismatch");
  EXPECT_EQ(frame.report_delivery().delivery_id(), 9u);
  EXPECT_EQ(frame.report_delivery().message_id(), header.message_id());
  uint8_t small[4];
  len = sizeof small;
  EXPECT_EQ(hf_device_last_report(bob.d, 31, small, &len), HF_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(len, frame.ByteSizeLong());

  // A sender whose certificate does not verify.
  wire::DeviceInfo bad_sender = alice_info;
  bad_sender.mutable_certificate()->mutable_org_signature()->back() ^= 1;
  EXPECT_EQ(Open(bob.d, Deliver(envelope, bad_sender), m), HF_ERR_CRYPTO_FAILURE);
  ASSERT_TRUE(frame.ParseFromString(Bytes2([&](uint8_t* out, size_t* l) {
    return hf_device_last_report(bob.d, 32, out, l);
  })));
  EXPECT_EQ(frame.report_delivery().reason(), "bad_device_certificate");

  // Failures that warrant no report, and a success, clear it.
  EXPECT_EQ(Open(carol.d, Deliver(envelope, alice_info), m), HF_ERR_NOT_FOUND);
  EXPECT_EQ(hf_device_last_report(carol.d, 1, nullptr, &len), HF_ERR_NOT_FOUND);
  const uint8_t junk[] = {0xff};
  EXPECT_EQ(hf_device_open_delivery(bob.d, junk, sizeof junk, kNow, &m.m),
            HF_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(hf_device_last_report(bob.d, 1, nullptr, &len), HF_ERR_NOT_FOUND);
  EXPECT_EQ(Open(bob.d, Deliver(envelope, bad_sender), m), HF_ERR_CRYPTO_FAILURE);
  ASSERT_EQ(Open(bob.d, Deliver(envelope, alice_info), m), HF_OK) << hf_last_error_message();
  EXPECT_EQ(hf_device_last_report(bob.d, 1, nullptr, &len), HF_ERR_NOT_FOUND);
  EXPECT_EQ(hf_device_last_report(nullptr, 1, nullptr, &len), HF_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(hf_device_last_report(bob.d, 1, nullptr, nullptr), HF_ERR_INVALID_ARGUMENT);
}

TEST(CApiCTest, HeaderCompilesAsC) { EXPECT_EQ(holdfast_c_api_smoke(), 0); }

}  // namespace
}  // namespace holdfast::client
