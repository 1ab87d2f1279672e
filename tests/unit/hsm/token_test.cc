// Runs against a real SoftHSM2 token in a temporary directory.
#include "holdfast/hsm/token.h"

#include "holdfast/hsm/admin.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <p11-kit/pkcs11.h>

#include "holdfast/protocol/primitives.h"
#include "slots.h"

extern char** environ;

namespace holdfast::hsm {
namespace {

namespace fs = std::filesystem;

constexpr char kSoPin[] = "1234";
constexpr char kUserPin[] = "55aa-user-pin";

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

CommandResult RunCommand(const std::vector<std::string>& args) {
  CommandResult result;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    result.output = "posix_spawnp failed";
    return result;
  }
  char buffer[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) result.output.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string FindSoftHsmModule() {
  for (const char* path : {"/usr/lib/softhsm/libsofthsm2.so",
                           "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}) {
    if (fs::exists(path)) return path;
  }
  return {};
}

SecretBytes Pin(std::string_view pin) { return SecretBytes(AsBytes(pin)); }

// A SoftHSM2 configuration whose token directory is dir/tokens (created
// empty); returns the path of the configuration file.
fs::path WriteSoftHsmConf(const fs::path& dir) {
  fs::create_directory(dir / "tokens");
  std::ofstream conf(dir / "softhsm2.conf");
  conf << "directories.tokendir = " << (dir / "tokens").string() << "\n"
       << "objectstore.backend = file\n"
       << "log.level = ERROR\n";
  return dir / "softhsm2.conf";
}

// A second PKCS#11 client, independent of the code under test. It finalises
// the module only if it was the one to initialise it.
class RawClient {
 public:
  explicit RawClient(const std::string& module) {
    library_ = dlopen(module.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library_ == nullptr) return;
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(library_, "C_GetFunctionList"));
    if (get_list == nullptr || get_list(&f_) != CKR_OK || f_ == nullptr) return;
    CK_RV rv = f_->C_Initialize(nullptr);
    finalize_ = rv == CKR_OK;
    initialised_ = rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED;
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  ~RawClient() {
    if (finalize_) f_->C_Finalize(nullptr);
    if (library_ != nullptr) dlclose(library_);
  }

  bool ok() const { return initialised_; }
  CK_FUNCTION_LIST* f() const { return f_; }

  std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> Tokens() const {
    CK_ULONG count = 0;
    if (f_->C_GetSlotList(CK_TRUE, nullptr, &count) != CKR_OK) return {};
    std::vector<CK_SLOT_ID> slots(count);
    if (f_->C_GetSlotList(CK_TRUE, slots.data(), &count) != CKR_OK) return {};
    std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> tokens;
    for (CK_ULONG i = 0; i < count; ++i) {
      CK_TOKEN_INFO info{};
      if (f_->C_GetTokenInfo(slots[i], &info) == CKR_OK) tokens.emplace_back(slots[i], info);
    }
    return tokens;
  }

  std::optional<CK_SLOT_ID> SlotLabelled(const std::string& label) const {
    for (const auto& [slot, info] : Tokens()) {
      if (internal::TokenLabelOf(info) == label) return slot;
    }
    return std::nullopt;
  }

  // Opens a session on the token, logs in, logs out; returns C_Login's result.
  CK_RV TryLogin(const std::string& label, CK_USER_TYPE user, std::string pin) const {
    std::optional<CK_SLOT_ID> slot = SlotLabelled(label);
    if (!slot) return CKR_TOKEN_NOT_PRESENT;
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    CK_RV rv = f_->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                 &session);
    if (rv != CKR_OK) return rv;
    rv = f_->C_Login(session, user, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size());
    if (rv == CKR_OK) f_->C_Logout(session);
    f_->C_CloseSession(session);
    return rv;
  }

 private:
  void* library_ = nullptr;
  CK_FUNCTION_LIST* f_ = nullptr;
  bool initialised_ = false;
  bool finalize_ = false;
};

PkeyPtr P256PublicKey(ByteView point) {
  OSSL_PARAM_BLD* builder = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_utf8_string(builder, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(builder, OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                   point.size());
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(builder);
  OSSL_PARAM_BLD_free(builder);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    key = nullptr;
  }
  OSSL_PARAM_free(params);
  return PkeyPtr(key);
}

// ECDSA-SHA256 verification of a P1363 (r||s) signature: OpenSSL wants DER.
bool VerifyP1363(ByteView point, ByteView message, ByteView signature) {
  if (signature.size() != 64) return false;
  PkeyPtr key = P256PublicKey(point);
  if (!key) return false;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(signature.data(), 32, nullptr),
                 BN_bin2bn(signature.data() + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int der_size = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (der_size <= 0) return false;
  MdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok = EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
            EVP_DigestVerify(ctx.get(), der, der_size, message.data(), message.size()) == 1;
  OPENSSL_free(der);
  return ok;
}

PkeyPtr GenerateEphemeralP256() { return PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

Bytes UncompressedPoint(EVP_PKEY* key) {
  Bytes point(65);
  size_t size = 0;
  EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(),
                                  &size);
  point.resize(size);
  return point;
}

Bytes SoftwareEcdh(EVP_PKEY* own, ByteView peer_point) {
  PkeyPtr peer = P256PublicKey(peer_point);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(own, nullptr));
  Bytes secret(32);
  size_t size = secret.size();
  if (!peer || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), secret.data(), &size) != 1) {
    return {};
  }
  secret.resize(size);
  return secret;
}

class TokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/holdfast-hsm-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new fs::path(tmpl);
    ASSERT_EQ(setenv("SOFTHSM2_CONF", WriteSoftHsmConf(*dir_).c_str(), 1), 0);
  }

  static void TearDownTestSuite() {
    std::error_code ignored;
    fs::remove_all(*dir_, ignored);
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    module_ = FindSoftHsmModule();
    ASSERT_FALSE(module_.empty()) << "libsofthsm2.so not found; install softhsm2";
    static std::atomic<int> counter{0};
    label_ = "hf-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    CommandResult init = RunCommand({"softhsm2-util", "--init-token", "--free", "--label", label_,
                              "--so-pin", kSoPin, "--pin", kUserPin});
    ASSERT_EQ(init.exit_code, 0) << init.output;
  }

  TokenConfig Config() const { return TokenConfig{module_, label_, Pin(kUserPin)}; }

  std::unique_ptr<Token> OpenToken() {
    auto token = Token::Open(Config());
    EXPECT_TRUE(token.ok()) << token.status().ToString();
    return token.ok() ? std::move(token).value() : nullptr;
  }

  CommandResult Pkcs11Tool(std::vector<std::string> extra) {
    std::vector<std::string> args = {"pkcs11-tool", "--module", module_, "--token-label",
                                     label_,        "--login",  "--pin",  kUserPin};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunCommand(args);
  }

  // The CKA_ID (hex) of the private key with this label, as pkcs11-tool lists it.
  std::string KeyIdOf(const std::string& key_label) {
    CommandResult list = Pkcs11Tool({"--list-objects", "--type", "privkey"});
    size_t at = list.output.find("label:      " + key_label + "\n");
    if (at == std::string::npos) return {};
    at = list.output.find("ID:", at);
    if (at == std::string::npos) return {};
    size_t start = list.output.find_first_not_of(' ', at + 3);
    return list.output.substr(start, list.output.find('\n', start) - start);
  }

  static fs::path* dir_;
  std::string module_;
  std::string label_;
};

