// State shared by every client session of one gateway process. Owned by the
// Gateway; sessions hold a reference. Members marked [io] are touched only
// on the I/O thread.
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "db_pool.h"
#include "directory.h"
#include "enrollment.h"
#include "holdfast/archive/store.h"
#include "holdfast/gateway/config.h"
#include "ingester.h"
#include "metrics.h"
#include "rate_limit.h"

namespace holdfast::gateway {

class Session;

struct Hub {
  const Config& config;
  boost::asio::io_context& io;
  Metrics& metrics;
  DbPool& db;
  Ingester& ingester;
  Bytes org_root_public;
  EnrollmentSigner& enrollment;  // thread-safe; used from database workers
  Directory* directory;          // null unless directory.mode enables sign-in

  // [io] failed enrollments by user name and by source address.
  FailureLimiter user_failures;
  FailureLimiter ip_failures;

  // [io] device id (raw bytes as string) -> the device's open session.
  std::multimap<std::string, std::weak_ptr<Session>> online;
  // [io] Sessions that stopped reading while the ingester was backlogged.
  std::vector<std::weak_ptr<Session>> paused;
};

}  // namespace holdfast::gateway
