// A user with one device enrolled straight through the Store, for archive
// tests that seal messages to it and open what the archive exports.
#pragma once

#include <cstdint>
#include <string>

#include "holdfast/archive/store.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/primitives.h"

namespace holdfast::archive {

struct Person {
  std::string user;
  protocol::Ed25519KeyPair identity;
  protocol::hpke::KeyPair prekey;
  Bytes device_id;
};

// EnrollDevice enrolls one more device of the existing `user`, with a fresh
// identity key and an X25519 prekey signed at `prekey_created_ms`;
// EnrollPerson creates `user` first. The device certificate is
// placeholder bytes: archive code never reads it.
inline Result<Person> EnrollDevice(Store& store, const std::string& user,
                                   int64_t prekey_created_ms) {
  Person p;
  p.user = user;
  HF_ASSIGN_OR_RETURN(p.identity, protocol::Ed25519Generate());
  HF_ASSIGN_OR_RETURN(p.prekey,
                      protocol::hpke::GenerateKeyPair(protocol::hpke::KemId::kX25519HkdfSha256));
  p.device_id = protocol::DeviceIdFor(p.identity.public_key);
  HF_ASSIGN_OR_RETURN(auto signed_prekey, protocol::SignPrekey(p.identity.private_key.view(),
                                                               p.prekey.public_key,
                                                               prekey_created_ms));
  HF_ASSIGN_OR_RETURN(auto code, store.IssueEnrollmentCode(user, 3'600'000));
  DeviceRecord device;
  device.device_id = p.device_id;
  device.identity_key = p.identity.public_key;
  const std::string prekey_bytes = signed_prekey.SerializeAsString();
  device.signed_prekey.assign(prekey_bytes.begin(), prekey_bytes.end());
  HF_RETURN_IF_ERROR(store.RegisterDevice(user, code, Bytes(32, 0x4d), device,
                                          [] { return Result<Bytes>(Bytes{0x0a, 0x00}); }));
  return p;
}

inline Result<Person> EnrollPerson(Store& store, const std::string& user,
                                   int64_t prekey_created_ms) {
  HF_RETURN_IF_ERROR(store.CreateUser(user, user));
  return EnrollDevice(store, user, prekey_created_ms);
}

}  // namespace holdfast::archive
