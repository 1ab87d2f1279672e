#include "holdfast/archive/store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <set>
#include <thread>

#include "archive_fixture.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/protocol/identity.h"

namespace holdfast::archive {
namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kT0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kQueueTtl = 30 * 24 * kHour;

Bytes Id(uint8_t tag, size_t size = 16) {
  Bytes b(size, 0);
  b[0] = tag;
  return b;
}

class StoreTest : public ArchiveTest {
 protected:
  void SetUp() override {
    ArchiveTest::SetUp();
    if (HasFatalFailure()) return;
    store_.emplace(conn());
  }

  Store& store() { return *store_; }

  DeviceRecord Device(const std::string& user, uint8_t tag) {
    DeviceRecord d;
    d.user = user;
    d.device_id = Id(tag);
    d.identity_key = Bytes(32, tag);
    d.signed_prekey = Bytes{0x0a, tag};
    return d;
  }

  // A user's master key: the same for all of a user's devices.
  static Bytes MasterOf(const std::string& user) { return Bytes(32, static_cast<uint8_t>(user[0])); }

  // What the countersign callback returns for a device tag.
  static Bytes CertificateOf(uint8_t tag) { return Bytes{0xce, 0x27, tag}; }

  // RegisterDevice with the user's master key and a callback that returns
  // CertificateOf(tag of the device) and counts its calls.
  Status Register(const std::string& user, const std::string& code, const DeviceRecord& device,
                  std::optional<Bytes> master = std::nullopt) {
    const Bytes key = master ? *master : MasterOf(user);
    return store().RegisterDevice(user, code, key, device, [&]() -> Result<Bytes> {
      ++countersigned_;
      return CertificateOf(device.device_id[0]);
    });
  }

  // Whether `condition` (SQL) holds, read on a separate connection.
  bool Holds(const std::string& condition) {
    auto other = Connection::Open(conninfo());
    EXPECT_TRUE(other.ok()) << other.status().ToString();
    return other.ok() &&
           other->Execute("DO $$ BEGIN IF NOT (" + condition + ") THEN RAISE EXCEPTION 'no'; END IF; END $$")
               .ok();
  }

  // Creates the user and enrolls one device with the given tag.
  void Enroll(const std::string& user, uint8_t tag) {
    auto exists = store().UserExists(user);
    ASSERT_TRUE(exists.ok());
    if (!*exists) {
      ASSERT_TRUE(store().CreateUser(user, user).ok());
    }
    auto code = store().IssueEnrollmentCode(user, kHour);
    ASSERT_TRUE(code.ok()) << code.status().ToString();
    Status s = Register(user, *code, Device(user, tag));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  IngestItem Item(uint8_t msg, const std::string& conversation, const std::string& sender,
                  uint8_t sender_tag, int64_t sent_at, std::vector<uint8_t> recipient_tags) {
    IngestItem item;
    item.message_id = Id(msg);
    item.conversation_id = conversation;
    item.sender_user = sender;
    item.sender_device = Id(sender_tag);
    item.epoch_id = 7;
    item.sent_at_ms = sent_at;
    item.envelope = Bytes(2000, msg);
    for (uint8_t t : recipient_tags) item.recipient_devices.push_back(Id(t));
    return item;
  }

  std::optional<Store> store_;
  int countersigned_ = 0;
};

TEST_F(StoreTest, UsersAreUnique) {
  ASSERT_TRUE(store().CreateUser("alice", "Alice").ok());
  EXPECT_EQ(store().CreateUser("alice", "Other").code(), Code::kAlreadyExists);
  EXPECT_TRUE(*store().UserExists("alice"));
  EXPECT_FALSE(*store().UserExists("mallory"));
  EXPECT_EQ(store().CreateUser("", "").code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, EnrollmentCodeShape) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  std::set<std::string> codes;
  for (int i = 0; i < 20; ++i) {
    auto code = store().IssueEnrollmentCode("alice", kHour);
    ASSERT_TRUE(code.ok()) << code.status().ToString();
    EXPECT_TRUE(std::regex_match(*code, std::regex("^[A-HJ-NP-Z2-9]{5}(-[A-HJ-NP-Z2-9]{5}){3}$")))
        << *code;
    codes.insert(*code);
  }
  EXPECT_EQ(codes.size(), 20u);
  EXPECT_EQ(store().IssueEnrollmentCode("nobody", kHour).status().code(), Code::kNotFound);
  EXPECT_EQ(store().IssueEnrollmentCode("alice", 0).status().code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, RegisterDeviceWithCode) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  DeviceRecord d = Device("alice", 1);
  d.registered_at_ms = kT0;
  ASSERT_TRUE(Register("alice", *code, d).ok());

  auto got = store().GetDevice(d.device_id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->user, "alice");
  EXPECT_EQ(got->device_id, d.device_id);
  EXPECT_EQ(got->identity_key, d.identity_key);
  EXPECT_EQ(got->signed_prekey, d.signed_prekey);
  EXPECT_EQ(got->registered_at_ms, kT0);
  EXPECT_EQ(got->certificate, CertificateOf(1));
  EXPECT_EQ(store().GetDevice(Id(99)).status().code(), Code::kNotFound);
  EXPECT_EQ(countersigned_, 1);
  EXPECT_TRUE(Holds("(SELECT master_key FROM users WHERE user_name = 'alice') = '\\x" +
                    ToHex(MasterOf("alice")) + "'::bytea"));
  auto listed = store().DevicesOfUsers({"alice"});
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].certificate, CertificateOf(1));
}

TEST_F(StoreTest, TheFirstDeviceSetsTheMasterKeyAndLaterOnesMustMatchIt) {
  Enroll("alice", 1);
  Enroll("alice", 2);  // same master key
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  countersigned_ = 0;
  Status other = Register("alice", *code, Device("alice", 3), Bytes(32, 0x77));
  EXPECT_EQ(other.code(), Code::kFailedPrecondition);
  EXPECT_EQ(other.message(),
            "user alice already has another master key: link this device from an existing one, or "
            "ask for an organisation-assisted restore");
  EXPECT_EQ(countersigned_, 0) << "a mismatching master key must not be countersigned";
  EXPECT_EQ(store().GetDevice(Id(3)).status().code(), Code::kNotFound);
  EXPECT_TRUE(Holds("(SELECT master_key FROM users WHERE user_name = 'alice') = '\\x" +
                    ToHex(MasterOf("alice")) + "'::bytea"));
  // Rolled back: the code is still good for a device under the right key.
  EXPECT_TRUE(Register("alice", *code, Device("alice", 3)).ok());
  // Master keys are per user.
  Enroll("bob", 4);
  EXPECT_TRUE(Holds("(SELECT master_key FROM users WHERE user_name = 'bob') = '\\x" +
                    ToHex(MasterOf("bob")) + "'::bytea"));
}