fs::path* TokenTest::dir_ = nullptr;

TEST(EpochKeyLabelTest, ZeroPadsToSixDigits) {
  EXPECT_EQ(EpochKeyLabel(0), "holdfast-epoch-000000");
  EXPECT_EQ(EpochKeyLabel(42), "holdfast-epoch-000042");
  EXPECT_EQ(EpochKeyLabel(999999), "holdfast-epoch-999999");
  EXPECT_EQ(EpochKeyLabel(4294967295u), "holdfast-epoch-4294967295");
}

TEST_F(TokenTest, OpenFailsOnBadModulePath) {
  TokenConfig config = Config();
  config.module_path = (*dir_ / "no-such-module.so").string();
  auto token = Token::Open(config);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), Code::kUnavailable);
  EXPECT_NE(token.status().message().find("dlopen"), std::string::npos)
      << token.status().message();
}

TEST_F(TokenTest, OpenFailsOnLibraryThatIsNotAModule) {
  TokenConfig config = Config();
  config.module_path = "libz.so.1";
  auto token = Token::Open(config);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), Code::kUnavailable);
  EXPECT_NE(token.status().message().find("C_GetFunctionList"), std::string::npos)
      << token.status().message();
}

TEST_F(TokenTest, OpenFailsOnUnknownLabel) {
  TokenConfig config = Config();
  config.token_label = label_ + "-missing";
  auto token = Token::Open(config);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), Code::kUnavailable);
  EXPECT_NE(token.status().message().find("no token labelled"), std::string::npos)
      << token.status().message();
}

TEST_F(TokenTest, OpenFailsOnOverlongLabel) {
  TokenConfig config = Config();
  config.token_label = std::string(33, 'x');
  auto token = Token::Open(config);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), Code::kUnavailable);
}

TEST_F(TokenTest, OpenFailsOnWrongPin) {
  TokenConfig config = Config();
  config.pin = Pin("wrong-pin");
  auto token = Token::Open(config);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), Code::kUnavailable);
  EXPECT_NE(token.status().message().find("C_Login: CKR_PIN_INCORRECT"), std::string::npos)
      << token.status().message();
}

TEST_F(TokenTest, PingSucceedsWhenLoggedIn) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  EXPECT_TRUE(token->Ping().ok()) << token->Ping().ToString();
}

TEST_F(TokenTest, GeneratesOrgRootAndEpochKey) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  auto root = token->GenerateOrgRoot();
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  ASSERT_EQ(root->size(), 65u);
  EXPECT_EQ((*root)[0], 0x04);
  EXPECT_NE(P256PublicKey(*root), nullptr);

  auto epoch = token->GenerateEpochKey(7);
  ASSERT_TRUE(epoch.ok()) << epoch.status().ToString();
  ASSERT_EQ(epoch->size(), 65u);
  EXPECT_NE(P256PublicKey(*epoch), nullptr);
  EXPECT_NE(*root, *epoch);

  auto root_again = token->PublicKey(kOrgRootLabel);
  ASSERT_TRUE(root_again.ok()) << root_again.status().ToString();
  EXPECT_EQ(*root_again, *root);
  auto epoch_again = token->PublicKey(EpochKeyLabel(7));
  ASSERT_TRUE(epoch_again.ok()) << epoch_again.status().ToString();
  EXPECT_EQ(*epoch_again, *epoch);
}

TEST_F(TokenTest, PublicKeyOfAbsentKeyIsNotFound) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  EXPECT_EQ(token->PublicKey(kOrgRootLabel).status().code(), Code::kNotFound);
  EXPECT_EQ(token->Describe(EpochKeyLabel(1)).status().code(), Code::kNotFound);
}

TEST_F(TokenTest, RefusesDuplicateKeys) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateOrgRoot().ok());
  ASSERT_TRUE(token->GenerateEpochKey(3).ok());
  EXPECT_EQ(token->GenerateOrgRoot().status().code(), Code::kAlreadyExists);
  EXPECT_EQ(token->GenerateEpochKey(3).status().code(), Code::kAlreadyExists);
  EXPECT_TRUE(token->GenerateEpochKey(4).ok());
}

TEST_F(TokenTest, KeysAreSensitiveNonExtractableWithTheirUsages) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  auto root_point = token->GenerateOrgRoot();
  auto epoch_point = token->GenerateEpochKey(12);
  ASSERT_TRUE(root_point.ok() && epoch_point.ok());

  auto root = token->Describe(kOrgRootLabel);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(root->label, kOrgRootLabel);
  EXPECT_EQ(root->public_key, *root_point);
  EXPECT_TRUE(root->sensitive);
  EXPECT_FALSE(root->extractable);
  EXPECT_TRUE(root->can_sign);
  EXPECT_FALSE(root->can_derive);

  auto epoch = token->Describe(EpochKeyLabel(12));
  ASSERT_TRUE(epoch.ok()) << epoch.status().ToString();
  EXPECT_EQ(epoch->label, "holdfast-epoch-000012");
  EXPECT_EQ(epoch->public_key, *epoch_point);
  EXPECT_TRUE(epoch->sensitive);
  EXPECT_FALSE(epoch->extractable);
  EXPECT_FALSE(epoch->can_sign);
  EXPECT_TRUE(epoch->can_derive);
}

TEST_F(TokenTest, ListKeysShowsOnlyHoldfastKeys) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateEpochKey(2).ok());
  ASSERT_TRUE(token->GenerateOrgRoot().ok());
  ASSERT_TRUE(token->GenerateEpochKey(1).ok());
  CommandResult other =
      Pkcs11Tool({"--keypairgen", "--key-type", "EC:prime256v1", "--label", "someone-else"});
  ASSERT_EQ(other.exit_code, 0) << other.output;

  auto keys = token->ListKeys();
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ((*keys)[0].label, "holdfast-epoch-000001");
  EXPECT_EQ((*keys)[1].label, "holdfast-epoch-000002");
  EXPECT_EQ((*keys)[2].label, "holdfast-org-root");
  for (const KeyInfo& key : *keys) {
    EXPECT_EQ(key.public_key.size(), 65u) << key.label;
    EXPECT_TRUE(key.sensitive) << key.label;
    EXPECT_FALSE(key.extractable) << key.label;
  }
}

TEST_F(TokenTest, OrgRootSignatureVerifiesWithOpenSsl) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  EXPECT_EQ(token->SignWithOrgRoot(AsBytes("x")).status().code(), Code::kNotFound);
  auto root = token->GenerateOrgRoot();
  ASSERT_TRUE(root.ok());

  const std::string message = "epoch certificate: epoch 7, valid 2025-01..2025-02";
  auto signature = token->SignWithOrgRoot(AsBytes(message));
  ASSERT_TRUE(signature.ok()) << signature.status().ToString();
  ASSERT_EQ(signature->size(), 64u);
  EXPECT_TRUE(VerifyP1363(*root, AsBytes(message), *signature));
  EXPECT_FALSE(VerifyP1363(*root, AsBytes(message + "!"), *signature));
  Bytes tampered = *signature;
  tampered[10] ^= 0x01;
  EXPECT_FALSE(VerifyP1363(*root, AsBytes(message), tampered));

  auto empty = token->SignWithOrgRoot({});
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(VerifyP1363(*root, {}, *empty));
}

