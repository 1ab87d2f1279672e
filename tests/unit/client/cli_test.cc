#include "holdfast/client/cli.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <fstream>
#include <sstream>
#include <vector>

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include "holdfast/client/device.h"
#include "holdfast/client/profile.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "test_org.h"
#include "test_server.h"

namespace holdfast::client {
namespace {

using testing::TempDir;

struct CliRun {
  int code;
  std::string out, err;
};

CliRun Cli(std::vector<std::string> args) {
  args.insert(args.begin(), "holdfast-client");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int code = RunClientCli(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

constexpr char kPassphraseEnv[] = "HOLDFAST_PASSPHRASE";

// Writes `passphrase` and a newline to a file with `mode`.
std::string PassphraseFile(const std::filesystem::path& path, const std::string& passphrase,
                           mode_t mode = 0600) {
  std::ofstream(path) << passphrase << "\n";
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path.string();
}

PassphraseWrapper Passphrase(const std::string& passphrase) {
  return PassphraseWrapper::Create(AsBytes(passphrase)).value();
}

TEST(CliTest, UsageErrors) {
  TempDir tmp;
  const std::string p = tmp.path().string();
  for (const auto& args : std::vector<std::vector<std::string>>{
           {},
           {"whoami"},
           {"--profile", p},
           {"--profile", p, "frobnicate"},
           {"--profile", p, "whoami", "--bogus"},
           {"--profile", p, "whoami", "--to", "bob"},
           {"--profile", p, "send", "hello"},
           {"--profile", p, "send", "--to", "bob"},
           {"--profile", p, "send", "--to", ",", "hi"},
           {"--profile", p, "recv", "--wait", "soon"},
           {"--profile", p, "recv", "--wait", "-1"},
           {"--profile", p, "listen", "--wait", "1"},
           {"--profile", p, "register", "--server", "wss://h/v1"},
           {"--profile", p, "register", "--server", "http://h/v1", "--ca", "c", "--user", "u",
            "--code", "x"},
           {"--profile"},
           {"--profile", p, "send", "--to", "bob", "--insecure-plaintext-keys", "hi"},
           {"--profile", p, "register", "--server", "wss://h/v1", "--ca", "c", "--user", "u",
            "--code", "x", "--insecure-plaintext-keys", "--passphrase-file", "f"},
           // Exactly one credential: a code, or a directory password.
           {"--profile", p, "register", "--server", "wss://h/v1", "--ca", "c", "--user", "u"},
           {"--profile", p, "register", "--server", "wss://h/v1", "--ca", "c", "--user", "u",
            "--code", "x", "--password-file", "f"},
           {"--profile", p, "register", "--server", "wss://h/v1", "--ca", "c", "--user", "u",
            "--password-file", "f", "--password-stdin"},
           {"--profile", p, "send", "--to", "bob", "--password-stdin", "hi"},
       }) {
    CliRun r = Cli(args);
    EXPECT_EQ(r.code, kExitUsage) << ::testing::PrintToString(args);
    EXPECT_NE(r.err.find("usage: holdfast-client"), std::string::npos);
  }
  CliRun help = Cli({"--help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.out.find("register --server"), std::string::npos);
}

TEST(CliTest, FailuresExitTwoWithOneLine) {
  TempDir tmp;
  CliRun r = Cli({"--profile", (tmp.path() / "none").string(), "whoami"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  r = Cli({"--profile", (tmp.path() / "none").string(), "recv"});
  EXPECT_EQ(r.code, kExitFailed);
}

TEST(CliTest, RegisterThenWhoAmI) {
  ::unsetenv(kPassphraseEnv);
  TempDir tmp;
  testing::OrgRoot root;
  auto cert = testing::MakeSelfSignedCert("IP:127.0.0.1,DNS:localhost");
  const auto ca = tmp.path() / "gateway.pem";
  std::ofstream(ca) << cert.cert_pem;
  const std::string dir = (tmp.path() / "alice").string();
  const std::string pw_file = PassphraseFile(tmp.path() / "pw", "alice's passphrase");
  std::string device_id;
  {
    testing::TestServer server(cert, testing::EchoHandler(root));
    CliRun r = Cli({"--profile", dir, "register", "--server", server.url(), "--ca", ca.string(),
                 "--user", "alice", "--code", "ENROL-1", "--passphrase-file", pw_file});
    ASSERT_EQ(r.code, kExitOk) << r.err;
    device_id = r.out;
    ASSERT_EQ(device_id.size(), 33u) << device_id;
    device_id.pop_back();

    const auto wrapper = Passphrase("alice's passphrase");
    auto p = LoadProfile(dir, &wrapper);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_TRUE(p->store.encrypted());
    EXPECT_EQ(ToHex(p->profile.device_id), device_id);
    EXPECT_EQ(p->profile.org_root_key, root.public_key());
    EXPECT_EQ(p->profile.org, "acme");
    EXPECT_EQ(p->profile.server_url, server.url());
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(dir) / kProfileCaFileName));

    CliRun who = Cli({"--profile", dir, "whoami", "--passphrase-file", pw_file});
    EXPECT_EQ(who.code, kExitOk) << who.err;
    EXPECT_NE(who.out.find("user: alice"), std::string::npos);
    EXPECT_NE(who.out.find("device: " + device_id), std::string::npos);
    EXPECT_NE(who.out.find("server: " + server.url()), std::string::npos);
    EXPECT_NE(who.out.find("keys: encrypted (argon2id)"), std::string::npos) << who.out;
  }
  // The environment variable works as well as the file.
  ASSERT_EQ(::setenv(kPassphraseEnv, "alice's passphrase", 1), 0);
  CliRun who = Cli({"--profile", dir, "whoami"});
  EXPECT_EQ(who.code, kExitOk) << who.err;
  ASSERT_EQ(::setenv(kPassphraseEnv, "something else", 1), 0);
  who = Cli({"--profile", dir, "whoami"});
  EXPECT_EQ(who.code, kExitFailed);
  EXPECT_NE(who.err.find("wrong passphrase"), std::string::npos) << who.err;
  // The file takes precedence over the environment.
  who = Cli({"--profile", dir, "whoami", "--passphrase-file", pw_file});
  EXPECT_EQ(who.code, kExitOk) << who.err;
  ::unsetenv(kPassphraseEnv);

  // No passphrase at all: a clear refusal naming both sources.
  who = Cli({"--profile", dir, "recv"});
  EXPECT_EQ(who.code, kExitFailed);
  EXPECT_NE(who.err.find("HOLDFAST_PASSPHRASE"), std::string::npos) << who.err;
  EXPECT_NE(who.err.find("--passphrase-file"), std::string::npos) << who.err;
  EXPECT_EQ(std::count(who.err.begin(), who.err.end(), '\n'), 1) << who.err;
  // A passphrase file others can read is refused, as is an empty one.
  who = Cli({"--profile", dir, "whoami", "--passphrase-file",
             PassphraseFile(tmp.path() / "pw-open", "alice's passphrase", 0644)});
  EXPECT_EQ(who.code, kExitFailed);
  EXPECT_NE(who.err.find("chmod 600"), std::string::npos) << who.err;
  who = Cli({"--profile", dir, "whoami", "--passphrase-file",
             PassphraseFile(tmp.path() / "pw-empty", "")});
  EXPECT_EQ(who.code, kExitFailed);
  EXPECT_NE(who.err.find("empty"), std::string::npos) << who.err;

  // A registered profile is never overwritten.
  CliRun again = Cli({"--profile", dir, "register", "--server", "wss://127.0.0.1:1/v1", "--ca",
                   ca.string(), "--user", "alice", "--code", "ENROL-2", "--passphrase-file",
                   pw_file});
  EXPECT_EQ(again.code, kExitFailed);
  EXPECT_NE(again.err.find("already registered"), std::string::npos) << again.err;
}

TEST(CliTest, RegisterWithoutPassphraseIsRefused) {
  ::unsetenv(kPassphraseEnv);
  TempDir tmp;
  const auto dir = tmp.path() / "bob";
  CliRun r = Cli({"--profile", dir.string(), "register", "--server", "wss://127.0.0.1:1/v1",
                  "--ca", (tmp.path() / "ca.pem").string(), "--user", "bob", "--code", "X"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("HOLDFAST_PASSPHRASE"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--insecure-plaintext-keys"), std::string::npos) << r.err;
  EXPECT_FALSE(ProfileExists(dir));
}

TEST(CliTest, InsecurePlaintextKeysOnRequest) {
  ::unsetenv(kPassphraseEnv);
  TempDir tmp;
  testing::OrgRoot root;
  auto cert = testing::MakeSelfSignedCert("IP:127.0.0.1,DNS:localhost");
  const auto ca = tmp.path() / "gateway.pem";
  std::ofstream(ca) << cert.cert_pem;
  const std::string dir = (tmp.path() / "carol").string();
  testing::TestServer server(cert, testing::EchoHandler(root));
  CliRun r = Cli({"--profile", dir, "register", "--server", server.url(), "--ca", ca.string(),
                  "--user", "carol", "--code", "ENROL-1", "--insecure-plaintext-keys"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  CliRun who = Cli({"--profile", dir, "whoami"});
  EXPECT_EQ(who.code, kExitOk) << who.err;
  EXPECT_NE(who.out.find("keys: UNENCRYPTED"), std::string::npos) << who.out;
  auto p = LoadProfile(dir, nullptr);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FALSE(p->store.encrypted());
}

TEST(CliTest, RegisterASecondDeviceWithCertifyWith) {
  ::unsetenv(kPassphraseEnv);
  TempDir tmp;
  testing::OrgRoot root;
  auto cert = testing::MakeSelfSignedCert("IP:127.0.0.1,DNS:localhost");
  const auto ca = tmp.path() / "gateway.pem";
  std::ofstream(ca) << cert.cert_pem;
  const std::string pw_file = PassphraseFile(tmp.path() / "pw", "alice's passphrase");
  auto dir = [&](const std::string& name) { return (tmp.path() / name).string(); };
  // Each registration talks to a server of its own; returns the frames it got.
  auto register_ = [&](const std::string& name, const std::string& user,
                       std::vector<std::string> extra, CliRun& run) {
    testing::TestServer server(cert, testing::EchoHandler(root));
    std::vector<std::string> args = {"--profile", dir(name), "register", "--server",
                                     server.url(), "--ca", ca.string(), "--user", user,
                                     "--code", "ENROL", "--passphrase-file", pw_file};
    args.insert(args.end(), extra.begin(), extra.end());
    run = Cli(args);
    return server.Stop();
  };

  CliRun r;
  register_("alice", "alice", {}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  auto frames = register_("alice-phone", "alice", {"--certify-with", dir("alice")}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;

  const auto wrapper = Passphrase("alice's passphrase");
  auto first = LoadProfile(dir("alice"), &wrapper);
  auto phone = LoadProfile(dir("alice-phone"), &wrapper);
  ASSERT_TRUE(first.ok() && phone.ok());
  EXPECT_FALSE(first->profile.master_private.empty());
  EXPECT_TRUE(phone->profile.master_private.empty());
  EXPECT_EQ(phone->profile.master_public, first->profile.master_public);
  auto certified = protocol::VerifyDeviceCertificate(phone->profile.certificate, root.public_key());
  ASSERT_TRUE(certified.ok()) << certified.status().ToString();
  EXPECT_EQ(certified->user, "alice");
  EXPECT_EQ(certified->master_key, first->profile.master_public);
  EXPECT_EQ(certified->device_id, phone->profile.device_id);
  ASSERT_EQ(frames.size(), 1u);
  ASSERT_TRUE(frames[0].has_register_());
  EXPECT_TRUE(protocol::CheckCertificateRequest(frames[0].register_().certificate(), "alice",
                                                AsBytes(frames[0].register_().identity_key()))
                  .ok());

  // Neither a profile of another user nor one without the master key can
  // certify; nothing is written and the gateway is not contacted.
  register_("bob", "bob", {}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  frames = register_("alice-laptop", "alice", {"--certify-with", dir("bob")}, r);
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("belongs to bob"), std::string::npos) << r.err;
  EXPECT_TRUE(frames.empty());
  EXPECT_FALSE(ProfileExists(dir("alice-laptop")));
  frames = register_("alice-laptop", "alice", {"--certify-with", dir("alice-phone")}, r);
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("master key"), std::string::npos) << r.err;
  EXPECT_TRUE(frames.empty());
  EXPECT_FALSE(ProfileExists(dir("alice-laptop")));
}

TEST(CliTest, OldPlaintextProfileIsRefused) {
  ::unsetenv(kPassphraseEnv);
  TempDir tmp;
  const auto dir = tmp.path() / "dave";
  std::filesystem::create_directories(dir);
  const auto file = dir / kProfileFileName;
  std::ofstream(file) << R"({"version": 1, "user": "dave", "server": "wss://h/v1",)"
                      << R"( "device_id": "0011", "org": "acme", "org_root_key": "",)"
                      << R"( "ca_file": "ca.pem"})";
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  CliRun r = Cli({"--profile", dir.string(), "recv"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("version 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("register this device again"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace holdfast::client

namespace holdfast::client {
namespace {

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A scripted gateway: login for `user`, one conversation (whatever is asked
// for), submit, prekey updates and reports, and the given pushes after
// authentication.
struct FakeGateway {
  std::string user;
  wire::ConversationInfo conversation;
  std::vector<wire::Deliver> pushes;

  std::vector<wire::ServerFrame> operator()(const wire::ClientFrame& in) const {
    std::vector<wire::ServerFrame> out;
    wire::ServerFrame answer;
    answer.set_request_id(in.request_id());
    switch (in.kind_case()) {
      case wire::ClientFrame::kHello:
        answer.mutable_challenge()->set_nonce(std::string(32, 'n'));
        break;
      case wire::ClientFrame::kAuthenticate:
        answer.mutable_authenticated()->set_user(user);
        answer.mutable_authenticated()->set_pending(pushes.size());
        out.push_back(answer);
        for (const auto& d : pushes) {
          wire::ServerFrame push;
          *push.mutable_deliver() = d;
          out.push_back(push);
        }
        return out;
      case wire::ClientFrame::kOpenConversation:
      case wire::ClientFrame::kCreateGroup:
      case wire::ClientFrame::kChangeMembers:
      case wire::ClientFrame::kGetConversation:
        *answer.mutable_conversation() = conversation;
        break;
      case wire::ClientFrame::kUpdatePrekey:
        answer.mutable_prekey_updated()->set_created_at_ms(
            in.update_prekey().prekey().created_at_ms());
        break;
      case wire::ClientFrame::kReportDelivery:
        answer.mutable_report_received()->set_report_id(in.report_delivery().delivery_id());
        break;
      case wire::ClientFrame::kSubmit: {
        auto parsed = protocol::ParseEnvelope(in.submit().envelope());
        if (!parsed.ok()) {
          answer.mutable_error()->set_code("bad_envelope");
        } else {
          answer.mutable_submit_ack()->set_message_id(parsed->header.message_id());
          answer.mutable_submit_ack()->set_stored_at_ms(Now());
        }
        break;
      }
      default:
        return out;
    }
    out.push_back(answer);
    return out;
  }
};

class CliFlowTest : public ::testing::Test {
 protected:
  CliFlowTest() : cert_(testing::MakeSelfSignedCert("IP:127.0.0.1,DNS:localhost")) {
    ca_ = tmp_.path() / "gateway.pem";
    std::ofstream(ca_) << cert_.cert_pem;
    auto archive = protocol::hpke::GenerateKeyPair(protocol::hpke::KemId::kP256HkdfSha256);
    EXPECT_TRUE(archive.ok());
    wire::EpochCertificateBody body;
    body.set_version(1);
    body.set_epoch_id(3);
    body.set_public_key(AsString(archive->public_key));
    body.set_not_before_ms(Now() - 86'400'000);
    body.set_not_after_ms(Now() + 86'400'000);
    body.set_org("acme");
    epoch_ = root_.Certify(body);
  }

  void SetUp() override { ASSERT_EQ(::setenv(kPassphraseEnv, kFlowPassphrase, 1), 0); }
  void TearDown() override { ::unsetenv(kPassphraseEnv); }

  static constexpr char kFlowPassphrase[] = "flow test passphrase";

  // A registered profile on disk for `user`, pointing at `url`, encrypted
  // under kFlowPassphrase with cheap Argon2id parameters, its prekey signed
  // at `prekey_created_ms`.
  Device MakeProfile(const std::string& user, const std::string& url,
                     int64_t prekey_created_ms = Now()) {
    auto d = Device::Generate(user, prekey_created_ms);
    EXPECT_TRUE(d.ok());
    auto request = d->MakeRegisterRequest("CODE", Now());
    EXPECT_TRUE(request.ok()) << request.status().ToString();
    EXPECT_TRUE(d->AcceptRegistration(root_.Register(*request), url, kProfileCaFileName).ok());
    EXPECT_TRUE(SaveProfile(Dir(user), d->profile(), KeyStore::Create(pw_).value()).ok());
    EXPECT_TRUE(InstallCaFile(Dir(user), ca_).ok());
    return std::move(d).value();
  }

  std::filesystem::path Dir(const std::string& user) const { return tmp_.path() / user; }

  // Points the profile of `user` at `url`.
  void PointAt(const std::string& user, const std::string& url) {
    auto p = LoadProfile(Dir(user), &pw_);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    p->profile.server_url = url;
    ASSERT_TRUE(SaveProfile(Dir(user), p->profile, p->store).ok());
  }

  // Runs the CLI against a fresh server for `gateway`; returns the frames it got.
  std::vector<wire::ClientFrame> RunAgainst(const std::shared_ptr<FakeGateway>& gateway,
                                            const std::string& user,
                                            std::vector<std::string> args, CliRun& run) {
    testing::TestServer server(cert_, [gateway](const wire::ClientFrame& in) {
      return (*gateway)(in);
    });
    PointAt(user, server.url());
    args.insert(args.begin(), {"--profile", Dir(user).string()});
    run = Cli(args);
    return server.Stop();
  }

  const PassphraseWrapper pw_ =
      PassphraseWrapper::Create(AsBytes(std::string_view(kFlowPassphrase)),
                                Argon2idParams::Create(1, 64, 1).value())
          .value();

  TempDir tmp_;
  testing::OrgRoot root_;
  testing::TestCert cert_;
  std::filesystem::path ca_;
  wire::EpochCertificate epoch_;
};

TEST_F(CliFlowTest, SendThenReceive) {
  auto gateway = std::make_shared<FakeGateway>();
  // The url is known only once the server listens; the handler reads the
  // script through the shared pointer after the client connected.
  auto handler = [gateway](const wire::ClientFrame& in) { return (*gateway)(in); };

  wire::Envelope sent;
  Device bob = [&] {
    testing::TestServer server(cert_, handler);
    Device alice = MakeProfile("alice", server.url());
    Device bob = MakeProfile("bob", server.url());
    gateway->user = "alice";
    gateway->conversation.set_conversation_id("c1");
    gateway->conversation.add_members("alice");
    gateway->conversation.add_members("bob");
    *gateway->conversation.add_devices() = alice.Info();
    *gateway->conversation.add_devices() = bob.Info();
    *gateway->conversation.mutable_epoch() = epoch_;
    gateway->conversation.set_archive_notice("Archived by Acme.");

    CliRun r = Cli({"--profile", Dir("alice").string(), "send", "--to", "bob", "hello", "bob"});
    EXPECT_EQ(r.code, kExitOk) << r.err;
    EXPECT_NE(r.out.find("notice (c1): Archived by Acme."), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(" to c1\n"), std::string::npos) << r.out;
    auto frames = server.Join();
    for (const auto& f : frames) {
      if (f.kind_case() == wire::ClientFrame::kSubmit) sent = f.submit().envelope();
      if (f.kind_case() == wire::ClientFrame::kOpenConversation) {
        EXPECT_EQ(f.open_conversation().members_size(), 1);
      }
    }
    auto p = LoadProfile(Dir("alice"), &pw_);
    EXPECT_TRUE(p.ok());
    EXPECT_EQ(p->profile.notices_shown, std::vector<std::string>{"c1"});
    return bob;
  }();
  ASSERT_FALSE(sent.content().empty());

  Device mallory = MakeProfile("mallory", "wss://127.0.0.1:1/v1");
  auto alice_profile = LoadProfile(Dir("alice"), &pw_);
  ASSERT_TRUE(alice_profile.ok());
  auto alice = Device::FromProfile(std::move(alice_profile->profile));
  ASSERT_TRUE(alice.ok());

  auto receiver = std::make_shared<FakeGateway>();
  receiver->user = "bob";
  for (uint64_t id : {1, 2, 3}) {
    wire::Deliver& d = receiver->pushes.emplace_back();
    d.set_delivery_id(id);
    *d.mutable_envelope() = sent;
    *d.mutable_sender() = id == 3 ? mallory.Info() : alice->Info();
    *d.mutable_epoch() = epoch_;
    d.set_archive_notice("Archived by Acme.");
  }
  testing::TestServer server(cert_, [receiver](const wire::ClientFrame& in) {
    return (*receiver)(in);
  });
  // Point Bob's profile at this server.
  {
    auto p = LoadProfile(Dir("bob"), &pw_);
    ASSERT_TRUE(p.ok());
    p->profile.server_url = server.url();
    ASSERT_TRUE(SaveProfile(Dir("bob"), p->profile, p->store).ok());
  }
  CliRun r = Cli({"--profile", Dir("bob").string(), "recv", "--json", "--wait", "0.2"});
  ASSERT_EQ(r.code, kExitOk) << r.err;

  std::vector<Poco::JSON::Object::Ptr> lines;
  std::istringstream out(r.out);
  for (std::string line; std::getline(out, line);) {
    lines.push_back(Poco::JSON::Parser().parse(line).extract<Poco::JSON::Object::Ptr>());
  }
  // Delivery 2 repeats delivery 1 and is dropped; delivery 3 names a forged sender.
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0]->getValue<std::string>("status"), "ok");
  EXPECT_EQ(lines[0]->getValue<std::string>("text"), "hello bob");
  EXPECT_EQ(lines[0]->getValue<std::string>("sender_user"), "alice");
  EXPECT_EQ(lines[0]->getValue<std::string>("sender_device"), ToHex(alice->device_id()));
  EXPECT_EQ(lines[0]->getValue<std::string>("conversation_id"), "c1");
  EXPECT_EQ(lines[0]->getValue<std::string>("reason"), "");
  EXPECT_EQ(lines[1]->getValue<std::string>("status"), "rejected");
  EXPECT_EQ(lines[1]->getValue<std::string>("text"), "");
  EXPECT_NE(lines[1]->getValue<std::string>("reason"), "");

  std::vector<uint64_t> acked;
  for (const auto& f : server.Join()) {
    if (f.kind_case() == wire::ClientFrame::kDeliveryAck) {
      acked.insert(acked.end(), f.delivery_ack().delivery_ids().begin(),
                   f.delivery_ack().delivery_ids().end());
    }
  }
  EXPECT_EQ(acked, (std::vector<uint64_t>{1, 2, 3}));

  auto p = LoadProfile(Dir("bob"), &pw_);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->profile.seen_message_ids.size(), 1u);
  EXPECT_EQ(AsString(p->profile.seen_message_ids[0]),
            UnverifiedHeader(receiver->pushes[0])->message_id());
}

TEST_F(CliFlowTest, RefusedSubmitExitsTwo) {
  auto gateway = std::make_shared<FakeGateway>();
  testing::TestServer server(cert_, [gateway](const wire::ClientFrame& in) {
    if (in.kind_case() == wire::ClientFrame::kSubmit) {
      wire::ServerFrame f;
      f.set_request_id(in.request_id());
      f.mutable_error()->set_code("epoch_not_current");
      f.mutable_error()->set_message("epoch 3 is over");
      return std::vector<wire::ServerFrame>{f};
    }
    return (*gateway)(in);
  });
  Device alice = MakeProfile("alice", server.url());
  Device bob = MakeProfile("bob", server.url());
  gateway->user = "alice";
  gateway->conversation.set_conversation_id("c1");
  gateway->conversation.add_members("alice");
  gateway->conversation.add_members("bob");
  *gateway->conversation.add_devices() = bob.Info();
  *gateway->conversation.mutable_epoch() = epoch_;

  CliRun r = Cli({"--profile", Dir("alice").string(), "send", "--to", "bob", "hi"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("epoch_not_current"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out.find("sent"), std::string::npos);
}

}  // namespace
}  // namespace holdfast::client

namespace holdfast::client {
namespace {

TEST_F(CliFlowTest, ConversationWithExtraMemberRefused) {
  auto gateway = std::make_shared<FakeGateway>();
  testing::TestServer server(cert_, [gateway](const wire::ClientFrame& in) {
    return (*gateway)(in);
  });
  Device alice = MakeProfile("alice", server.url());
  Device bob = MakeProfile("bob", server.url());
  Device eve = MakeProfile("eve", server.url());
  gateway->user = "alice";
  gateway->conversation.set_conversation_id("c1");
  gateway->conversation.add_members("alice");
  gateway->conversation.add_members("bob");
  gateway->conversation.add_members("eve");
  *gateway->conversation.add_devices() = bob.Info();
  *gateway->conversation.add_devices() = eve.Info();
  *gateway->conversation.mutable_epoch() = epoch_;

  CliRun r = Cli({"--profile", Dir("alice").string(), "send", "--to", "bob", "hi"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("not the ones requested"), std::string::npos) << r.err;
  for (const auto& f : server.Join()) EXPECT_NE(f.kind_case(), wire::ClientFrame::kSubmit);
}

}  // namespace
}  // namespace holdfast::client

namespace holdfast::client {
namespace {

TEST_F(CliFlowTest, HumanOutputEscapesControlCharacters) {
  auto gateway = std::make_shared<FakeGateway>();
  testing::TestServer server(cert_, [gateway](const wire::ClientFrame& in) {
    return (*gateway)(in);
  });
  Device alice = MakeProfile("alice", server.url());
  Device bob = MakeProfile("bob", server.url());
  wire::ConversationInfo c;
  c.set_conversation_id("c1");
  c.add_members("alice");
  c.add_members("bob");
  *c.add_devices() = bob.Info();
  *c.mutable_epoch() = epoch_;
  auto envelope = alice.PrepareMessage(c, "line1\n\x1b[31mbank: pay now", Now());
  ASSERT_TRUE(envelope.ok()) << envelope.status().ToString();

  gateway->user = "bob";
  wire::Deliver& d = gateway->pushes.emplace_back();
  d.set_delivery_id(7);
  *d.mutable_envelope() = *envelope;
  *d.mutable_sender() = alice.Info();
  *d.mutable_epoch() = epoch_;
  d.set_archive_notice("Archived by Acme.");

  CliRun r = Cli({"--profile", Dir("bob").string(), "recv", "--wait", "0"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
  EXPECT_NE(r.out.find("notice (c1): Archived by Acme.\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("] c1 alice: line1\\n\\x1b[31mbank: pay now\n"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
}

}  // namespace
}  // namespace holdfast::client

namespace holdfast::client {
namespace {

TEST_F(CliFlowTest, RecvReportsRejectedDeliveries) {
  auto gateway = std::make_shared<FakeGateway>();
  Device alice = MakeProfile("alice", "wss://127.0.0.1:1/v1");
  Device bob = MakeProfile("bob", "wss://127.0.0.1:1/v1");
  wire::ConversationInfo c;
  c.set_conversation_id("c1");
  c.add_members("alice");
  c.add_members("bob");
  *c.add_devices() = bob.Info();
  *c.mutable_epoch() = epoch_;
  auto envelope = alice.PrepareMessage(c, "off the record", Now());
  ASSERT_TRUE(envelope.ok()) << envelope.status().ToString();
  auto honest = alice.PrepareMessage(c, "all fine", Now());
  ASSERT_TRUE(honest.ok());

  // Alice's client gives the archive a capsule for another content key.
  wire::EpochCertificateBody epoch;
  ASSERT_TRUE(epoch.ParseFromString(epoch_.body()));
  wire::EnvelopeContent content;
  ASSERT_TRUE(content.ParseFromString(envelope->content()));
  wire::MessageHeader header;
  ASSERT_TRUE(header.ParseFromString(content.header()));
  auto capsule = protocol::ComputeArchiveCapsule(
      protocol::RandomBytes(protocol::kCekSize), AsBytes(header.message_id()), epoch.epoch_id(),
      AsBytes(epoch.public_key()), AsBytes(content.header()));
  ASSERT_TRUE(capsule.ok());
  *content.mutable_archive() = *capsule;
  wire::Envelope dishonest;
  dishonest.set_content(content.SerializeAsString());
  auto sig = protocol::Ed25519Sign(
      alice.profile().identity_private.view(),
      Concat({AsBytes(protocol::labels::kEnvelopeSig), AsBytes(dishonest.content())}));
  ASSERT_TRUE(sig.ok());
  dishonest.set_signature(AsString(*sig));

  gateway->user = "bob";
  for (uint64_t id : {5, 6}) {
    wire::Deliver& d = gateway->pushes.emplace_back();
    d.set_delivery_id(id);
    *d.mutable_envelope() = id == 5 ? dishonest : *honest;
    *d.mutable_sender() = alice.Info();
    *d.mutable_epoch() = epoch_;
    d.set_archive_notice("Archived by Acme.");
  }
  CliRun r;
  auto frames = RunAgainst(gateway, "bob", {"recv", "--wait", "0"}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("REJECTED message " + ToHex(AsBytes(header.message_id())) +
                       " (archive capsule mismatch"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("off the record"), std::string::npos) << "never shown: " << r.out;
  EXPECT_NE(r.out.find("alice: all fine\n"), std::string::npos) << r.out;

  std::vector<wire::ReportDelivery> reports;
  std::vector<uint64_t> acked;
  for (const auto& f : frames) {
    if (f.has_report_delivery()) reports.push_back(f.report_delivery());
    if (f.has_delivery_ack()) {
      acked.insert(acked.end(), f.delivery_ack().delivery_ids().begin(),
                   f.delivery_ack().delivery_ids().end());
    }
  }
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].delivery_id(), 5u);
  EXPECT_EQ(reports[0].reason(), "archive_capsule_mismatch");
  EXPECT_EQ(reports[0].message_id(), header.message_id());
  EXPECT_EQ(acked, (std::vector<uint64_t>{5, 6})) << "a rejected delivery is still acked";
}

TEST_F(CliFlowTest, PrekeyRotation) {
  auto gateway = std::make_shared<FakeGateway>();
  gateway->user = "alice";
  Device alice = MakeProfile("alice", "wss://127.0.0.1:1/v1");
  const std::string first_prekey = alice.profile().prekey.public_key();

  CliRun r;
  auto frames = RunAgainst(gateway, "alice", {"rotate-prekey"}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<wire::UpdatePrekey> updates;
  for (const auto& f : frames) {
    if (f.has_update_prekey()) updates.push_back(f.update_prekey());
  }
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_TRUE(protocol::VerifyPrekey(alice.identity_public(), updates[0].prekey()).ok());
  EXPECT_NE(r.out.find("prekey " +
                       protocol::Fingerprint(AsBytes(updates[0].prekey().public_key()))),
            std::string::npos)
      << r.out;
  auto p = LoadProfile(Dir("alice"), &pw_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->profile.prekey.SerializeAsString(), updates[0].prekey().SerializeAsString());
  EXPECT_TRUE(p->profile.pending_prekeys.empty());
  ASSERT_EQ(p->profile.retired_prekeys.size(), 1u);
  EXPECT_EQ(p->profile.retired_prekeys[0].prekey.public_key(), first_prekey);

  // Not due yet: recv leaves the prekey alone.
  frames = RunAgainst(gateway, "alice", {"recv", "--wait", "0"}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  for (const auto& f : frames) EXPECT_FALSE(f.has_update_prekey());

  // A week old: recv rotates it by itself.
  Device old =
      MakeProfile("bob", "wss://127.0.0.1:1/v1", Now() - kDefaultPrekeyRotationMs - 1000);
  gateway->user = "bob";
  frames = RunAgainst(gateway, "bob", {"recv", "--wait", "0"}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  size_t rotated = 0;
  for (const auto& f : frames) rotated += f.has_update_prekey() ? 1 : 0;
  EXPECT_EQ(rotated, 1u);
  p = LoadProfile(Dir("bob"), &pw_);
  ASSERT_TRUE(p.ok());
  EXPECT_NE(p->profile.prekey.public_key(), old.profile().prekey.public_key());
  EXPECT_EQ(p->profile.retired_prekeys.size(), 1u);
}

TEST_F(CliFlowTest, GroupsAndSendToAConversation) {
  auto gateway = std::make_shared<FakeGateway>();
  Device alice = MakeProfile("alice", "wss://127.0.0.1:1/v1");
  Device bob = MakeProfile("bob", "wss://127.0.0.1:1/v1");
  Device carol = MakeProfile("carol", "wss://127.0.0.1:1/v1");
  gateway->user = "alice";
  wire::ConversationInfo& g = gateway->conversation;
  g.set_conversation_id("g7");
  g.set_group(true);
  g.set_title("desk");
  g.set_created_by("alice");
  g.set_membership_version(1);
  g.add_members("alice");
  g.add_members("bob");
  *g.add_devices() = alice.Info();
  *g.add_devices() = bob.Info();
  *g.mutable_epoch() = epoch_;
  g.set_archive_notice("Archived by Acme.");

  CliRun r;
  auto frames =
      RunAgainst(gateway, "alice", {"group", "create", "--title", "desk", "--members", "bob"}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("notice (g7): Archived by Acme.\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("group g7 \"desk\" members alice bob (version 1)"), std::string::npos)
      << r.out;
  bool asked = false;
  for (const auto& f : frames) {
    if (!f.has_create_group()) continue;
    asked = true;
    EXPECT_EQ(f.create_group().title(), "desk");
    ASSERT_EQ(f.create_group().members_size(), 1);
    EXPECT_EQ(f.create_group().members(0), "bob");
  }
  EXPECT_TRUE(asked);

  frames = RunAgainst(gateway, "alice", {"send", "--conversation", "g7", "hello", "desk"}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find(" to g7\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("notice"), std::string::npos) << "told once: " << r.out;

  // Alice adds carol: version 2.
  g.set_membership_version(2);
  g.add_members("carol");
  *g.add_devices() = carol.Info();
  wire::MembershipChange* change = g.add_changes();
  change->set_version(2);
  change->set_actor("alice");
  change->add_added("carol");
  frames = RunAgainst(gateway, "alice", {"group", "add", "g7", "carol"}, r);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("notice (g7): alice added carol\n"), std::string::npos) << r.out;
  for (const auto& f : frames) {
    if (f.has_change_members()) {
      EXPECT_EQ(f.change_members().conversation_id(), "g7");
      EXPECT_EQ(f.change_members().add_size(), 1);
    }
  }

  // A gateway answering with another conversation is refused before sealing.
  g.set_conversation_id("g8");
  frames = RunAgainst(gateway, "alice", {"send", "--conversation", "g7", "hi"}, r);
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("another conversation"), std::string::npos) << r.err;
  for (const auto& f : frames) EXPECT_FALSE(f.has_submit());

  // A listing with a device whose certificate does not verify is refused.
  g.set_conversation_id("g7");
  g.mutable_devices(1)->mutable_certificate()->mutable_org_signature()->back() ^= 1;
  frames = RunAgainst(gateway, "alice", {"group", "show", "g7"}, r);
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_NE(r.err.find("device certificate"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace holdfast::client
