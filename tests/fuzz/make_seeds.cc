// Writes the seed corpora of the fuzz targets:
//   fuzz_make_seeds <dir>        (normally tests/fuzz/corpus)
// Envelopes, prekeys and certificates are sealed to and signed by the fixed
// keys of fuzz_keys.h, so every seed passes the cryptographic checks of its
// harness. Sealing draws fresh randomness: rerunning rewrites the binary
// seeds with different but equally valid bytes.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_keys.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/hpke.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"

namespace holdfast::protocol {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fuzz_make_seeds: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what + ": " + r.status().ToString());
  return std::move(r).value();
}

class Writer {
 public:
  explicit Writer(fs::path root) : root_(std::move(root)) {}

  void Put(const std::string& target, const std::string& name, std::string_view bytes) {
    const fs::path dir = root_ / target;
    fs::create_directories(dir);
    std::ofstream out(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) Die("cannot write " + (dir / ("seed-" + name)).string());
    total_ += bytes.size();
  }
  void Put(const std::string& target, const std::string& name, ByteView bytes) {
    Put(target, name, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  size_t total() const { return total_; }

 private:
  fs::path root_;
  size_t total_ = 0;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// ------------------------------------------------------------- envelopes

Recipient Other(int i) {
  auto identity = Must(Ed25519FromSeed(Sha256(AsBytes("other identity " + std::to_string(i)))),
                       "other identity");
  auto prekey = Must(hpke::DeriveKeyPair(hpke::KemId::kX25519HkdfSha256,
                                         Sha256(AsBytes("other prekey " + std::to_string(i)))),
                     "other prekey");
  return {"user" + std::to_string(i), DeviceIdFor(identity.public_key), prekey.public_key};
}

SealRequest Request(std::string text, bool include_me, int others) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  SealRequest r;
  r.message_id = Sha256(AsBytes("message " + text));
  r.message_id.resize(kMessageIdSize);
  r.conversation_id = "conv-7f3a";
  r.sender_user = "alice";
  r.sent_at_ms = fuzz::kNowMs;
  r.epoch_id = fuzz::kEpochId;
  r.archive_public = k.archive.public_key;
  if (include_me) r.recipients.push_back({"bob", k.recipient_device, k.recipient_prekey.public_key});
  for (int i = 0; i < others; ++i) r.recipients.push_back(Other(i));
  r.text = std::move(text);
  return r;
}

wire::Envelope Seal(const SealRequest& r) {
  return Must(SealMessage(r, fuzz::Keys().sender.private_key.view()), "seal");
}

void Envelopes(Writer& w, std::vector<wire::Envelope>& keep) {
  struct Case {
    const char* name;
    std::string text;
    bool include_me;
    int others;
  };
  const std::vector<Case> cases = {
      {"to-me", "the quarterly numbers are in", true, 0},
      {"to-me-and-others", "lunch at noon? \xF0\x9F\x8D\x9C", true, 3},
      {"not-for-me", "not for the fuzzing device", false, 2},
      {"empty-text", "", true, 1},
      {"long-text", std::string(1500, 'x'), true, 0},
  };
  for (const Case& c : cases) {
    wire::Envelope e = Seal(Request(c.text, c.include_me, c.others));
    w.Put("fuzz_envelope", c.name, e.SerializeAsString());
    keep.push_back(e);
  }
  // A valid structure signed by a key that is not the sender's.
  wire::Envelope forged = keep.front();
  auto other = Must(Ed25519FromSeed(Sha256(AsBytes("forger"))), "forger");
  forged.set_signature(AsString(Must(
      Ed25519Sign(other.private_key.view(),
                  Concat({AsBytes(labels::kEnvelopeSig), AsBytes(forged.content())})),
      "forge")));
  w.Put("fuzz_envelope", "forged-signature", forged.SerializeAsString());
}

// ---------------------------------------------------------------- frames

constexpr int64_t kDay = fuzz::kDayMs;

// A registered device: prekey signed by its identity, certificate signed by
// the fixed master key and countersigned by the fixed enrollment key.
wire::DeviceInfo DeviceOf(const Ed25519KeyPair& identity, const std::string& user,
                          ByteView prekey_public) {
  wire::DeviceInfo d;
  d.set_user(user);
  d.set_device_id(AsString(DeviceIdFor(identity.public_key)));
  d.set_identity_key(AsString(identity.public_key));
  *d.mutable_prekey() =
      Must(SignPrekey(identity.private_key.view(), prekey_public, fuzz::kNowMs - 1000), "prekey");
  *d.mutable_certificate() =
      fuzz::CertifyDevice(user, identity.public_key, fuzz::kNowMs - 20 * kDay);
  return d;
}

wire::DeviceInfo Bob() {
  const fuzz::FixedKeys& k = fuzz::Keys();
  return DeviceOf(k.recipient, "bob", k.recipient_prekey.public_key);
}

wire::DeviceInfo Alice() {
  const fuzz::FixedKeys& k = fuzz::Keys();
  return DeviceOf(k.sender, "alice", k.sender_prekey.public_key);
}

wire::DeviceInfo Carol() {
  auto identity = Must(Ed25519FromSeed(Sha256(AsBytes("holdfast fuzz carol identity"))), "carol");
  auto prekey = Must(hpke::DeriveKeyPair(hpke::KemId::kX25519HkdfSha256,
                                         Sha256(AsBytes("holdfast fuzz carol prekey"))),
                     "carol prekey");
  return DeviceOf(identity, "carol", prekey.public_key);
}

wire::EpochCertificate Epoch(int64_t not_before_ms, int64_t not_after_ms) {
  wire::EpochCertificateBody body;
  body.set_version(labels::kProtocolVersion);
  body.set_epoch_id(fuzz::kEpochId);
  body.set_public_key(AsString(fuzz::Keys().archive.public_key));
  body.set_not_before_ms(not_before_ms);
  body.set_not_after_ms(not_after_ms);
  body.set_org(fuzz::kOrg);
  wire::EpochCertificate cert;
  cert.set_body(body.SerializeAsString());
  cert.set_signature(AsString(fuzz::OrgRootSign(EpochCertificateSigningInput(AsBytes(cert.body())))));
  return cert;
}

void Frames(Writer& w, const std::vector<wire::Envelope>& envelopes) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  const std::string t = "fuzz_client_frame";
  const wire::DeviceInfo me = Bob();
  const wire::DeviceInfo sender = Alice();

  {
    wire::ClientFrame f;
    f.set_request_id(1);
    auto* r = f.mutable_register_();
    r->set_user("bob");
    r->set_enrollment_code("7KQ2-MX9P-44TD");
    r->set_identity_key(me.identity_key());
    *r->mutable_prekey() = me.prekey();
    // As a device sends it: master-signed, not countersigned.
    *r->mutable_certificate() = Must(
        CertifyDevice(k.master.private_key.view(), "bob", k.recipient.public_key, fuzz::kNowMs),
        "certify");
    w.Put(t, "register", f.SerializeAsString());
  }
  {
    wire::ClientFrame f;
    f.set_request_id(2);
    f.mutable_hello()->set_device_id(me.device_id());
    w.Put(t, "hello", f.SerializeAsString());
  }
  {
    wire::ClientFrame f;
    f.set_request_id(3);
    const Bytes nonce = Sha256(AsBytes("nonce"));
    f.mutable_authenticate()->set_signature(AsString(Must(
        Ed25519Sign(k.recipient.private_key.view(), AuthTranscript(nonce, k.recipient_device)),
        "auth")));
    w.Put(t, "authenticate", f.SerializeAsString());
  }
  {
    wire::ClientFrame f;
    f.set_request_id(4);
    f.mutable_open_conversation()->add_members("alice");
    f.mutable_open_conversation()->add_members("carol");
    w.Put(t, "open-conversation", f.SerializeAsString());
  }
  for (size_t i = 0; i < 2 && i < envelopes.size(); ++i) {
    wire::ClientFrame f;
    f.set_request_id(5 + i);
    *f.mutable_submit()->mutable_envelope() = envelopes[i];
    w.Put(t, "submit-" + std::to_string(i), f.SerializeAsString());
  }
  {
    wire::ClientFrame f;
    f.set_request_id(8);
    for (uint64_t id : {17u, 18u, 300u}) f.mutable_delivery_ack()->add_delivery_ids(id);
    w.Put(t, "delivery-ack", f.SerializeAsString());
  }

  {
    wire::ClientFrame f;
    f.set_request_id(9);
    auto* g = f.mutable_create_group();
    g->set_title("ops \xE2\x80\x94 on call");
    g->add_members("alice");
    g->add_members("carol");
    w.Put(t, "create-group", f.SerializeAsString());
  }
  {
    wire::ClientFrame f;
    f.set_request_id(10);
    auto* c = f.mutable_change_members();
    c->set_conversation_id("grp-ops");
    c->add_add("dave");
    c->add_remove("carol");
    w.Put(t, "change-members", f.SerializeAsString());
  }
  {
    wire::ClientFrame f;
    f.set_request_id(11);
    f.mutable_get_conversation()->set_conversation_id("grp-ops");
    w.Put(t, "get-conversation", f.SerializeAsString());
  }
  {
    wire::ClientFrame f;
    f.set_request_id(12);
    auto prekey = Must(hpke::DeriveKeyPair(hpke::KemId::kX25519HkdfSha256,
                                           Sha256(AsBytes("holdfast fuzz recipient prekey 2"))),
                       "prekey 2");
    *f.mutable_update_prekey()->mutable_prekey() =
        Must(SignPrekey(k.recipient.private_key.view(), prekey.public_key, fuzz::kNowMs), "sign");
    w.Put(t, "update-prekey", f.SerializeAsString());
  }
  {
    wire::ClientFrame f;
    f.set_request_id(13);
    auto* r = f.mutable_report_delivery();
    r->set_delivery_id(17);
    r->set_message_id(Must(ParseEnvelope(envelopes.front()), "parse").header.message_id());
    r->set_reason("archive_capsule_mismatch");
    r->set_detail("archive capsule mismatch: recomputed capsule differs \xC3\xA9");
    w.Put(t, "report-delivery", f.SerializeAsString());
  }

  const int64_t day = kDay;
  {
    wire::ServerFrame f;
    f.set_request_id(4);
    auto* c = f.mutable_conversation();
    c->set_conversation_id("conv-7f3a");
    c->add_members("alice");
    c->add_members("bob");
    *c->add_devices() = me;
    *c->add_devices() = sender;
    *c->mutable_epoch() = Epoch(fuzz::kNowMs - day, fuzz::kNowMs + 30 * day);
    c->set_archive_notice("Messages in this conversation are archived.");
    w.Put(t, "server-conversation", f.SerializeAsString());
  }
  {
    wire::ServerFrame f;
    auto* d = f.mutable_deliver();
    d->set_delivery_id(17);
    *d->mutable_envelope() = envelopes.front();
    *d->mutable_sender() = sender;
    *d->mutable_epoch() = Epoch(fuzz::kNowMs - 40 * day, fuzz::kNowMs - 9 * day);  // expired
    d->set_archive_notice("Messages in this conversation are archived.");
    w.Put(t, "server-deliver", f.SerializeAsString());
  }
}

// ----------------------------------------------------- device certificates

// fuzz_device_cert: one byte choosing the message (see the harness), then it.
void DeviceCerts(Writer& w) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  const std::string t = "fuzz_device_cert";
  auto put = [&](char kind, const std::string& name, const std::string& bytes) {
    w.Put(t, name, std::string(1, kind) + bytes);
  };
  put(0, "device-bob", Bob().SerializeAsString());
  put(0, "device-alice", Alice().SerializeAsString());
  wire::DeviceInfo uncertified = Bob();
  uncertified.clear_certificate();
  put(0, "device-uncertified", uncertified.SerializeAsString());

