// Crypto-shredding of archive epochs (docs/archive.md, "Crypto-shredding").
//
// When an epoch is past its retention period, the content keys of its
// envelopes under an active legal hold are re-wrapped to the hold key, the
// epoch private key is destroyed in the HSM, the epoch's other envelopes
// are deleted, and the org root signs a deletion certificate. Dual control:
// one key custodian (an officer with role kKeyCustodianRole) requests, a
// second one approves, then either runs it. Every step is audited.
//
// Not thread-safe, like the Connection it uses. Shredding runs under the
// key ceremony lock, so two runs (or a run and an epoch rotation) never
// overlap.
#pragma once

#include <cstdint>
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

inline constexpr std::string_view kKeyCustodianRole = "key_custodian";
// Setting holding the org root's certificate of the hold key (a
// SignedDocument, below, over labels::kHoldKeyCertSig).
inline constexpr std::string_view kHoldKeyCertificateSetting = "hold_key_certificate";

// A JSON body and the org root's P1363 signature over label || body. Its
// file form is {"body":"<the body as a JSON string>","signature":"<hex>"}.
struct SignedDocument {
  std::string body;
  Bytes signature;
};
std::string SignedDocumentJson(const SignedDocument& doc);
// kInvalidArgument unless `json` is exactly that object.
Result<SignedDocument> ParseSignedDocument(std::string_view json);

struct DeletionCertificate {
  uint32_t epoch_id = 0;
  int64_t not_before_ms = 0;
  int64_t not_after_ms = 0;
  uint64_t envelopes_deleted = 0;
  uint64_t envelopes_rewrapped = 0;
  // Held when the key was already destroyed and kept (undeletable, unreadable).
  uint64_t envelopes_retained_unwrapped = 0;
  std::vector<int64_t> hold_ids;
  int64_t destroyed_at_ms = 0;
  std::vector<std::string> approvers;  // requester, then approver
  std::string policy_version;
  std::string retention_class;
  int retention_days = 0;
  Bytes org_root_public;
  SignedDocument signed_document;
};

// Checks the org root's signature over labels::kDeletionCertSig || body with
// `org_root_public` and parses the body. kCryptoFailure for a bad
// signature or a body naming another org root key; kInvalidArgument for a
// malformed document. Needs no database or HSM.
Result<DeletionCertificate> VerifyDeletionCertificate(std::string_view file_json,
                                                      ByteView org_root_public);

struct ShredStatus {
  uint32_t epoch_id = 0;
  std::string requested_by;
  std::string approved_by;  // empty until approved
  std::string state;        // requested | approved | rewrapped | key_destroyed | completed
};

// Records the request of `custodian`. kPermissionDenied unless custodian is
// an officer with role kKeyCustodianRole; kNotFound for an unknown epoch;
// kAlreadyExists if the epoch already has a shredding.
Status RequestShred(Connection& conn, uint32_t epoch_id, const std::string& custodian);
// Records the approval of a second custodian. kPermissionDenied for a
// non-custodian or for the requester; kFailedPrecondition unless the
// shredding is requested and not yet approved; kNotFound if none.
Status ApproveShred(Connection& conn, uint32_t epoch_id, const std::string& custodian);
Result<ShredStatus> GetShred(Connection& conn, uint32_t epoch_id);

// Makes sure the archive token holds the hold key and the database the org
// root's certificate of it, creating and certifying it if needed (audited
// as key.hold.create / key.hold.certify). kFailedPrecondition when a
// certificate is stored but the token holds no hold key or another one, or
// when the key is not sensitive, non-extractable and derive-only. Returns
// its public key.
Result<Bytes> EnsureHoldKey(Connection& conn, hsm::Token& token, const std::string& actor,
                            int64_t now_ms);

// Runs, or resumes, the approved shredding of `epoch_id` as `actor` (the
// requester or the approver). Steps, each committed before the next:
//  1. Refuse (kFailedPrecondition) unless the epoch's not_after plus the
//     longest retention class of `policy` is at or before now_ms.
//  2. Re-wrap the CEK of every envelope of the epoch that an active legal
//     hold covers to the hold key; each new hold capsule is opened again
//     through the hold key before anything is stored. Any failure returns
//     with nothing destroyed and nothing deleted.
//  3. Destroy the epoch private key in the token (its public key stays).
//  4. Delete the epoch's envelopes (and deliveries) that have no hold
//     capsule and are not under an active hold, sign the deletion
//     certificate and store it, in one transaction.
// After a crash, a rerun repeats 2 while the key exists and otherwise only
// finishes 3 and 4; a completed shredding returns its certificate.
// `export_dir` non-empty: the certificate is also written there as
// epoch-NNNNNN.deletion-certificate.json (mode 0600).
Result<DeletionCertificate> ShredEpoch(Connection& conn, hsm::Token& token,
                                       const policy::Policy& policy, uint32_t epoch_id,
                                       const std::string& actor, int64_t now_ms,
                                       const std::string& export_dir);

// The file name ShredEpoch writes in export_dir.
std::string DeletionCertificateFileName(uint32_t epoch_id);

}  // namespace holdfast::archive