TEST_F(TokenTest, SigningKeyByLabelHasTheOrgRootsAttributesAndVerifies) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  EXPECT_EQ(token->Sign(kEnrollmentKeyLabel, AsBytes("x")).status().code(), Code::kNotFound);
  EXPECT_EQ(token->GenerateSigningKey("").status().code(), Code::kInvalidArgument);
  auto point = token->GenerateSigningKey(kEnrollmentKeyLabel);
  ASSERT_TRUE(point.ok()) << point.status().ToString();
  ASSERT_EQ(point->size(), 65u);
  EXPECT_EQ(token->GenerateSigningKey(kEnrollmentKeyLabel).status().code(), Code::kAlreadyExists);
  EXPECT_EQ(token->PublicKey(kEnrollmentKeyLabel).value(), *point);

  auto info = token->Describe(kEnrollmentKeyLabel);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_TRUE(info->sensitive);
  EXPECT_FALSE(info->extractable);
  EXPECT_TRUE(info->can_sign);
  EXPECT_FALSE(info->can_derive);

  const std::string message = "device certificate body";
  auto signature = token->Sign(kEnrollmentKeyLabel, AsBytes(message));
  ASSERT_TRUE(signature.ok()) << signature.status().ToString();
  ASSERT_EQ(signature->size(), 64u);
  EXPECT_TRUE(protocol::EcdsaP256Verify(*point, AsBytes(message), *signature).ok());
  EXPECT_FALSE(protocol::EcdsaP256Verify(*point, AsBytes(message + "!"), *signature).ok());
  EXPECT_TRUE(VerifyP1363(*point, AsBytes(message), *signature));

  // The org root is a different key; signing by label picks the right one.
  auto root = token->GenerateOrgRoot();
  ASSERT_TRUE(root.ok());
  auto by_root = token->Sign(kOrgRootLabel, AsBytes(message));
  ASSERT_TRUE(by_root.ok()) << by_root.status().ToString();
  EXPECT_TRUE(protocol::EcdsaP256Verify(*root, AsBytes(message), *by_root).ok());
  EXPECT_FALSE(protocol::EcdsaP256Verify(*point, AsBytes(message), *by_root).ok());
  auto via_wrapper = token->SignWithOrgRoot(AsBytes(message));
  ASSERT_TRUE(via_wrapper.ok());
  EXPECT_TRUE(protocol::EcdsaP256Verify(*root, AsBytes(message), *via_wrapper).ok());
}

TEST_F(TokenTest, SignRefusesADeriveOnlyKey) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateEpochKey(3).ok());
  auto signature = token->Sign(EpochKeyLabel(3), AsBytes("not allowed"));
  ASSERT_FALSE(signature.ok());
  EXPECT_NE(signature.status().message().find("C_SignInit"), std::string::npos)
      << signature.status().ToString();
}

TEST_F(TokenTest, DeriveEcdhMatchesSoftwareEcdh) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  auto epoch = token->GenerateEpochKey(5);
  ASSERT_TRUE(epoch.ok());
  for (int i = 0; i < 5; ++i) {
    PkeyPtr ephemeral = GenerateEphemeralP256();
    ASSERT_NE(ephemeral, nullptr);
    Bytes peer = UncompressedPoint(ephemeral.get());
    ASSERT_EQ(peer.size(), 65u);
    auto secret = token->DeriveEcdh(5, peer);
    ASSERT_TRUE(secret.ok()) << secret.status().ToString();
    Bytes expected = SoftwareEcdh(ephemeral.get(), *epoch);
    ASSERT_EQ(expected.size(), 32u);
    EXPECT_EQ(secret->Reveal(), expected);
  }
}

