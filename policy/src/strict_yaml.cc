#include "strict_yaml.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace holdfast::policy::internal {

void Fail(const YAML::Node& node, std::string message) {
  throw YamlError{node.Mark(), std::move(message)};
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "'" + node.Scalar() + "'";
    case YAML::NodeType::Null: return "nothing";
    default: return "an undefined value";
  }
}

std::string ScalarOf(const YAML::Node& node, std::string_view what) {
  if (!node.IsScalar()) Fail(node, std::string(what) + " must be a string, not " + Describe(node));
  return node.Scalar();
}

bool BoolOf(const YAML::Node& node, std::string_view what) {
  // A quoted scalar has the tag "!"; `"true"` is a string, not a boolean.
  if (node.IsScalar() && node.Tag() != "!" && node.Scalar() == "true") return true;
  if (node.IsScalar() && node.Tag() != "!" && node.Scalar() == "false") return false;
  Fail(node, std::string(what) + " must be true or false, not " + Describe(node));
}

int64_t IntOf(const YAML::Node& node, std::string_view what, int64_t min, int64_t max) {
  if (node.IsScalar() && node.Tag() != "!") {
    const std::string& s = node.Scalar();
    int64_t value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty() && value >= min &&
        value <= max) {
      return value;
    }
  }
  const std::string range = max == INT32_MAX ? "of at least " + std::to_string(min)
                                              : "from " + std::to_string(min) + " to " +
                                                    std::to_string(max);
  Fail(node, std::string(what) + " must be an integer " + range + ", not " + Describe(node));
}

bool ValidName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::vector<std::string> StringListOf(const YAML::Node& node, std::string_view what,
                                      bool allow_empty) {
  if (!node.IsSequence()) Fail(node, std::string(what) + " must be a list, not " + Describe(node));
  if (node.size() == 0 && !allow_empty) Fail(node, std::string(what) + " must not be empty");
  std::vector<std::string> out;
  for (const YAML::Node& item : node) {
    std::string s = ScalarOf(item, std::string("an entry of ") + std::string(what));
    if (s.empty()) Fail(item, std::string(what) + " has an empty entry");
    if (std::find(out.begin(), out.end(), s) != out.end()) {
      Fail(item, "'" + s + "' appears twice in " + std::string(what));
    }
    out.push_back(std::move(s));
  }
  return out;
}

void RejectUnknownKey(const YAML::Node& key_node, const std::string& key, std::string_view where,
                      std::initializer_list<std::string_view> allowed) {
  if (allowed.size() == 0 || std::find(allowed.begin(), allowed.end(), key) != allowed.end()) {
    return;
  }
  std::string list;
  for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  Fail(key_node, "unknown key '" + key + "' in " + std::string(where) + " (expected one of: " +
                     list + ")");
}

Status ErrorAt(const std::string& source, const YAML::Mark& mark, const std::string& message) {
  if (mark.is_null()) return Status::InvalidArgument(source + ": " + message);
  return Status::InvalidArgument(source + ":" + std::to_string(mark.line + 1) + ":" +
                                 std::to_string(mark.column + 1) + ": " + message);
}

Result<std::string> ReadFileBytes(const std::string& path, std::string_view what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::NotFound("cannot read " + std::string(what) + " " + path + ": a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + std::string(what) + " " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::NotFound("cannot read " + std::string(what) + " " + path);
  return text.str();
}

}  // namespace holdfast::policy::internal
