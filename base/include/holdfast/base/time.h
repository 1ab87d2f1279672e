// Wall-clock time as Unix milliseconds, and its ISO-8601 UTC forms.
#pragma once

#include <cstdint>
#include <string>

namespace holdfast {

// The system clock, in milliseconds since the Unix epoch.
int64_t NowMs();

enum class TimePrecision {
  kSeconds,      // 2026-01-01T10:00:00Z
  kMillis,       // 2026-01-01T10:00:00.123Z
  kShortest,     // the date alone at midnight, else seconds, else millis
};

// ISO-8601 in UTC. Negative times (before 1970) are handled.
std::string FormatUtc(int64_t ms, TimePrecision precision);

}  // namespace holdfast
