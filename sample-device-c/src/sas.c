/*
 * Symmetric-key credentials (dps-protocol §3): the group member key derivation and SharedAccessSignature tokens for
 * DPS (`sr={idScope}/registrations/{id}`, skn=registration, sr sent and signed unencoded as the Node SDK does) and for
 * the hub (`sr=urlencode({hub}/devices/{deviceId})`, no skn, as the IoT Hub device SDKs do).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "sd.h"

#define MAX_KEY_BYTES 256

int sd_check_symmetric_key(const char *key_b64) {
  unsigned char key[MAX_KEY_BYTES];
  long n = sd_base64_decode(key_b64, key, sizeof key);
  OPENSSL_cleanse(key, sizeof key);
  return n > 0 ? 0 : -1;
}

char *sd_derive_device_key(const char *group_key_b64, const char *registration_id) {
  unsigned char key[MAX_KEY_BYTES];
  long n = sd_base64_decode(group_key_b64, key, sizeof key);
  if (n <= 0) return NULL;
  unsigned char mac[32];
  int rc = sd_hmac_sha256(key, (size_t)n, (const unsigned char *)registration_id, strlen(registration_id), mac);
  OPENSSL_cleanse(key, sizeof key);
  char *out = rc == 0 ? sd_base64(mac, sizeof mac) : NULL;
  OPENSSL_cleanse(mac, sizeof mac);
  return out;
}

char *sd_urlencode(const char *text) {
  size_t len = strlen(text);
  char *out = malloc(3 * len + 1);
  if (out == NULL) return NULL;
  static const char hex[] = "0123456789ABCDEF";
  char *o = out;
  for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
    /* encodeURIComponent keeps A-Z a-z 0-9 - _ . ! ~ * ' ( ); the Node SDK's strict form encodes ! ' ( ) * too. */
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
        *p == '.' || *p == '~') {
      *o++ = (char)*p;
    } else if (*p == '!' || *p == '\'' || *p == '(' || *p == ')' || *p == '*') {
      /* encodeUriComponentStrict writes these with lower-case hex (charCodeAt(0).toString(16)). */
      o += sprintf(o, "%%%02x", *p);
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = '\0';
  return out;
}

char *sd_sas(const char *resource, int encode_resource, const char *key_b64, const char *key_name, long long se) {
  unsigned char key[MAX_KEY_BYTES];
  long n = sd_base64_decode(key_b64, key, sizeof key);
  if (n <= 0) return NULL;
  char *sr = encode_resource ? sd_urlencode(resource) : strdup(resource);
  char *result = NULL;
  if (sr == NULL) goto done;
  size_t to_sign_len = strlen(sr) + 32;
  char *to_sign = malloc(to_sign_len);
  if (to_sign == NULL) goto done;
  int m = snprintf(to_sign, to_sign_len, "%s\n%lld", sr, se);
  unsigned char mac[32];
  if (m > 0 && sd_hmac_sha256(key, (size_t)n, (unsigned char *)to_sign, (size_t)m, mac) == 0) {
    char *sig64 = sd_base64(mac, sizeof mac);
    char *sig = sig64 != NULL ? sd_urlencode(sig64) : NULL;
    char *skn = key_name != NULL ? sd_urlencode(key_name) : NULL;
    if (sig != NULL && (key_name == NULL || skn != NULL)) {
      size_t cap = strlen(sr) + strlen(sig) + (skn != NULL ? strlen(skn) : 0) + 96;
      result = malloc(cap);
      if (result != NULL) {
        if (skn != NULL) snprintf(result, cap, "SharedAccessSignature sr=%s&sig=%s&skn=%s&se=%lld", sr, sig, skn, se);
        else snprintf(result, cap, "SharedAccessSignature sr=%s&sig=%s&se=%lld", sr, sig, se);
      }
    }
    if (sig64 != NULL) OPENSSL_cleanse(sig64, strlen(sig64));
    free(sig64);
    free(sig);
    free(skn);
    OPENSSL_cleanse(mac, sizeof mac);
  }
  free(to_sign);
done:
  free(sr);
  OPENSSL_cleanse(key, sizeof key);
  return result;
}
