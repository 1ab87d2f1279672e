// gateway::Config::Parse on fuzzed YAML, and ParseEndpoint on the raw bytes.
// A config that parses must satisfy what the daemons rely on without checking
// again: positive worker and batch counts, a non-zero epoch length and every
// derived path filled in.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "holdfast/gateway/config.h"

namespace {

using namespace holdfast::gateway;

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  auto endpoint = ParseEndpoint(text);
  if (endpoint.ok()) Check(text.rfind(':') != std::string::npos);

  auto config = Config::Parse(text, "fuzz.yaml");
  if (!config.ok()) {
    Check(!config.status().message().empty());
    return 0;
  }
  const Config& c = *config;
  Check(c.database.workers >= 1 && c.database.ingest_batch_max >= 1);
  Check(c.keys.epoch_days > 0);
  Check(!c.hsm.pin_file.empty() && !c.gateway.tls_cert.empty() && !c.gateway.tls_key.empty());
  Check(!c.admin.tls_cert.empty() && !c.admin.tls_key.empty());
  Check(!c.policy_file.empty() && !c.export_dir.empty());
  return 0;
}
