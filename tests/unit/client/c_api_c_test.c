/* Compiled as C99 to prove holdfast/client.h is a valid C header; the
 * function walks the API the way a C caller would. */
#include "holdfast/client.h"

#include <stdlib.h>
#include <string.h>

int holdfast_c_api_smoke(void);

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
  free(id);
  hf_device_free(&device);
  if (device != NULL) failures++;
  return failures;
}
