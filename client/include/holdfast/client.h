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
 * WARNING: randomness. hf_device_create draws its key seed from the hf_rng
 * the caller supplies (or OpenSSL's DRBG when NULL), so tests can pin
 * keys. Every other random value (message ids, content keys, HPKE
 * ephemeral keys, key-store salts, nonces and store keys) comes from
 * OpenSSL's DRBG inside the protocol layer, which has no injection point:
 * sealed messages and exported key stores are never reproducible.
 */
#ifndef HOLDFAST_CLIENT_H_
#define HOLDFAST_CLIENT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HF_API_VERSION 1

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
 * now_ms) for user. With rng, 64 bytes are drawn from it and the keys are a
 * deterministic function of them. *out receives the new handle. */
hf_error hf_device_create(const char* user, int64_t now_ms, const hf_rng* rng, hf_device** out);

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
 * (version 2), with the private keys sealed and every other field bound as
 * associated data. HF_ERR_FAILED_PRECONDITION before protect_with_*. */
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

/* --------------------------------------------------------- enrollment */

/* Pins the org root key (65-byte uncompressed P-256 point) learnt out of
 * band. Before registration it makes hf_device_accept_registration refuse a
 * gateway that presents another root (HF_ERR_PERMISSION_DENIED); afterwards
 * only the key already pinned is accepted (HF_ERR_FAILED_PRECONDITION). */
hf_error hf_device_set_org_root(hf_device* device, const uint8_t* org_root_key,
                                size_t org_root_key_len);

/* A RegisterRequest for the one-time enrollment code. */
hf_error hf_device_register_request(const hf_device* device, const char* enrollment_code,
                                    uint8_t* out, size_t* out_len);

/* Takes the gateway's RegisterResponse: checks the device id is the one
 * derived from our identity key and pins the org root key. server_url is
 * recorded in the key store (may be ""). */
hf_error hf_device_accept_registration(hf_device* device, const uint8_t* response,
                                       size_t response_len, const char* server_url);

/* -------------------------------------------------------------- login */

/* The Hello that opens a session. */
hf_error hf_device_hello(const hf_device* device, uint8_t* out, size_t* out_len);
/* Answers a Challenge with an Authenticate (Ed25519 over the auth
 * transcript). */
hf_error hf_device_answer_challenge(const hf_device* device, const uint8_t* challenge,
                                    size_t challenge_len, uint8_t* out, size_t* out_len);

/* ----------------------------------------------------------- messages */

typedef enum hf_output_kind {
  HF_OUTPUT_ENVELOPE = 0,     /* an Envelope */
  HF_OUTPUT_SUBMIT_FRAME = 1  /* a ClientFrame { request_id, submit { envelope } } */
} hf_output_kind;

/* Verifies the ConversationInfo (epoch certificate against the pinned root
 * at now_ms, every device) and seals text to every device of the
 * conversation except this one and to the archive. request_id is used only
 * for HF_OUTPUT_SUBMIT_FRAME. */
hf_error hf_device_prepare_message(const hf_device* device, const uint8_t* conversation,
                                   size_t conversation_len, const uint8_t* text,
                                   size_t text_len, int64_t now_ms, hf_output_kind kind,
                                   uint64_t request_id, uint8_t* out, size_t* out_len);

typedef struct hf_message hf_message;

/* Verifies and opens a Deliver. A message this handle already opened is
 * HF_ERR_ALREADY_EXISTS (acknowledge it, do not show it again); the handle
 * remembers the last 4096 message ids and exports them. Any other failure
 * means the message must not be shown. */
hf_error hf_device_open_delivery(hf_device* device, const uint8_t* deliver, size_t deliver_len,
                                 hf_message** out);

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

/* Wipes the text, frees the message and sets *message to NULL. */
void hf_message_free(hf_message** message);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HOLDFAST_CLIENT_H_ */
