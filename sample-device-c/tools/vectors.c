/*
 * Test tool, never installed: prints, as one JSON object, the credentials the C sample computes for a fixed time, so
 * test/sample-device-c/ can compare them with the Node sample's (same key file, same time): the ES256 token, the
 * DPS SAS, the hub SAS and the derived device key. It prints secrets on purpose; the device program never does.
 *
 * vectors --private-key F --registration-id ID --id-scope S --host H --now EPOCH --se EPOCH --hub HUB
 *         (--symmetric-key K | --group-key K) [--jti UUID]
 *
 * `vectors register --token-file F --registration-id ID --id-scope S --host H:PORT --ca F (--symmetric-key K |
 * --group-key K)` sends a given token through the C sample's own DPS client (dps.c), so a test can present a
 * tampered token, another device's token or the Node sample's token; it exits with the device's exit code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sd.h"

static const char *arg(int argc, char **argv, const char *name) {
  for (int i = 1; i + 1 < argc; i++) if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return NULL;
}

static int register_with_token(int argc, char **argv) {
  const char *token_file = arg(argc, argv, "--token-file"), *id = arg(argc, argv, "--registration-id");
  const char *scope = arg(argc, argv, "--id-scope"), *host = arg(argc, argv, "--host"), *ca = arg(argc, argv, "--ca");
  const char *sym = arg(argc, argv, "--symmetric-key"), *group = arg(argc, argv, "--group-key");
  if (token_file == NULL || id == NULL || scope == NULL || host == NULL || (sym == NULL) == (group == NULL)) return 2;
  char token[8192];
  FILE *f = fopen(token_file, "r");
  if (f == NULL) return 3;
  size_t n = fread(token, 1, sizeof token - 1, f);
  fclose(f);
  while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == '\r')) n--;
  token[n] = '\0';
  sd_error err;
  memset(&err, 0, sizeof err);
  sd_register_options o;
  memset(&o, 0, sizeof o);
  if (sd_parse_host(host, "--host", 8883, &o.endpoint, &err) != SD_OK) return err.code;
  char *device_key = sym != NULL ? strdup(sym) : sd_derive_device_key(group, id);
  o.registration_id = id;
  o.id_scope = scope;
  o.device_key = device_key;
  o.attestation = sym != NULL ? "symmetric-key" : "group-key";
  o.jwt = token;
  o.ca_file = ca;
  o.timeout_ms = 60000;
  sd_registration r;
  int code = sd_register(&o, &r, &err);
  free(device_key);
  if (code == SD_OK) {
    printf("{\"status\":\"%s\",\"assignedHub\":\"%s\",\"deviceId\":\"%s\"}\n", r.status, r.assigned_hub, r.device_id);
    cJSON_Delete(r.payload);
  } else {
    fprintf(stderr, "%s\n", err.message);
  }
  return code;
}

/* `vectors explain --error-code N --status S --mqtt-status N --message M`: what the device prints for such a DPS answer. */
static int explain(int argc, char **argv) {
  const char *code = arg(argc, argv, "--error-code"), *status = arg(argc, argv, "--status");
  const char *mqtt = arg(argc, argv, "--mqtt-status"), *message = arg(argc, argv, "--message");
  sd_error err;
  memset(&err, 0, sizeof err);
  int rc = sd_explain_dps_failure("explain-0001", code != NULL ? strtol(code, NULL, 10) : 0, status, mqtt != NULL ? atoi(mqtt) : 0, message, &err);
  printf("%s\n", err.message);
  return rc;
}

/*
 * `vectors connect --hub H --device-id D --hub-host H:P --ca F --symmetric-key K --count N --sas-lifetime S`: the C
 * sample's hub session with a short SAS lifetime, so a test sees the SAS renewed without waiting an hour.
 */
