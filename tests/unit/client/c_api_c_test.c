/* Compiled as C99 to prove holdfast/client.h is a valid C header; the
 * function walks the API the way a C caller would. */
#include "holdfast/client.h"

#include <stdlib.h>
#include <string.h>

int holdfast_c_api_smoke(void);

#if HF_API_VERSION != 2
#error "this test is written for HF_API_VERSION 2"
#endif

/* A C caller's rng: not random, which only a test may do. */
static int counting_fill(void* context, uint8_t* out, size_t len) {
  unsigned* counter = (unsigned*)context;
  size_t i;
  for (i = 0; i < len; ++i) out[i] = (uint8_t)(*counter)++;
  return 0;
}

/* A second device certified by the first, and the calls a C caller makes
 * before registration. Returns the number of failed checks. */
static int second_device(hf_device* first) {
  hf_device* phone = NULL;
  unsigned counter = 0;
  hf_rng rng;
  uint8_t key[32];
  size_t key_len = sizeof key;
  uint8_t* cert = NULL;
  size_t cert_len = 0;
  size_t len = 0;
  size_t removed = 1;
  hf_notices* notices = NULL;
  const uint8_t junk[1] = {0xff};
  int failures = 0;

  rng.context = &counter;
  rng.fill = counting_fill;
  if (hf_device_create_without_master("c-user", 1714564800000LL, &rng, &phone) != HF_OK) return 1;
  if (counter != 64) failures++;
  if (hf_device_identity_key(phone, key, &key_len) != HF_OK || key_len != 32) failures++;
  if (hf_device_register_request(phone, "CODE", 1714564800000LL, NULL, &len) !=
      HF_ERR_FAILED_PRECONDITION) {
    failures++;
  }
  if (hf_device_certify_new_device(first, key, key_len, 1714564800000LL, NULL, &cert_len) !=
      HF_OK) {
    failures++;
  }
  cert = (uint8_t*)malloc(cert_len);
  if (cert == NULL) {
    hf_device_free(&phone);
    return failures + 1;
  }
  if (hf_device_certify_new_device(first, key, key_len, 1714564800000LL, cert, &cert_len) !=
      HF_OK) {
    failures++;
  }
  if (hf_device_use_certificate(phone, cert, cert_len) != HF_OK) failures++;
  if (hf_device_register_request(phone, "CODE", 1714564800000LL, NULL, &len) != HF_OK) {
    failures++;
  }

  /* Before registration there are no prekeys to rotate or conversations to observe. */
  if (hf_device_prekey_rotation_due(phone, 1714564800000LL, 0) != 0) failures++;
  if (hf_device_begin_prekey_rotation(phone, 1714564800001LL, NULL, 1, NULL, &len) !=
      HF_ERR_FAILED_PRECONDITION) {
    failures++;
  }
  if (hf_device_complete_prekey_rotation(phone, NULL, 0, 1714564800001LL) !=
      HF_ERR_FAILED_PRECONDITION) {
    failures++;
  }
  if (hf_device_expire_prekeys(phone, 1714564800001LL, 0, &removed) != HF_OK || removed != 0) {
    failures++;
  }
  if (hf_device_observe_conversation(phone, junk, sizeof junk, 1714564800000LL, &notices) !=
          HF_ERR_INVALID_ARGUMENT ||
      notices != NULL) {
    failures++;
  }
  if (hf_device_last_report(phone, 1, NULL, &len) != HF_ERR_NOT_FOUND) failures++;
  free(cert);
  hf_device_free(&phone);
  return failures;
}

/* The accessors of notices and messages on NULL. */
static int empty_notices(void) {
  hf_notices* notices = NULL;
  hf_notice_kind kind = HF_NOTICE_ARCHIVED;
  const char* text = NULL;
  size_t text_len = 0;
  const char* user = NULL;
  size_t user_len = 0;
  int failures = 0;

  if (hf_notices_count(notices) != 0) failures++;
  if (hf_notices_get(notices, 0, &kind, &text, &text_len, &user, &user_len) !=
      HF_ERR_INVALID_ARGUMENT) {
    failures++;
  }
  if (hf_message_notices(NULL) != NULL) failures++;
  hf_notices_free(&notices);
  hf_notices_free(NULL);
  if (kind != HF_NOTICE_ARCHIVED || HF_NOTICE_MEMBERS_CHANGED != 4) failures++;
  return failures;
}

int holdfast_c_api_smoke(void) {
  hf_device* device = NULL;
  uint8_t* id = NULL;
  size_t id_len = 0;
  int failures = 0;

  if (hf_device_create("c-user", 1714564800000LL, NULL, &device) != HF_OK) return 1;
  if (hf_device_id(device, NULL, &id_len) != HF_OK || id_len != 16) failures++;
  id = (uint8_t*)malloc(id_len);
  if (id == NULL) {
    hf_device_free(&device);
    return 1;
  }
  if (hf_device_id(device, id, &id_len) != HF_OK) failures++;
  if (hf_device_is_registered(device) != 0) failures++;
  if (hf_device_hello(device, NULL, &id_len) != HF_ERR_FAILED_PRECONDITION) failures++;
  if (strlen(hf_last_error_message()) == 0) failures++;
  if (strncmp(hf_error_string(HF_ERR_BUFFER_TOO_SMALL), "HF_ERR_BUFFER_TOO_SMALL", 23) != 0) {
    failures++;
  }
  failures += second_device(device);
  failures += empty_notices();
  free(id);
  hf_device_free(&device);
  if (device != NULL) failures++;
  return failures;
}