  put(1, "certificate", fuzz::CertifyDevice("bob", k.recipient.public_key, fuzz::kNowMs)
                            .SerializeAsString());
  put(1, "certificate-request",
      Must(CertifyDevice(k.master.private_key.view(), "alice", k.sender.public_key, fuzz::kNowMs),
           "certify")
          .SerializeAsString());
  // Issued before the enrollment key's window opened.
  put(1, "certificate-before-window",
      fuzz::CertifyDevice("bob", k.recipient.public_key, fuzz::kNowMs - 400 * kDay)
          .SerializeAsString());

  put(3, "certificate-body",
      fuzz::CertifyDevice("bob", k.recipient.public_key, fuzz::kNowMs).body());
  put(3, "certificate-body-alice",
      fuzz::CertifyDevice("alice", k.sender.public_key, fuzz::kNowMs - 20 * kDay).body());

  put(2, "enrollment-key", fuzz::EnrollmentCertificate().SerializeAsString());
  put(4, "enrollment-key-body", fuzz::EnrollmentCertificate().body());
  wire::EnrollmentKeyCertificate expired;
  expired.set_body(MakeEnrollmentKeyCertificateBody(k.enrollment.public_key,
                                                    fuzz::kNowMs - 400 * kDay,
                                                    fuzz::kNowMs - 10 * kDay, fuzz::kOrg)
                       .SerializeAsString());
  expired.set_signature(
      AsString(fuzz::OrgRootSign(EnrollmentKeyCertificateSigningInput(AsBytes(expired.body())))));
  put(2, "enrollment-key-expired", expired.SerializeAsString());
}

