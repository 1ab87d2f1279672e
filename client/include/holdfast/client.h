/*
 * Holdfast client SDK: the stable C API an iOS or Android app embeds.
 *
 * The core is sans-I/O: no sockets, no files, no clock. The app moves bytes
 * to and from the gateway itself (docs/protocol.md, "Transport") and passes
 * the current time in. Inputs and outputs are serialised protobuf messages
 * of proto/holdfast.proto (package holdfast.wire.v1) unless stated.
 *
 * Conventions
 *  - Every function returns an hf_error; HF_OK is 0. After a failure,
 *    hf_last_error_message() describes it.
 *  - Objects are opaque handles freed with their *_free function, which
 *    takes the address of the handle, wipes the secrets, and sets the handle
 *    to NULL; freeing a NULL handle does nothing.
 *  - Byte outputs go to caller-owned buffers: pass out = NULL to learn the
 *    size in *out_len (HF_OK). With a buffer, *out_len is its capacity on
 *    entry and the bytes written on return; if it is too small the call
 *    returns HF_ERR_BUFFER_TOO_SMALL, writes nothing and sets *out_len to the
 *    size needed. Sizes depend only on the inputs and the handle's state, so
 *    asking twice is safe; outputs that contain fresh randomness (sealed
 *    messages, exported key stores) differ between the two calls.
 *  - Strings are NUL-terminated UTF-8 unless a length is given.
 *  - No C++ exception crosses this boundary.
 *  - A handle is not thread-safe; different handles may be used on
 *    different threads at once. hf_last_error_message() is per thread.
 *
 * WARNING: randomness. Key material is drawn from the hf_rng the caller
 * supplies (or OpenSSL's DRBG when it is NULL), so tests can pin keys:
 * hf_device_create draws 96 bytes (identity, prekey, master key),
 * hf_device_create_without_master 64 (identity, prekey), and
 * hf_device_begin_prekey_rotation 32 (the new prekey). Signatures are
 * deterministic (Ed25519), so register requests and device certificates
 * follow from the keys and now_ms. Every other random value (message ids,
 * content keys, HPKE ephemeral keys, key-store salts, nonces and store
 * keys) comes from OpenSSL's DRBG inside the protocol layer, which has no
 * injection point: sealed messages and exported key stores are never
 * reproducible. An hf_rng must return fresh, uniformly random bytes: keys
 * derived from repeated or guessable bytes are broken.
 */
#ifndef HOLDFAST_CLIENT_H_
#define HOLDFAST_CLIENT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HF_API_VERSION 2

typedef enum hf_error {
  HF_OK = 0,
  HF_ERR_INVALID_ARGUMENT = 1,   /* NULL where a value is needed; malformed or hostile input */
  HF_ERR_BUFFER_TOO_SMALL = 2,   /* *out_len now holds the size needed */
  HF_ERR_NOT_FOUND = 3,          /* e.g. a delivery holds no capsule for this device */
  HF_ERR_ALREADY_EXISTS = 4,     /* duplicate delivery; device already registered */
  HF_ERR_PERMISSION_DENIED = 5,  /* wrong passphrase or key; refused identity or root key */
  HF_ERR_FAILED_PRECONDITION = 6,/* state forbids it: not registered, no key store protection */
  HF_ERR_CRYPTO_FAILURE = 7,     /* signature, tag or archive capsule check failed; altered store */
  HF_ERR_RNG_FAILURE = 8,        /* the caller's hf_rng reported failure */
  HF_ERR_OUT_OF_MEMORY = 9,
  HF_ERR_INTERNAL = 10           /* broken invariant or unexpected library failure */
} hf_error;

/* A static English name for the code ("HF_ERR_BUFFER_TOO_SMALL: ..."). Never NULL. */
const char* hf_error_string(hf_error error);

/* Detail of the last failure on this thread; valid until the next hf_* call
 * on this thread. Never NULL (empty after success). */
const char* hf_last_error_message(void);

/* Caller-supplied randomness. fill writes len uniformly random bytes to out
 * and returns 0, or returns non-zero on failure. It must not throw or
 * longjmp. */
typedef struct hf_rng {
  void* context;
  int (*fill)(void* context, uint8_t* out, size_t len);
} hf_rng;

