// Wall-clock time as Unix milliseconds, and its ISO-8601 UTC forms.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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

// Parses what FormatUtc writes with kSeconds or kMillis
// ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00.123Z"); nothing else.
std::optional<int64_t> ParseUtc(std::string_view text);

// RFC 5322 section 3.3 date-time in UTC: "Thu, 01 Jan 2026 10:00:00 +0000".
std::string FormatRfc5322(int64_t ms);

}  // namespace holdfast
