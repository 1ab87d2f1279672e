#include "holdfast/archive/store.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "archive_fixture.h"

namespace holdfast::archive {
namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kT0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

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

  // Creates the user and enrolls one device with the given tag.
  void Enroll(const std::string& user, uint8_t tag) {
    auto exists = store().UserExists(user);
    ASSERT_TRUE(exists.ok());
    if (!*exists) {
      ASSERT_TRUE(store().CreateUser(user, user).ok());
    }
    auto code = store().IssueEnrollmentCode(user, kHour);
    ASSERT_TRUE(code.ok()) << code.status().ToString();
    Status s = store().RegisterDevice(user, *code, Device(user, tag));
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
  ASSERT_TRUE(store().RegisterDevice("alice", *code, d).ok());

  auto got = store().GetDevice(d.device_id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->user, "alice");
  EXPECT_EQ(got->device_id, d.device_id);
  EXPECT_EQ(got->identity_key, d.identity_key);
  EXPECT_EQ(got->signed_prekey, d.signed_prekey);
  EXPECT_EQ(got->registered_at_ms, kT0);
  EXPECT_EQ(store().GetDevice(Id(99)).status().code(), Code::kNotFound);
}

TEST_F(StoreTest, CodeIsSingleUse) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(store().RegisterDevice("alice", *code, Device("alice", 1)).ok());
  EXPECT_EQ(store().RegisterDevice("alice", *code, Device("alice", 2)).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(store().GetDevice(Id(2)).status().code(), Code::kNotFound);
}

TEST_F(StoreTest, WrongCodeOrWrongUserIsRefused) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  ASSERT_TRUE(store().CreateUser("bob", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(store().RegisterDevice("alice", "AAAAA-AAAAA-AAAAA-AAAAA", Device("alice", 1)).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(store().RegisterDevice("bob", *code, Device("bob", 1)).code(),
            Code::kPermissionDenied);
  // Case and separators do not matter.
  std::string typed;
  for (char c : *code) {
    if (c != '-') typed.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  EXPECT_TRUE(store().RegisterDevice("alice", typed, Device("alice", 1)).ok());
}

TEST_F(StoreTest, ExpiredCodeIsRefused) {
  ASSERT_TRUE(store().CreateUser("alice", "").ok());
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  Sql("UPDATE enrollment_codes SET issued_at = now() - interval '2 hours',"
      " expires_at = now() - interval '1 second'");
  EXPECT_EQ(store().RegisterDevice("alice", *code, Device("alice", 1)).code(),
            Code::kPermissionDenied);
}

TEST_F(StoreTest, FailedRegistrationKeepsTheCode) {
  Enroll("alice", 1);
  auto code = store().IssueEnrollmentCode("alice", kHour);
  ASSERT_TRUE(code.ok());
  // Same device id again: refused, and the code is not consumed.
  EXPECT_EQ(store().RegisterDevice("alice", *code, Device("alice", 1)).code(),
            Code::kAlreadyExists);
  EXPECT_TRUE(store().RegisterDevice("alice", *code, Device("alice", 2)).ok());
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
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3)), 2u);

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
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3)), 2u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(1)), 2u);
}

TEST_F(StoreTest, DuplicateInsideOneBatch) {
  auto out = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2}),
                                  Item(1, "c_1", "alice", 1, kT0, {2, 3})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_FALSE((*out)[0].duplicate);
  EXPECT_TRUE((*out)[1].duplicate);
  EXPECT_EQ((*out)[1].envelope_id, (*out)[0].envelope_id);
  EXPECT_EQ(*store().CountEnvelopes(), 1u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3)), 0u);
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
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2)), 0u);
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
  EXPECT_EQ(*store().CountPendingDeliveries(Id(4)), 1000u);
}

TEST_F(StoreTest, PendingDeliveriesAndAcks) {
  auto out = store().IngestBatch({Item(1, "c_1", "alice", 1, kT0, {2, 3}),
                                  Item(2, "c_1", "alice", 1, kT0 + 1, {2}),
                                  Item(3, "c_1", "alice", 1, kT0 + 2, {2})});
  ASSERT_TRUE(out.ok());
  auto pending = store().PendingDeliveries(Id(2), 2);
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
  EXPECT_EQ(*store().CountPendingDeliveries(Id(2)), 1u);
  EXPECT_EQ(*store().CountPendingDeliveries(Id(3)), 1u);
  auto rest = store().PendingDeliveries(Id(2), 10);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].envelope, Bytes(2000, 3));
  EXPECT_TRUE(store().AckDeliveries(Id(2), {}).ok());
  EXPECT_EQ(store().PendingDeliveries(Id(2), 0).status().code(), Code::kInvalidArgument);
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

}  // namespace
}  // namespace holdfast::archive
