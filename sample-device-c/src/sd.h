/*
 * The C sample device's shared declarations: exit codes (the Node sample's table, sample-device/errors.ts), the error
 * record every step fills, and the crypto, token, DPS and hub steps. Nothing here ever puts a key, a SAS token or a
 * JWT into an error message or onto stdout/stderr.
 */
#ifndef SAMPLE_DEVICE_SD_H
#define SAMPLE_DEVICE_SD_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <openssl/evp.h>
#include <cjson/cJSON.h>
#include <MQTTClient.h>

/* Exit codes: the same numbers and names as sample-device/errors.ts. */
enum sd_code {
  SD_OK = 0,
  SD_INTERNAL = 1,
  SD_USAGE = 2,
  SD_FILE = 3,
  SD_UNREACHABLE = 4,
  SD_UNAUTHORIZED = 5,
  SD_REFUSED = 6,
  SD_WEBHOOK_MISCONFIGURED = 7,
  SD_DISABLED = 8,
  SD_DPS_FAILED = 9,
  SD_TIMEOUT = 10,
  SD_HUB_UNREACHABLE = 11,
  SD_HUB_UNAUTHORIZED = 12,
  SD_TWIN_TIMEOUT = 13,
  SD_INTERRUPTED = 130,
};

typedef struct sd_error {
  int code;
  char message[768];
  char hint[320];
  long dps_error_code; /* 0: none */
  char dps_status[32];
} sd_error;

