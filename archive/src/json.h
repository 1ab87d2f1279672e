// Minimal JSON writing for audit details and export files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast::archive::internal {

// `s` as a quoted JSON string. Invalid UTF-8 bytes become U+FFFD, so the
// output is always valid JSON.
std::string JsonString(std::string_view s);
std::string JsonStringArray(const std::vector<std::string>& items);
std::string JsonInt64Array(const std::vector<int64_t>& items);

// `s` with every invalid UTF-8 byte and every NUL replaced by U+FFFD, cut at
// a character boundary to at most `max_bytes`: text PostgreSQL accepts.
std::string SanitizeUtf8(std::string_view s, size_t max_bytes);

// Builds one JSON object, members in insertion order.
class JsonObject {
 public:
  JsonObject& String(std::string_view key, std::string_view value);
  JsonObject& Int(std::string_view key, int64_t value);
  JsonObject& Bool(std::string_view key, bool value);
  // `json` must already be valid JSON (an array or object built elsewhere).
  JsonObject& Raw(std::string_view key, std::string_view json);
  std::string str() const { return body_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string body_ = "{";
};

}  // namespace holdfast::archive::internal