TEST_F(TokenTest, DeriveEcdhRefusesBadInput) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  auto epoch = token->GenerateEpochKey(9);
  ASSERT_TRUE(epoch.ok());
  Bytes good = UncompressedPoint(GenerateEphemeralP256().get());

  EXPECT_EQ(token->DeriveEcdh(9, ByteView(good).first(64)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(token->DeriveEcdh(9, {}).status().code(), Code::kInvalidArgument);
  Bytes compressed(good.begin(), good.begin() + 33);
  compressed[0] = 0x02 | (good[64] & 1);
  EXPECT_EQ(token->DeriveEcdh(9, compressed).status().code(), Code::kInvalidArgument);
  Bytes wrong_prefix = good;
  wrong_prefix[0] = 0x05;
  EXPECT_EQ(token->DeriveEcdh(9, wrong_prefix).status().code(), Code::kInvalidArgument);
  Bytes off_curve = good;
  off_curve[64] ^= 0x01;
  EXPECT_EQ(token->DeriveEcdh(9, off_curve).status().code(), Code::kInvalidArgument);
  Bytes zero(65, 0);
  zero[0] = 0x04;
  EXPECT_EQ(token->DeriveEcdh(9, zero).status().code(), Code::kInvalidArgument);

  EXPECT_EQ(token->DeriveEcdh(10, good).status().code(), Code::kNotFound);
  EXPECT_TRUE(token->DeriveEcdh(9, good).ok());
}

// Usage flags are enforced by the token itself, seen through another client:
// pkcs11-tool can derive with an epoch key but not with the org root.
TEST_F(TokenTest, TokenEnforcesKeyUsages) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateOrgRoot().ok());
  auto epoch = token->GenerateEpochKey(1);
  ASSERT_TRUE(epoch.ok());
  PkeyPtr ephemeral = GenerateEphemeralP256();
  fs::path peer_file = *dir_ / (label_ + "-peer.der");
  {
    unsigned char* der = nullptr;
    int der_size = i2d_PUBKEY(ephemeral.get(), &der);
    ASSERT_GT(der_size, 0);
    std::ofstream out(peer_file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(der), der_size);
    OPENSSL_free(der);
  }
  // pkcs11-tool --derive selects the key by --id only (it ignores --label).
  auto derive_with = [&](const std::string& key_label, const fs::path& out) {
    std::string id = KeyIdOf(key_label);
    EXPECT_FALSE(id.empty()) << key_label;
    return Pkcs11Tool({"--derive", "--mechanism", "ECDH1-DERIVE", "--id", id, "--input-file",
                       peer_file.string(), "--output-file", out.string()});
  };
  fs::path epoch_out = *dir_ / (label_ + "-epoch.out");
  CommandResult allowed = derive_with(EpochKeyLabel(1), epoch_out);
  ASSERT_EQ(allowed.exit_code, 0) << allowed.output;
  std::ifstream in(epoch_out, std::ios::binary);
  Bytes derived((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(derived, SoftwareEcdh(ephemeral.get(), *epoch));

  CommandResult refused = derive_with(std::string(kOrgRootLabel), *dir_ / (label_ + "-root.out"));
  EXPECT_NE(refused.exit_code, 0) << refused.output;
}

TEST_F(TokenTest, Pkcs11ToolSeesNonExtractableKeys) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateOrgRoot().ok());
  ASSERT_TRUE(token->GenerateEpochKey(1).ok());
  ASSERT_TRUE(token->GenerateSigningKey(kEnrollmentKeyLabel).ok());

  CommandResult list = Pkcs11Tool({"--list-objects", "--type", "privkey"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  for (const std::string label :
       {"holdfast-org-root", "holdfast-epoch-000001", "holdfast-enrollment"}) {
    size_t at = list.output.find("label:      " + label + "\n");
    ASSERT_NE(at, std::string::npos) << list.output;
    size_t block_end = list.output.find("Object;", at);
    std::string block = list.output.substr(at, block_end - at);
    EXPECT_NE(block.find("Access:     sensitive, always sensitive, never extractable"),
              std::string::npos)
        << block;
  }
  // pkcs11-tool 0.23 refuses --read-object --type privkey by itself ("not
  // (yet) supported") whatever the key's attributes, so it proves nothing;
  // the attempt to read the value is made directly below.
}

// A second PKCS#11 client, independent of Token, that tries every way to get
// the private key material out.
TEST_F(TokenTest, PrivateKeysCannotBeReadOrMadeExtractable) {
  {
    auto token = OpenToken();
    ASSERT_NE(token, nullptr);
    ASSERT_TRUE(token->GenerateOrgRoot().ok());
    ASSERT_TRUE(token->GenerateEpochKey(1).ok());
  }  // closed, so the module is finalised and the client below starts afresh

  RawClient client(module_);
  ASSERT_TRUE(client.ok());
  CK_FUNCTION_LIST* f = client.f();
  std::optional<CK_SLOT_ID> slot = client.SlotLabelled(label_);
  ASSERT_TRUE(slot.has_value());
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  ASSERT_EQ(f->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                             &session),
            CKR_OK);
  std::string pin = kUserPin;
  ASSERT_EQ(f->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()),
                       pin.size()),
            CKR_OK);

  CK_OBJECT_CLASS private_class = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE query[] = {{CKA_CLASS, &private_class, sizeof private_class}};
  ASSERT_EQ(f->C_FindObjectsInit(session, query, 1), CKR_OK);
  CK_OBJECT_HANDLE keys[8];
  CK_ULONG key_count = 0;
  ASSERT_EQ(f->C_FindObjects(session, keys, 8, &key_count), CKR_OK);
  ASSERT_EQ(f->C_FindObjectsFinal(session), CKR_OK);
  ASSERT_EQ(key_count, 2u);

  // An AES key that could wrap other keys, if they allowed it.
  CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;
  CK_KEY_TYPE aes = CKK_AES;
  CK_ULONG aes_size = 32;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_ATTRIBUTE wrap_template[] = {{CKA_CLASS, &secret_class, sizeof secret_class},
                                  {CKA_KEY_TYPE, &aes, sizeof aes},
                                  {CKA_VALUE_LEN, &aes_size, sizeof aes_size},
                                  {CKA_TOKEN, &no, sizeof no},
                                  {CKA_WRAP, &yes, sizeof yes}};
  CK_MECHANISM aes_gen{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE wrapping_key = CK_INVALID_HANDLE;
  ASSERT_EQ(f->C_GenerateKey(session, &aes_gen, wrap_template, std::size(wrap_template),
                             &wrapping_key),
            CKR_OK);

  for (CK_ULONG i = 0; i < key_count; ++i) {
    CK_ATTRIBUTE value{CKA_VALUE, nullptr, 0};
    EXPECT_EQ(f->C_GetAttributeValue(session, keys[i], &value, 1), CKR_ATTRIBUTE_SENSITIVE);
    EXPECT_EQ(value.ulValueLen, CK_UNAVAILABLE_INFORMATION);

    CK_ATTRIBUTE make_extractable{CKA_EXTRACTABLE, &yes, sizeof yes};
    EXPECT_NE(f->C_SetAttributeValue(session, keys[i], &make_extractable, 1), CKR_OK);
    CK_ATTRIBUTE make_readable{CKA_SENSITIVE, &no, sizeof no};
    EXPECT_NE(f->C_SetAttributeValue(session, keys[i], &make_readable, 1), CKR_OK);

    CK_MECHANISM wrap{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    CK_ULONG wrapped_size = 0;
    EXPECT_EQ(f->C_WrapKey(session, &wrap, wrapping_key, keys[i], nullptr, &wrapped_size),
              CKR_KEY_UNEXTRACTABLE);
  }
  f->C_CloseSession(session);
}

TEST_F(TokenTest,NoticesKeysDeletedByAnotherClient) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateEpochKey(1).ok());
  Bytes peer = UncompressedPoint(GenerateEphemeralP256().get());
  ASSERT_TRUE(token->DeriveEcdh(1, peer).ok());

  std::string id = KeyIdOf(EpochKeyLabel(1));
  ASSERT_FALSE(id.empty());
  for (const char* type : {"privkey", "pubkey"}) {
    CommandResult deleted = Pkcs11Tool({"--delete-object", "--type", type, "--id", id});
    ASSERT_EQ(deleted.exit_code, 0) << deleted.output;
  }
  EXPECT_EQ(token->DeriveEcdh(1, peer).status().code(), Code::kNotFound);

  auto replacement = token->GenerateEpochKey(1);
  ASSERT_TRUE(replacement.ok()) << replacement.status().ToString();
  PkeyPtr ephemeral = GenerateEphemeralP256();
  auto secret = token->DeriveEcdh(1, UncompressedPoint(ephemeral.get()));
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  EXPECT_EQ(secret->Reveal(), SoftwareEcdh(ephemeral.get(), *replacement));
}

TEST_F(TokenTest, KeysPersistAcrossSessionsAndTokensShareTheModule) {
  Bytes root;
  {
    auto token = OpenToken();
    ASSERT_NE(token, nullptr);
    auto generated = token->GenerateOrgRoot();
    ASSERT_TRUE(generated.ok());
    root = *generated;
  }
  auto first = OpenToken();
  auto second = OpenToken();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  auto again = first->PublicKey(kOrgRootLabel);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, root);
  // Closing one Token must not finalise the module under the other.
  first.reset();
  EXPECT_TRUE(second->Ping().ok());
  auto signature = second->SignWithOrgRoot(AsBytes("still here"));
  ASSERT_TRUE(signature.ok()) << signature.status().ToString();
  EXPECT_TRUE(VerifyP1363(root, AsBytes("still here"), *signature));
}