/* Argon2id cost for passphrase protection (RFC 9106). NULL means t = 3,
 * m = 65536 KiB (64 MiB), p = 1. Limits: 1 <= t <= 64, 1 <= p <= 16,
 * 8 * p <= m_kib <= 4 GiB. The values are stored in the key store, so
 * exporting again with higher ones raises them. */
typedef struct hf_kdf_params {
  uint32_t t_cost;
  uint32_t m_cost_kib;
  uint32_t parallelism;
} hf_kdf_params;

#define HF_STORE_KEY_SIZE 32
#define HF_MAX_WRAPPED_KEY_SIZE 4096

/* A platform keystore hook (iOS Keychain, Android Keystore): wraps and
 * unwraps the 32-byte key that encrypts the key store, typically with a
 * hardware-held key that never leaves the platform.
 *  - scheme: a name stored in the key store, 1-32 characters of [a-z0-9-],
 *    not "argon2id" or "insecure-plaintext".
 *  - wrap: writes the wrapped form of key to out (capacity
 *    HF_MAX_WRAPPED_KEY_SIZE) and its length to *out_len.
 *  - unwrap: recovers the key into key_out; return
 *    HF_ERR_PERMISSION_DENIED when it cannot (user not authenticated, key
 *    gone). Any non-HF_OK return is passed on.
 * The callbacks must not throw or longjmp. The wrapped bytes are stored in
 * the clear; the key store binds them into its associated data. */
typedef struct hf_key_wrapper {
  void* context;
  const char* scheme;
  hf_error (*wrap)(void* context, const uint8_t key[HF_STORE_KEY_SIZE], uint8_t* out,
                   size_t* out_len);
  hf_error (*unwrap)(void* context, const uint8_t* wrapped, size_t wrapped_len,
                     uint8_t key_out[HF_STORE_KEY_SIZE]);
} hf_key_wrapper;

/* ------------------------------------------------------------- devices */

typedef struct hf_device hf_device;

/* Generates an Ed25519 identity and a signed X25519 prekey (signed at
 * now_ms) for user, and the user master key that certifies devices: for a
 * user's first device. With rng, 96 bytes are drawn from it and the keys
 * are a deterministic function of them. *out receives the new handle. */
hf_error hf_device_create(const char* user, int64_t now_ms, const hf_rng* rng, hf_device** out);

/* The same without a master key, for a further device of a user: with rng,
 * 64 bytes are drawn. Before it can register it needs a certificate from a
 * device that holds the master key: send hf_device_identity_key to that
 * device, which calls hf_device_certify_new_device, and pass the result to
 * hf_device_use_certificate. */
hf_error hf_device_create_without_master(const char* user, int64_t now_ms, const hf_rng* rng,
                                         hf_device** out);

/* Wipes every secret the handle holds, frees it and sets *device to NULL.
 * device and *device may be NULL. */
void hf_device_free(hf_device** device);

/* Sets how hf_device_export protects the private keys: a fresh random store
 * key wrapped by Argon2id(passphrase) or by the platform wrapper. Runs
 * Argon2id once; later exports only re-seal. The passphrase is copied into
 * a buffer the library wipes; the caller wipes its own. The wrapper struct
 * is copied; its context must outlive the handle. */
hf_error hf_device_protect_with_passphrase(hf_device* device, const uint8_t* passphrase,
                                           size_t passphrase_len, const hf_kdf_params* params);
hf_error hf_device_protect_with_wrapper(hf_device* device, const hf_key_wrapper* wrapper);

/* The encrypted key store: the profile.json format of the reference client
 * (version 3), with the private keys sealed and every other field (the
 * device certificate, prekeys, contacts and known conversations included)
 * bound as associated data. HF_ERR_FAILED_PRECONDITION before
 * protect_with_*. Export again after every call that changes the handle's
 * state (registration, prekey rotation, observed conversations, opened
 * messages). */
hf_error hf_device_export(const hf_device* device, uint8_t* out, size_t* out_len);