TEST_F(StoreTest, AnInvalidCodeNeverReachesTheCountersignCallback) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  ASSERT_TRUE(store().CreateUser("bob", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(Register("alice", "AAAAA-AAAAA-AAAAA-AAAAA", Device("alice", 1)).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(Register("bob", *code, Device("bob", 2)).code(), Code::kPermissionDenied);
  EXPECT_EQ(countersigned_, 0);
  // Nor is a master key recorded for a refused registration.
  EXPECT_TRUE(Holds("(SELECT master_key FROM users WHERE user_name = 'alice') IS NULL"));
  EXPECT_TRUE(Holds("(SELECT master_key FROM users WHERE user_name = 'bob') IS NULL"));
}

TEST_F(StoreTest, AFailedCountersignStoresNothing) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  Status s = store().RegisterDevice("alice", *code, MasterOf("alice"), Device("alice", 1),
                                    [] { return Result<Bytes>(Status::Unavailable("token removed")); });
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(s.message(), "token removed");
  EXPECT_EQ(store().GetDevice(Id(1)).status().code(), Code::kNotFound);
  EXPECT_TRUE(Holds("(SELECT master_key FROM users WHERE user_name = 'alice') IS NULL"))
      << "the first device's master key is not kept when its registration fails";
  // The code was not consumed.
  Status retry = store().RegisterDevice("alice", *code, Bytes(32, 0x42), Device("alice", 1),
                                        [] { return Result<Bytes>(CertificateOf(1)); });
  EXPECT_TRUE(retry.ok()) << retry.ToString();
}

TEST_F(StoreTest, RegistrationIsAuditedWithTheMasterKeyFingerprint) {
  Enroll("alice", 1);
  EXPECT_TRUE(Holds("EXISTS (SELECT 1 FROM audit_events WHERE action = 'device.register'"
                    " AND detail->>'master_key' = '" + protocol::Fingerprint(MasterOf("alice")) + "')"));
}

TEST_F(StoreTest, DirectoryEnrollmentCreatesTheUserAndRefreshesPermissions) {
  DirectoryAccount account{"dana", "Dana Scully", {"enroll", "create_groups"}};
  auto sign = [&]() -> Result<Bytes> {
    ++countersigned_;
    return CertificateOf(countersigned_);
  };
  ASSERT_TRUE(store().RegisterDirectoryDevice(account, MasterOf("dana"), Device("dana", 1), sign).ok());
  EXPECT_TRUE(Holds("(SELECT display_name FROM users WHERE user_name = 'dana') = 'Dana Scully'"));
  auto permissions = store().DirectoryPermissions("dana");
  ASSERT_TRUE(permissions.ok());
  ASSERT_TRUE(permissions->has_value());
  EXPECT_EQ(**permissions, (std::vector<std::string>{"create_groups", "enroll"}));
  EXPECT_TRUE(Holds("EXISTS (SELECT 1 FROM audit_events WHERE action = 'user.create'"
                    " AND detail->>'user' = 'dana' AND detail->>'source' = 'directory')"));
  EXPECT_TRUE(Holds("EXISTS (SELECT 1 FROM audit_events WHERE action = 'device.register'"
                    " AND detail->>'user' = 'dana' AND detail->>'credential' = 'directory')"));

  // A later enrollment replaces the permissions; the user is not created again.
  account.display_name = "Dana K. Scully";
  account.permissions = {"enroll"};
  ASSERT_TRUE(store().RegisterDirectoryDevice(account, MasterOf("dana"), Device("dana", 2), sign).ok());
  permissions = store().DirectoryPermissions("dana");
  ASSERT_TRUE(permissions.ok() && permissions->has_value());
  EXPECT_EQ(**permissions, (std::vector<std::string>{"enroll"}));
  EXPECT_TRUE(Holds("(SELECT display_name FROM users WHERE user_name = 'dana') = 'Dana K. Scully'"));
  EXPECT_TRUE(Holds("(SELECT count(*) FROM audit_events WHERE action = 'user.create') = 1"));

  // Another master key is refused and changes nothing, permissions included.
  account.permissions = {"enroll", "create_groups"};
  Status s = store().RegisterDirectoryDevice(account, Bytes(32, 0x99), Device("dana", 3), sign);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(**store().DirectoryPermissions("dana"), (std::vector<std::string>{"enroll"}));
  EXPECT_EQ(countersigned_, 2);

  // A local account has no directory permissions.
  ASSERT_TRUE(store().CreateUser("lou", "Lou").ok());
  auto local = store().DirectoryPermissions("lou");
  ASSERT_TRUE(local.ok());
  EXPECT_FALSE(local->has_value());
  EXPECT_EQ(store().DirectoryPermissions("nobody").status().code(), Code::kNotFound);
  // Code enrollments name their credential too.
  Enroll("alice", 4);
  EXPECT_TRUE(Holds("EXISTS (SELECT 1 FROM audit_events WHERE action = 'device.register'"
                    " AND detail->>'user' = 'alice' AND detail->>'credential' = 'enrollment_code')"));
}

TEST_F(StoreTest, RegisterDeviceChecksTheMasterKeyShape) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(Register("alice", *code, Device("alice", 1), Bytes(31, 1)).code(), Code::kInvalidArgument);
  EXPECT_EQ(countersigned_, 0);
  EXPECT_TRUE(Register("alice", *code, Device("alice", 1)).ok());
}

TEST_F(StoreTest, CodeIsSingleUse) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(Register("alice", *code, Device("alice", 1)).ok());
  EXPECT_EQ(Register("alice", *code, Device("alice", 2)).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(store().GetDevice(Id(2)).status().code(), Code::kNotFound);
}

