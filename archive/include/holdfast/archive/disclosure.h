// Disclosure: deciding a request against the policy, and running an allowed
// export into a signed package.
//
// An export package is a directory holding
//   messages.jsonl  one JSON object per message, in storage order;
//   conversations/  an EML digest and an HTML transcript per conversation,
//   loadfile.dat    a Concordance load file (export_package.h);
//   manifest.json   what was exported, why, under which policy, and the
//                   SHA-256 and size of every other file;
//   manifest.sig    hex of the org root's ECDSA P-256 P1363 signature over
//                   labels::kManifestSig || manifest.json bytes.
// It contains plaintext: it is created with mode 0700.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "holdfast/archive/database.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/policy/policy.h"

namespace holdfast::hsm {
class Token;
}

namespace holdfast::archive {

// The facts the policy decides on, read from the request, its case, the
// case's active holds, the officers and their approvals. A custodian is
// under hold when one active hold of the request's case covers the whole
// time range. Approvals carry each officer's current role.
Result<policy::DisclosureFacts> DisclosureFactsOf(Connection& conn, int64_t request_id);

// Evaluates the request; records nothing.
Result<policy::Decision> Decide(Connection& conn, const policy::Policy& policy,
                                int64_t request_id);

struct ExportSummary {
  int64_t request_id = 0;
  std::string out_dir;
  uint64_t message_count = 0;
  uint64_t signature_failures = 0;  // messages whose signature did not verify
  uint64_t open_failures = 0;       // messages that could not be decrypted
  std::string manifest_sha256;      // hex
  Bytes manifest_signature;         // P1363 r||s
  policy::Decision decision;
};

// Re-decides the request and, only if the policy allows it, exports every
// envelope sent by or to each custodian in the time range into `out_dir`,
// which must not exist yet (its parent must). The package is written to a
// temporary sibling directory and renamed into place, so on any failure
// nothing is left at `out_dir`. On success the request moves to "exported"
// and the export is audited (message count, manifest SHA-256) in one
// transaction.
//
// kFailedPrecondition with the policy's reasons when the decision is not
// allow or does not permit decryption (history_restore), or when the
// request was already exported or denied; then nothing is written to the
// filesystem (the refusal is audited).
//
// Capsules are opened in batches, the ECDH in the token on `hsm_workers`
// threads (give it the token's session count); lines keep storage order.
// The export fails closed: a token that becomes unavailable (kUnavailable,
// after the token's own single retry) stops it, nothing is left at
// `out_dir`, and disclosure.export_failed is audited after the
// export_started that precedes any decryption. open_failures counts
// messages that fail for reasons of their own, never an HSM outage.
Result<ExportSummary> RunExport(Connection& conn, hsm::Token& token, const policy::Policy& policy,
                                int64_t request_id, const std::string& out_dir,
                                const std::string& actor, size_t hsm_workers = 4,
                                const std::string& org = "");

// ------------------------------------------------------------------ jobs
//
// An export runs as a job: queued by an officer (the admin API, or
// RunExport above), run by a worker holding the archive token. A job
// writes messages.jsonl into a work directory beside its package
// directory, fsyncs it after every batch and records a checkpoint (the
// last envelope written, the file's length, the counts); a job whose worker
// stopped is claimed again and resumes there. Before every batch the job
// re-decides the request under the policy and reads its cancel flag: a
// withdrawn approval, a released hold or a cancel stops it, removes the
// work directory and is audited. Nothing reaches the package directory
// before the manifest is signed.

struct JobRecord {
  int64_t job_id = 0;
  int64_t request_id = 0;
  std::string state;  // queued | running | done | failed | cancelled
  bool cancel_requested = false;
  std::string requested_by;
  std::string worker;
  int64_t created_at_ms = 0;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
  int64_t heartbeat_at_ms = 0;
  int64_t total = 0;  // envelopes in scope; 0 until the job starts
  int64_t done = 0;   // envelopes written
  std::string package_dir;
  std::string manifest_sha256;
  std::string error;
};

// Queues an export of an allowed request into `package_dir` (absolute; it
// must not exist, its parent must), or the restore of an allowed
// history_restore request. kFailedPrecondition with the policy's
// reasons when the request is not allowed or never decrypts (audited as
// disclosure.export_refused), kAlreadyExists when a job of the request is
// queued or running. Audited as disclosure.export_queued.
Result<int64_t> QueueExport(Connection& conn, const policy::Policy& policy, int64_t request_id,
                            const std::string& package_dir, const std::string& actor);
Result<JobRecord> GetJob(Connection& conn, int64_t job_id);
// Newest first.
Result<std::vector<JobRecord>> JobsOfRequest(Connection& conn, int64_t request_id);
// Asks a queued or running job to stop; a queued job is cancelled at once,
// a running one at its next batch. Audited.
Status CancelJob(Connection& conn, int64_t job_id, const std::string& actor);
// Takes the oldest queued job, or a running one whose worker has not been
// heard from for `stale_ms`, for `worker`; none: nullopt.
Result<std::optional<int64_t>> ClaimJob(Connection& conn, const std::string& worker,
                                        int64_t stale_ms);
// Runs a claimed job to its end (done, failed or cancelled) and returns
// what it wrote. A job of a history_restore request runs RunHistoryRestore
// (history_restore.h) instead: no package, message_count is the number of
// keys restored. `worker` must be the one that claimed it. Errors are also
// recorded in the job; kUnavailable (database or HSM down) leaves the job
// running so that it resumes from its checkpoint.
Result<ExportSummary> RunJob(Connection& conn, hsm::Token& token, const policy::Policy& policy,
                             int64_t job_id, const std::string& worker, size_t hsm_workers = 4,
                             const std::string& org = "");

}  // namespace holdfast::archive
