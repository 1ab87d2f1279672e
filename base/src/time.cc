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

}  // namespace holdfast
