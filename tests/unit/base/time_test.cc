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

TEST(TimeTest, NowIsAfter2025) { EXPECT_GT(NowMs(), kJan1 - 365LL * 86'400'000); }

}  // namespace
}  // namespace holdfast
