// The one YAML configuration file shared by holdfast-gateway and
// holdfast-admin. Every key has a default; deploy/holdfast.yaml documents
// them all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "holdfast/base/status.h"

namespace holdfast::gateway {

struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port; see ports_file
};

struct Config {
  std::string org = "Holdfast Demo Org";
  std::string state_dir = "/var/lib/holdfast";

  struct {
    std::string conninfo = "host=127.0.0.1 port=55432 dbname=holdfast user=holdfast";
    int workers = 4;            // connections for request handling
    int ingest_batch_max = 512; // envelopes per group commit
    // Envelopes waiting for group commit above which sessions stop reading
    // new frames until the queue is back under half of it.
    int ingest_queue_max = 4096;
  } database;

  struct {
    std::string module = "/usr/lib/softhsm/libsofthsm2.so";
    std::string token_label = "holdfast";
    std::string pin_file;       // default: <state_dir>/hsm/user.pin
    std::string so_pin_file;    // default: <state_dir>/hsm/so.pin; only `hsm init-token` reads it
    // The token holding the enrollment key, the only one the gateway logs in to.
    std::string enrollment_token_label = "holdfast-enrollment";
    std::string enrollment_pin_file;  // default: <state_dir>/hsm/enrollment.pin
    std::string softhsm2_conf;  // exported as SOFTHSM2_CONF when set
    // PKCS#11 sessions each process keeps per token for concurrent calls.
    int sessions = 4;
    // Other PIN sources, never the command line. A *_pin_credential names a
    // systemd credential, read from $CREDENTIALS_DIRECTORY/<name>; a
    // *_pin_env names an environment variable. First set wins: credential,
    // environment, then the *_pin_file.
    std::string pin_credential;
    std::string pin_env;
    std::string enrollment_pin_credential;
    std::string enrollment_pin_env;
  } hsm;

  struct {
    Endpoint listen{"127.0.0.1", 8443};
    // Names this process among the gateways sharing the database:
    // [A-Za-z0-9._-]{1,64}, unique (a second process with the same id
    // refuses to start). Default: <hostname>-<listen port>.
    std::string node_id;
    std::string tls_cert;       // default: <state_dir>/tls/gateway.pem
    std::string tls_key;        // default: <state_dir>/tls/gateway.key
    uint32_t max_frame_bytes = 1 << 20;
    // A submitted envelope's sent_at may differ this much from the
    // gateway's clock; further off is refused (clock_skew).
    uint32_t max_clock_skew_seconds = 300;
    // Failed enrollments (wrong code, password or group) a user name, and a
    // source address, may have per minute before further attempts are
    // refused (rate_limited). Token buckets in memory, so per process.
    uint32_t enrollment_failures_per_user = 5;
    uint32_t enrollment_failures_per_ip = 20;
    std::string archive_notice =
        "Messages in this conversation are end-to-end encrypted to its members and to the "
        "organisation's archive. The archive can only be opened under the compliance policy, "
        "with approval by several people, and every access is recorded.";
  } gateway;

  struct {
    Endpoint listen{"127.0.0.1", 9443};
    std::string tls_cert;       // default: same as the gateway's
    std::string tls_key;
  } admin;

  struct {
    uint32_t epoch_days = 31;   // validity of an archive epoch certificate
    // `holdfast-admin epoch rotate-if-due` certifies the next epoch this many
    // days before the newest one ends (0: only `epoch rotate` creates epochs).
    uint32_t rotate_ahead_days = 7;
    // Validity of the enrollment key certificate `holdfast-admin init` issues.
    uint32_t enrollment_key_days = 730;
    // Sent to clients at login: how often devices replace their signed
    // prekey, and how long they keep a replaced private prekey (at least the
    // delivery queue's lifetime, so queued messages still open).
    uint32_t prekey_rotation_days = 7;
    uint32_t prekey_grace_days = 35;
  } keys;

  // Directory (LDAP/AD) sign-in for device enrollment. Sessions are always
  // authenticated by the device key, never by a password.
  struct Directory {
    // local: enrollment codes only; directory: passwords only; both.
    std::string mode = "local";
    std::string url;              // ldaps://host[:port] or ldap://host[:port] with start_tls
    bool start_tls = false;
    std::string ca_file;          // trust anchors for the directory's certificate; required
    // Either a DN template with {user} (RFC 4514-escaped) ...
    std::string bind_dn_template;
    // ... or a search for the user's entry, as a service account, with
    // {user} RFC 4515-escaped in the filter.
    std::string search_base;
    std::string search_filter;
    std::string bind_dn;
    std::string bind_password_file;
    std::string display_name_attribute = "displayName";
    // group_search: (&(objectClass=groupOfNames)(member=<user DN>)) on each
    // mapped group; member_of: the user entry's memberOf values (AD).
    std::string membership = "group_search";
    // Group DNs whose members get each permission.
    std::vector<std::string> enroll_groups;
    std::vector<std::string> create_groups_groups;
    uint32_t timeout_seconds = 5;  // network and per-operation
    int threads = 2;               // blocking LDAP calls run here, never on the I/O thread

    bool enabled() const { return mode != "local"; }
    bool codes_allowed() const { return mode != "directory"; }
  } directory;
  struct {
    // A delivery not acknowledged within this many days expires: it is no
    // longer offered (the envelope stays archived). At most
    // keys.prekey_grace_days, so every message still offered opens.
    uint32_t queue_ttl_days = 30;
  } delivery;

  std::string policy_file;      // default: <state_dir>/policy.yaml
  std::string export_dir;       // default: <state_dir>/exports
  std::string ports_file;       // if set, the bound ports are written here as JSON

  // Loads a file; unknown keys are an error naming the key and line.
  static Result<Config> Load(const std::string& path);
  static Result<Config> Parse(const std::string& yaml, const std::string& source_name);
};

// Exports what the configuration asks of the process environment
// (SOFTHSM2_CONF). Call once from main, before any thread starts: setenv
// is not thread-safe.
void ApplyProcessEnvironment(const Config& config);

// Whether `id` is a valid gateway.node_id.
bool ValidNodeId(const std::string& id);
// The default node id: the host name and the client listen port, with
// characters outside the node id alphabet replaced by '-'.
std::string DefaultNodeId(uint16_t listen_port);

// "host:port" -> Endpoint.
Result<Endpoint> ParseEndpoint(const std::string& text);

}  // namespace holdfast::gateway
