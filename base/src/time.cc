#include "holdfast/base/time.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace holdfast {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatUtc(int64_t ms, TimePrecision precision) {
  int64_t secs = ms / 1000;
  int64_t frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    --secs;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[48];
  if (precision == TimePrecision::kShortest && frac == 0 && tm.tm_hour == 0 && tm.tm_min == 0 &&
      tm.tm_sec == 0) {
    std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
    return buf;
  }
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  const bool millis = precision == TimePrecision::kMillis ||
                      (precision == TimePrecision::kShortest && frac != 0);
  if (millis) {
    char frac_buf[8];
    std::snprintf(frac_buf, sizeof frac_buf, ".%03d", static_cast<int>(frac));
    out += frac_buf;
  }
  return out + "Z";
}

std::optional<int64_t> ParseUtc(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS, then optionally .mmm, then Z.
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd";
  if (text.size() != kShape.size() + 1 && text.size() != kShape.size() + 5) return std::nullopt;
  if (text.back() != 'Z') return std::nullopt;
  auto digits = [&](size_t at, size_t n) {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) v = v * 10 + (text[i] - '0');
    return v;
  };
  for (size_t i = 0; i < kShape.size(); ++i) {
    const bool digit = text[i] >= '0' && text[i] <= '9';
    if (kShape[i] == 'd' ? !digit : text[i] != kShape[i]) return std::nullopt;
  }
  int millis = 0;
  if (text.size() == kShape.size() + 5) {
    if (text[kShape.size()] != '.') return std::nullopt;
    for (size_t i = kShape.size() + 1; i < kShape.size() + 4; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
    }
    millis = digits(kShape.size() + 1, 3);
  }
  std::tm tm{};
  tm.tm_year = digits(0, 4) - 1900;
  tm.tm_mon = digits(5, 2) - 1;
  tm.tm_mday = digits(8, 2);
  tm.tm_hour = digits(11, 2);
  tm.tm_min = digits(14, 2);
  tm.tm_sec = digits(17, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59) {
    return std::nullopt;
  }
  const std::tm asked = tm;
  const int64_t secs = static_cast<int64_t>(timegm(&tm));
  // timegm normalises 31 February into March; such a date is not a date.
  if (tm.tm_mday != asked.tm_mday || tm.tm_mon != asked.tm_mon) return std::nullopt;
  return secs * 1000 + millis;
}

std::string FormatRfc5322(int64_t ms) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t secs = ms / 1000;
  if (ms % 1000 < 0) --secs;
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

}  // namespace holdfast
