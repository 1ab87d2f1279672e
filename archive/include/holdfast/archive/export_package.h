// The derived files of an export package (an EML digest and an HTML
// transcript per conversation, a Concordance load file), and the offline
// check of a whole package. docs/compliance-guide.md, "The export package",
// describes every file byte for byte.
//
// Both functions treat everything read from the package as hostile: names
// of users and conversations become file names and mail headers only
// through sanitising encoders, never verbatim.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::archive {

// One file of a package, as manifest.json lists it.
struct PackageFileInfo {
  std::string name;    // relative to the package directory, '/'-separated
  std::string sha256;  // lower-case hex
  uint64_t bytes = 0;
};

// What the derived files say about the request they belong to.
struct PackageContext {
  int64_t request_id = 0;
  int64_t case_id = 0;
  std::string purpose;
  std::string legal_reference;
  std::string org;  // organisation name for headers and titles
  int64_t created_at_ms = 0;
};

// Reads <dir>/messages.jsonl (already complete) and writes into <dir>:
//   conversations/<name>.eml   one multipart/digest message per conversation
//   conversations/<name>.html  one self-contained transcript per conversation
//   loadfile.dat               a Concordance load file, one row per message
// <name> is derived from the conversation id (ConversationFileStem), never
// the id itself. Every file is created 0600 with O_EXCL and O_NOFOLLOW and
// fsynced, as are the directories; an existing file is an error
// (kAlreadyExists), so a call never overwrites anything. On error, files
// already written stay (the caller owns the package's temporary directory).
// kInvalidArgument when a line of messages.jsonl is not a message object.
// Returns every file written, sorted by name.
Result<std::vector<PackageFileInfo>> WriteDerivedFiles(const std::string& dir, const PackageContext& ctx);

// The file name stem for a conversation: its id with every character other
// than [A-Za-z0-9_-] replaced by '_', cut to 48 bytes, then '-' and the
// first 16 hex digits of SHA-256(id). Safe as a path component on every
// platform and distinct for distinct ids (up to a 64-bit hash collision,
// which WriteDerivedFiles refuses).
std::string ConversationFileStem(std::string_view conversation_id);

// True when `name` may be listed in a manifest: relative, '/'-separated,
// with no empty, "." or ".." component, no backslash, no control character.
// Says nothing about symbolic links on disk.
bool IsSafePackageName(std::string_view name);

// Checks manifest.sig's text (hex of a 64-byte P1363 signature, optional
// trailing white space) over labels::kManifestSig || manifest under
// org_root. kInvalidArgument if the text is not such a signature,
// kCryptoFailure if it does not verify.
Status VerifyManifestSignature(std::string_view manifest, std::string_view signature_text, ByteView org_root);

struct PackageVerifyReport {
  std::string format;
  int64_t request_id = 0;
  uint64_t message_count = 0;
  std::string org_root_public_key;   // hex, as stated by the manifest
  std::vector<std::string> checked;  // one line per check passed
  std::vector<std::string> problems; // empty: intact
  bool intact() const { return problems.empty(); }
};

// The offline check of a package: no database, no HSM. manifest.sig must
// verify over manifest.json under `expected_org_root` (a 65-byte
// uncompressed P-256 point) and the manifest must name that key; with an
// empty `expected_org_root` the manifest's own key is used, which proves
// only that the package is self-consistent (said so in `checked`). Every
// listed file must exist as a regular file (no symbolic link on its path)
// with the listed size and SHA-256; no other file may be in the directory
// tree besides manifest.json and manifest.sig; no listed name may be
// unsafe (IsSafePackageName) or listed twice; messages.jsonl must have
// message_count lines. Every failed check is a line in `problems`.
// Errors only when `dir` itself cannot be read (kNotFound, kUnavailable).
Result<PackageVerifyReport> VerifyPackage(const std::string& dir, ByteView expected_org_root);

}  // namespace holdfast::archive