TEST_F(StoreTest, WrongCodeOrWrongUserIsRefused) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  ASSERT_TRUE(store().CreateUser("bob", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(Register("alice", "AAAAA-AAAAA-AAAAA-AAAAA", Device("alice", 1)).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(Register("bob", *code, Device("bob", 1)).code(),
            Code::kPermissionDenied);
  // Case and separators do not matter.
  std::string typed;
  for (char c : *code) {
    if (c != '-') typed.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  EXPECT_TRUE(Register("alice", typed, Device("alice", 1)).ok());
}

TEST_F(StoreTest, ExpiredCodeIsRefused) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  Sql("UPDATE enrollment_codes SET issued_at = now() - interval '2 hours',"
      " expires_at = now() - interval '1 second'");
  EXPECT_EQ(Register("alice", *code, Device("alice", 1)).code(),
            Code::kPermissionDenied);
}

TEST_F(StoreTest, FailedRegistrationKeepsTheCode) {
  Enroll("alice", 1);
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  // Same device id again: refused, and the code is not consumed.
  EXPECT_EQ(Register("alice", *code, Device("alice", 1)).code(),
            Code::kAlreadyExists);
  EXPECT_TRUE(Register("alice", *code, Device("alice", 2)).ok());
}

TEST_F(StoreTest, DevicesOfUsers) {
  Enroll("alice", 1);
  Enroll("alice", 2);
  Enroll("bob", 3);
  Enroll("carol", 4);
  auto devices = store().DevicesOfUsers({"alice", "bob", "nobody"});
  ASSERT_TRUE(devices.ok()) << devices.status().ToString();
  std::set<Bytes> ids;
  for (const auto& d : *devices) ids.insert(d.device_id);
  EXPECT_EQ(ids, (std::set<Bytes>{Id(1), Id(2), Id(3)}));
  EXPECT_TRUE(store().DevicesOfUsers({})->empty());
}

TEST_F(StoreTest, OpenConversationIsIdempotentOnTheMemberSet) {
  for (const char* u : {"alice", "bob", "carol"}) ASSERT_TRUE(store().CreateUser(u, "").ok());
  auto first = store().OpenConversation({"bob", "alice"});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(std::regex_match(first->conversation_id, std::regex("^c_[0-9a-f]{16}$")));
  EXPECT_EQ(first->members, (std::vector<std::string>{"alice", "bob"}));

  auto again = store().OpenConversation({"alice", "bob", "alice"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->conversation_id, first->conversation_id);

  auto group = store().OpenConversation({"alice", "bob", "carol"});
  ASSERT_TRUE(group.ok());
  EXPECT_NE(group->conversation_id, first->conversation_id);

  auto got = store().GetConversation(group->conversation_id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->members, (std::vector<std::string>{"alice", "bob", "carol"}));
  EXPECT_EQ(store().GetConversation("c_0000000000000000").status().code(), Code::kNotFound);
  EXPECT_EQ(store().OpenConversation({"alice", "nobody"}).status().code(), Code::kNotFound);
  EXPECT_EQ(store().OpenConversation({}).status().code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, Epochs) {
  EpochRecord jan{1, Bytes{1, 1}, Bytes(65, 4), kT0, kT0 + 31 * 24 * kHour};
  EpochRecord feb{2, Bytes{2, 2}, Bytes(65, 5), jan.not_after_ms, jan.not_after_ms + 28 * 24 * kHour};
  ASSERT_TRUE(store().PutEpoch(jan).ok());
  ASSERT_TRUE(store().PutEpoch(feb).ok());
  EXPECT_EQ(store().PutEpoch(jan).code(), Code::kAlreadyExists);

  auto got = store().GetEpoch(2);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->certificate, feb.certificate);
  EXPECT_EQ(got->public_key, feb.public_key);
  EXPECT_EQ(got->not_before_ms, feb.not_before_ms);
  EXPECT_EQ(got->not_after_ms, feb.not_after_ms);

  auto all = store().ListEpochs();
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].epoch_id, 1u);
  EXPECT_EQ((*all)[1].epoch_id, 2u);

  EXPECT_EQ(store().CurrentEpoch(kT0 + kHour)->epoch_id, 1u);
  EXPECT_EQ(store().CurrentEpoch(feb.not_before_ms)->epoch_id, 2u);
  EXPECT_EQ(store().CurrentEpoch(kT0 - 1).status().code(), Code::kNotFound);
  EXPECT_EQ(store().GetEpoch(3).status().code(), Code::kNotFound);
}

TEST_F(StoreTest, Settings) {
  EXPECT_EQ(store().GetSetting(kOrgRootPublicKeySetting.data()).status().code(), Code::kNotFound);
  ASSERT_TRUE(store().PutSetting("org_root_public_key", Bytes(65, 4)).ok());
  EXPECT_EQ(*store().GetSetting("org_root_public_key"), Bytes(65, 4));
  ASSERT_TRUE(store().PutSetting("org_root_public_key", Bytes{}).ok());
  EXPECT_EQ(*store().GetSetting("org_root_public_key"), Bytes{});
  EXPECT_EQ(store().PutSetting("", Bytes{1}).code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, IngestStoresEverythingAndDuplicatesAddNothing) {
  std::vector<IngestItem> batch = {
      Item(1, "c_1", "alice", 1, kT0, {2, 3}),
      Item(2, "c_1", "bob", 2, kT0 + 1, {1, 3}),
      Item(3, "c_1", "alice", 1, kT0 + 2, {}),
  };
  auto out = store().IngestBatch(batch);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), 3u);
  std::set<int64_t> delivery_ids;
  for (size_t i = 0; i < out->size(); ++i) {
    const IngestOutcome& o = (*out)[i];
    EXPECT_FALSE(o.duplicate);
    EXPECT_GT(o.envelope_id, 0);
    EXPECT_GT(o.stored_at_ms, kT0);
    ASSERT_EQ(o.deliveries.size(), batch[i].recipient_devices.size());
    for (size_t k = 0; k < o.deliveries.size(); ++k) {
      EXPECT_EQ(o.deliveries[k].first, batch[i].recipient_devices[k]);
      delivery_ids.insert(o.deliveries[k].second);
    }
  }
  EXPECT_EQ(delivery_ids.size(), 4u);
  EXPECT_EQ(*store().CountEnvelopes(), 3u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3), kQueueTtl), 2u);

  // The same batch again, plus one new message.
  batch.push_back(Item(4, "c_1", "bob", 2, kT0 + 3, {1}));
  auto again = store().IngestBatch(batch);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE((*again)[i].duplicate);
    EXPECT_EQ((*again)[i].envelope_id, (*out)[i].envelope_id);
    EXPECT_EQ((*again)[i].stored_at_ms, (*out)[i].stored_at_ms);
    EXPECT_TRUE((*again)[i].deliveries.empty());
  }
  EXPECT_FALSE((*again)[3].duplicate);
  EXPECT_EQ(*store().CountEnvelopes(), 4u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3), kQueueTtl), 2u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(1), kQueueTtl), 2u);
}

TEST_F(StoreTest, DuplicateInsideOneBatch) {
  auto out = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2}),
                                  Item(1, "c_1", "alice", 1, kT0, {2, 3})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_FALSE((*out)[0].duplicate);
  EXPECT_TRUE((*out)[1].duplicate);
  EXPECT_EQ((*out)[1].envelope_id, (*out)[0].envelope_id);
  EXPECT_EQ(*store().CountEnvelopes(), 1u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3), kQueueTtl), 0u);
}

TEST_F(StoreTest, SameMessageIdWithAnotherEnvelopeIsAConflict) {
  ASSERT_TRUE(store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2})}).ok());
  IngestItem same = Item(1, "c_1", "alice", 1, kT0, {2});
  IngestItem other = Item(1, "c_1", "mallory", 9, kT0, {2});
  other.envelope[0] ^= 1;
  auto out = store().IngestBatch({same, other});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE((*out)[0].duplicate);
  EXPECT_FALSE((*out)[0].conflict);
  EXPECT_TRUE((*out)[1].duplicate);
  EXPECT_TRUE((*out)[1].conflict);

  // Inside one batch, too: the second envelope is not the stored one.
  auto fresh = store().IngestBatch({Item(5, "c_1", "alice", 1, kT0, {2}), [&] {
                                      IngestItem x = Item(5, "c_1", "alice", 1, kT0, {2});
                                      x.envelope.back() ^= 1;
                                      return x;
                                    }()});
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_FALSE((*fresh)[0].conflict);
  EXPECT_TRUE((*fresh)[1].conflict);
  EXPECT_EQ(*store().CountEnvelopes(), 2u);
}

TEST_F(StoreTest, RepeatedRecipientGetsOneDelivery) {
  auto out = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2, 2, 3})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].deliveries.size(), 2u);
}

TEST_F(StoreTest, BatchIsAllOrNothing) {
  IngestItem bad = Item(2, "c_1", "alice", 1, kT0, {2});
  bad.message_id.clear();  // violates the message id check
  auto out = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2}), bad,
                                  Item(3, "c_1", "alice", 1, kT0, {2})});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), Code::kInvalidArgument) << out.status().ToString();
  auto count = store().CountEnvelopes();
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 0u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2), kQueueTtl), 0u);
  // The connection is usable afterwards.
  EXPECT_TRUE(store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2})}).ok());
  EXPECT_EQ(*store().CountEnvelopes(), 1u);
  EXPECT_TRUE(store().IngestBatch({}).ok());
}

TEST_F(StoreTest, LargeBatchInOneRoundTrip) {
  std::vector<IngestItem> batch;
  for (int i = 0; i < 1000; ++i) {
    IngestItem item = Item(0, "c_1", "alice", 1, kT0 + i, {2, 3, 4});
    item.message_id[1] = static_cast<uint8_t>(i);
    item.message_id[2] = static_cast<uint8_t>(i >> 8);
    batch.push_back(std::move(item));
  }
  auto out = store().IngestBatch(batch);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*store().CountEnvelopes(), 1000u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(4), kQueueTtl), 1000u);
}

