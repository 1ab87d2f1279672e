#include "holdfast/base/bytes.h"

#include <gtest/gtest.h>

namespace holdfast {
namespace {

TEST(BytesTest, HexRoundTrip) {
  Bytes b = {0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(ToHex(b), "0001abff");
  auto back = FromHex("0001ABff");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, b);
}

TEST(BytesTest, FromHexRejectsBadInput) {
  EXPECT_FALSE(FromHex("abc").has_value());
  EXPECT_FALSE(FromHex("zz").has_value());
  EXPECT_TRUE(FromHex("").has_value());
}

TEST(BytesTest, ConstantTimeEqual) {
  Bytes a = {1, 2, 3}, b = {1, 2, 3}, c = {1, 2, 4}, d = {1, 2};
  EXPECT_TRUE(ConstantTimeEqual(a, b));
  EXPECT_FALSE(ConstantTimeEqual(a, c));
  EXPECT_FALSE(ConstantTimeEqual(a, d));
}

TEST(BytesTest, SecretBytesMoveLeavesSourceEmpty) {
  SecretBytes s(AsBytes("key material"));
  SecretBytes t(std::move(s));
  EXPECT_TRUE(s.empty());  // NOLINT: checking moved-from state on purpose
  EXPECT_EQ(AsString(t.view()), "key material");
}

TEST(BytesTest, SecretBytesResizeKeepsPrefix) {
  SecretBytes s(AsBytes("abc"));
  s.resize(100);
  EXPECT_EQ(s.size(), 100u);
  EXPECT_EQ(s.data()[0], 'a');
  s.resize(1);
  EXPECT_EQ(AsString(s.view()), "a");
}

TEST(BytesTest, SecureWipeZeroes) {
  uint8_t buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  SecureWipe(buf, sizeof buf);
  for (uint8_t b : buf) EXPECT_EQ(b, 0);
}

}  // namespace
}  // namespace holdfast