TEST_F(TokenTest, ConcurrentCallsAreSerialised) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  auto root = token->GenerateOrgRoot();
  auto epoch = token->GenerateEpochKey(1);
  ASSERT_TRUE(root.ok() && epoch.ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string message = "m" + std::to_string(t) + "-" + std::to_string(i);
        auto signature = token->SignWithOrgRoot(AsBytes(message));
        if (!signature.ok() || !VerifyP1363(*root, AsBytes(message), *signature)) ++failures;
        PkeyPtr ephemeral = GenerateEphemeralP256();
        auto secret = token->DeriveEcdh(1, UncompressedPoint(ephemeral.get()));
        if (!secret.ok() || secret->Reveal() != SoftwareEcdh(ephemeral.get(), *epoch)) {
          ++failures;
        }
        if (!token->ListKeys().ok() || !token->Ping().ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

// A raw session on the TokenTest's token from a second PKCS#11 client in
// this process (SoftHSM2 shares its state within the process, so Token
// sees what it does, and the login is shared with any open Token).
class RawSession {
 public:
  RawSession(const std::string& module, const std::string& token_label) : client_(module) {
    if (!client_.ok()) return;
    std::optional<CK_SLOT_ID> slot = client_.SlotLabelled(token_label);
    if (!slot) return;
    slot_ = *slot;
    if (f()->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                           &session_) != CKR_OK) {
      return;
    }
    std::string pin = kUserPin;
    CK_RV rv = f()->C_Login(session_, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()),
                            pin.size());
    ok_ = rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN;
  }
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;
  ~RawSession() {
    if (session_ != CK_INVALID_HANDLE) f()->C_CloseSession(session_);
  }

  bool ok() const { return ok_; }
  CK_FUNCTION_LIST* f() const { return client_.f(); }
  CK_SESSION_HANDLE session() const { return session_; }
  CK_SLOT_ID slot() const { return slot_; }

  // An EC P-256 pair labelled `label` whose private half has the
  // attributes Token gives a key of `sign` usage, except `overrides`; then
  // `later` is applied with C_SetAttributeValue. Returns the first failing
  // CK_RV.
  CK_RV MakePair(const std::string& label, bool sign,
                 std::vector<std::pair<CK_ATTRIBUTE_TYPE, bool>> overrides,
                 std::vector<std::pair<CK_ATTRIBUTE_TYPE, bool>> later = {}) {
    std::vector<std::pair<CK_ATTRIBUTE_TYPE, bool>> bools = {
        {CKA_TOKEN, true},      {CKA_PRIVATE, true}, {CKA_SENSITIVE, true},
        {CKA_EXTRACTABLE, false}, {CKA_SIGN, sign},    {CKA_DERIVE, !sign},
        {CKA_DECRYPT, false},   {CKA_UNWRAP, false}, {CKA_SIGN_RECOVER, false}};
    for (const auto& [type, value] : overrides) {
      auto it = std::find_if(bools.begin(), bools.end(),
                             [&](const auto& b) { return b.first == type; });
      if (it != bools.end()) it->second = value;
    }
    static const CK_BBOOL kYes = CK_TRUE, kNo = CK_FALSE;
    static const uint8_t kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    std::vector<CK_ATTRIBUTE> private_template = {
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
    for (const auto& [type, value] : bools) {
      private_template.push_back({type, const_cast<CK_BBOOL*>(value ? &kYes : &kNo), 1});
    }
    std::vector<CK_ATTRIBUTE> public_template = {
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
        {CKA_EC_PARAMS, const_cast<uint8_t*>(kP256Oid), sizeof kP256Oid},
        {CKA_TOKEN, const_cast<CK_BBOOL*>(&kYes), 1}};
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    CK_RV rv = f()->C_GenerateKeyPair(session_, &mechanism, public_template.data(),
                                      public_template.size(), private_template.data(),
                                      private_template.size(), &pub, &priv);
    if (rv != CKR_OK) return rv;
    for (const auto& [type, value] : later) {
      CK_ATTRIBUTE attribute{type, const_cast<CK_BBOOL*>(value ? &kYes : &kNo), 1};
      if (rv = f()->C_SetAttributeValue(session_, priv, &attribute, 1); rv != CKR_OK) return rv;
    }
    return CKR_OK;
  }

  // Destroys every object labelled `label`.
  void Destroy(const std::string& label) {
    CK_ATTRIBUTE query[] = {{CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
    std::vector<CK_OBJECT_HANDLE> found(16);
    CK_ULONG n = 0;
    if (f()->C_FindObjectsInit(session_, query, 1) != CKR_OK) return;
    f()->C_FindObjects(session_, found.data(), found.size(), &n);
    f()->C_FindObjectsFinal(session_);
    for (CK_ULONG i = 0; i < n; ++i) f()->C_DestroyObject(session_, found[i]);
  }

 private:
  RawClient client_;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
  bool ok_ = false;
};

TEST_F(TokenTest, KeysHoldfastMakesPassTheAttributePolicy) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateOrgRoot().ok());
  ASSERT_TRUE(token->GenerateEpochKey(3).ok());
  ASSERT_TRUE(token->GenerateEpochKey(1234567).ok());
  auto keys = token->ListKeys();
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  Status policy = CheckKeyPolicy(*keys, label_, TokenRole::kArchive);
  EXPECT_TRUE(policy.ok()) << policy.ToString();
  for (const KeyInfo& key : *keys) {
    EXPECT_TRUE(key.is_private && key.always_sensitive && key.never_extractable) << key.label;
    EXPECT_FALSE(key.can_decrypt || key.can_unwrap || key.can_sign_recover) << key.label;
  }
  // The same keys in the enrollment token's role: the org root is refused.
  policy = CheckKeyPolicy(*keys, label_, TokenRole::kEnrollment);
  EXPECT_EQ(policy.code(), Code::kFailedPrecondition);
  EXPECT_NE(policy.message().find("key holdfast-epoch-000003 in token \"" + label_ +
                                  "\": not a key this token may hold"),
            std::string::npos)
      << policy.ToString();

  auto enrollment = token->GenerateSigningKey(kEnrollmentKeyLabel);
  ASSERT_TRUE(enrollment.ok());
  auto described = token->Describe(kEnrollmentKeyLabel);
  ASSERT_TRUE(described.ok());
  EXPECT_TRUE(CheckKeyPolicy({*described}, "enrollment", TokenRole::kEnrollment).ok());

  // pkcs11-tool, independently, sees exactly one usage per key.
  CommandResult list = Pkcs11Tool({"--list-objects", "--type", "privkey"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  for (const auto& [label, usage] :
       {std::pair<std::string, std::string>{"holdfast-org-root", "sign"},
        {"holdfast-enrollment", "sign"},
        {"holdfast-epoch-000003", "derive"},
        {"holdfast-epoch-1234567", "derive"}}) {
    size_t at = list.output.find("label:      " + label + "\n");
    ASSERT_NE(at, std::string::npos) << list.output;
    std::string block = list.output.substr(at, list.output.find("Object;", at) - at);
    EXPECT_NE(block.find("Usage:      " + usage + "\n"), std::string::npos) << block;
    EXPECT_NE(block.find("Access:     sensitive, always sensitive, never extractable"),
              std::string::npos)
        << block;
  }
}

// Keys made on purpose with the wrong attributes, through a raw PKCS#11
// client, are each refused with the key, the token and the attribute named.
TEST_F(TokenTest, AttributePolicyRefusesEachBadKey) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateOrgRoot().ok());
  RawSession raw(module_, label_);
  ASSERT_TRUE(raw.ok());
  struct Case {
    std::string label;
    bool sign;
    std::vector<std::pair<CK_ATTRIBUTE_TYPE, bool>> overrides;
    std::vector<std::pair<CK_ATTRIBUTE_TYPE, bool>> later;
    std::string expected;
  };
  const std::string epoch = EpochKeyLabel(99);
  const Case cases[] = {
      {epoch, false, {{CKA_EXTRACTABLE, true}}, {}, "CKA_EXTRACTABLE is true (must be false)"},
      {epoch, false, {{CKA_SENSITIVE, false}}, {}, "CKA_SENSITIVE is false (must be true)"},
      {epoch, false, {{CKA_SENSITIVE, false}}, {{CKA_SENSITIVE, true}},
       "CKA_ALWAYS_SENSITIVE is false (must be true)"},
      {epoch, false, {{CKA_EXTRACTABLE, true}}, {{CKA_EXTRACTABLE, false}},
       "CKA_NEVER_EXTRACTABLE is false (must be true)"},
      {epoch, false, {{CKA_PRIVATE, false}}, {}, "CKA_PRIVATE is false (must be true)"},
      {epoch, false, {{CKA_SIGN, true}}, {}, "CKA_SIGN is true (must be false)"},
      {epoch, false, {{CKA_DERIVE, false}}, {}, "CKA_DERIVE is false (must be true)"},
      {epoch, false, {{CKA_DECRYPT, true}}, {}, "CKA_DECRYPT is true (must be false)"},
      {epoch, false, {{CKA_UNWRAP, true}}, {}, "CKA_UNWRAP is true (must be false)"},
      {"holdfast-signer", true, {}, {}, "not a key this token may hold"},
      {"holdfast-epoch-12", false, {}, {}, "not a key this token may hold"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expected);
    ASSERT_EQ(raw.MakePair(c.label, c.sign, c.overrides, c.later), CKR_OK);
    auto keys = token->ListKeys();
    ASSERT_TRUE(keys.ok()) << keys.status().ToString();
    Status policy = CheckKeyPolicy(*keys, label_, TokenRole::kArchive);
    EXPECT_EQ(policy.code(), Code::kFailedPrecondition);
    EXPECT_TRUE(policy.message().starts_with("key " + c.label + " in token \"" + label_ +
                                             "\": " + c.expected))
        << policy.ToString();
    raw.Destroy(c.label);
  }
  // Sign-only keys: the org root may not derive or recover signatures.
  raw.Destroy(std::string(kOrgRootLabel));
  for (const auto& [attribute, name] : {std::pair{CKA_DERIVE, "CKA_DERIVE is true"},
                                        std::pair{CKA_SIGN_RECOVER, "CKA_SIGN_RECOVER is true"}}) {
    ASSERT_EQ(raw.MakePair(std::string(kOrgRootLabel), true, {{attribute, true}}), CKR_OK);
    auto keys = token->ListKeys();
    ASSERT_TRUE(keys.ok());
    Status policy = CheckKeyPolicy(*keys, label_, TokenRole::kArchive);
    EXPECT_NE(policy.message().find(std::string("key holdfast-org-root in token \"") + label_ +
                                    "\": " + name),
              std::string::npos)
        << policy.ToString();
    raw.Destroy(std::string(kOrgRootLabel));
  }
  auto clean = token->ListKeys();
  ASSERT_TRUE(clean.ok());
  EXPECT_TRUE(CheckKeyPolicy(*clean, label_, TokenRole::kArchive).ok());

  // The same with pkcs11-tool, as an operator might do by mistake.
  CommandResult made = Pkcs11Tool({"--keypairgen", "--key-type", "EC:prime256v1", "--label",
                                   EpochKeyLabel(7), "--usage-derive", "--extractable"});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  auto keys = token->ListKeys();
  ASSERT_TRUE(keys.ok());
  Status policy = CheckKeyPolicy(*keys, label_, TokenRole::kArchive);
  EXPECT_EQ(policy.code(), Code::kFailedPrecondition);
  EXPECT_NE(policy.message().find("key holdfast-epoch-000007 in token \"" + label_ + "\": "),
            std::string::npos)
      << policy.ToString();
}

TEST_F(TokenTest, PooledSessionsRunCallsConcurrently) {
  TokenConfig config = Config();
  config.sessions = 3;
  auto opened = Token::Open(config);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Token> token = std::move(opened).value();
  auto epoch = token->GenerateEpochKey(1);
  ASSERT_TRUE(epoch.ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        PkeyPtr ephemeral = GenerateEphemeralP256();
        auto secret = token->DeriveEcdh(1, UncompressedPoint(ephemeral.get()));
        if (!secret.ok() || secret->Reveal() != SoftwareEcdh(ephemeral.get(), *epoch)) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

// Everything else in the process can close the token's sessions or log it
// out; the next call opens a session and logs in again, once.
TEST_F(TokenTest, LostSessionsAreReopenedOnce) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  auto root = token->GenerateOrgRoot();
  ASSERT_TRUE(root.ok());
  ASSERT_TRUE(token->GenerateEpochKey(1).ok());
  std::optional<CK_SLOT_ID> slot;
  {
    RawClient client(module_);
    slot = client.SlotLabelled(label_);
    ASSERT_TRUE(slot.has_value());
    ASSERT_EQ(client.f()->C_CloseAllSessions(*slot), CKR_OK);
  }
  auto signature = token->SignWithOrgRoot(AsBytes("after close"));
  ASSERT_TRUE(signature.ok()) << signature.status().ToString();
  EXPECT_TRUE(VerifyP1363(*root, AsBytes("after close"), *signature));
  EXPECT_TRUE(token->Ping().ok());

  {
    RawSession raw(module_, label_);
    ASSERT_TRUE(raw.ok());
    ASSERT_EQ(raw.f()->C_Logout(raw.session()), CKR_OK);
  }
  PkeyPtr ephemeral = GenerateEphemeralP256();
  auto secret = token->DeriveEcdh(1, UncompressedPoint(ephemeral.get()));
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();

  // The PIN changes and the sessions close: the retry cannot log in, and
  // says so.
  {
    RawSession raw(module_, label_);
    ASSERT_TRUE(raw.ok());
    std::string old_pin = kUserPin, new_pin = "another-user-pin";
    ASSERT_EQ(raw.f()->C_SetPIN(raw.session(), reinterpret_cast<CK_UTF8CHAR*>(old_pin.data()),
                                old_pin.size(), reinterpret_cast<CK_UTF8CHAR*>(new_pin.data()),
                                new_pin.size()),
              CKR_OK);
    ASSERT_EQ(raw.f()->C_CloseAllSessions(raw.slot()), CKR_OK);
  }
  auto refused = token->SignWithOrgRoot(AsBytes("after PIN change"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable);
  EXPECT_NE(refused.status().message().find("C_Login: CKR_PIN_INCORRECT"), std::string::npos)
      << refused.status().ToString();
  EXPECT_EQ(token->Ping().code(), Code::kUnavailable);
}

TEST_F(TokenTest, ProbeSucceedsOnAReadyToken) {
  Status probe = ProbeToken(module_, label_);
  EXPECT_TRUE(probe.ok()) << probe.ToString();
}

TEST_F(TokenTest, ProbeFailsOnUnknownLabelBadModuleAndBadLabel) {
  Status unknown = ProbeToken(module_, label_ + "-missing");
  EXPECT_EQ(unknown.code(), Code::kUnavailable);
  EXPECT_NE(unknown.message().find("no token labelled"), std::string::npos) << unknown.ToString();

  Status no_module = ProbeToken((*dir_ / "no-such-module.so").string(), label_);
  EXPECT_EQ(no_module.code(), Code::kUnavailable);
  EXPECT_NE(no_module.message().find("dlopen"), std::string::npos) << no_module.ToString();

  Status not_a_module = ProbeToken("libz.so.1", label_);
  EXPECT_EQ(not_a_module.code(), Code::kUnavailable);
  EXPECT_NE(not_a_module.message().find("C_GetFunctionList"), std::string::npos)
      << not_a_module.ToString();

  EXPECT_EQ(ProbeToken(module_, "").code(), Code::kUnavailable);
  EXPECT_EQ(ProbeToken(module_, std::string(33, 'x')).code(), Code::kUnavailable);
}

// The probe shares the module's initialisation with open Tokens: it must not
// finalise the module under them, nor log them out.
TEST_F(TokenTest, ProbeLeavesOpenTokensWorking) {
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->GenerateOrgRoot().ok());
  for (int i = 0; i < 3; ++i) {
    Status probe = ProbeToken(module_, label_);
    EXPECT_TRUE(probe.ok()) << probe.ToString();
  }
  EXPECT_TRUE(token->Ping().ok());
  EXPECT_TRUE(token->SignWithOrgRoot(AsBytes("after probe")).ok());
}

// The probe opens no session, so it never needs or checks a PIN: it succeeds
// for a token whose user PIN the caller does not know.
TEST_F(TokenTest, ProbeNeedsNoLogin) {
  {
    RawClient client(module_);
    ASSERT_TRUE(client.ok());
    ASSERT_EQ(client.TryLogin(label_, CKU_USER, "not-the-pin"), CKR_PIN_INCORRECT);
  }
  Status probe = ProbeToken(module_, label_);
  EXPECT_TRUE(probe.ok()) << probe.ToString();
}

TEST(TokenFlagsTest, UserReadyNeedsInitialisedTokenAndUsablePin) {
  const CK_FLAGS ready = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED |
                         CKF_USER_PIN_INITIALIZED;
  EXPECT_TRUE(internal::CheckUserReady(ready).ok());
  EXPECT_TRUE(internal::CheckUserReady(ready | CKF_USER_PIN_COUNT_LOW).ok());
  EXPECT_TRUE(internal::CheckUserReady(ready | CKF_SO_PIN_LOCKED).ok());

  const std::pair<CK_FLAGS, const char*> failures[] = {
      {ready & ~CKF_TOKEN_INITIALIZED, "CKF_TOKEN_INITIALIZED"},
      {ready & ~CKF_USER_PIN_INITIALIZED, "CKF_USER_PIN_INITIALIZED"},
      {ready | CKF_USER_PIN_LOCKED, "CKF_USER_PIN_LOCKED"},
      {ready | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW, "CKF_USER_PIN_FINAL_TRY"},
      {ready | CKF_USER_PIN_TO_BE_CHANGED, "CKF_USER_PIN_TO_BE_CHANGED"},
  };
  for (const auto& [flags, name] : failures) {
    Status status = internal::CheckUserReady(flags);
    EXPECT_EQ(status.code(), Code::kUnavailable) << name;
    EXPECT_NE(status.message().find(name), std::string::npos) << status.ToString();
  }
}

// Each test gets its own token directory that starts with no token at all.
class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    module_ = FindSoftHsmModule();
    ASSERT_FALSE(module_.empty()) << "libsofthsm2.so not found; install softhsm2";
    char tmpl[] = "/tmp/holdfast-hsm-admin-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    if (const char* previous = std::getenv("SOFTHSM2_CONF")) previous_conf_ = previous;
    ASSERT_EQ(setenv("SOFTHSM2_CONF", WriteSoftHsmConf(dir_).c_str(), 1), 0);
  }

  void TearDown() override {
    if (previous_conf_) {
      setenv("SOFTHSM2_CONF", previous_conf_->c_str(), 1);
    } else {
      unsetenv("SOFTHSM2_CONF");
    }
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  Status Init(const std::string& label, std::string_view so_pin = kSoPin,
              std::string_view user_pin = kUserPin) {
    return InitToken(module_, label, Pin(so_pin), Pin(user_pin));
  }

  Result<std::unique_ptr<Token>> Open(const std::string& label,
                                      std::string_view pin = kUserPin) {
    return Token::Open(TokenConfig{module_, label, Pin(pin)});
  }

  // The labels of the initialised tokens, as a fresh client sees them.
  std::vector<std::string> TokenLabels() {
    RawClient client(module_);
    std::vector<std::string> labels;
    for (const auto& [slot, info] : client.Tokens()) {
      if (info.flags & CKF_TOKEN_INITIALIZED) labels.push_back(internal::TokenLabelOf(info));
    }
    return labels;
  }

  std::string module_;
  fs::path dir_;
  std::optional<std::string> previous_conf_;
};

TEST_F(AdminTest, ProbeFindsNoTokenInAnEmptyTokenDirectory) {
  {
    RawClient client(module_);
    ASSERT_TRUE(client.ok());
    auto tokens = client.Tokens();
    ASSERT_EQ(tokens.size(), 1u);  // SoftHSM2's one free slot
    EXPECT_EQ(tokens[0].second.flags & CKF_TOKEN_INITIALIZED, 0u);
  }
  Status probe = ProbeToken(module_, "hf-admin");
  EXPECT_EQ(probe.code(), Code::kUnavailable);
  EXPECT_NE(probe.message().find("no token labelled"), std::string::npos) << probe.ToString();
}

TEST_F(AdminTest, InitTokenCreatesATokenThatOpensWithTheUserPinOnly) {
  Status init = Init("hf-admin");
  ASSERT_TRUE(init.ok()) << init.ToString();
  EXPECT_EQ(TokenLabels(), std::vector<std::string>{"hf-admin"});

  Status probe = ProbeToken(module_, "hf-admin");
  EXPECT_TRUE(probe.ok()) << probe.ToString();

  // Wrong PIN first: once a Token is logged in, the process stays logged in.
  auto wrong = Open("hf-admin", "wrong-pin");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("CKR_PIN_INCORRECT"), std::string::npos)
      << wrong.status().ToString();
  auto so_pin_as_user = Open("hf-admin", kSoPin);
  EXPECT_FALSE(so_pin_as_user.ok());

  auto token = Open("hf-admin");
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_TRUE((*token)->Ping().ok());
  auto root = (*token)->GenerateOrgRoot();
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  auto signature = (*token)->SignWithOrgRoot(AsBytes("fresh token"));
  ASSERT_TRUE(signature.ok()) << signature.status().ToString();
  EXPECT_TRUE(VerifyP1363(*root, AsBytes("fresh token"), *signature));
}

