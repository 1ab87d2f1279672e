// Small helpers shared by the benchmarks: timing loops, best-of
// bookkeeping, a plain text table and a one-line JSON writer.
//
// Every benchmark prints its table first and then exactly one line that
// starts with {"bench": so that scripts can pick it out with a grep.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "holdfast/base/status.h"

namespace holdfast::bench {

using Clock = std::chrono::steady_clock;

inline double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Aborts the benchmark with a message; benchmarks have no error recovery.
[[noreturn]] inline void Fail(std::string_view what, const std::string& detail) {
  std::cerr << "bench: " << what << ": " << detail << "\n";
  std::exit(1);
}

inline void Check(const Status& status, std::string_view what) {
  if (!status.ok()) Fail(what, status.ToString());
}

template <typename T>
T Take(Result<T> result, std::string_view what) {
  if (!result.ok()) Fail(what, result.status().ToString());
  return std::move(result).value();
}

// Calls op() (which returns false on failure) in chunks until at least
// min_seconds have passed and at least min_ops calls were made. Returns
// seconds per call.
template <typename Op>
double SecondsPerOp(Op&& op, double min_seconds, long min_ops = 3) {
  long done = 0;
  long chunk = 1;
  const Clock::time_point start = Clock::now();
  double elapsed = 0;
  for (;;) {
    for (long i = 0; i < chunk; ++i) {
      if (!op()) Fail("operation", "failed during timing");
    }
    done += chunk;
    elapsed = SecondsSince(start);
    if (elapsed >= min_seconds && done >= min_ops) break;
    // Re-check the clock about every 10 ms.
    const double per_op = elapsed / static_cast<double>(done);
    chunk = std::clamp<long>(per_op > 0 ? static_cast<long>(0.01 / per_op) : chunk * 2, 1, 100000);
  }
  return elapsed / static_cast<double>(done);
}

// Keeps the lowest observed time (the run least disturbed by other load).
class Best {
 public:
  void Add(double seconds) { best_ = std::min(best_, seconds); samples_.push_back(seconds); }
  double value() const { return best_; }
  // Largest sample divided by the smallest: how noisy the runs were.
  double spread() const {
    if (samples_.empty()) return 0;
    return *std::max_element(samples_.begin(), samples_.end()) / best_;
  }

 private:
  double best_ = std::numeric_limits<double>::infinity();
  std::vector<double> samples_;
};

inline std::string Fixed(double v, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}

// Left-aligned first column, right-aligned others.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void Print(std::ostream& out) const {
    std::vector<size_t> width;
    for (const auto& row : rows_) {
      width.resize(std::max(width.size(), row.size()), 0);
      for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (size_t r = 0; r < rows_.size(); ++r) {
      std::string line;
      for (size_t i = 0; i < rows_[r].size(); ++i) {
        const std::string& cell = rows_[r][i];
        const std::string pad(width[i] - cell.size(), ' ');
        line += i == 0 ? cell + pad : "  " + pad + cell;
      }
      out << line << "\n";
      if (r == 0) out << std::string(line.size(), '-') << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// A JSON object written field by field. Keys and strings are expected to be
// plain ASCII; quotes, backslashes and control characters are escaped.
class JsonObject {
 public:
  JsonObject& Str(std::string_view key, std::string_view value) {
    return Raw(key, Quote(value));
  }
  JsonObject& Num(std::string_view key, double value, int decimals = 3) {
    if (!std::isfinite(value)) return Raw(key, "null");
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
    return Raw(key, buffer);
  }
  JsonObject& Int(std::string_view key, long long value) { return Raw(key, std::to_string(value)); }
  JsonObject& Bool(std::string_view key, bool value) { return Raw(key, value ? "true" : "false"); }
  JsonObject& Obj(std::string_view key, const JsonObject& value) { return Raw(key, value.str()); }
  JsonObject& Arr(std::string_view key, const std::vector<JsonObject>& values) {
    std::string text = "[";
    for (size_t i = 0; i < values.size(); ++i) text += (i ? "," : "") + values[i].str();
    return Raw(key, text + "]");
  }
  JsonObject& Raw(std::string_view key, std::string_view json) {
    body_ += (body_.empty() ? "" : ",") + Quote(key) + ":" + std::string(json);
    return *this;
  }
  std::string str() const { return "{" + body_ + "}"; }

  static std::string Quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char buffer[8];
        std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
        out += buffer;
      } else {
        out += c;
      }
    }
    return out + "\"";
  }

 private:
  std::string body_;
};

// Parses "--name value" options into numbers; unknown options abort.
class Args {
 public:
  Args(int argc, char** argv) : argv_(argv + 1, argv + argc) {}
  double Number(std::string_view name, double fallback) {
    for (size_t i = 0; i + 1 < argv_.size(); ++i) {
      if (argv_[i] == name) {
        used_.push_back(i);
        used_.push_back(i + 1);
        char* end = nullptr;
        const double v = std::strtod(argv_[i + 1].c_str(), &end);
        if (end == argv_[i + 1].c_str() || *end != '\0') {
          Fail("argument", std::string(name) + " needs a number");
        }
        return v;
      }
    }
    return fallback;
  }
  bool Flag(std::string_view name) {
    for (size_t i = 0; i < argv_.size(); ++i) {
      if (argv_[i] == name) {
        used_.push_back(i);
        return true;
      }
    }
    return false;
  }
  // Call after every option was read; aborts on anything left over.
  void Done(std::string_view usage) const {
    for (size_t i = 0; i < argv_.size(); ++i) {
      if (std::find(used_.begin(), used_.end(), i) == used_.end()) {
        if (argv_[i] == "-h" || argv_[i] == "--help") {
          std::cout << "usage: " << usage << "\n";
          std::exit(0);
        }
        Fail("unknown argument " + argv_[i], std::string("usage: ") + std::string(usage));
      }
    }
  }

 private:
  std::vector<std::string> argv_;
  std::vector<size_t> used_;
};

}  // namespace holdfast::bench
