// Test cases for a policy, in the spirit of `opa test`: a YAML file of
// inputs and the decisions expected for them. `holdfast-admin policy test`
// runs them; docs/policy.md ("Testing a policy") describes the file and
// deploy/policy.tests.yaml is the suite of the default policy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "holdfast/base/status.h"
#include "holdfast/policy/policy.h"

namespace holdfast::policy {

// One case: an input, and what the decision must be. Expectations left out
// of the file are not checked.
struct TestCase {
  std::string name;
  int line = 0;  // of the case in its file, 1-based
  std::variant<DisclosureFacts, RetentionFacts, IngestFacts> input;

  std::optional<Verdict> outcome;  // disclosure and ingest cases always state it
  std::optional<std::string> rule;
  std::optional<std::vector<std::string>> missing;  // the exact list
  std::vector<std::string> reasons_include;         // each within some reason
  std::optional<bool> decrypt;
  // Retention cases.
  std::optional<std::string> retention_class;
  // Outer: whether the file states `delete_after`; inner: none for `never`.
  std::optional<std::optional<int64_t>> delete_after_ms;
  std::optional<bool> held;
};

struct TestSuite {
  std::string source;  // the file, as named when loaded
  // The file's `policy:`, relative to the file's directory when loaded with
  // LoadTestSuite; empty if the file names none.
  std::string policy_path;
  std::vector<TestCase> cases;
};

// Reads a suite. kNotFound if it cannot be read, kInvalidArgument
// "file:line:column: ..." if it is malformed.
Result<TestSuite> LoadTestSuite(const std::string& path);
Result<TestSuite> ParseTestSuite(std::string_view yaml, const std::string& source_name);

struct CaseResult {
  bool passed = false;
  std::vector<std::string> failures;  // one line per unmet expectation
  std::vector<std::string> got;       // the decision, a few lines
};

CaseResult RunCase(const Policy& policy, const TestCase& test);

}  // namespace holdfast::policy