/* Opens an exported key store. Wrong passphrase or key:
 * HF_ERR_PERMISSION_DENIED ("wrong passphrase"); an altered store:
 * HF_ERR_CRYPTO_FAILURE (or HF_ERR_PERMISSION_DENIED when the wrapping
 * fields themselves were altered: the two cannot be told apart); an
 * unencrypted store: HF_ERR_INVALID_ARGUMENT. The new handle keeps the
 * protection, so it can be exported again without the secret. */
hf_error hf_device_import_with_passphrase(const uint8_t* store, size_t store_len,
                                          const uint8_t* passphrase, size_t passphrase_len,
                                          hf_device** out);
hf_error hf_device_import_with_wrapper(const uint8_t* store, size_t store_len,
                                       const hf_key_wrapper* wrapper, hf_device** out);

/* The 16-byte device id, derived from the identity key (also before
 * registration: it is the id the gateway will assign). */
hf_error hf_device_id(const hf_device* device, uint8_t* out, size_t* out_len);
/* The user name, NUL-terminated; *out_len counts the NUL. */
hf_error hf_device_user(const hf_device* device, char* out, size_t* out_len);
/* 1 once hf_device_accept_registration succeeded, else 0 (also for NULL). */
int hf_device_is_registered(const hf_device* device);
/* The 32-byte Ed25519 identity public key. */
hf_error hf_device_identity_key(const hf_device* device, uint8_t* out, size_t* out_len);

/* --------------------------------------------------------- enrollment */

/* Pins the org root key (65-byte uncompressed P-256 point) learnt out of
 * band. Before registration it makes hf_device_accept_registration refuse a
 * gateway that presents another root (HF_ERR_PERMISSION_DENIED); afterwards
 * only the key already pinned is accepted (HF_ERR_FAILED_PRECONDITION). */
hf_error hf_device_set_org_root(hf_device* device, const uint8_t* org_root_key,
                                size_t org_root_key_len);

/* A RegisterRequest for the one-time enrollment code, with a device
 * certificate signed by the master key at now_ms (the gateway refuses one
 * outside its clock-skew window), or the one installed by
 * hf_device_use_certificate. HF_ERR_FAILED_PRECONDITION for a device with
 * neither; HF_ERR_ALREADY_EXISTS once registered. */
hf_error hf_device_register_request(const hf_device* device, const char* enrollment_code,
                                    int64_t now_ms, uint8_t* out, size_t* out_len);

/* Takes the gateway's RegisterResponse: checks the device id is the one
 * derived from our identity key, pins the org root key, and verifies the
 * countersigned device certificate under that root: it must name this
 * device, its user and its master key (HF_ERR_PERMISSION_DENIED otherwise;
 * a broken chain is HF_ERR_CRYPTO_FAILURE, an enrollment key certificate
 * not valid when the device was certified HF_ERR_FAILED_PRECONDITION).
 * server_url is recorded in the key store (may be ""). */
hf_error hf_device_accept_registration(hf_device* device, const uint8_t* response,
                                       size_t response_len, const char* server_url);

/* On a device that holds the master key: a DeviceCertificate, signed by the
 * master key at now_ms, naming identity_key (32 bytes, from
 * hf_device_identity_key on the new device) as a device of this user. The
 * new device must register within the gateway's clock-skew window of
 * now_ms. HF_ERR_FAILED_PRECONDITION without the master key. */
hf_error hf_device_certify_new_device(const hf_device* device, const uint8_t* identity_key,
                                      size_t identity_key_len, int64_t now_ms, uint8_t* out,
                                      size_t* out_len);

/* On a device made by hf_device_create_without_master, before registration:
 * installs the DeviceCertificate hf_device_certify_new_device made for it.
 * One for another user or identity key is HF_ERR_INVALID_ARGUMENT, a bad
 * master signature HF_ERR_CRYPTO_FAILURE; nothing is installed then. */
hf_error hf_device_use_certificate(hf_device* device, const uint8_t* certificate,
                                   size_t certificate_len);

/* -------------------------------------------------------------- login */

/* The Hello that opens a session. */
hf_error hf_device_hello(const hf_device* device, uint8_t* out, size_t* out_len);
/* Answers a Challenge with an Authenticate (Ed25519 over the auth
 * transcript). */