TEST_F(AdminTest, InitTokenSetsTheSoPin) {
  ASSERT_TRUE(Init("hf-admin").ok());
  RawClient client(module_);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client.TryLogin("hf-admin", CKU_SO, kSoPin), CKR_OK);
  EXPECT_EQ(client.TryLogin("hf-admin", CKU_SO, kUserPin), CKR_PIN_INCORRECT);
  EXPECT_EQ(client.TryLogin("hf-admin", CKU_USER, kUserPin), CKR_OK);
  EXPECT_EQ(client.TryLogin("hf-admin", CKU_USER, kSoPin), CKR_PIN_INCORRECT);
}

TEST_F(AdminTest, SecondInitTokenWithTheSameLabelIsAlreadyExists) {
  ASSERT_TRUE(Init("hf-admin").ok());
  Status again = Init("hf-admin");
  EXPECT_EQ(again.code(), Code::kAlreadyExists) << again.ToString();
  // Other PINs do not change the token either.
  Status other_pins = Init("hf-admin", "other-so-pin", "other-user-pin");
  EXPECT_EQ(other_pins.code(), Code::kAlreadyExists) << other_pins.ToString();
  EXPECT_EQ(TokenLabels(), std::vector<std::string>{"hf-admin"});
  auto token = Open("hf-admin");
  EXPECT_TRUE(token.ok()) << token.status().ToString();
}