TEST_F(StoreTest, PendingDeliveriesAndAcks) {
  auto out = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2, 3}),
                                  Item(2, "c_1", "alice", 1, kT0 + 1, {2}),
                                  Item(3, "c_1", "alice", 1, kT0 + 2, {2})});
  ASSERT_TRUE(out.ok());
  auto pending = store().PendingDeliveries(Id(2), 2, kQueueTtl);
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  ASSERT_EQ(pending->size(), 2u);
  EXPECT_EQ((*pending)[0].envelope, Bytes(2000, 1));
  EXPECT_EQ((*pending)[0].sender_device, Id(1));
  EXPECT_EQ((*pending)[1].envelope, Bytes(2000, 2));
  EXPECT_LT((*pending)[0].delivery_id, (*pending)[1].delivery_id);

  // Device 3's delivery id is not device 2's to acknowledge.
  int64_t foreign = (*out)[0].deliveries[1].second;
  ASSERT_TRUE(
      store().AckDeliveries(Id(2), {(*pending)[0].delivery_id, (*pending)[1].delivery_id, foreign})
          .ok());
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2), kQueueTtl), 1u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3), kQueueTtl), 1u);
  auto rest = store().PendingDeliveries(Id(2), 10, kQueueTtl);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].envelope, Bytes(2000, 3));
  EXPECT_TRUE(store().AckDeliveries(Id(2), {}).ok());
  EXPECT_EQ(store().PendingDeliveries(Id(2), 0, kQueueTtl).status().code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, ExpiredDeliveriesAreNotOffered) {
  auto out = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2, 3}),
                                  Item(2, "c_1", "alice", 1, kT0 + 1, {2}),
                                  Item(3, "c_1", "alice", 1, kT0 + 2, {2})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const int64_t old_id = (*out)[0].envelope_id;
  const int64_t acked_id = (*out)[2].envelope_id;
  ASSERT_TRUE(store().AckDeliveries(Id(2), {(*out)[2].deliveries[0].second}).ok());
  // Envelope 1's deliveries queued 30 days and a minute ago, envelope 3's
  // (acknowledged) too, envelope 2's 29 days ago.
  Sql("UPDATE deliveries SET created_at = now() - interval '30 days 1 minute'"
      " WHERE envelope_id IN (" + std::to_string(old_id) + ", " + std::to_string(acked_id) + ")");
  Sql("UPDATE deliveries SET created_at = now() - interval '29 days'"
      " WHERE envelope_id = " + std::to_string((*out)[1].envelope_id));

  // Past the TTL is not offered even before the sweep marks it.
  auto pending = store().PendingDeliveries(Id(2), 10, kQueueTtl);
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].envelope, Bytes(2000, 2));
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2), kQueueTtl), 1u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3), kQueueTtl), 0u);
  EXPECT_EQ(*store().CountQueuedDeliveries(kQueueTtl), 1u);
  // A longer TTL still offers them.
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2), 31 * 24 * kHour), 2u);

  // The sweep marks the two unacknowledged old ones, in bounded batches,
  // and leaves the acknowledged one alone.
  EXPECT_EQ(*store().ExpireDeliveries(kQueueTtl, 1), 1u);
  EXPECT_EQ(*store().ExpireDeliveries(kQueueTtl, 10), 1u);
  EXPECT_EQ(*store().ExpireDeliveries(kQueueTtl, 10), 0u);
  EXPECT_TRUE(Holds("(SELECT count(*) FROM deliveries WHERE expired_at IS NOT NULL) = 2"));
  EXPECT_TRUE(Holds("(SELECT count(*) FROM deliveries WHERE expired_at IS NOT NULL"
                    " AND envelope_id = " + std::to_string(old_id) + ") = 2"));
  // Once marked, expired stays expired whatever the TTL.
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2), 31 * 24 * kHour), 1u);
  EXPECT_EQ(*store().CountQueuedDeliveries(kQueueTtl), 1u);
  // The envelope stays archived.
  EXPECT_EQ(*store().CountEnvelopes(), 3u);
  EXPECT_EQ(store().ExpireDeliveries(kQueueTtl, 0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store().CountQueuedDeliveries(0).status().code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, EnvelopesLiveInTheirEpochsPartition) {
  EpochRecord e7{7, Bytes{7}, Bytes(65, 4), kT0, kT0 + 31 * 24 * kHour};
  ASSERT_TRUE(store().PutEpoch(e7).ok());
  EXPECT_TRUE(Holds("to_regclass('envelopes_e7') IS NOT NULL"
                    " AND to_regclass('deliveries_e7') IS NOT NULL"));
  auto first = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2, 3})});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(Holds("(SELECT count(*) FROM envelopes_e7) = 1 AND"
                    " (SELECT count(*) FROM deliveries_e7) = 2 AND"
                    " (SELECT count(*) FROM envelopes_default) = 0"));
  // A re-sent envelope is a duplicate; another under the same id a conflict.
  IngestItem changed = Item(1, "c_1", "alice", 1, kT0, {2});
  changed.envelope[0] ^= 1;
  auto again = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2, 3}), changed});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)[0].duplicate);
  EXPECT_FALSE((*again)[0].conflict);
  EXPECT_EQ((*again)[0].envelope_id, (*first)[0].envelope_id);
  EXPECT_TRUE((*again)[1].conflict);
  EXPECT_EQ(*store().CountEnvelopes(), 1u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2), kQueueTtl), 1u);

  // An epoch without partitions (none certified) lands in the DEFAULT one.
  IngestItem other = Item(2, "c_1", "alice", 1, kT0, {2});
  other.epoch_id = 8;
  ASSERT_TRUE(store().IngestBatch({other}).ok());
  EXPECT_TRUE(Holds("(SELECT count(*) FROM envelopes_default WHERE epoch_id = 8) = 1"));
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2), kQueueTtl), 2u);
  // The envelope and its storage settings are those of the parent.
  EXPECT_TRUE(Holds("(SELECT attstorage FROM pg_attribute WHERE attrelid = 'envelopes_e7'::regclass"
                    " AND attname = 'envelope') = 'e'"));
}

TEST_F(StoreTest, EnvelopesOfCustodian) {
  for (const char* u : {"alice", "bob", "carol", "dave"}) ASSERT_TRUE(store().CreateUser(u, "").ok());
  Enroll("bob", 2);
  auto ab = store().OpenConversation({"alice", "bob"});
  auto cd = store().OpenConversation({"carol", "dave"});
  ASSERT_TRUE(ab.ok() && cd.ok());
  ASSERT_TRUE(store()
                  .IngestBatch({
                      Item(1, ab->conversation_id, "alice", 1, kT0, {2}),
                      Item(2, ab->conversation_id, "bob", 2, kT0 + kHour, {1}),
                      Item(3, cd->conversation_id, "carol", 3, kT0 + kHour, {4}),
                      Item(4, ab->conversation_id, "alice", 1, kT0 + 2 * kHour, {2}),
                      // Not in a conversation bob is a member of, but queued for his device.
                      Item(5, "c_elsewhere", "erin", 5, kT0 + kHour, {2}),
                  })
                  .ok());
  auto bob = store().EnvelopesOfCustodian("bob", kT0, kT0 + 2 * kHour);
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  std::vector<Bytes> ids;
  for (const auto& e : *bob) ids.push_back(e.message_id);
  EXPECT_EQ(ids, (std::vector<Bytes>{Id(1), Id(2), Id(5)}));
  const StoredEnvelope& second = (*bob)[1];
  EXPECT_EQ(second.conversation_id, ab->conversation_id);
  EXPECT_EQ(second.sender_user, "bob");
  EXPECT_EQ(second.sender_device, Id(2));
  EXPECT_EQ(second.epoch_id, 7u);
  EXPECT_EQ(second.sent_at_ms, kT0 + kHour);
  EXPECT_EQ(second.envelope, Bytes(2000, 2));

  auto carol = store().EnvelopesOfCustodian("carol", kT0, kT0 + 3 * kHour);
  ASSERT_EQ(carol->size(), 1u);
  EXPECT_EQ((*carol)[0].message_id, Id(3));
  EXPECT_TRUE(store().EnvelopesOfCustodian("alice", kT0 + 3 * kHour, kT0 + 4 * kHour)->empty());
}

// ------------------------------------------------------------------ groups