// ------------------------------------------------------------ client state

// fuzz_client_state: server frames for the fixed device "bob", which has
// seen conv-7f3a (alice, bob) and grp-ops at membership version 1.
void ClientState(Writer& w, const std::vector<wire::Envelope>& envelopes) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  const std::string t = "fuzz_client_state";
  const wire::EpochCertificate epoch = Epoch(fuzz::kNowMs - 30 * kDay, fuzz::kNowMs + 30 * kDay);
  const std::string notice = "Messages in this conversation are archived.";

  wire::ServerFrame direct;
  direct.set_request_id(4);
  {
    auto* c = direct.mutable_conversation();
    c->set_conversation_id("conv-7f3a");
    c->add_members("alice");
    c->add_members("bob");
    *c->add_devices() = Bob();
    *c->add_devices() = Alice();
    *c->mutable_epoch() = epoch;
    c->set_archive_notice(notice);
  }
  w.Put(t, "conversation", direct.SerializeAsString());
  {
    // A conversation never seen, with a user never seen.
    wire::ServerFrame f = direct;
    auto* c = f.mutable_conversation();
    c->set_conversation_id("conv-91c0");
    c->add_members("carol");
    *c->add_devices() = Carol();
    w.Put(t, "conversation-new", f.SerializeAsString());
  }
  {
    // alice's device is gone.
    wire::ServerFrame f = direct;
    f.mutable_conversation()->mutable_devices()->RemoveLast();
    w.Put(t, "conversation-device-removed", f.SerializeAsString());
  }
  {
    wire::ServerFrame f = direct;
    auto* c = f.mutable_conversation();
    c->set_conversation_id("grp-ops");
    c->set_group(true);
    c->set_title("ops");
    c->set_created_by("alice");
    c->set_membership_version(2);
    c->add_members("carol");
    *c->add_devices() = Carol();
    auto* change = c->add_changes();
    change->set_version(2);
    change->set_actor("alice");
    change->add_added("carol");
    change->set_at_ms(fuzz::kNowMs - kDay);
    w.Put(t, "group-member-added", f.SerializeAsString());
  }

  wire::ServerFrame deliver;
  {
    auto* d = deliver.mutable_deliver();
    d->set_delivery_id(17);
    *d->mutable_envelope() = envelopes.front();  // alice to bob
    *d->mutable_sender() = Alice();
    *d->mutable_epoch() = epoch;
    d->set_archive_notice(notice);
  }
  w.Put(t, "deliver", deliver.SerializeAsString());
  {
    // A dishonest sender: the archive capsule seals another CEK.
    wire::ServerFrame f = deliver;
    wire::Envelope* e = f.mutable_deliver()->mutable_envelope();
    ParsedEnvelope parsed = Must(ParseEnvelope(*e), "parse");
    *parsed.content.mutable_archive() =
        Must(ComputeArchiveCapsule(Sha256(AsBytes("another cek")),
                                   AsBytes(parsed.header.message_id()), fuzz::kEpochId,
                                   k.archive.public_key, AsBytes(parsed.content.header())),
             "archive capsule");
    e->set_content(parsed.content.SerializeAsString());
    e->set_signature(AsString(
        fuzz::SenderSign(Concat({AsBytes(labels::kEnvelopeSig), AsBytes(e->content())}))));
    w.Put(t, "deliver-archive-mismatch", f.SerializeAsString());
  }
  {
    wire::ServerFrame f;
    f.set_request_id(1);
    auto* r = f.mutable_registered();
    r->set_device_id(AsString(k.recipient_device));
    r->set_org_root_key(AsString(k.org_root.public_key));
    r->set_org(fuzz::kOrg);
    *r->mutable_certificate() = fuzz::CertifyDevice("bob", k.recipient.public_key, fuzz::kNowMs);
    w.Put(t, "registered", f.SerializeAsString());
  }
  {
    wire::ServerFrame f;
    f.mutable_challenge()->set_nonce(AsString(Sha256(AsBytes("nonce"))));
    w.Put(t, "challenge", f.SerializeAsString());
  }
  {
    wire::ServerFrame f;
    f.set_request_id(12);
    f.mutable_prekey_updated()->set_created_at_ms(fuzz::kNowMs);
    w.Put(t, "prekey-updated", f.SerializeAsString());
  }
}

