// A device profile: who this device is, which gateway it talks to, what it
// trusts, and its private keys. One profile per directory.
//
// On disk (profile.json, version 4) the private keys and the sent log are
// sealed by a KeyStore (key_store.h): every other field stays readable but is bound into
// the AEAD associated data, so changing the pinned org root key, the prekey,
// the seen-message list or anything else makes the file fail to load with
// kCryptoFailure. Only a store created with KeyStore::InsecurePlaintext()
// writes the keys in the clear; that is an explicit opt-in.
//
// WARNING: the TLS trust anchor (ca.pem beside profile.json) is not covered
// by the key store's authentication; it is protected by file modes only.
// Older files (version 1: keys in the clear; version 2: no device
// certificate) are refused, not converted: the device registers again.
// Version 3 files (no sent log) are read, and written back as version 4.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <string>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/client/key_store.h"
#include "holdfast/protocol/envelope.h"

namespace holdfast::client {

namespace wire = ::holdfast::wire::v1;

inline constexpr char kProfileFileName[] = "profile.json";
inline constexpr char kProfileCaFileName[] = "ca.pem";
inline constexpr int kProfileVersion = 4;
// The previous format, still read: as version 4 without a sent log.
inline constexpr int kProfileVersionWithoutSentLog = 3;
// How many sent messages the sent log keeps at most; the oldest goes first.
inline constexpr size_t kSentLogLimit = 1000;
// How many recently opened message ids the profile remembers for
// de-duplicating at-least-once deliveries.
inline constexpr size_t kSeenMessageIdsLimit = 4096;
// How many retired prekeys a profile keeps at most; the oldest goes first.
inline constexpr size_t kMaxRetiredPrekeys = 64;

// A prekey with its private key: the one awaiting the gateway's
// confirmation, or a retired one kept for its grace period.
struct StoredPrekey {
  wire::SignedPrekey prekey;
  SecretBytes private_key;   // X25519
  int64_t retired_at_ms = 0; // retired prekeys only
};

// What this device has seen of a user (its own user included), for notices
// when that changes.
struct Contact {
  struct Device {
    Bytes device_id;
    int64_t first_seen_ms = 0;
  };
  std::string user;
  Bytes master_key;                // as last certified by the organisation
  std::vector<Device> devices;     // sorted by device id
};

// A message this device sent, kept so that it can seal it again for a
// device enrolled before the message was delivered (docs/protocol.md 9.11).
// Sealed with the private keys: the text never lies on disk in the clear.
struct SentMessage {
  Bytes message_id;
  std::string conversation_id;
  std::string text;
  int64_t sent_at_ms = 0;
  std::vector<std::string> users;  // sorted: whom it was sealed to, the sender included
};

// What this device has seen of a conversation's membership.
struct KnownConversation {
  std::string conversation_id;
  uint64_t membership_version = 0;
  std::vector<std::string> members;  // sorted
};

struct Profile {
  std::string user;
  std::string server_url;   // wss://host:port/path
  Bytes device_id;          // empty until registration completed
  std::string org;
  Bytes org_root_key;       // pinned P-256 uncompressed point
  std::string ca_file;      // file name of the pinned TLS trust anchor inside the profile
                            // directory; empty when the embedding app pins TLS itself
  SecretBytes identity_private;  // Ed25519 seed
  SecretBytes prekey_private;    // X25519
  wire::SignedPrekey prekey;
  // The user's master signing key. Only the device that created it (or one
  // it was handed to) holds the private half; it certifies new devices.
  SecretBytes master_private;    // Ed25519 seed, or empty
  Bytes master_public;
  // Before registration: signed by the master key only. After: countersigned
  // by the organisation, as the gateway returned it.
  wire::DeviceCertificate certificate;
  std::vector<StoredPrekey> pending_prekeys;  // at most one
  std::vector<StoredPrekey> retired_prekeys;  // oldest first
  std::vector<Contact> contacts;              // sorted by user
  std::vector<KnownConversation> conversations;
  std::vector<std::string> notices_shown;  // conversation ids whose archive notice was shown
  std::deque<Bytes> seen_message_ids;      // oldest first, at most kSeenMessageIdsLimit
  std::deque<SentMessage> sent_log;        // oldest first, at most kSentLogLimit
};

struct LoadedProfile {
  Profile profile;
  KeyStore store;  // re-seals on the next save without asking for the secret again
};

// The file's bytes (JSON). An encrypted store seals the private keys; an
// insecure-plaintext store writes them as hex.
Result<std::string> EncodeProfile(const Profile& profile, const KeyStore& store);
// Parses and, for an encrypted file, unwraps with `wrapper` and checks the
// tag. `wrapper` may be null only for an insecure-plaintext file; otherwise
// kFailedPrecondition. Wrong passphrase: kPermissionDenied; altered file:
// kCryptoFailure; malformed: kInvalidArgument. Checks syntax only;
// Device::FromProfile checks that the keys fit together.
Result<LoadedProfile> DecodeProfile(std::string_view text, const KeyWrapper* wrapper);

// Writes <dir>/profile.json atomically with mode 0600; creates `dir` with
// mode 0700 (or tightens an existing one to 0700).
Status SaveProfile(const std::filesystem::path& dir, const Profile& profile,
                   const KeyStore& store);

// Reads <dir>/profile.json with DecodeProfile. Refuses a file that group or
// others can read or write, as ssh does for private keys.
Result<LoadedProfile> LoadProfile(const std::filesystem::path& dir, const KeyWrapper* wrapper);

// Fields read WITHOUT any key or authentication, for decisions that may not
// rely on them being genuine (refusing to overwrite a registered profile,
// choosing what to ask the user for).
struct ProfileSummary {
  int64_t version = 0;
  std::string user;
  bool registered = false;
  std::string scheme;  // kInsecurePlaintextScheme, kArgon2idScheme or a platform scheme
};
Result<ProfileSummary> PeekProfile(const std::filesystem::path& dir);

bool ProfileExists(const std::filesystem::path& dir);

// Copies the PEM trust anchor `source` into <dir>/ca.pem (mode 0600) after
// checking that it holds at least one certificate.
Status InstallCaFile(const std::filesystem::path& dir, const std::filesystem::path& source);

}  // namespace holdfast::client