// SoftHSM2 re-enumerates its slots after C_InitToken; while the module stays
// initialised (a Token is open throughout), each new token must still be
// found by Token::Open and ProbeToken, and a fresh free slot must appear.
TEST_F(AdminTest, TokensInitialisedWhileTheModuleStaysInitialisedAreFound) {
  ASSERT_TRUE(Init("hf-first").ok());
  auto first = Open("hf-first");
  ASSERT_TRUE(first.ok()) << first.status().ToString();

  for (const std::string label : {"hf-second", "hf-third"}) {
    Status init = Init(label);
    ASSERT_TRUE(init.ok()) << label << ": " << init.ToString();
    Status probe = ProbeToken(module_, label);
    EXPECT_TRUE(probe.ok()) << label << ": " << probe.ToString();
    auto token = Open(label);
    ASSERT_TRUE(token.ok()) << label << ": " << token.status().ToString();
    EXPECT_TRUE((*token)->GenerateEpochKey(1).ok()) << label;
  }
  EXPECT_TRUE((*first)->Ping().ok());
  EXPECT_EQ((*first)->PublicKey(EpochKeyLabel(1)).status().code(), Code::kNotFound);
  first->reset();

  std::vector<std::string> labels = TokenLabels();
  std::sort(labels.begin(), labels.end());
  EXPECT_EQ(labels, (std::vector<std::string>{"hf-first", "hf-second", "hf-third"}));
}

