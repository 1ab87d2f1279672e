// A device profile: who this device is, which gateway it talks to, what it
// trusts, and its private keys. One profile per directory.
//
// WARNING: the identity and prekey private keys are stored IN THE CLEAR in
// profile.json. The file is created with mode 0600 inside a 0700 directory,
// which protects it from other local users only — not from root, backups or
// a stolen disk. Encryption at rest (Argon2id-derived key) is not
// implemented yet.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <string>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/protocol/envelope.h"

namespace holdfast::client {

namespace wire = ::holdfast::wire::v1;

inline constexpr char kProfileFileName[] = "profile.json";
inline constexpr char kProfileCaFileName[] = "ca.pem";
// How many recently opened message ids the profile remembers for
// de-duplicating at-least-once deliveries.
inline constexpr size_t kSeenMessageIdsLimit = 4096;

struct Profile {
  std::string user;
  std::string server_url;   // wss://host:port/path
  Bytes device_id;          // empty until registration completed
  std::string org;
  Bytes org_root_key;       // pinned P-256 uncompressed point
  std::string ca_file;      // file name of the pinned TLS trust anchor, inside the profile directory
  SecretBytes identity_private;  // Ed25519 seed
  SecretBytes prekey_private;    // X25519
  wire::SignedPrekey prekey;
  std::vector<std::string> notices_shown;  // conversation ids whose archive notice was shown
  std::deque<Bytes> seen_message_ids;      // oldest first, at most kSeenMessageIdsLimit
};

// Writes <dir>/profile.json atomically with mode 0600; creates `dir` with
// mode 0700 (or tightens an existing one to 0700).
Status SaveProfile(const std::filesystem::path& dir, const Profile& profile);

// Reads <dir>/profile.json. Refuses a file that group or others can read or
// write, as ssh does for private keys. Checks syntax only; Device::FromProfile
// checks that the keys fit together.
Result<Profile> LoadProfile(const std::filesystem::path& dir);

bool ProfileExists(const std::filesystem::path& dir);

// Copies the PEM trust anchor `source` into <dir>/ca.pem (mode 0600) after
// checking that it holds at least one certificate.
Status InstallCaFile(const std::filesystem::path& dir, const std::filesystem::path& source);

}  // namespace holdfast::client
