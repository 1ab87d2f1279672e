// The Holdfast gateway: the client transport (WebSocket over TLS), the
// device directory, durable ingest with group commit, delivery, and the
// HTTPS admin plane (/livez, /readyz, /metrics).
#pragma once

#include <cstdint>
#include <memory>

#include "holdfast/base/status.h"
#include "holdfast/gateway/config.h"

namespace holdfast::gateway {

class Gateway {
 public:
  // Checks the configuration, connects to PostgreSQL and applies
  // migrations, and loads TLS material. Logs in to the enrollment token and
  // checks the stored enrollment key certificate: kFailedPrecondition or
  // kUnavailable, naming the holdfast-admin command to run, if either is
  // missing. The archive token is never logged in to, only probed; the
  // gateway runs without it (ingest needs only public keys) and /readyz
  // says so. Should the enrollment token fail later, only enrollment stops.
  static Result<std::unique_ptr<Gateway>> Create(const Config& config);
  virtual ~Gateway() = default;

  // Binds both listeners and starts serving on background threads.
  virtual Status Start() = 0;
  // Stops accepting, closes sessions, and drains the ingest queue: every
  // envelope already handed to ingest is committed or answered with an
  // error before Stop returns.
  virtual void Stop() = 0;

  virtual uint16_t client_port() const = 0;
  virtual uint16_t admin_port() const = 0;
};

}  // namespace holdfast::gateway