hf_error hf_device_answer_challenge(const hf_device* device, const uint8_t* challenge,
                                    size_t challenge_len, uint8_t* out, size_t* out_len);

/* ------------------------------------------------------------ prekeys */

/* 1 when the signed prekey is at least rotation_ms old at now_ms (0 or
 * less means the default, 7 days) and no rotation is pending, else 0 (also
 * for NULL). */
int hf_device_prekey_rotation_due(const hf_device* device, int64_t now_ms, int64_t rotation_ms);

/* Starts a prekey rotation on a registered device: a new X25519 prekey,
 * signed at now_ms (which must be later than the current prekey's time),
 * kept pending until the gateway confirms it. rng NULL means OpenSSL's
 * DRBG; otherwise 32 bytes are drawn from it. Writes a serialised
 * ClientFrame { request_id, update_prekey } to send. While a rotation is
 * pending every call, the size query included, writes the same prekey again
 * and draws nothing, so a lost answer is retried with the same frame.
 * Export the key store before sending: the pending prekey's private key
 * must survive a restart. */
hf_error hf_device_begin_prekey_rotation(hf_device* device, int64_t now_ms, const hf_rng* rng,
                                         uint64_t request_id, uint8_t* out, size_t* out_len);

/* Takes the gateway's PrekeyUpdated (serialised): the pending prekey
 * becomes current and the old one is retired at now_ms, kept to open
 * messages sealed to it until hf_device_expire_prekeys wipes it.
 * HF_ERR_FAILED_PRECONDITION when nothing is pending; HF_ERR_INVALID_ARGUMENT
 * when it confirms another prekey (nothing changes then). */
hf_error hf_device_complete_prekey_rotation(hf_device* device, const uint8_t* prekey_updated,
                                            size_t prekey_updated_len, int64_t now_ms);

/* Wipes the retired prekeys retired at least grace_ms before now_ms (0 means
 * the default, 35 days: the gateway's queue lifetime and a margin; negative
 * is HF_ERR_INVALID_ARGUMENT). *removed, unless NULL, receives how many. */
hf_error hf_device_expire_prekeys(hf_device* device, int64_t now_ms, int64_t grace_ms,
                                  size_t* removed);

/* ------------------------------------------------------------ notices */

/* What the user must be told, shown in the conversation it concerns. */
typedef enum hf_notice_kind {
  HF_NOTICE_ARCHIVED = 0,            /* first sight of a conversation: the archive notice */
  HF_NOTICE_NEW_DEVICE = 1,          /* a member (or this user) has a device not seen before */
  HF_NOTICE_DEVICE_REMOVED = 2,      /* a device seen before is no longer listed */
  HF_NOTICE_MASTER_KEY_CHANGED = 3,  /* a member's master key differs from the one seen before */
  HF_NOTICE_MEMBERS_CHANGED = 4,     /* a group's membership changed */
  HF_NOTICE_RESENT = 5,              /* the message was sealed again for this device */
  HF_NOTICE_HISTORY_RESTORED = 6     /* the organisation restored the user's history to a device */
} hf_notice_kind;

typedef struct hf_notices hf_notices;

/* Verifies a ConversationInfo (epoch certificate at now_ms, every device's
 * certificate chain to the pinned root, membership) and records what it
 * lists; *out receives what changed since this handle last looked, in the
 * order to show (possibly none). The first sight of a conversation yields
 * its archive notice only; the first sight of another user records their
 * devices silently. A conversation that fails a check, lists a device of a
 * non-member, or lists one user's devices under different master keys is
 * refused and nothing is recorded. Call it with every ConversationInfo the
 * gateway sends, before hf_device_prepare_message. */
hf_error hf_device_observe_conversation(hf_device* device, const uint8_t* conversation,
                                        size_t conversation_len, int64_t now_ms,
                                        hf_notices** out);

/* The number of notices; 0 for NULL. */
size_t hf_notices_count(const hf_notices* notices);
/* Notice `index` (below hf_notices_count; HF_ERR_INVALID_ARGUMENT otherwise).
 * Every output may be NULL. text is ready to show; user is whom it concerns
 * (the actor for HF_NOTICE_MEMBERS_CHANGED, empty for HF_NOTICE_ARCHIVED).
 * Pointers stay valid until the notices (or the hf_message holding them)
 * are freed; they are NUL-terminated but may hold NULs: use the lengths. */