// ------------------------------------------------------------------ hpke

void Hpke(Writer& w) {
  const fuzz::FixedKeys& k = fuzz::Keys();
  // suite byte -> name; see the layout in fuzz_hpke.cc.
  const std::vector<std::pair<uint8_t, std::string>> suites = {
      {0x00, "x25519-chacha"},   // the device suite
      {0x05, "p256-aes256"},     // the archive suite
      {0x02, "x25519-aes128"},
      {0x03, "p256-aes128"},
      {0x07, "p256-export"},
  };
  const std::string info = "holdfast/v1 device-capsule";
  const std::string aad = "header bytes";
  for (const auto& [suite_byte, suite_name] : suites) {
    const bool p256 = suite_byte & 1;
    const hpke::KemId kem = p256 ? hpke::KemId::kP256HkdfSha256 : hpke::KemId::kX25519HkdfSha256;
    constexpr hpke::AeadId kAeads[] = {hpke::AeadId::kChaCha20Poly1305, hpke::AeadId::kAes128Gcm,
                                       hpke::AeadId::kAes256Gcm, hpke::AeadId::kExportOnly};
    const hpke::Suite suite{kem, hpke::KdfId::kHkdfSha256, kAeads[(suite_byte >> 1) & 3]};
    const Bytes& recipient = p256 ? k.archive.public_key : k.recipient_prekey.public_key;
    auto ephemeral = Must(hpke::DeriveKeyPair(kem, Sha256(AsBytes("ephemeral " + suite_name))),
                          "ephemeral");
    auto sender = Must(hpke::SetupBaseSenderWithEphemeral(suite, ephemeral, recipient,
                                                          AsBytes(info)),
                       "setup");
    std::vector<Bytes> cts;
    if (suite.aead != hpke::AeadId::kExportOnly) {
      for (const char* pt : {"32-byte content encryption key!!", "second", ""}) {
        cts.push_back(Must(sender.Seal(AsBytes(aad), AsBytes(std::string_view(pt))), "seal"));
      }
    }
    const Bytes dh =
        Must(p256 ? EcdhP256(k.archive.private_key.view(), sender.enc())
                  : X25519(k.recipient_prekey.private_key.view(), sender.enc()),
             "dh")
            .Reveal();
    for (uint8_t mode = 0; mode < 4; ++mode) {
      if (mode == 0 && cts.empty()) continue;
      std::string in;
      in.push_back(static_cast<char>(suite_byte));
      in.push_back(static_cast<char>(mode));
      in.push_back(static_cast<char>(sender.enc().size()));
      in.push_back(static_cast<char>(info.size()));
      in.push_back(static_cast<char>(aad.size()));
      in += AsString(sender.enc()) + info + aad;
      if (mode == 3) {
        in.push_back(static_cast<char>(dh.size()));
        in += AsString(dh);
      }
      if (mode == 0) {
        in += AsString(cts.front());
      } else {
        for (const Bytes& ct : cts) {
          in.push_back(static_cast<char>(ct.size()));
          in += AsString(ct);
        }
      }
      w.Put("fuzz_hpke", suite_name + "-mode" + std::to_string(mode), in);
    }
  }
}

