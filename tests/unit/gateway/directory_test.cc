// Escaping of user names into LDAP DNs and filters, and the enrollment
// failure limiter. The sign-in itself is tested against a real slapd in
// tests/integration/directory_test.py.
#include "directory.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "rate_limit.h"

namespace holdfast::gateway {
namespace {

using namespace std::string_literals;

TEST(EscapeDnValueTest, PlainNamesAreUnchanged) {
  EXPECT_EQ(EscapeDnValue("alice"), "alice");
  EXPECT_EQ(EscapeDnValue("j.doe-2"), "j.doe-2");
  EXPECT_EQ(EscapeDnValue("zoë"), "zoë");  // UTF-8 passes as is
  EXPECT_EQ(EscapeDnValue("a b"), "a b");  // inner spaces need no escape
}

TEST(EscapeDnValueTest, SpecialCharactersAreEscaped) {
  // RFC 4514 section 2.4.
  EXPECT_EQ(EscapeDnValue("a,b"), "a\\,b");
  EXPECT_EQ(EscapeDnValue("a+b"), "a\\+b");
  EXPECT_EQ(EscapeDnValue("\"q\""), "\\\"q\\\"");
  EXPECT_EQ(EscapeDnValue("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeDnValue("<a>;"), "\\<a\\>\\;");
  EXPECT_EQ(EscapeDnValue("x=y"), "x\\=y");
  EXPECT_EQ(EscapeDnValue("#hash"), "\\#hash");
  EXPECT_EQ(EscapeDnValue("in#side"), "in#side");
  EXPECT_EQ(EscapeDnValue(" lead"), "\\ lead");
  EXPECT_EQ(EscapeDnValue("trail "), "trail\\ ");
  EXPECT_EQ(EscapeDnValue(" "), "\\ ");
  EXPECT_EQ(EscapeDnValue("nul\0x"s), "nul\\00x");
  EXPECT_EQ(EscapeDnValue("nl\n"), "nl\\0a");
}

TEST(EscapeDnValueTest, InjectionStaysInsideTheValue) {
  const std::string dn = FillTemplate("uid={user},ou=people,dc=example,dc=org",
                                      EscapeDnValue("x,ou=admins,dc=example,dc=org"));
  EXPECT_EQ(dn, "uid=x\\,ou\\=admins\\,dc\\=example\\,dc\\=org,ou=people,dc=example,dc=org");
}

TEST(EscapeFilterValueTest, SpecialCharactersAreHexEscaped) {
  // RFC 4515 section 3.
  EXPECT_EQ(EscapeFilterValue("alice"), "alice");
  EXPECT_EQ(EscapeFilterValue("*"), "\\2a");
  EXPECT_EQ(EscapeFilterValue("a(b)c"), "a\\28b\\29c");
  EXPECT_EQ(EscapeFilterValue("back\\slash"), "back\\5cslash");
  EXPECT_EQ(EscapeFilterValue("nul\0"s), "nul\\00");
  EXPECT_EQ(EscapeFilterValue("zoë,=#+"), "zoë,=#+");  // nothing else is special in a filter
}

TEST(EscapeFilterValueTest, InjectionStaysInsideTheValue) {
  const std::string filter = FillTemplate("(&(objectClass=person)(uid={user}))",
                                          EscapeFilterValue("*)(uid=*))(|(uid=*"));
  EXPECT_EQ(filter, "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a))");
}

TEST(FillTemplateTest, ReplacesEveryPlaceholder) {
  EXPECT_EQ(FillTemplate("(|(uid={user})(mail={user}@x))", "bo"), "(|(uid=bo)(mail=bo@x))");
  EXPECT_EQ(FillTemplate("no placeholder", "bo"), "no placeholder");
  // A value that looks like a placeholder is not expanded again.
  EXPECT_EQ(FillTemplate("{user}", "{user}"), "{user}");
}

TEST(DirectoryTest, EmptyPasswordIsRefusedBeforeAnyBind) {
  Config::Directory c;
  c.mode = "directory";
  c.url = "ldaps://127.0.0.1:1";  // nothing listens there: a bind would be unavailable
  c.ca_file = "/etc/ssl/certs/ca-certificates.crt";
  c.bind_dn_template = "uid={user},dc=x";
  c.enroll_groups = {"cn=g,dc=x"};
  c.threads = 1;
  auto d = Directory::Create(c);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  auto r = (*d)->Authenticate("alice", SecretBytes());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  auto unreachable = (*d)->Authenticate("alice", SecretBytes(AsBytes("pw")));
  ASSERT_FALSE(unreachable.ok());
  EXPECT_EQ(unreachable.status().code(), Code::kUnavailable) << unreachable.status().ToString();
}

TEST(DirectoryTest, UnreadableCaFileFailsAtStart) {
  Config::Directory c;
  c.mode = "directory";
  c.url = "ldaps://127.0.0.1:1";
  c.ca_file = "/nonexistent/ca.pem";
  c.bind_dn_template = "uid={user},dc=x";
  c.enroll_groups = {"cn=g,dc=x"};
  auto d = Directory::Create(c);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("ca_file"), std::string::npos) << d.status().ToString();
}

TEST(FailureLimiterTest, RefusesAfterTheBurstAndRefills) {
  using namespace std::chrono_literals;
  FailureLimiter limiter(5);
  auto t = FailureLimiter::Clock::now();
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(limiter.Allowed("alice", t)) << i;
    limiter.Failed("alice", t);
  }
  EXPECT_FALSE(limiter.Allowed("alice", t));
  EXPECT_TRUE(limiter.Allowed("bob", t));  // per key
  // One failure back every 12 s at 5 per minute.
  EXPECT_FALSE(limiter.Allowed("alice", t + 11s));
  EXPECT_TRUE(limiter.Allowed("alice", t + 12s));
  limiter.Failed("alice", t + 12s);
  EXPECT_FALSE(limiter.Allowed("alice", t + 12s));
  EXPECT_TRUE(limiter.Allowed("alice", t + 72s));
}

TEST(FailureLimiterTest, MemoryStaysBounded) {
  using namespace std::chrono_literals;
  FailureLimiter limiter(2, /*max_keys=*/3);
  auto t = FailureLimiter::Clock::now();
  for (const char* k : {"a", "b", "c"}) limiter.Failed(k, t);
  limiter.Failed("d", t);  // full, none refilled: not tracked
  EXPECT_EQ(limiter.tracked(), 3u);
  limiter.Failed("d", t);
  EXPECT_TRUE(limiter.Allowed("d", t));
  // Once the others have refilled, they make room.
  limiter.Failed("e", t + 1min);
  EXPECT_EQ(limiter.tracked(), 1u);
  limiter.Failed("e", t + 1min);
  EXPECT_FALSE(limiter.Allowed("e", t + 1min));
}

}  // namespace
}  // namespace holdfast::gateway