static int connect_short_sas(int argc, char **argv) {
  const char *hub = arg(argc, argv, "--hub"), *id = arg(argc, argv, "--device-id"), *via = arg(argc, argv, "--hub-host");
  const char *ca = arg(argc, argv, "--ca"), *key = arg(argc, argv, "--symmetric-key"), *count = arg(argc, argv, "--count");
  const char *lifetime = arg(argc, argv, "--sas-lifetime");
  if (hub == NULL || id == NULL || via == NULL || key == NULL || count == NULL || lifetime == NULL) return 2;
  sd_error err;
  memset(&err, 0, sizeof err);
  sd_connect_options o;
  memset(&o, 0, sizeof o);
  if (sd_parse_host(via, "--hub-host", 8883, &o.via, &err) != SD_OK) return err.code;
  o.has_via = 1;
  o.hub = hub;
  o.device_id = id;
  o.device_key = key;
  o.ca_file = ca;
  o.count = strtoll(count, NULL, 10);
  o.connect_timeout_ms = 30000;
  o.twin_timeout_ms = 30000;
  o.sas_lifetime_seconds = strtoll(lifetime, NULL, 10);
  sd_connection c;
  int code = sd_connect_hub(&o, &c, &err);
  if (code == SD_OK) {
    printf("sent %lld\n", c.telemetry_sent);
    cJSON_Delete(c.desired);
    cJSON_Delete(c.reported);
  } else {
    fprintf(stderr, "%s\n", err.message);
  }
  return code;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "register") == 0) return register_with_token(argc, argv);
  if (argc > 1 && strcmp(argv[1], "connect") == 0) return connect_short_sas(argc, argv);
  if (argc > 1 && strcmp(argv[1], "explain") == 0) return explain(argc, argv);
  const char *key_file = arg(argc, argv, "--private-key"), *id = arg(argc, argv, "--registration-id");
  const char *scope = arg(argc, argv, "--id-scope"), *host = arg(argc, argv, "--host"), *now = arg(argc, argv, "--now");
  const char *se = arg(argc, argv, "--se"), *hub = arg(argc, argv, "--hub"), *sym = arg(argc, argv, "--symmetric-key");
  const char *group = arg(argc, argv, "--group-key"), *jti = arg(argc, argv, "--jti");
  if (key_file == NULL || id == NULL || scope == NULL || now == NULL || se == NULL || hub == NULL || (sym == NULL) == (group == NULL)) {
    fprintf(stderr, "usage: see the comment at the top of tools/vectors.c\n");
    return 2;
  }
  sd_error err;
  memset(&err, 0, sizeof err);
  EVP_PKEY *key = NULL;
  if (sd_load_private_key(key_file, "--private-key", &key, &err) != SD_OK) {
    fprintf(stderr, "%s\n", err.message);
    return err.code;
  }
  char *device_key = sym != NULL ? strdup(sym) : sd_derive_device_key(group, id);
  sd_token_request req = {key, id, scope, host, NULL, SD_DEFAULT_LIFETIME, strtoll(now, NULL, 10), jti};
  char *jwt = sd_sign_token(&req, NULL, NULL);
  char dps_resource[300], hub_resource[400];
  snprintf(dps_resource, sizeof dps_resource, "%s/registrations/%s", scope, id);
  snprintf(hub_resource, sizeof hub_resource, "%s/devices/%s", hub, id);
  char *dps_sas = device_key != NULL ? sd_sas(dps_resource, 0, device_key, "registration", strtoll(se, NULL, 10)) : NULL;
  char *hub_sas = device_key != NULL ? sd_sas(hub_resource, 1, device_key, NULL, strtoll(se, NULL, 10)) : NULL;
  char *thumb = sd_jwk_thumbprint(key);
  int rc = 1;
  if (jwt != NULL && dps_sas != NULL && hub_sas != NULL && thumb != NULL) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "jwt", jwt);
    cJSON_AddStringToObject(out, "dpsSas", dps_sas);
    cJSON_AddStringToObject(out, "hubSas", hub_sas);
    cJSON_AddStringToObject(out, "deviceKey", device_key);
    cJSON_AddStringToObject(out, "thumbprint", thumb);
    char *text = cJSON_PrintUnformatted(out);
    printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(out);
    rc = 0;
  }
  free(device_key);
  free(jwt);
  free(dps_sas);
  free(hub_sas);
  free(thumb);
  EVP_PKEY_free(key);
  return rc;
}