// ------------------------------------------------------------------ YAML

void Policies(Writer& w, const fs::path& root) {
  const std::string t = "fuzz_policy";
  w.Put(t, "deploy", ReadFile(root / "deploy/policy.yaml"));
  w.Put(t, "two-purposes", R"(version: 1
disclosure:
  legal_hold_export:
    require_open_case: true
    require_hold_covering_scope: true
    require_legal_reference: true
    max_custodians: 25
    requester_may_approve: false
    approvals:
      - role: compliance_officer
        count: 2
  supervision_review:
    require_open_case: false
    require_hold_covering_scope: false
    require_legal_reference: false
    requester_roles: [supervisor]
    approvals:
      - role: supervisor
        count: 1
)");
  w.Put(t, "flow-and-defaults",
        "{version: 1, disclosure: {lawful_request: {}, user_history_restore: "
        "{require_open_case: false, requester_may_approve: true, approvals: "
        "[{role: legal, count: 1}, {role: compliance_officer, count: 3}]}}}\n");
  w.Put(t, "anchors", R"(version: 1
disclosure:
  legal_hold_export: &strict
    max_custodians: 3
    approvals:
      - {role: compliance_officer, count: 2}
  lawful_request: *strict
)");
  w.Put(t, "no-rules", "version: 1\n");
}

