#include "holdfast/base/time.h"

#include <gtest/gtest.h>

namespace holdfast {
namespace {

constexpr int64_t kJan1 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

TEST(TimeTest, Precisions) {
  EXPECT_EQ(FormatUtc(kJan1 + 36'000'123, TimePrecision::kMillis), "2026-01-01T10:00:00.123Z");
  EXPECT_EQ(FormatUtc(kJan1 + 36'000'123, TimePrecision::kSeconds), "2026-01-01T10:00:00Z");
  EXPECT_EQ(FormatUtc(kJan1, TimePrecision::kShortest), "2026-01-01");
  EXPECT_EQ(FormatUtc(kJan1 + 1000, TimePrecision::kShortest), "2026-01-01T00:00:01Z");
  EXPECT_EQ(FormatUtc(kJan1 + 1, TimePrecision::kShortest), "2026-01-01T00:00:00.001Z");
}

TEST(TimeTest, BeforeTheEpoch) {
  EXPECT_EQ(FormatUtc(-1, TimePrecision::kMillis), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatUtc(0, TimePrecision::kShortest), "1970-01-01");
}

TEST(TimeTest, ParseUtcReadsWhatFormatUtcWrites) {
  for (int64_t ms : std::initializer_list<int64_t>{kJan1, kJan1 + 36'000'123, int64_t{-1}, int64_t{0}, kJan1 + int64_t{59} * 86'400'000}) {
    EXPECT_EQ(ParseUtc(FormatUtc(ms, TimePrecision::kMillis)), ms);
    EXPECT_EQ(ParseUtc(FormatUtc(ms, TimePrecision::kSeconds)), ms - ((ms % 1000) + 1000) % 1000);
  }
}

TEST(TimeTest, ParseUtcRefusesEverythingElse) {
  for (const char* bad : {"", "2026-01-01", "2026-01-01T10:00:00", "2026-01-01T10:00:00+00:00",
                          "2026-01-01 10:00:00Z", "2026-02-30T10:00:00Z", "2026-13-01T10:00:00Z",
                          "2026-01-01T24:00:00Z", "2026-01-01T10:00:00.12Z", "2026-01-01T10:00:00.1234Z",
                          "2026-01-01T10:00:0xZ", "+026-01-01T10:00:00Z"}) {
    EXPECT_FALSE(ParseUtc(bad).has_value()) << bad;
  }
}

TEST(TimeTest, Rfc5322) {
  EXPECT_EQ(FormatRfc5322(kJan1 + 36'000'123), "Thu, 01 Jan 2026 10:00:00 +0000");
  EXPECT_EQ(FormatRfc5322(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
}

TEST(TimeTest, NowIsAfter2025) { EXPECT_GT(NowMs(), kJan1 - 365LL * 86'400'000); }

}  // namespace
}  // namespace holdfast
