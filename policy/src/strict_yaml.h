// Strict reading of yaml-cpp nodes for the policy and its test files: every
// key known, every scalar of exactly the expected type, every error at a
// line and column. Private to policy/.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/base/status.h"

namespace holdfast::policy::internal {

// Thrown by the readers below and turned into a Status by Guard(); it never
// leaves policy/.
struct YamlError {
  YAML::Mark mark;
  std::string message;
};

[[noreturn]] void Fail(const YAML::Node& node, std::string message);

// "a mapping", "a list", "'text'", "nothing".
std::string Describe(const YAML::Node& node);

std::string ScalarOf(const YAML::Node& node, std::string_view what);
// Exactly `true` or `false`, unquoted.
bool BoolOf(const YAML::Node& node, std::string_view what);
// A plain decimal integer in [min, max].
int64_t IntOf(const YAML::Node& node, std::string_view what, int64_t min,
              int64_t max = INT32_MAX);
// lower_case_with_underscores (digits allowed).
bool ValidName(std::string_view s);
// A list of distinct, non-empty strings; `allow_empty` permits `[]`.
std::vector<std::string> StringListOf(const YAML::Node& node, std::string_view what,
                                      bool allow_empty);

// Calls `on_key(key, key_node, value)` for each entry of a mapping, after
// rejecting duplicate keys and keys not in `allowed` (an empty `allowed`
// accepts any key).
template <typename OnKey>
void ForEachKey(const YAML::Node& map, std::string_view where,
                std::initializer_list<std::string_view> allowed, OnKey on_key);

// ForEachKey with YAML merge keys (`<<: *anchor`, or a list of anchors),
// which yaml-cpp does not resolve: the merged mappings' entries follow the
// mapping's own, and a key the mapping states itself overrides them.
template <typename OnKey>
void ForEachKeyMerged(const YAML::Node& map, std::string_view where,
                      std::initializer_list<std::string_view> allowed, OnKey on_key);

// Parses `text` and runs `body(root)`; parse errors and YamlError become
// kInvalidArgument "source:line:column: message".
template <typename Body>
Status Guard(std::string_view text, const std::string& source, Body body);

Status ErrorAt(const std::string& source, const YAML::Mark& mark, const std::string& message);
// The bytes of a file; kNotFound naming `what` if it cannot be read.
Result<std::string> ReadFileBytes(const std::string& path, std::string_view what);
void RejectUnknownKey(const YAML::Node& key_node, const std::string& key, std::string_view where,
                      std::initializer_list<std::string_view> allowed);

template <typename OnKey>
void ForEachKey(const YAML::Node& map, std::string_view where,
                std::initializer_list<std::string_view> allowed, OnKey on_key) {
  if (!map.IsMap()) Fail(map, std::string(where) + " must be a mapping, not " + Describe(map));
  std::vector<std::string> seen;
  for (const auto& entry : map) {
    const YAML::Node& key_node = entry.first;
    std::string key = ScalarOf(key_node, "a key");
    for (const std::string& s : seen) {
      if (s == key) Fail(key_node, "duplicate key '" + key + "' in " + std::string(where));
    }
    seen.push_back(key);
    RejectUnknownKey(key_node, key, where, allowed);
    on_key(key, key_node, entry.second);
  }
}

template <typename OnKey>
void ForEachKeyMerged(const YAML::Node& map, std::string_view where,
                      std::initializer_list<std::string_view> allowed, OnKey on_key) {
  std::vector<std::string> stated;
  std::vector<YAML::Node> merges;
  ForEachKey(map, where, {}, [&](const std::string& key, const YAML::Node& key_node,
                                 const YAML::Node& value) {
    if (key == "<<") {
      if (value.IsSequence()) {
        for (const YAML::Node& m : value) merges.push_back(m);
      } else {
        merges.push_back(value);
      }
      return;
    }
    RejectUnknownKey(key_node, key, where, allowed);
    stated.push_back(key);
    on_key(key, key_node, value);
  });
  for (const YAML::Node& m : merges) {
    if (!m.IsMap()) Fail(m, "a merge key (<<) must refer to a mapping, not " + Describe(m));
    for (const auto& entry : m) {
      std::string key = ScalarOf(entry.first, "a key");
      if (key == "<<") Fail(entry.first, "a merged mapping may not merge again");
      bool seen = false;
      for (const std::string& s : stated) seen = seen || s == key;
      if (seen) continue;
      RejectUnknownKey(entry.first, key, where, allowed);
      stated.push_back(key);
      on_key(key, entry.first, entry.second);
    }
  }
}

template <typename Body>
Status Guard(std::string_view text, const std::string& source, Body body) {
  try {
    body(YAML::Load(std::string(text)));
  } catch (const YamlError& e) {
    return ErrorAt(source, e.mark, e.message);
  } catch (const YAML::Exception& e) {
    return ErrorAt(source, e.mark, e.msg);
  }
  return Status::Ok();
}

}  // namespace holdfast::policy::internal
