#include "holdfast/gateway/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace holdfast::gateway {
namespace {

TEST(ConfigTest, EmptyFileGivesDocumentedDefaults) {
  auto c = Config::Parse("", "empty.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->gateway.listen.port, 8443);
  EXPECT_EQ(c->admin.listen.port, 9443);
  EXPECT_EQ(c->gateway.listen.host, "127.0.0.1");
  EXPECT_EQ(c->hsm.pin_file, "/var/lib/holdfast/hsm/user.pin");
  EXPECT_EQ(c->hsm.enrollment_token_label, "holdfast-enrollment");
  EXPECT_EQ(c->hsm.enrollment_pin_file, "/var/lib/holdfast/hsm/enrollment.pin");
  EXPECT_EQ(c->keys.enrollment_key_days, 730u);
  EXPECT_EQ(c->admin.tls_cert, c->gateway.tls_cert);
  EXPECT_EQ(c->policy_file, "/var/lib/holdfast/policy.yaml");
}

TEST(ConfigTest, StateDirDrivesDerivedPaths) {
  auto c = Config::Parse("state_dir: /srv/hf\n", "x.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->gateway.tls_key, "/srv/hf/tls/gateway.key");
  EXPECT_EQ(c->export_dir, "/srv/hf/exports");
  EXPECT_EQ(c->hsm.enrollment_pin_file, "/srv/hf/hsm/enrollment.pin");
}

TEST(ConfigTest, EnrollmentTokenSettings) {
  auto c = Config::Parse(
      "hsm:\n  enrollment_token_label: enroll-2\n  enrollment_pin_file: /etc/hf/e.pin\n"
      "keys:\n  enrollment_key_days: 90\n",
      "e.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hsm.enrollment_token_label, "enroll-2");
  EXPECT_EQ(c->hsm.enrollment_pin_file, "/etc/hf/e.pin");
  EXPECT_EQ(c->keys.enrollment_key_days, 90u);
  // The gateway logs in to the enrollment token: it must not be the archive token.
  auto same = Config::Parse("hsm:\n  token_label: one\n  enrollment_token_label: one\n", "s.yaml");
  ASSERT_FALSE(same.ok());
  EXPECT_EQ(same.status().code(), Code::kInvalidArgument);
  EXPECT_NE(same.status().message().find("enrollment_token_label"), std::string::npos);
}

TEST(ConfigTest, ReferenceFileParsesAndMatchesDefaults) {
  std::ifstream in(std::string(HOLDFAST_SOURCE_DIR) + "/deploy/holdfast.yaml");
  ASSERT_TRUE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  auto reference = Config::Parse(ss.str(), "deploy/holdfast.yaml");
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();
  auto defaults = Config::Parse("", "empty.yaml");
  ASSERT_TRUE(defaults.ok());
  // The reference documents the defaults; it must not drift from them.
  EXPECT_EQ(reference->org, defaults->org);
  EXPECT_EQ(reference->database.conninfo, defaults->database.conninfo);
  EXPECT_EQ(reference->database.workers, defaults->database.workers);
  EXPECT_EQ(reference->database.ingest_batch_max, defaults->database.ingest_batch_max);
  EXPECT_EQ(reference->hsm.module, defaults->hsm.module);
  EXPECT_EQ(reference->hsm.pin_file, defaults->hsm.pin_file);
  EXPECT_EQ(reference->hsm.so_pin_file, defaults->hsm.so_pin_file);
  EXPECT_EQ(reference->hsm.enrollment_token_label, defaults->hsm.enrollment_token_label);
  EXPECT_EQ(reference->hsm.enrollment_pin_file, defaults->hsm.enrollment_pin_file);
  EXPECT_EQ(reference->hsm.sessions, defaults->hsm.sessions);
  EXPECT_EQ(reference->gateway.listen.port, defaults->gateway.listen.port);
  EXPECT_EQ(reference->gateway.max_frame_bytes, defaults->gateway.max_frame_bytes);
  EXPECT_EQ(reference->gateway.max_clock_skew_seconds, defaults->gateway.max_clock_skew_seconds);
  EXPECT_EQ(reference->gateway.archive_notice, defaults->gateway.archive_notice);
  EXPECT_EQ(reference->gateway.node_id, defaults->gateway.node_id);
  EXPECT_EQ(reference->admin.listen.port, defaults->admin.listen.port);
  EXPECT_EQ(reference->admin.tls_cert, defaults->admin.tls_cert);
  EXPECT_EQ(reference->keys.epoch_days, defaults->keys.epoch_days);
  EXPECT_EQ(reference->keys.rotate_ahead_days, defaults->keys.rotate_ahead_days);
  EXPECT_EQ(reference->keys.enrollment_key_days, defaults->keys.enrollment_key_days);
  EXPECT_EQ(reference->keys.prekey_rotation_days, defaults->keys.prekey_rotation_days);
  EXPECT_EQ(reference->keys.prekey_grace_days, defaults->keys.prekey_grace_days);
  EXPECT_EQ(reference->gateway.enrollment_failures_per_user, defaults->gateway.enrollment_failures_per_user);
  EXPECT_EQ(reference->gateway.enrollment_failures_per_ip, defaults->gateway.enrollment_failures_per_ip);
  EXPECT_EQ(reference->directory.mode, defaults->directory.mode);
  EXPECT_EQ(reference->directory.display_name_attribute, defaults->directory.display_name_attribute);
  EXPECT_EQ(reference->directory.membership, defaults->directory.membership);
  EXPECT_EQ(reference->directory.timeout_seconds, defaults->directory.timeout_seconds);
  EXPECT_EQ(reference->directory.threads, defaults->directory.threads);
  EXPECT_EQ(reference->delivery.queue_ttl_days, defaults->delivery.queue_ttl_days);
}

TEST(ConfigTest, NodeId) {
  auto c = Config::Parse("gateway:\n  node_id: gw-1.example_A\n", "n.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->gateway.node_id, "gw-1.example_A");
  // Default: the host name and the listen port, in the node id alphabet.
  auto d = Config::Parse("gateway:\n  listen: 127.0.0.1:8555\n", "n.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->gateway.node_id, DefaultNodeId(8555));
  EXPECT_TRUE(ValidNodeId(d->gateway.node_id)) << d->gateway.node_id;
  EXPECT_TRUE(d->gateway.node_id.ends_with("-8555")) << d->gateway.node_id;
  EXPECT_EQ(Config::Parse("gateway:\n  node_id: \"\"\n", "n.yaml")->gateway.node_id, DefaultNodeId(8443));
  for (const char* bad : {"\"a b\"", "\"a/b\"", "\"ä\"", "\"n'1\""}) {
    auto r = Config::Parse(std::string("gateway:\n  node_id: ") + bad + "\n", "n.yaml");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("n.yaml:2:12: gateway.node_id"), std::string::npos)
        << r.status().message();
  }
  EXPECT_TRUE(Config::Parse("gateway:\n  node_id: " + std::string(64, 'x') + "\n", "n.yaml").ok());
  EXPECT_FALSE(Config::Parse("gateway:\n  node_id: " + std::string(65, 'x') + "\n", "n.yaml").ok());
  EXPECT_FALSE(ValidNodeId(""));
}

TEST(ConfigTest, QueueTtl) {
  auto defaults = Config::Parse("", "empty.yaml");
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->delivery.queue_ttl_days, 30u);
  auto c = Config::Parse("delivery:\n  queue_ttl_days: 7\n", "p.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->delivery.queue_ttl_days, 7u);
  EXPECT_FALSE(Config::Parse("delivery:\n  queue_ttl_days: 0\n", "p.yaml").ok());
  EXPECT_FALSE(Config::Parse("delivery:\n  queue_ttl: 7\n", "p.yaml").ok());
  // A queued message must still open: the prekey grace covers the TTL,
  // whichever section comes first.
  auto short_grace = Config::Parse("delivery:\n  queue_ttl_days: 40\n", "p.yaml");
  ASSERT_FALSE(short_grace.ok());
  EXPECT_EQ(short_grace.status().code(), Code::kInvalidArgument);
  EXPECT_NE(short_grace.status().message().find("keys.prekey_grace_days (35) must be at least "
                                                "delivery.queue_ttl_days (40)"),
            std::string::npos)
      << short_grace.status().message();
  EXPECT_FALSE(Config::Parse("keys:\n  prekey_grace_days: 20\n", "p.yaml").ok());
  EXPECT_TRUE(Config::Parse("delivery:\n  queue_ttl_days: 40\nkeys:\n  prekey_grace_days: 40\n",
                            "p.yaml").ok());
  EXPECT_TRUE(Config::Parse("keys:\n  prekey_rotation_days: 2\n  prekey_grace_days: 10\n"
                            "delivery:\n  queue_ttl_days: 10\n", "p.yaml").ok());
}

TEST(ConfigTest, PrekeyPolicy) {
  auto c = Config::Parse("keys:\n  prekey_rotation_days: 2\n  prekey_grace_days: 40\n", "p.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->keys.prekey_rotation_days, 2u);
  EXPECT_EQ(c->keys.prekey_grace_days, 40u);
  EXPECT_FALSE(Config::Parse("keys:\n  prekey_rotation_days: 0\n", "p.yaml").ok());
  EXPECT_FALSE(Config::Parse("keys:\n  prekey_rotation_days: 400\n", "p.yaml").ok());
  EXPECT_FALSE(Config::Parse("keys:\n  prekey_rotation_days: 10\n  prekey_grace_days: 9\n",
                             "p.yaml").ok());
}

TEST(ConfigTest, UnknownKeyIsRefusedWithLineAndColumn) {
  auto c = Config::Parse("org: x\ngateway:\n  listn: 127.0.0.1:1\n", "typo.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("typo.yaml:3:3"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("gateway.listn"), std::string::npos);
}

TEST(ConfigTest, MalformedYamlNamesThePosition) {
  auto c = Config::Parse("org: [unclosed\n", "bad.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("bad.yaml:"), std::string::npos) << c.status().message();
}

TEST(ConfigTest, WrongTypeIsRefused) {
  auto c = Config::Parse("database:\n  workers: many\n", "t.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
}

TEST(ConfigTest, BadValuesAreRefused) {
  EXPECT_FALSE(Config::Parse("database:\n  workers: 0\n", "t.yaml").ok());
  EXPECT_FALSE(Config::Parse("keys:\n  epoch_days: 0\n", "t.yaml").ok());
  EXPECT_FALSE(Config::Parse("keys:\n  enrollment_key_days: 0\n", "t.yaml").ok());
  EXPECT_FALSE(Config::Parse("keys:\n  epoch_days: 7\n  rotate_ahead_days: 7\n", "t.yaml").ok());
  EXPECT_FALSE(Config::Parse("gateway:\n  listen: nohost\n", "t.yaml").ok());
  EXPECT_FALSE(Config::Parse("gateway:\n  listen: 127.0.0.1:70000\n", "t.yaml").ok());
  EXPECT_FALSE(Config::Parse("- a list\n", "t.yaml").ok());
}

TEST(ConfigTest, ParseEndpoint) {
  auto ep = ParseEndpoint("[::1]:8443");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 8443);
  EXPECT_FALSE(ParseEndpoint(":80").ok());
  EXPECT_FALSE(ParseEndpoint("host:8x").ok());
}

TEST(ConfigTest, LoadMissingFile) {
  auto c = Config::Load("/nonexistent/holdfast.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kNotFound);
}

TEST(ConfigTest, HsmSessionsAndPinSources) {
  auto c = Config::Parse("hsm:\n  sessions: 8\n  pin_credential: hsm-pin\n  pin_env: HF_PIN\n"
                         "  enrollment_pin_credential: enrollment-pin\n  enrollment_pin_env: HF_EPIN\n",
                         "s.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hsm.sessions, 8);
  EXPECT_EQ(c->hsm.pin_credential, "hsm-pin");
  EXPECT_EQ(c->hsm.pin_env, "HF_PIN");
  EXPECT_EQ(c->hsm.enrollment_pin_credential, "enrollment-pin");
  EXPECT_EQ(c->hsm.enrollment_pin_env, "HF_EPIN");
  auto defaults = Config::Parse("", "s.yaml");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->hsm.sessions, 4);
  EXPECT_TRUE(defaults->hsm.pin_env.empty());
  EXPECT_EQ(Config::Parse("hsm:\n  sessions: 0\n", "s.yaml").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Config::Parse("hsm:\n  pin_credential: ../x\n", "s.yaml").status().code(),
            Code::kInvalidArgument);
}

constexpr char kDirectory[] =
    "directory:\n"
    "  mode: both\n"
    "  url: ldaps://ldap.example.org\n"
    "  ca_file: /etc/holdfast/ldap-ca.pem\n"
    "  bind_dn_template: \"uid={user},ou=people,dc=example,dc=org\"\n"
    "  groups:\n"
    "    enroll: [\"cn=holdfast-users,ou=groups,dc=example,dc=org\"]\n"
    "    create_groups: [\"cn=a,dc=x\", \"cn=b,dc=x\"]\n";

// kDirectory with `from` replaced by `to`.
std::string DirectoryWith(const std::string& from, const std::string& to) {
  std::string s = kDirectory;
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(ConfigTest, DirectoryDefaultsToLocalEnrollmentOnly) {
  auto c = Config::Parse("", "d.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->directory.mode, "local");
  EXPECT_FALSE(c->directory.enabled());
  EXPECT_TRUE(c->directory.codes_allowed());
  EXPECT_EQ(c->gateway.enrollment_failures_per_user, 5u);
  EXPECT_EQ(c->gateway.enrollment_failures_per_ip, 20u);
  // Mode local needs no URL.
  EXPECT_TRUE(Config::Parse("directory:\n  mode: local\n", "d.yaml").ok());
}

TEST(ConfigTest, DirectorySection) {
  auto c = Config::Parse(kDirectory, "d.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->directory.enabled());
  EXPECT_TRUE(c->directory.codes_allowed());
  EXPECT_EQ(c->directory.enroll_groups.size(), 1u);
  EXPECT_EQ(c->directory.create_groups_groups.size(), 2u);
  auto only = Config::Parse(DirectoryWith("mode: both", "mode: directory"), "d.yaml");
  ASSERT_TRUE(only.ok());
  EXPECT_FALSE(only->directory.codes_allowed());
  auto starttls = Config::Parse(
      DirectoryWith("url: ldaps://ldap.example.org", "url: ldap://ldap.example.org:389\n  start_tls: true"),
      "d.yaml");
  EXPECT_TRUE(starttls.ok()) << starttls.status().ToString();
  auto search = Config::Parse(
      DirectoryWith("  bind_dn_template: \"uid={user},ou=people,dc=example,dc=org\"\n",
                    "  search_base: \"dc=example,dc=org\"\n"
                    "  search_filter: \"(sAMAccountName={user})\"\n"
                    "  bind_dn: \"cn=svc,dc=example,dc=org\"\n"
                    "  bind_password_file: /etc/holdfast/ldap.password\n"
                    "  membership: member_of\n"),
      "d.yaml");
  EXPECT_TRUE(search.ok()) << search.status().ToString();
}

TEST(ConfigTest, PlainLdapIsRefused) {
  auto c = Config::Parse(DirectoryWith("url: ldaps://ldap.example.org", "url: ldap://ldap.example.org"),
                         "d.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("start_tls"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("d.yaml:3:"), std::string::npos) << c.status().message();
}

TEST(ConfigTest, BadDirectorySettingsAreRefused) {
  const std::pair<std::string, std::string> cases[] = {
      {"mode: both", "mode: sometimes"},
      {"url: ldaps://ldap.example.org", "url: https://ldap.example.org"},
      {"url: ldaps://ldap.example.org", "url: ldaps://ldap.example.org/dc=x??sub"},
      {"url: ldaps://ldap.example.org", "url: ldaps://ldap.example.org\n  start_tls: true"},
      {"  ca_file: /etc/holdfast/ldap-ca.pem\n", ""},
      {"uid={user},ou=people", "uid=alice,ou=people"},
      {"  bind_dn_template: \"uid={user},ou=people,dc=example,dc=org\"\n", ""},
      {"  bind_dn_template:", "  search_base: \"dc=x\"\n  bind_dn_template:"},
      {"  bind_dn_template: \"uid={user},ou=people,dc=example,dc=org\"\n",
       "  search_base: \"dc=x\"\n  search_filter: \"(uid=alice)\"\n"},
      {"  bind_dn_template: \"uid={user},ou=people,dc=example,dc=org\"\n",
       "  search_base: \"dc=x\"\n  search_filter: \"(uid={user})\"\n  bind_dn: \"cn=svc\"\n"},
      {"  bind_dn_template:", "  bind_dn: \"cn=svc\"\n  bind_dn_template:"},
      {"    enroll: [\"cn=holdfast-users,ou=groups,dc=example,dc=org\"]\n", ""},
      {"  groups:", "  timeout_seconds: 0\n  groups:"},
      {"  groups:", "  threads: 0\n  groups:"},
      {"  groups:", "  membership: nested\n  groups:"},
      {"  groups:", "  password: hunter2\n  groups:"},
      {"    enroll:", "    admin: [\"cn=x\"]\n    enroll:"},
  };
  for (const auto& [from, to] : cases) {
    auto c = Config::Parse(DirectoryWith(from, to), "d.yaml");
    EXPECT_FALSE(c.ok()) << "accepted: " << to;
    if (!c.ok()) {
      EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
    }
  }
  EXPECT_FALSE(Config::Parse("gateway:\n  enrollment_failures_per_user: 0\n", "d.yaml").ok());
}

}  // namespace
}  // namespace holdfast::gateway