TEST_F(StoreTest, AGroupHasAnIdOfItsOwnAndRecordsItsCreation) {
  for (const char* u : {"alice", "bob", "carol"}) ASSERT_TRUE(store().CreateUser(u, "").ok());
  auto group = store().CreateGroup("alice", "Trading desk", {"bob", "bob", "alice"});
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  EXPECT_TRUE(std::regex_match(group->conversation_id, std::regex("^g_[0-9a-f]{16}$")))
      << group->conversation_id;
  EXPECT_EQ(group->members, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_TRUE(group->group);
  EXPECT_EQ(group->title, "Trading desk");
  EXPECT_EQ(group->created_by, "alice");
  EXPECT_EQ(group->membership_version, 0);

  // The same members again are another group, and not the direct conversation.
  auto second = store().CreateGroup("alice", "", {"bob"});
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_NE(second->conversation_id, group->conversation_id);
  auto direct = store().OpenConversation({"alice", "bob"});
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  EXPECT_NE(direct->conversation_id, group->conversation_id);
  EXPECT_FALSE(direct->group);
  EXPECT_TRUE(direct->title.empty());
  EXPECT_TRUE(direct->created_by.empty());
  EXPECT_EQ(direct->membership_version, 0);
  auto direct_again = store().GetConversation(direct->conversation_id);
  ASSERT_TRUE(direct_again.ok());
  EXPECT_FALSE(direct_again->group);
  EXPECT_TRUE(store().RecentMembershipChanges(direct->conversation_id)->empty());

  auto got = store().GetConversation(group->conversation_id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->members, group->members);
  EXPECT_TRUE(got->group);
  EXPECT_EQ(got->title, "Trading desk");
  EXPECT_EQ(got->created_by, "alice");
  EXPECT_EQ(got->membership_version, 0);

  auto changes = store().RecentMembershipChanges(group->conversation_id);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ((*changes)[0].version, 0);
  EXPECT_EQ((*changes)[0].actor, "alice");
  EXPECT_EQ((*changes)[0].added, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_TRUE((*changes)[0].removed.empty());
  EXPECT_GT((*changes)[0].at_ms, kT0);

  Compliance compliance(conn());
  auto trail = compliance.AuditTrail();
  ASSERT_TRUE(trail.ok()) << trail.status().ToString();
  ASSERT_EQ(trail->size(), 2u);
  EXPECT_EQ((*trail)[0].action, "group.create");
  EXPECT_EQ((*trail)[0].actor, "user:alice");
  EXPECT_NE((*trail)[0].detail.find(group->conversation_id), std::string::npos);
  EXPECT_TRUE(compliance.VerifyAuditChain().ok());
}

TEST_F(StoreTest, CreateGroupRefusesUnknownUsersLongTitlesAndTooManyMembers) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  EXPECT_EQ(store().CreateGroup("alice", "t", {"nobody"}).status().code(), Code::kNotFound);
  EXPECT_EQ(store().CreateGroup("nobody", "t", {"alice"}).status().code(), Code::kNotFound);
  EXPECT_EQ(store().CreateGroup("", "t", {"alice"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store().CreateGroup("alice", std::string(kMaxGroupTitleBytes + 1, 't'), {}).status().code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(store().CreateGroup("alice", std::string(kMaxGroupTitleBytes, 't'), {}).ok())
      << "a group of one, with the longest title";

  Sql("INSERT INTO users (user_name) SELECT 'u' || g FROM generate_series(1, 1024) AS g");
  std::vector<std::string> others;
  for (int i = 1; i < 1024; ++i) others.push_back("u" + std::to_string(i));
  auto full = store().CreateGroup("alice", "everyone", others);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ(full->members.size(), kMaxConversationMembers);
  others.push_back("u1024");
  EXPECT_EQ(store().CreateGroup("alice", "too many", others).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store().ChangeMembers(full->conversation_id, "alice", {"u1024"}, {}).status().code(),
            Code::kInvalidArgument);
  // Nothing of the refused requests was stored.
  EXPECT_TRUE(Holds("(SELECT count(*) FROM conversations) = 2"));
  EXPECT_TRUE(Holds("(SELECT count(*) FROM conversation_membership_changes) = 2"));
  EXPECT_TRUE(Holds("(SELECT count(*) FROM audit_events) = 2"));
}

TEST_F(StoreTest, ChangeMembersFollowsTheRules) {
  for (const char* u : {"alice", "bob", "carol", "dave"}) ASSERT_TRUE(store().CreateUser(u, "").ok());
  auto group = store().CreateGroup("alice", "desk", {"bob"});
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  const std::string id = group->conversation_id;
  auto change = [&](const std::string& actor, std::vector<std::string> add,
                    std::vector<std::string> remove) {
    return store().ChangeMembers(id, actor, std::move(add), std::move(remove));
  };

  // Any member may add.
  auto added = change("bob", {"carol"}, {});
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_EQ(added->members, (std::vector<std::string>{"alice", "bob", "carol"}));
  EXPECT_EQ(added->membership_version, 1);
  EXPECT_TRUE(added->group);
  EXPECT_EQ(added->created_by, "alice");

  // Refusals change nothing.
  EXPECT_EQ(change("bob", {}, {"carol"}).status().code(), Code::kPermissionDenied)
      << "only the creator removes others";
  EXPECT_EQ(change("bob", {}, {"alice"}).status().code(), Code::kPermissionDenied)
      << "the creator cannot be removed by others";
  EXPECT_EQ(change("dave", {"dave"}, {}).status().code(), Code::kPermissionDenied)
      << "a non-member cannot add, not even themself";
  EXPECT_EQ(change("alice", {"bob"}, {}).status().code(), Code::kInvalidArgument)
      << "adding a member";
  EXPECT_EQ(change("alice", {}, {"dave"}).status().code(), Code::kInvalidArgument)
      << "removing a non-member";
  EXPECT_EQ(change("alice", {}, {}).status().code(), Code::kInvalidArgument) << "no change";
  EXPECT_EQ(change("alice", {"dave"}, {"dave"}).status().code(), Code::kInvalidArgument)
      << "added and removed at once";
  EXPECT_EQ(change("alice", {"nobody"}, {}).status().code(), Code::kNotFound) << "unknown user";
  EXPECT_EQ(store().ChangeMembers("g_0000000000000000", "alice", {"dave"}, {}).status().code(),
            Code::kNotFound);
  auto direct = store().OpenConversation({"alice", "bob"});
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(store().ChangeMembers(direct->conversation_id, "alice", {"carol"}, {}).status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(store().GetConversation(direct->conversation_id)->members,
            (std::vector<std::string>{"alice", "bob"}));
  auto unchanged = store().GetConversation(id);
  ASSERT_TRUE(unchanged.ok());
  EXPECT_EQ(unchanged->membership_version, 1);
  EXPECT_EQ(unchanged->members, (std::vector<std::string>{"alice", "bob", "carol"}));

  // The creator removes others; anyone leaves; the creator may leave too.
  auto removed = change("alice", {"dave"}, {"carol"});
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed->members, (std::vector<std::string>{"alice", "bob", "dave"}));
  EXPECT_EQ(removed->membership_version, 2);
  auto left = change("bob", {}, {"bob"});
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  EXPECT_EQ(left->members, (std::vector<std::string>{"alice", "dave"}));
  EXPECT_EQ(change("bob", {"bob"}, {}).status().code(), Code::kPermissionDenied)
      << "a member who left cannot come back alone";
  auto creator_left = change("alice", {}, {"alice"});
  ASSERT_TRUE(creator_left.ok()) << creator_left.status().ToString();
  EXPECT_EQ(creator_left->members, (std::vector<std::string>{"dave"}));
  EXPECT_EQ(change("dave", {}, {"alice"}).status().code(), Code::kInvalidArgument);
  auto empty = change("dave", {}, {"dave"});
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->members.empty());
  EXPECT_EQ(empty->membership_version, 5);
  EXPECT_TRUE(store().GetConversation(id)->members.empty());
  EXPECT_TRUE(Holds("NOT EXISTS (SELECT 1 FROM conversation_members WHERE conversation_id = '" + id + "')"));

  auto changes = store().RecentMembershipChanges(id);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  ASSERT_EQ(changes->size(), 6u);
  for (size_t i = 0; i < changes->size(); ++i) EXPECT_EQ((*changes)[i].version, static_cast<int64_t>(i));
  EXPECT_EQ((*changes)[1].actor, "bob");
  EXPECT_EQ((*changes)[1].added, (std::vector<std::string>{"carol"}));
  EXPECT_EQ((*changes)[2].actor, "alice");
  EXPECT_EQ((*changes)[2].added, (std::vector<std::string>{"dave"}));
  EXPECT_EQ((*changes)[2].removed, (std::vector<std::string>{"carol"}));
  EXPECT_EQ((*changes)[3].removed, (std::vector<std::string>{"bob"}));
  EXPECT_TRUE((*changes)[3].added.empty());
  for (size_t i = 1; i < changes->size(); ++i) EXPECT_GE((*changes)[i].at_ms, (*changes)[i - 1].at_ms);

  Compliance compliance(conn());
  auto trail = compliance.AuditTrail();
  ASSERT_TRUE(trail.ok()) << trail.status().ToString();
  std::vector<std::string> actions;
  for (const auto& e : *trail) actions.push_back(e.action + " " + e.actor);
  EXPECT_EQ(actions, (std::vector<std::string>{
                         "group.create user:alice", "group.change_members user:bob",
                         "group.change_members user:alice", "group.change_members user:bob",
                         "group.change_members user:alice", "group.change_members user:dave"}));
  EXPECT_TRUE(compliance.VerifyAuditChain().ok());
}

TEST_F(StoreTest, AConversationAnswerCarriesTheLast64Changes) {
  for (const char* u : {"alice", "bob"}) ASSERT_TRUE(store().CreateUser(u, "").ok());
  auto group = store().CreateGroup("alice", "", {});
  ASSERT_TRUE(group.ok());
  for (int i = 1; i <= 70; ++i) {
    auto r = i % 2 ? store().ChangeMembers(group->conversation_id, "alice", {"bob"}, {})
                   : store().ChangeMembers(group->conversation_id, "alice", {}, {"bob"});
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
  }
  auto changes = store().RecentMembershipChanges(group->conversation_id);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  ASSERT_EQ(changes->size(), static_cast<size_t>(kRecentMembershipChanges));
  EXPECT_EQ(changes->front().version, 70 - kRecentMembershipChanges + 1);
  EXPECT_EQ(changes->back().version, 70);
  EXPECT_EQ(store().RecentMembershipChanges(group->conversation_id, 2)->front().version, 69);
  EXPECT_EQ(store().RecentMembershipChanges(group->conversation_id, 0).status().code(),
            Code::kInvalidArgument);
}

TEST_F(StoreTest, ConcurrentChangesOfOneGroupAreBothApplied) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  Sql("INSERT INTO users (user_name) SELECT 'u' || g FROM generate_series(1, 40) AS g");
  auto group = store().CreateGroup("alice", "", {});
  ASSERT_TRUE(group.ok());
  // Two writers, each adding its own users one at a time: without the row
  // lock, one writer's members array would overwrite the other's.
  auto writer = [&](int first, Status* out) {
    auto other = Connection::Open(conninfo());
    if (!other.ok()) {
      *out = other.status();
      return;
    }
    Store s(*other);
    for (int i = first; i < first + 20; ++i) {
      auto r = s.ChangeMembers(group->conversation_id, "alice", {"u" + std::to_string(i)}, {});
      if (!r.ok()) {
        *out = r.status();
        return;
      }
    }
  };
  Status a, b;
  std::thread ta(writer, 1, &a), tb(writer, 21, &b);
  ta.join();
  tb.join();
  ASSERT_TRUE(a.ok()) << a.ToString();
  ASSERT_TRUE(b.ok()) << b.ToString();
  auto got = store().GetConversation(group->conversation_id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->members.size(), 41u);
  EXPECT_EQ(got->membership_version, 40);
  EXPECT_TRUE(Holds("(SELECT count(*) FROM conversation_members WHERE conversation_id = '" +
                    group->conversation_id + "') = 41"));
  EXPECT_TRUE(Holds("(SELECT max(version) FROM conversation_membership_changes) = 40"));
}

TEST_F(StoreTest, AGroupMembersCustodianScopeIsTheTimeTheyWereAMember) {
  for (const char* u : {"alice", "bob", "carol", "dave"}) ASSERT_TRUE(store().CreateUser(u, "").ok());
  auto group = store().CreateGroup("alice", "desk", {"bob"});
  ASSERT_TRUE(group.ok());
  const std::string id = group->conversation_id;
  // No deliveries: the scope comes from the membership alone.
  ASSERT_TRUE(store().IngestBatch({Item(1, id, "alice", 1, kT0, {})}).ok());
  ASSERT_TRUE(store().ChangeMembers(id, "alice", {}, {"bob"}).ok());
  ASSERT_TRUE(store().IngestBatch({Item(2, id, "alice", 1, kT0 + 1, {})}).ok());
  ASSERT_TRUE(store().ChangeMembers(id, "alice", {"bob", "carol"}, {}).ok());
  ASSERT_TRUE(store().IngestBatch({Item(3, id, "alice", 1, kT0 + 2, {})}).ok());

  auto ids = [&](const std::string& custodian) {
    std::vector<Bytes> out;
    auto r = store().EnvelopesOfCustodian(custodian, kT0 - kHour, kT0 + kHour);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (r.ok()) {
      for (const auto& e : *r) out.push_back(e.message_id);
    }
    return out;
  };
  EXPECT_EQ(ids("alice"), (std::vector<Bytes>{Id(1), Id(2), Id(3)}));
  EXPECT_EQ(ids("bob"), (std::vector<Bytes>{Id(1), Id(3)}));
  EXPECT_EQ(ids("carol"), (std::vector<Bytes>{Id(3)}));
  EXPECT_TRUE(ids("dave").empty());
}

// ----------------------------------------------------------------- prekeys

TEST_F(StoreTest, UpdatePrekeyKeepsOnlyANewerPrekey) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  auto prekey = [](int64_t created_at, uint8_t fill) {
    protocol::wire::SignedPrekey p;
    p.set_public_key(std::string(32, static_cast<char>(fill)));
    p.set_created_at_ms(created_at);
    p.set_signature(std::string(64, 's'));
    const std::string bytes = p.SerializeAsString();
    return Bytes(bytes.begin(), bytes.end());
  };
  DeviceRecord d = Device("alice", 1);
  d.signed_prekey = prekey(kT0, 1);
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  ASSERT_TRUE(Register("alice", *code, d).ok());

  EXPECT_EQ(store().UpdatePrekey(Id(1), prekey(kT0, 2)).code(), Code::kFailedPrecondition);
  EXPECT_EQ(store().UpdatePrekey(Id(1), prekey(kT0 - 1, 2)).code(), Code::kFailedPrecondition);
  EXPECT_EQ(store().GetDevice(Id(1))->signed_prekey, prekey(kT0, 1));
  ASSERT_TRUE(store().UpdatePrekey(Id(1), prekey(kT0 + 1, 3)).ok());
  EXPECT_EQ(store().GetDevice(Id(1))->signed_prekey, prekey(kT0 + 1, 3));
  EXPECT_EQ(store().UpdatePrekey(Id(1), prekey(kT0 + 1, 4)).code(), Code::kFailedPrecondition);

  EXPECT_EQ(store().UpdatePrekey(Id(1), Bytes{0x0a, 0x40}).code(), Code::kInvalidArgument);
  EXPECT_EQ(store().UpdatePrekey(Id(9), prekey(kT0 + 2, 5)).code(), Code::kNotFound);
  Sql("UPDATE devices SET revoked_at = now()");
  EXPECT_EQ(store().UpdatePrekey(Id(1), prekey(kT0 + 2, 5)).code(), Code::kNotFound);
}

// -------------------------------------------------------- delivery reports

TEST_F(StoreTest, DeliveryReportReasonsAreAClosedSet) {
  for (std::string_view r : kDeliveryReportReasons) EXPECT_EQ(DeliveryReportReason(r), r);
  EXPECT_EQ(DeliveryReportReason(""), "other");
  EXPECT_EQ(DeliveryReportReason("BAD_SIGNATURE"), "other");
  EXPECT_EQ(DeliveryReportReason("bad_signature "), "other");
}

TEST_F(StoreTest, ADeliveryReportIsRecordedAndAudited) {
  Enroll("alice", 1);
  Enroll("bob", 2);
  auto stored = store().IngestBatch({Item(5, "c_1", "alice", 1, kT0, {2})});
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  const int64_t delivery = (*stored)[0].deliveries.at(0).second;
  const int64_t envelope = (*stored)[0].envelope_id;

  DeliveryReport by_bob;
  by_bob.reporter_device = Id(2);
  by_bob.delivery_id = delivery;
  by_bob.message_id = Id(5);
  by_bob.reason = "archive_capsule_mismatch";
  by_bob.detail = "capsule differs";
  auto first = store().RecordDeliveryReport(by_bob);
  ASSERT_TRUE(first.ok()) << first.status().ToString();

  // alice names bob's delivery: recorded, but it names no envelope.
  DeliveryReport by_alice = by_bob;
  by_alice.reporter_device = Id(1);
  by_alice.reason = "made_up_reason";
  by_alice.detail = std::string(kMaxDeliveryReportDetailBytes - 1, 'x') + "\xc3\xa9" + "more";
  auto second = store().RecordDeliveryReport(by_alice);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_GT(*second, *first);

  // Nothing but a reason, and a detail that is not text, which its
  // replacement characters grow past the limit.
  DeliveryReport bare;
  bare.reporter_device = Id(2);
  bare.reason = "undecryptable";
  bare.detail = std::string("a\0b\xff", 4) + std::string(1020, 'y') + "\xc3\xa9";
  auto third = store().RecordDeliveryReport(bare);
  ASSERT_TRUE(third.ok()) << third.status().ToString();

  DeliveryReport stranger = bare;
  stranger.reporter_device = Id(9);
  EXPECT_EQ(store().RecordDeliveryReport(stranger).status().code(), Code::kNotFound);
  DeliveryReport long_id = bare;
  long_id.message_id = Bytes(65, 1);
  EXPECT_EQ(store().RecordDeliveryReport(long_id).status().code(), Code::kInvalidArgument);

  auto reports = store().DeliveryReportsSince(0);
  ASSERT_TRUE(reports.ok()) << reports.status().ToString();
  ASSERT_EQ(reports->size(), 3u);
  const DeliveryReportRecord& a = (*reports)[0];
  EXPECT_EQ(a.report_id, *first);
  EXPECT_EQ(a.reporter_device, Id(2));
  EXPECT_EQ(a.reporter_user, "bob");
  EXPECT_EQ(a.delivery_id, delivery);
  EXPECT_EQ(a.message_id, Id(5));
  EXPECT_EQ(a.envelope_id, envelope);
  EXPECT_EQ(a.reason, "archive_capsule_mismatch");
  EXPECT_EQ(a.detail, "capsule differs");
  EXPECT_GT(a.reported_at_ms, kT0);
  const DeliveryReportRecord& b = (*reports)[1];
  EXPECT_EQ(b.reporter_user, "alice");
  EXPECT_EQ(b.delivery_id, delivery);
  EXPECT_FALSE(b.envelope_id.has_value()) << "a delivery to another device";
  EXPECT_EQ(b.reason, "other");
  EXPECT_EQ(b.detail, std::string(kMaxDeliveryReportDetailBytes - 1, 'x'))
      << "cut before the character that does not fit";
  const DeliveryReportRecord& c = (*reports)[2];
  EXPECT_FALSE(c.delivery_id.has_value());
  EXPECT_TRUE(c.message_id.empty());
  EXPECT_FALSE(c.envelope_id.has_value());
  EXPECT_EQ(c.detail, "a\xef\xbf\xbd" "b\xef\xbf\xbd" + std::string(1016, 'y'));
  EXPECT_LE(c.detail.size(), kMaxDeliveryReportDetailBytes);

  EXPECT_EQ(store().DeliveryReportsSince(a.reported_at_ms + kHour)->size(), 0u);
  EXPECT_EQ(store().DeliveryReportsSince(a.reported_at_ms)->size(), 3u);

  Compliance compliance(conn());
  auto trail = compliance.AuditTrail();
  ASSERT_TRUE(trail.ok()) << trail.status().ToString();
  std::vector<std::string> reports_audited;
  for (const auto& e : *trail) {
    if (e.action == "delivery.report") reports_audited.push_back(e.actor);
  }
  EXPECT_EQ(reports_audited, (std::vector<std::string>{"user:bob", "user:alice", "user:bob"}));
  EXPECT_NE(trail->back().detail.find("\"reason\":\"undecryptable\""), std::string::npos)
      << trail->back().detail;
  EXPECT_TRUE(compliance.VerifyAuditChain().ok());
}


// ------------------------------------------------------------------- outbox

// Waits up to `timeout` for notifications on `listener`; all payloads.
std::vector<std::string> Notifications(Connection& listener, std::chrono::milliseconds timeout) {
  std::vector<std::string> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    auto got = listener.AwaitNotifications(left);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    if (!got.ok()) return out;
    out.insert(out.end(), got->begin(), got->end());
    if (!out.empty()) return out;
  }
}