hf_error hf_notices_get(const hf_notices* notices, size_t index, hf_notice_kind* kind,
                        const char** text, size_t* text_len, const char** user,
                        size_t* user_len);
/* Frees notices from hf_device_observe_conversation and sets *notices to
 * NULL; notices and *notices may be NULL. Never pass hf_message_notices'. */
void hf_notices_free(hf_notices** notices);

/* ----------------------------------------------------------- messages */

typedef enum hf_output_kind {
  HF_OUTPUT_ENVELOPE = 0,     /* an Envelope */
  HF_OUTPUT_SUBMIT_FRAME = 1  /* a ClientFrame { request_id, submit { envelope } } */
} hf_output_kind;

/* Verifies the ConversationInfo (epoch certificate against the pinned root
 * at now_ms, every device and its certificate chain) and seals text to every
 * device of the conversation except this one and to the archive. It does
 * not record anything: hf_device_observe_conversation does. request_id is
 * used only for HF_OUTPUT_SUBMIT_FRAME. */
hf_error hf_device_prepare_message(const hf_device* device, const uint8_t* conversation,
                                   size_t conversation_len, const uint8_t* text,
                                   size_t text_len, int64_t now_ms, hf_output_kind kind,
                                   uint64_t request_id, uint8_t* out, size_t* out_len);

typedef struct hf_message hf_message;

/* Verifies and opens a Deliver: the sender's device and its certificate
 * chain, the epoch certificate, the signature and the archive capsule; the
 * current, pending and retired prekeys are tried in turn. A message this
 * handle already opened is HF_ERR_ALREADY_EXISTS (acknowledge it, do not
 * show it again); the handle remembers the last 4096 message ids and
 * exports them. Any other failure means the message must not be shown:
 * acknowledge it all the same, and send the gateway what
 * hf_device_last_report yields. now_ms dates a sender device seen for the
 * first time, which hf_message_notices reports. */
hf_error hf_device_open_delivery(hf_device* device, const uint8_t* deliver, size_t deliver_len,
                                 int64_t now_ms, hf_message** out);

/* After hf_device_open_delivery failed on this handle, for the most recent
 * call: a serialised ClientFrame { request_id, report_delivery } telling the
 * gateway (for the compliance team) that the delivery failed a check that
 * points at its sender, such as an archive capsule mismatch or a bad
 * signature or device certificate. HF_ERR_NOT_FOUND when that failure
 * warrants no report (no capsule for this device, malformed input), or
 * when the most recent call succeeded. */
hf_error hf_device_last_report(const hf_device* device, uint64_t request_id, uint8_t* out,
                               size_t* out_len);

/* Accessors; pointers stay valid until hf_message_free. len may be NULL.
 * Text and names are not NUL-free in general: use the lengths. */
const char* hf_message_text(const hf_message* message, size_t* len);
const char* hf_message_sender_user(const hf_message* message, size_t* len);
const char* hf_message_conversation_id(const hf_message* message, size_t* len);
/* The conversation's archive notice, to show before its first message. */
const char* hf_message_archive_notice(const hf_message* message, size_t* len);
const uint8_t* hf_message_id(const hf_message* message, size_t* len);
const uint8_t* hf_message_sender_device(const hf_message* message, size_t* len);
int64_t hf_message_sent_at_ms(const hf_message* message);
/* For a message its sender sealed again for this device (protocol.md 9.11):
 * the original message's id, 16 bytes; otherwise *len is 0. A message
 * whose id or original id was opened before is refused by
 * hf_device_open_delivery as a duplicate. */
const uint8_t* hf_message_resend_of(const hf_message* message, size_t* len);
/* Notices raised by the message's sender device (a device of a known user
 * not seen before), to show before the message; borrowed from the message,
 * never NULL for a message (NULL for NULL). The archive notice is separate:
 * hf_message_archive_notice. */
const hf_notices* hf_message_notices(const hf_message* message);

/* Wipes the text, frees the message and sets *message to NULL. */
void hf_message_free(hf_message** message);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HOLDFAST_CLIENT_H_ */
