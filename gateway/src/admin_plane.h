// The HTTPS admin plane: /livez, /readyz and /metrics for operators. It is
// served by Poco's HTTPServer on its own port and thread pool, apart from
// the client transport.
#pragma once

#include <cstdint>
#include <memory>

#include "holdfast/gateway/config.h"
#include "hsm_access.h"
#include "metrics.h"

namespace holdfast::gateway {

class AdminPlane {
 public:
  static Result<std::unique_ptr<AdminPlane>> Start(const Config& config, Metrics& metrics,
                                                   HsmProbe& hsm, HsmProbe& enrollment_hsm);
  virtual ~AdminPlane() = default;
  virtual uint16_t port() const = 0;
  virtual void Stop() = 0;
};

}  // namespace holdfast::gateway