TEST_F(StoreTest, IngestWithAnOutboxTagWritesOneRowAndNotifiesInTheSameTransaction) {
  auto listener = Connection::Open(conninfo());
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  ASSERT_TRUE(listener->Listen(std::string(kOutboxChannel)).ok());

  auto out = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2, 3}),
                                  Item(2, "c_1", "alice", 1, kT0 + 1, {2})},
                                 OutboxTag{"node-a", 7});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  std::vector<int64_t> ids;
  for (const auto& o : *out) {
    for (const auto& [device, id] : o.deliveries) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(Notifications(*listener, std::chrono::seconds(5)), std::vector<std::string>{"node-a"});

  // One row per batch, with every new delivery id, ascending.
  auto rows = store().OutboxRowsAfter({}, "node-b", 10);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].node_id, "node-a");
  EXPECT_EQ((*rows)[0].seq, 7);
  EXPECT_EQ((*rows)[0].delivery_ids, ids);
  EXPECT_GT((*rows)[0].created_at_ms, 0);
  EXPECT_EQ(*store().LastOutboxSeq("node-a"), 7);
  EXPECT_EQ(*store().LastOutboxSeq("node-b"), 0);

  // A reader skips its own node's rows and those at or below what it saw.
  EXPECT_TRUE(store().OutboxRowsAfter({}, "node-a", 10)->empty());
  EXPECT_TRUE(store().OutboxRowsAfter({{"node-a", 7}}, "node-b", 10)->empty());
  EXPECT_EQ(store().OutboxRowsAfter({{"node-a", 6}}, "node-b", 10)->size(), 1u);

  // A batch that creates no delivery (only duplicates) writes no row and
  // notifies nobody; neither does a failed batch or one without a tag.
  ASSERT_TRUE(store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2, 3})}, OutboxTag{"node-a", 8}).ok());
  IngestItem bad = Item(5, "c_1", "alice", 1, kT0, {2});
  bad.message_id.clear();
  EXPECT_FALSE(store().IngestBatch({Item(4, "c_1", "alice", 1, kT0, {2}), bad}, OutboxTag{"node-a", 9}).ok());
  ASSERT_TRUE(store().IngestBatch({Item(6, "c_1", "alice", 1, kT0, {2})}).ok());
  EXPECT_TRUE(Notifications(*listener, std::chrono::milliseconds(300)).empty());
  EXPECT_EQ(*store().LastOutboxSeq("node-a"), 7);
  EXPECT_EQ(*store().CountEnvelopes(), 3u) << "the failed batch stored nothing";

  // Another node's batch: rows come back by node, then seq.
  ASSERT_TRUE(store().IngestBatch({Item(7, "c_1", "alice", 1, kT0, {3})}, OutboxTag{"node-b", 1}).ok());
  EXPECT_EQ(Notifications(*listener, std::chrono::seconds(5)), std::vector<std::string>{"node-b"});
  auto all = store().OutboxRowsAfter({}, "node-c", 10);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].node_id, "node-b");
  EXPECT_EQ(store().OutboxRowsAfter({}, "node-c", 1)->size(), 1u) << "limit";
  auto heads = store().LastOutboxSeqs();
  ASSERT_TRUE(heads.ok());
  std::sort(heads->begin(), heads->end());
  EXPECT_EQ(*heads, (std::vector<std::pair<std::string, int64_t>>{{"node-a", 7}, {"node-b", 1}}));

  // Of a row's deliveries, only the undelivered ones to the given devices.
  ASSERT_TRUE(store().AckDeliveries(Id(2), {ids[0]}).ok());
  auto pending = store().UndeliveredAmong(ids, {Id(2), Id(9)});
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].device_id, Id(2));
  EXPECT_EQ((*pending)[0].envelope, Bytes(2000, 2));
  EXPECT_EQ((*pending)[0].sender_device, Id(1));
  EXPECT_TRUE(store().UndeliveredAmong(ids, {})->empty());
}