TEST_F(AdminTest, InitTokenRefusesBadArgumentsBeforeWritingAnything) {
  EXPECT_EQ(Init("").code(), Code::kInvalidArgument);
  EXPECT_EQ(Init(std::string(33, 'x')).code(), Code::kInvalidArgument);
  EXPECT_EQ(Init("trailing ").code(), Code::kInvalidArgument);
  EXPECT_EQ(Init("hf-admin", "", kUserPin).code(), Code::kInvalidArgument);
  EXPECT_EQ(Init("hf-admin", kSoPin, "").code(), Code::kInvalidArgument);
  // SoftHSM2 takes PINs of 4 to 255 bytes.
  Status short_user = Init("hf-admin", kSoPin, "123");
  EXPECT_EQ(short_user.code(), Code::kInvalidArgument) << short_user.ToString();
  Status short_so = Init("hf-admin", "123", kUserPin);
  EXPECT_EQ(short_so.code(), Code::kInvalidArgument) << short_so.ToString();
  Status long_user = Init("hf-admin", kSoPin, std::string(256, '7'));
  EXPECT_EQ(long_user.code(), Code::kInvalidArgument) << long_user.ToString();
  EXPECT_TRUE(TokenLabels().empty());

  Status no_module = InitToken((dir_ / "no-such-module.so").string(), "hf-admin", Pin(kSoPin),
                               Pin(kUserPin));
  EXPECT_EQ(no_module.code(), Code::kUnavailable) << no_module.ToString();
}

// A token initialised without a user PIN (as if InitToken had stopped after
// C_InitToken) is not ready; InitToken finishes it, given the SO PIN.
TEST_F(AdminTest, InitTokenFinishesATokenWithoutUserPin) {
  {
    RawClient client(module_);
    ASSERT_TRUE(client.ok());
    auto tokens = client.Tokens();
    ASSERT_EQ(tokens.size(), 1u);
    CK_UTF8CHAR label[32];
    std::fill(std::begin(label), std::end(label), ' ');
    std::memcpy(label, "hf-half", 7);
    std::string so_pin = kSoPin;
    ASSERT_EQ(client.f()->C_InitToken(tokens[0].first,
                                      reinterpret_cast<CK_UTF8CHAR*>(so_pin.data()),
                                      so_pin.size(), label),
              CKR_OK);
  }
  Status probe = ProbeToken(module_, "hf-half");
  EXPECT_EQ(probe.code(), Code::kUnavailable);
  EXPECT_NE(probe.message().find("CKF_USER_PIN_INITIALIZED"), std::string::npos)
      << probe.ToString();

  Status wrong_so = Init("hf-half", "wrong-so-pin", kUserPin);
  EXPECT_EQ(wrong_so.code(), Code::kPermissionDenied) << wrong_so.ToString();
  EXPECT_EQ(ProbeToken(module_, "hf-half").code(), Code::kUnavailable);

  Status finished = Init("hf-half");
  ASSERT_TRUE(finished.ok()) << finished.ToString();
  probe = ProbeToken(module_, "hf-half");
  EXPECT_TRUE(probe.ok()) << probe.ToString();
  auto token = Open("hf-half");
  EXPECT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(Init("hf-half").code(), Code::kAlreadyExists);
}

class PinFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/holdfast-pin-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  // Written with exactly this mode, whatever the umask.
  std::string Write(const std::string& name, const std::string& content, mode_t mode = 0600) {
    fs::path path = dir_ / name;
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0) << path;
    if (fd < 0) return path.string();
    EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    EXPECT_EQ(fchmod(fd, mode), 0);
    close(fd);
    return path.string();
  }
  fs::path dir_;
};

TEST_F(PinFileTest, StripsOneTrailingNewline) {
  auto pin = ReadPinFile(Write("a", "1234\n"));
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  EXPECT_EQ(AsString(pin->view()), "1234");
  pin = ReadPinFile(Write("b", "1234\n\n"));
  ASSERT_TRUE(pin.ok());
  EXPECT_EQ(AsString(pin->view()), "1234\n");
  pin = ReadPinFile(Write("c", " 12 34"));
  ASSERT_TRUE(pin.ok());
  EXPECT_EQ(AsString(pin->view()), " 12 34");
}

TEST_F(PinFileTest, RefusesMissingEmptyAndOversizedFiles) {
  EXPECT_EQ(ReadPinFile((dir_ / "absent").string()).status().code(), Code::kNotFound);
  EXPECT_EQ(ReadPinFile(Write("empty", "")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ReadPinFile(Write("newline", "\n")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ReadPinFile(Write("big", std::string(300, '7'))).status().code(),
            Code::kInvalidArgument);
}

TEST_F(PinFileTest, RefusesFilesThatGroupOrOthersCanReadOrWrite) {
  std::string readable = Write("readable", "1234\n", 0644);
  auto pin = ReadPinFile(readable);
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), Code::kPermissionDenied);
  EXPECT_NE(pin.status().message().find(readable), std::string::npos) << pin.status().ToString();
  EXPECT_NE(pin.status().message().find("0644"), std::string::npos) << pin.status().ToString();

  for (mode_t mode : {0640, 0620, 0604, 0602, 0660, 0666}) {
    auto refused = ReadPinFile(Write("mode", "1234", mode));
    EXPECT_EQ(refused.status().code(), Code::kPermissionDenied) << std::oct << mode;
  }
  // Checked before the content: an empty file that others can read is
  // refused for its mode.
  EXPECT_EQ(ReadPinFile(Write("empty-readable", "", 0644)).status().code(),
            Code::kPermissionDenied);
}

TEST_F(PinFileTest, AcceptsFilesOnlyTheOwnerCanReadOrWrite) {
  for (mode_t mode : {0600, 0400}) {
    auto pin = ReadPinFile(Write("owner-only", "1234\n", mode));
    ASSERT_TRUE(pin.ok()) << std::oct << mode << ": " << pin.status().ToString();
    EXPECT_EQ(AsString(pin->view()), "1234");
  }
}

}  // namespace
}  // namespace holdfast::hsm
