#include "holdfast/client/profile.h"

#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>

#include "holdfast/client/device.h"
#include "holdfast/protocol/primitives.h"
#include "test_org.h"

namespace holdfast::client {
namespace {

using testing::OrgRoot;
using testing::TempDir;

constexpr int64_t kNow = 1'714'564'800'000;

mode_t ModeOf(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

Device Registered(const OrgRoot& root) {
  auto d = Device::Generate("alice", kNow);
  EXPECT_TRUE(d.ok());
  wire::RegisterResponse r;
  r.set_device_id(AsString(protocol::DeviceIdFor(d->identity_public())));
  r.set_org_root_key(AsString(root.public_key()));
  r.set_org("acme");
  EXPECT_TRUE(d->AcceptRegistration(r, "wss://127.0.0.1:8443/v1", kProfileCaFileName).ok());
  d->MarkNoticeShown("c1");
  d->MarkSeen(protocol::RandomBytes(16));
  return std::move(d).value();
}

TEST(ProfileTest, RoundTrip) {
  OrgRoot root;
  TempDir tmp;
  const auto dir = tmp.path() / "alice";
  Device d = Registered(root);
  ASSERT_TRUE(SaveProfile(dir, d.profile()).ok());
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir / kProfileFileName), 0600u);
  EXPECT_TRUE(ProfileExists(dir));

  auto loaded = LoadProfile(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const Profile& a = d.profile();
  const Profile& b = *loaded;
  EXPECT_EQ(b.user, a.user);
  EXPECT_EQ(b.server_url, a.server_url);
  EXPECT_EQ(b.device_id, a.device_id);
  EXPECT_EQ(b.org, a.org);
  EXPECT_EQ(b.org_root_key, a.org_root_key);
  EXPECT_EQ(b.ca_file, a.ca_file);
  EXPECT_EQ(b.identity_private.Reveal(), a.identity_private.Reveal());
  EXPECT_EQ(b.prekey_private.Reveal(), a.prekey_private.Reveal());
  EXPECT_EQ(b.prekey.SerializeAsString(), a.prekey.SerializeAsString());
  EXPECT_EQ(b.notices_shown, a.notices_shown);
  EXPECT_EQ(b.seen_message_ids, a.seen_message_ids);

  auto again = Device::FromProfile(std::move(loaded).value());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->identity_public(), d.identity_public());

  // Saving again replaces the file and leaves no temporary behind.
  ASSERT_TRUE(SaveProfile(dir, again->profile()).ok());
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(ModeOf(dir / kProfileFileName), 0600u);
}

TEST(ProfileTest, TightensExistingDirectory) {
  OrgRoot root;
  TempDir tmp;
  ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
  ASSERT_TRUE(SaveProfile(tmp.path(), Registered(root).profile()).ok());
  EXPECT_EQ(ModeOf(tmp.path()), 0700u);
}

TEST(ProfileTest, RefusesReadableByOthers) {
  OrgRoot root;
  TempDir tmp;
  ASSERT_TRUE(SaveProfile(tmp.path(), Registered(root).profile()).ok());
  ASSERT_EQ(::chmod((tmp.path() / kProfileFileName).c_str(), 0644), 0);
  auto r = LoadProfile(tmp.path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
}

TEST(ProfileTest, MissingAndMalformed) {
  TempDir tmp;
  EXPECT_EQ(LoadProfile(tmp.path()).status().code(), Code::kNotFound);
  EXPECT_FALSE(ProfileExists(tmp.path()));

  const auto path = tmp.path() / kProfileFileName;
  for (const char* text : {"not json", "[1,2]", "{\"version\": 1}", "{\"version\": 2}"}) {
    std::ofstream(path) << text;
    ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
    auto r = LoadProfile(tmp.path());
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << text;
  }
}

TEST(ProfileTest, KeysMustFitTogether) {
  OrgRoot root;
  Device alice = Registered(root);
  auto other = Device::Generate("bob", kNow);
  ASSERT_TRUE(other.ok());

  Profile p = alice.profile();
  p.prekey_private = other->profile().prekey_private;
  EXPECT_FALSE(Device::FromProfile(p).ok());

  p = alice.profile();
  p.identity_private = other->profile().identity_private;
  EXPECT_FALSE(Device::FromProfile(p).ok());

  p = alice.profile();
  p.prekey = other->profile().prekey;
  EXPECT_FALSE(Device::FromProfile(p).ok());

  p = alice.profile();
  p.org_root_key.resize(33);
  EXPECT_FALSE(Device::FromProfile(p).ok());

  EXPECT_TRUE(Device::FromProfile(alice.profile()).ok());
}

TEST(ProfileTest, InstallCaFile) {
  TempDir tmp;
  const auto src = tmp.path() / "src.pem";
  std::ofstream(src) << "hello";
  EXPECT_FALSE(InstallCaFile(tmp.path() / "p", src).ok());
  std::ofstream(src) << "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  ASSERT_TRUE(InstallCaFile(tmp.path() / "p", src).ok());
  EXPECT_EQ(ModeOf(tmp.path() / "p" / kProfileCaFileName), 0600u);
  EXPECT_FALSE(InstallCaFile(tmp.path() / "p", tmp.path() / "missing.pem").ok());
}

}  // namespace
}  // namespace holdfast::client