TEST_F(StoreTest, PruningKeepsEachNodesNewestOutboxRow) {
  ASSERT_TRUE(store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2})}, OutboxTag{"a", 1}).ok());
  ASSERT_TRUE(store().IngestBatch({Item(2, "c_1", "alice", 1, kT0, {2})}, OutboxTag{"a", 2}).ok());
  ASSERT_TRUE(store().IngestBatch({Item(3, "c_1", "alice", 1, kT0, {2})}, OutboxTag{"b", 1}).ok());
  ASSERT_TRUE(store().IngestBatch({Item(4, "c_1", "alice", 1, kT0, {2})}, OutboxTag{"a", 3}).ok());
  Sql("UPDATE outbox SET created_at = now() - interval '11 minutes' WHERE seq < 3");
  auto pruned = store().PruneOutbox(10 * 60 * 1000);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(*pruned, 2u) << "a/1 and a/2; b/1 is b's newest";
  EXPECT_EQ(*store().LastOutboxSeq("b"), 1);
  EXPECT_EQ(*store().LastOutboxSeq("a"), 3);
  EXPECT_EQ(store().OutboxRowsAfter({}, "", 10)->size(), 2u);
}

TEST_F(StoreTest, ANodeIdIsLockedByOneSessionAtATime) {
  auto other = Connection::Open(conninfo());
  ASSERT_TRUE(other.ok());
  Store other_store(*other);
  EXPECT_TRUE(*store().TryLockNode("n1"));
  EXPECT_TRUE(*store().TryLockNode("n1")) << "again on the session holding it";
  EXPECT_FALSE(*other_store.TryLockNode("n1"));
  EXPECT_TRUE(*other_store.TryLockNode("n2"));
  // Released when the holding session ends (its backend exits shortly
  // after the connection closes).
  store_.reset();
  conn_.reset();
  bool taken = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!taken && std::chrono::steady_clock::now() < deadline) {
    auto r = other_store.TryLockNode("n1");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    taken = *r;
    if (!taken) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(taken);
}

