#include "parallel_ecdh.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "holdfast/hsm/token.h"

namespace holdfast::archive::internal {

Status ParallelEcdh(hsm::Token& token, const std::vector<EcdhJob>& jobs, size_t workers,
                    const std::function<void(size_t, Result<SecretBytes>)>& use) {
  std::atomic<size_t> next{0};
  std::mutex fatal_mu;
  Status fatal;
  auto work = [&] {
    for (size_t i = next++; i < jobs.size(); i = next++) {
      auto dh = token.DeriveEcdh(jobs[i].epoch_id, jobs[i].enc);
      if (!dh.ok() && dh.status().code() == Code::kUnavailable) {
        std::lock_guard lock(fatal_mu);
        if (fatal.ok()) fatal = dh.status();
        next = jobs.size();  // stops the other workers early
        continue;
      }
      use(i, std::move(dh));
    }
  };
  std::vector<std::thread> threads;
  const size_t count = std::min(std::max<size_t>(workers, 1), jobs.size());
  for (size_t t = 1; t < count; ++t) threads.emplace_back(work);
  work();
  for (std::thread& thread : threads) thread.join();
  return fatal.WithContext("HSM");
}

}  // namespace holdfast::archive::internal
