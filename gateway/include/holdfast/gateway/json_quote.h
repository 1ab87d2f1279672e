// A JSON string literal (quotes, backslash and control characters escaped;
// other bytes, UTF-8 included, copied) for hand-built JSON output.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace holdfast::gateway {

inline std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace holdfast::gateway