/* Sets code and a formatted message; returns code, so `return sd_fail(err, ...)` reads well. */
int sd_fail(sd_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sd_hint(sd_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *sd_code_name(int code);
const char *sd_code_summary(int code);
/* Every exit code in the order `--help` lists them. */
extern const int SD_ALL_CODES[];
extern const size_t SD_ALL_CODES_COUNT;
/* Removes anything SAS-like from text a server sent, in place (as the Node sample's redact()). */
void sd_redact(char *text);

/* ---- crypto.c: all through OpenSSL's EVP APIs ---- */
/* Base64 (standard, padded) of bytes; caller frees. */
char *sd_base64(const unsigned char *data, size_t len);
/* Base64url without padding (RFC 7515 §2); caller frees. */
char *sd_base64url(const unsigned char *data, size_t len);
/* Decodes canonical standard base64 into out (at most cap bytes); returns the length, or -1 if not canonical base64. */
long sd_base64_decode(const char *text, unsigned char *out, size_t cap);
/* HMAC-SHA256; out holds 32 bytes. Returns 0 on success. */
int sd_hmac_sha256(const unsigned char *key, size_t key_len, const unsigned char *data, size_t len, unsigned char out[32]);
/* Loads a P-256 private key (PKCS#8 or SEC1 PEM) from path; flag names the option in errors. */
int sd_load_private_key(const char *path, const char *flag, EVP_PKEY **out, sd_error *err);
/* ES256: JOSE signature r||s (64 bytes) of SHA-256(data). */
int sd_es256_sign(EVP_PKEY *key, const unsigned char *data, size_t len, unsigned char sig[64]);
/* RFC 7638 SHA-256 thumbprint of the public JWK, base64url; caller frees. */
char *sd_jwk_thumbprint(EVP_PKEY *key);
/* A random (version 4) UUID, 36 characters plus NUL. */
int sd_uuid(char out[37]);
/* keygen: writes <dir>/<name>.key.pem (PKCS#8, 0600) and <dir>/<name>.pub.pem (SPKI); thumbprint out. */
int sd_keygen(const char *dir, const char *name, char *private_path, size_t private_cap, char *public_path,
              size_t public_cap, char **thumbprint, sd_error *err);

/* ---- sas.c ---- */
/* The device key of a group member: base64(HMAC-SHA256(base64decode(groupKey), registrationId)); caller frees. */
char *sd_derive_device_key(const char *group_key_b64, const char *registration_id);
/* Checks a base64 symmetric key; 0 when usable. */
int sd_check_symmetric_key(const char *key_b64);
/*
 * `SharedAccessSignature sr=<resource>&sig=<urlencoded base64 HMAC(sr\n se)>[&skn=<key name>]&se=<se>`, fields in the
 * Node SDK's order (azure-iot-common shared_access_signature.js toString: sr, sig, skn, se). `encode_resource`
 * URL-encodes sr (what the hub SAS does) before signing; key_name may be NULL. Caller frees.
 */
char *sd_sas(const char *resource, int encode_resource, const char *key_b64, const char *key_name, long long se);
/* encodeURIComponent plus !'()* (the Node SDK's encodeUriComponentStrict); caller frees. */
char *sd_urlencode(const char *text);

/* ---- jwt.c ---- */
#define SD_DEFAULT_LIFETIME 300
#define SD_MAX_LIFETIME (10 * 24 * 3600)
typedef struct sd_token_request {
  EVP_PKEY *key;
  const char *registration_id;
  const char *id_scope; /* may be NULL */
  const char *provisioning_host; /* may be NULL */
  const char *kid; /* may be NULL */
  long long lifetime;
  long long now;
  const char *jti; /* NULL: a random UUID */
} sd_token_request;
/* The compact ES256 JWT; caller frees. header/claims (optional) receive the decoded JSON, caller deletes. */
char *sd_sign_token(const sd_token_request *req, cJSON **header, cJSON **claims);
int sd_valid_registration_id(const char *id);
int sd_valid_id_scope(const char *id_scope);

/* ---- mqtt_util.c ---- */
typedef struct sd_endpoint {
  char host[256]; /* host name (IPv6 without brackets) */
  int port;
  char given[300]; /* as the user wrote it */
} sd_endpoint;
int sd_parse_host(const char *value, const char *flag, int default_port, sd_endpoint *out, sd_error *err);
/* Reads a CA file: must exist and hold a PEM certificate. */
int sd_check_ca_file(const char *path, sd_error *err);
/* Monotonic milliseconds. */
long long sd_now_ms(void);
/* Set by the SIGINT handler. */
extern volatile sig_atomic_t sd_interrupted;
/* Set while Paho's connect blocks (it cannot be cancelled): a Ctrl-C then exits at once with 130. */
extern volatile sig_atomic_t sd_in_connect;
/* ISO 8601 UTC with milliseconds, like JavaScript's toISOString. */
void sd_iso_time(long long epoch_ms, char out[32]);
long long sd_epoch_ms(void);

/* One MQTT 3.1.1 over TLS session (Paho's synchronous client, no background thread). */
typedef struct sd_mqtt {
  MQTTClient client;
  int created;
  int connected;
  int tls_untrusted; /* the server's certificate failed verification */
} sd_mqtt;
/* 0 connected; 1-5 the CONNACK refusal code; -1 no connection. */
int sd_mqtt_open(sd_mqtt *m, const sd_endpoint *ep, const char *client_id, const char *username, const char *password,
                 const char *ca_file, long long timeout_ms);
void sd_mqtt_close(sd_mqtt *m);
/*
 * Waits until deadline (monotonic ms) for a message whose topic starts with prefix, dropping others; keeps the
 * connection alive meanwhile. 1 got one (caller frees *topic and *payload), 0 deadline, -1 connection lost,
 * -2 interrupted.
 */
int sd_mqtt_wait(sd_mqtt *m, const char *prefix, long long deadline_ms, char **topic, char **payload);
int sd_mqtt_publish(sd_mqtt *m, const char *topic, const char *payload, int qos, long long timeout_ms);
/* Why a connection failed, in a few words without secrets: a DNS failure, a refused TCP connection, TLS trust... */
void sd_describe_connect_failure(const sd_mqtt *m, const sd_endpoint *ep, char *out, size_t cap, int *tls);

/* ---- dps.c ---- */
typedef struct sd_register_options {
  const char *registration_id;
  const char *id_scope;
  const char *device_key; /* the (derived) symmetric key */
  const char *attestation; /* "symmetric-key" or "group-key" */
  const char *jwt;
  sd_endpoint endpoint;
  const char *ca_file; /* NULL: system CAs */
  long long timeout_ms;
} sd_register_options;
typedef struct sd_registration {
  char status[32];
  char substatus[64];
  char assigned_hub[256];
  char device_id[130];
  cJSON *payload; /* may be NULL; caller deletes */
  long long assigned_at_ms; /* monotonic, for measurements */
} sd_registration;
int sd_register(const sd_register_options *opts, sd_registration *out, sd_error *err);
/* Maps a DPS failure (errorCode, status, MQTT status) to an exit code and message, as dps-errors.ts does. */
int sd_explain_dps_failure(const char *registration_id, long error_code, const char *status, int mqtt_status,
                           const char *dps_message, sd_error *err);

/* ---- hub.c ---- */
typedef struct sd_connect_options {
  const char *hub;
  const char *device_id;
  const char *device_key;
  sd_endpoint via; /* where to connect */
  int has_via;
  const char *ca_file;
  long long count; /* -1: until Ctrl-C */
  long long connect_timeout_ms;
  long long twin_timeout_ms;
  int progress_to_stderr;
  long long sas_lifetime_seconds; /* 0: one hour, as the Node SDK's tokens */
} sd_connect_options;
typedef struct sd_connection {
  cJSON *desired; /* caller deletes */
  cJSON *reported; /* caller deletes */
  long long telemetry_sent;
  long long interval_seconds;
  long long desired_updates;
} sd_connection;
int sd_connect_hub(const sd_connect_options *opts, sd_connection *out, sd_error *err);
int sd_valid_hub_name(const char *hub);
int sd_valid_device_id(const char *id);

#endif