void Configs(Writer& w, const fs::path& root) {
  const std::string t = "fuzz_config";
  w.Put(t, "deploy", ReadFile(root / "deploy/holdfast.yaml"));
  w.Put(t, "minimal", "org: Example\nstate_dir: /srv/holdfast\n");
  w.Put(t, "endpoints", R"(gateway:
  listen: "[::1]:0"
  max_frame_bytes: 65536
admin:
  listen: localhost:9443
database:
  workers: 8
  ingest_batch_max: 1
keys: {epoch_days: 7}
ports_file: /tmp/ports.json
)");
  w.Put(t, "endpoint-only", "0.0.0.0:8443");
}

}  // namespace
}  // namespace holdfast::protocol

int main(int argc, char** argv) {
  using namespace holdfast::protocol;
  if (argc != 2) Die("usage: fuzz_make_seeds <corpus dir>");
  Writer w{fs::path(argv[1])};
  std::vector<holdfast::protocol::wire::Envelope> envelopes;
  Envelopes(w, envelopes);
  Frames(w, envelopes);
  DeviceCerts(w);
  ClientState(w, envelopes);
  Hpke(w);
  Policies(w, HOLDFAST_ROOT);
  Configs(w, HOLDFAST_ROOT);
  std::printf("wrote %zu bytes of seeds under %s\n", w.total(), argv[1]);
  return 0;
}