TEST_F(StoreTest, ANewDeviceGetsResendRequestsForItsUsersUndeliveredRecentEnvelopes) {
  Enroll("alice", 1);  // phone
  Enroll("bob", 2);
  Enroll("bob", 5);    // bob's laptop
  auto conv = store().OpenConversation({"alice", "bob"});
  ASSERT_TRUE(conv.ok()) << conv.status().ToString();
  const std::string c = conv->conversation_id;
  const int64_t now = kT0;
  // 10: bob -> alice's phone and bob's laptop, undelivered.
  // 11: bob -> alice, delivered.  12: bob -> alice, queued 31 days ago.
  // 13: alice's phone -> bob's devices; 14: bob's laptop -> alice and bob.
  auto stored = store().IngestBatch({Item(10, c, "bob", 2, now, {1, 5}), Item(11, c, "bob", 2, now, {1}),
                                     Item(12, c, "bob", 2, now, {1}), Item(13, c, "alice", 1, now, {2, 5}),
                                     Item(14, c, "bob", 5, now, {1, 2})});
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  ASSERT_TRUE(store().AckDeliveries(Id(1), {(*stored)[1].deliveries[0].second}).ok());
  ASSERT_TRUE(conn().Execute("UPDATE deliveries SET created_at = now() - interval '31 days'"
                             " WHERE envelope_id = " + std::to_string((*stored)[2].envelope_id))
                  .ok());

  // alice's tablet: 10 from bob's phone, 14 from bob's laptop; not the
  // delivered 11, the expired 12, nor 13, which was not queued for alice.
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  RegisterOutcome outcome;
  ASSERT_TRUE(store().RegisterDevice("alice", *code, MasterOf("alice"), Device("alice", 3),
                                     [] { return Result<Bytes>(CertificateOf(3)); }, &outcome)
                  .ok());
  EXPECT_EQ(outcome.resend_requests, 2);
  EXPECT_EQ(outcome.resend_senders, (std::vector<Bytes>{Id(2), Id(5)}));
  auto from_phone = store().OpenResendRequests(Id(2), 0, 10);
  ASSERT_TRUE(from_phone.ok()) << from_phone.status().ToString();
  ASSERT_EQ(from_phone->size(), 1u);
  EXPECT_EQ((*from_phone)[0].message_id, Id(10));
  EXPECT_EQ((*from_phone)[0].conversation_id, c);
  EXPECT_EQ((*from_phone)[0].target.device_id, Id(3));
  EXPECT_EQ((*from_phone)[0].target.user, "alice");
  EXPECT_EQ((*from_phone)[0].target.certificate, CertificateOf(3));
  EXPECT_EQ(store().OpenResendRequests(Id(5), 0, 10)->size(), 1u);
  EXPECT_TRUE(store().OpenResendRequests(Id(1), 0, 10)->empty());

  // bob's third device: 13 from alice's phone, and 10 and 14, which were
  // queued for bob's laptop and sent by his other devices; 14 not by itself.
  code = store().IssueEnrollmentCode("bob", kHour);
  ASSERT_TRUE(code.ok());
  RegisterOutcome bobs;
  ASSERT_TRUE(store().RegisterDevice("bob", *code, MasterOf("bob"), Device("bob", 6),
                                     [] { return Result<Bytes>(CertificateOf(6)); }, &bobs)
                  .ok());
  EXPECT_EQ(bobs.resend_requests, 3);
  auto to_six = store().OpenResendRequests(Id(1), 0, 10);
  ASSERT_EQ(to_six->size(), 1u);
  EXPECT_EQ((*to_six)[0].message_id, Id(13));
  EXPECT_EQ((*to_six)[0].target.device_id, Id(6));

  // Requests for one message; the cursor skips what was sent.
  auto for_ten = store().OpenResendRequestsFor(Id(2), Id(10));
  ASSERT_TRUE(for_ten.ok());
  ASSERT_EQ(for_ten->size(), 2u);  // alice's tablet and bob's third device
  const int64_t first = (*for_ten)[0].request_id;
  EXPECT_EQ(store().OpenResendRequests(Id(2), first, 10)->size(), 1u);
  EXPECT_TRUE(store().OpenResendRequestsFor(Id(5), Id(10))->empty());

  // Only the sender device closes its requests, once.
  EXPECT_EQ(*store().CloseResendRequests(Id(5), {first}), 0);
  EXPECT_EQ(*store().CloseResendRequests(Id(2), {first, 999999}), 1);
  EXPECT_EQ(*store().CloseResendRequests(Id(2), {first}), 0);
  EXPECT_EQ(store().OpenResendRequestsFor(Id(2), Id(10))->size(), 1u);
  // Expired requests are not offered.
  EXPECT_TRUE(store().OpenResendRequests(Id(2), 0, 10, /*ttl_ms=*/0)->empty());
  EXPECT_TRUE(Holds("EXISTS (SELECT 1 FROM audit_events WHERE action = 'device.register'"
                    " AND detail::text LIKE '%\"resend_requests\":3%')"));
}

}  // namespace
}  // namespace holdfast::archive
