/*
 * The registration token: ES256 compact JWS (RFC 7515) with the Node sample's claims (sample-device/jwt.ts
 * signDeviceToken): registration_id, id_scope, provisioning_host (the Python sample's), sub, aud, iat, exp, jti.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "sd.h"

int sd_valid_registration_id(const char *id) {
  /* dps-protocol §3: 1-128 of letters, digits, - . _ :, ending in a letter, digit or -. */
  size_t n = strlen(id);
  if (n < 1 || n > 128) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    if (!(isalnum(c) || c == '-' || c == '.' || c == '_' || c == ':')) return 0;
  }
  unsigned char last = (unsigned char)id[n - 1];
  return isalnum(last) || last == '-';
}

int sd_valid_id_scope(const char *id_scope) {
  size_t n = strlen(id_scope);
  if (n < 1 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id_scope[i];
    if (!(isalnum(c) || c == '.' || c == '_' || c == '-')) return 0;
  }
  return 1;
}

static char *b64url_json(const cJSON *json) {
  char *text = cJSON_PrintUnformatted(json);
  if (text == NULL) return NULL;
  char *out = sd_base64url((unsigned char *)text, strlen(text));
  cJSON_free(text);
  return out;
}

char *sd_sign_token(const sd_token_request *req, cJSON **header_out, cJSON **claims_out) {
  char jti[37];
  if (req->jti == NULL && sd_uuid(jti) != 0) return NULL;
  cJSON *header = cJSON_CreateObject();
  cJSON *claims = cJSON_CreateObject();
  char *result = NULL, *h64 = NULL, *c64 = NULL, *input = NULL, *s64 = NULL;
  if (header == NULL || claims == NULL) goto done;
  cJSON_AddStringToObject(header, "alg", "ES256");
  cJSON_AddStringToObject(header, "typ", "JWT");
  if (req->kid != NULL) cJSON_AddStringToObject(header, "kid", req->kid);
  /* The Node sample's claim order, so the two samples' tokens read alike. */
  cJSON_AddStringToObject(claims, "registration_id", req->registration_id);
  if (req->id_scope != NULL) cJSON_AddStringToObject(claims, "id_scope", req->id_scope);
  if (req->provisioning_host != NULL) cJSON_AddStringToObject(claims, "provisioning_host", req->provisioning_host);
  cJSON_AddStringToObject(claims, "sub", req->registration_id);
  if (req->id_scope != NULL) cJSON_AddStringToObject(claims, "aud", req->id_scope);
  cJSON_AddNumberToObject(claims, "iat", (double)req->now);
  cJSON_AddNumberToObject(claims, "exp", (double)(req->now + req->lifetime));
  cJSON_AddStringToObject(claims, "jti", req->jti != NULL ? req->jti : jti);
  h64 = b64url_json(header);
  c64 = b64url_json(claims);
  if (h64 == NULL || c64 == NULL) goto done;
  size_t input_len = strlen(h64) + 1 + strlen(c64);
  input = malloc(input_len + 1);
  if (input == NULL) goto done;
  strcpy(input, h64);
  strcat(input, ".");
  strcat(input, c64);
  unsigned char sig[64];
  if (sd_es256_sign(req->key, (unsigned char *)input, input_len, sig) != 0) goto done;
  s64 = sd_base64url(sig, sizeof sig);
  if (s64 == NULL) goto done;
  result = malloc(input_len + 1 + strlen(s64) + 1);
  if (result == NULL) goto done;
  strcpy(result, input);
  strcat(result, ".");
  strcat(result, s64);
done:
  free(h64);
  free(c64);
  free(input);
  free(s64);
  if (result != NULL && header_out != NULL) *header_out = header;
  else cJSON_Delete(header);
  if (result != NULL && claims_out != NULL) *claims_out = claims;
  else cJSON_Delete(claims);
  return result;
}
