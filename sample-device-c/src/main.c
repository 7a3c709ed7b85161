/*
 * sample-device-c: the C twin of sample-device/ (the Node sample). The same commands, flags, environment variables,
 * exit codes and output lines: keygen, token, register, connect, run. This file only parses arguments, prints and
 * maps errors to exit codes; the steps live in crypto.c, jwt.c, sas.c, dps.c and hub.c.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include "sd.h"

#define PROGRAM "sample-device-c"
#define DEFAULT_DPS_HOST "global.azure-devices-provisioning.net"
#define MQTT_PORT 8883
#define DEFAULT_TIMEOUT_S 120
#define DEFAULT_CONNECT_TIMEOUT_S 30
#define DEFAULT_TWIN_TIMEOUT_S 30

/* ---- options ---- */
enum { OPT_STRING, OPT_BOOL };
typedef struct opt_spec {
  const char *name;
  int type;
} opt_spec;

#define MAX_OPTS 24
typedef struct values {
  const char *names[MAX_OPTS];
  const char *strings[MAX_OPTS];
  int count;
} values;

static const opt_spec KEYGEN_OPTS[] = {{"out-dir", OPT_STRING}, {"name", OPT_STRING}, {NULL, 0}};
static const opt_spec TOKEN_OPTS[] = {{"private-key", OPT_STRING}, {"registration-id", OPT_STRING}, {"id-scope", OPT_STRING},
                                      {"host", OPT_STRING}, {"lifetime", OPT_STRING}, {"kid", OPT_STRING},
                                      {"jti", OPT_STRING}, {"iat", OPT_STRING}, {NULL, 0}};
static const opt_spec REGISTER_OPTS[] = {
    {"registration-id", OPT_STRING}, {"id-scope", OPT_STRING}, {"private-key", OPT_STRING}, {"symmetric-key", OPT_STRING},
    {"group-key", OPT_STRING}, {"host", OPT_STRING}, {"transport", OPT_STRING}, {"ca", OPT_STRING},
    {"lifetime", OPT_STRING}, {"kid", OPT_STRING}, {"timeout", OPT_STRING}, {"json", OPT_BOOL}, {NULL, 0}};
static const opt_spec CONNECT_OPTS[] = {
    {"hub", OPT_STRING}, {"device-id", OPT_STRING}, {"symmetric-key", OPT_STRING}, {"group-key", OPT_STRING},
    {"hub-host", OPT_STRING}, {"ca", OPT_STRING}, {"count", OPT_STRING}, {"connect-timeout", OPT_STRING},
    {"twin-timeout", OPT_STRING}, {"json", OPT_BOOL}, {NULL, 0}};
static const opt_spec RUN_OPTS[] = {
    {"registration-id", OPT_STRING}, {"id-scope", OPT_STRING}, {"private-key", OPT_STRING}, {"symmetric-key", OPT_STRING},
    {"group-key", OPT_STRING}, {"host", OPT_STRING}, {"transport", OPT_STRING}, {"ca", OPT_STRING},
    {"lifetime", OPT_STRING}, {"kid", OPT_STRING}, {"timeout", OPT_STRING}, {"json", OPT_BOOL},
    {"hub-host", OPT_STRING}, {"count", OPT_STRING}, {"connect-timeout", OPT_STRING}, {"twin-timeout", OPT_STRING}, {NULL, 0}};

typedef struct command {
  const char *name;
  const char *summary;
  const char *usage;
  const opt_spec *opts;
  const char *help;
} command;

#define CONNECT_HELP \
  "  --hub-host H[:PORT]     connect here instead of the hub's own name (the local hub: localhost:8884);\n" \
  "                          the SAS and the MQTT username keep naming the hub\n" \
  "  --count N               telemetry messages to send (default: until Ctrl-C)\n" \
  "  --connect-timeout S     give up connecting after S seconds (default 30), exit 11\n" \
  "  --twin-timeout S        give up waiting for the twin after S seconds (default 30), exit 13\n"

static const command COMMANDS[] = {
    {"keygen", "create the device P-256 key pair (PEM files)", PROGRAM " keygen --out-dir DIR [--name NAME]", KEYGEN_OPTS,
     "Creates a P-256 key pair for ES256 tokens:\n"
     "  <NAME>.key.pem  private key, PKCS#8, mode 0600: stays on the device\n"
     "  <NAME>.pub.pem  public key, SPKI: goes to the webhook's key store (DEVICE_KEYS_DIR/<registration id>.pem)\n"
     "and prints the public key's JWK thumbprint (RFC 7638), a good --kid. Never overwrites an existing file.\n\n"
     "Options:\n"
     "  --out-dir DIR   directory for the files (created, mode 0700, if missing)\n"
     "  --name NAME     file name stem, usually the registration id (default: device)\n"
     "  -h, --help      show this help\n"},
    {"token", "print a fresh registration token and its decoded header and claims",
     PROGRAM " token --private-key FILE --registration-id ID [--id-scope S] [--host H] [--lifetime 300] [--kid K] [--jti ID] [--iat T]", TOKEN_OPTS,
     "Signs the ES256 token `register` would send and prints it (first line), then its header and claims.\n"
     "This command exists to inspect tokens: what it prints is a working credential until it expires.\n\n"
     "Options:\n"
     "  --private-key FILE      the device's private key (PKCS#8 or SEC1 PEM)\n"
     "  --registration-id ID    goes into sub and registration_id\n"
     "  --id-scope S            goes into aud and id_scope (the webhook may require it)\n"
     "  --host H                goes into provisioning_host\n"
     "  --lifetime SECONDS      exp - iat, 1..864000 (default 300)\n"
     "  --kid=K                 key id for the header (the = form is needed when it starts with -)\n"
     "  --jti ID                a fixed jti instead of a random UUID (test vectors; a replay store refuses a reused one)\n"
     "  --iat SECONDS           a fixed iat (epoch seconds) instead of now (test vectors)\n"
     "  -h, --help              show this help\n"},
    {"register", "register with DPS, presenting a signed token to the webhook",
     PROGRAM " register --registration-id ID --id-scope S --private-key FILE (--symmetric-key KEY | --group-key KEY) [options]",
     REGISTER_OPTS,
     "Signs a short-lived ES256 token, sends it as the provisioning payload {\"jwt\": ...} to DPS over MQTT (TLS,\n"
     "symmetric-key attestation), and prints the assigned hub, device id and the payload the webhook returned.\n\n"
     "Options:\n"
     "  --registration-id ID    the device's registration id\n"
     "  --id-scope S            the DPS ID scope\n"
     "  --private-key FILE      the device's private key (PKCS#8 or SEC1 PEM)\n"
     "  --symmetric-key KEY     individual enrollment key (or env DEVICE_SYMMETRIC_KEY, kept out of shell history)\n"
     "  --group-key KEY         enrollment group key; the device key is derived from it (or env DEVICE_GROUP_KEY)\n"
     "  --host H[:PORT]         DPS endpoint (default " DEFAULT_DPS_HOST ", port 8883)\n"
     "  --transport T           mqtt (the only transport of the C sample; default mqtt)\n"
     "  --ca FILE               CA certificates (PEM) to trust instead of the system's, e.g. a local DPS's\n"
     "  --lifetime SECONDS      token lifetime, 1..864000 (default 300)\n"
     "  --kid=K                 key id for the token header (write --kid=K: a thumbprint may start with -)\n"
     "  --timeout SECONDS       give up after this long (default 120)\n"
     "  --json                  print the result (or the error) as JSON on stdout\n"
     "  -h, --help              show this help\n\n"
     "Neither the keys, the SAS token nor the JWT are ever printed.\n"},
    {"connect", "connect to the assigned hub: print the desired properties, report back, send telemetry",
     PROGRAM " connect --hub HUB --device-id ID (--symmetric-key KEY | --group-key KEY) [--hub-host H:PORT] [--ca FILE] [--count N]",
     CONNECT_OPTS,
     "Connects to the IoT hub DPS assigned over MQTT (TLS) with the device's key, prints the twin's desired\n"
     "properties, reports a property back, and sends a telemetry message every desired telemetryInterval seconds\n"
     "(default 30; updates are followed) for --count messages or until Ctrl-C.\n\n"
     "Options:\n"
     "  --hub HUB               the assigned hub's host name (register prints it)\n"
     "  --device-id ID          the device id (register prints it; a group device's is its registration id)\n"
     "  --symmetric-key KEY     the individual enrollment's key (or env DEVICE_SYMMETRIC_KEY)\n"
     "  --group-key KEY         the enrollment group's key; the device key is derived (or env DEVICE_GROUP_KEY)\n" CONNECT_HELP
     "  --ca FILE               CA certificates (PEM) to trust, e.g. the local DPS's\n"
     "  --json                  print the result (or the error) as JSON on stdout\n"
     "  -h, --help              show this help\n\n"
     "Nothing secret is printed. Exit codes: 0 done (also on Ctrl-C while sending telemetry), 11 hub_unreachable,\n"
     "12 hub_unauthorized, 13 twin_timeout, 2 usage, 3 file, 130 Ctrl-C before the telemetry started.\n"},
    {"run", "register, then connect to the assigned hub (register + connect in one)",
     PROGRAM " run --registration-id ID --id-scope S --private-key FILE (--symmetric-key KEY | --group-key KEY) [register options] [--hub-host H:PORT] [--count N]",
     RUN_OPTS,
     "Runs `register` (see its --help for the options and exit codes), then `connect` to the hub DPS assigned, with\n"
     "the same key: prints the desired properties, reports a property back, sends telemetry.\n\n"
     "Connect options:\n" CONNECT_HELP "\n"
     "Exit codes: those of register, then 11 hub_unreachable, 12 hub_unauthorized, 13 twin_timeout.\n"},
};
#define COMMAND_COUNT (sizeof COMMANDS / sizeof COMMANDS[0])

static void tool_help(FILE *f) {
  fprintf(f, PROGRAM ": a device that registers with Azure IoT Hub DPS presenting an ES256 JWT signed with its factory key\n"
             "(C11, Eclipse Paho MQTT C over TLS, OpenSSL, cJSON)\n\nUsage: " PROGRAM " <command> [options]\n\nCommands:\n");
  for (size_t i = 0; i < COMMAND_COUNT; i++) fprintf(f, "  %-8s  %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  fprintf(f, "\nRun `" PROGRAM " <command> --help` for a command's options and `" PROGRAM " register --help` for exit codes.\n");
}

static void command_help(const command *c) {
  printf("Usage: %s\n\n%s", c->usage, c->help);
  if (strcmp(c->name, "register") == 0) {
    printf("\nExit codes:\n    0  assigned\n");
    for (size_t i = 0; i < SD_ALL_CODES_COUNT; i++) {
      printf("  %3d  %-22s %s\n", SD_ALL_CODES[i], sd_code_name(SD_ALL_CODES[i]), sd_code_summary(SD_ALL_CODES[i]));
    }
  }
}

/* The last occurrence wins, as with node:util parseArgs. */
static const char *get(const values *v, const char *name) {
  for (int i = v->count - 1; i >= 0; i--) if (strcmp(v->names[i], name) == 0) return v->strings[i];
  return NULL;
}

/* parseArgs' rules (strict, no positionals, --flag value or --flag=value), with errors that name the flag and never echo a value. */
static int parse(const command *c, int argc, char **argv, values *v, sd_error *err) {
  memset(v, 0, sizeof *v);
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
      return sd_fail(err, SD_USAGE, "`%s` takes only --options; found a stray argument (a value without its flag?)", c->name);
    }
    char name[64];
    const char *eq = strchr(arg + 2, '=');
    size_t len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, arg + 2, len);
    name[len] = '\0';
    const opt_spec *spec = NULL;
    for (const opt_spec *s = c->opts; s->name != NULL; s++) if (strcmp(s->name, name) == 0) spec = s;
    if (spec == NULL) {
      /* The flag is ours to echo only if it looks like a flag: a stray key must never reach the terminal. */
      int plain = 1;
      for (const char *p = name; *p != '\0'; p++) if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) plain = 0;
      if (plain) return sd_fail(err, SD_USAGE, "--%s is not an option of `%s` (see `" PROGRAM " %s --help`)", name, c->name, c->name);
      return sd_fail(err, SD_USAGE, "an argument of `%s` is not one of its options (see `" PROGRAM " %s --help`)", c->name, c->name);
    }
    if (v->count >= MAX_OPTS) return sd_fail(err, SD_USAGE, "too many options");
    const char *value;
    if (spec->type == OPT_BOOL) {
      if (eq != NULL) return sd_fail(err, SD_USAGE, "--%s takes no value", spec->name);
      value = "true";
    } else if (eq != NULL) {
      value = eq + 1;
    } else {
      if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) return sd_fail(err, SD_USAGE, "--%s needs a value", spec->name);
      value = argv[++i];
    }
    v->names[v->count] = spec->name;
    v->strings[v->count] = value;
    v->count++;
  }
  return SD_OK;
}

static int required(const values *v, const char *name, const char **out, sd_error *err) {
  const char *s = get(v, name);
  int blank = 1;
  if (s != NULL) for (const char *p = s; *p != '\0'; p++) if (*p != ' ' && *p != '\t') blank = 0;
  if (s == NULL || blank) return sd_fail(err, SD_USAGE, "--%s is required", name);
  *out = s;
  return SD_OK;
}

/* A whole number of seconds (or a count); -1 when absent. */
static int whole(const values *v, const char *name, const char *what, long long max, long long *out, sd_error *err) {
  const char *s = get(v, name);
  *out = -1;
  if (s == NULL) return SD_OK;
  size_t n = strlen(s);
  if (n == 0 || n > 12 || strspn(s, "0123456789") != n) return sd_fail(err, SD_USAGE, "--%s must be a whole number%s, got \"%.40s\"", name, what, s);
  *out = strtoll(s, NULL, 10);
  if (*out > max) return sd_fail(err, SD_USAGE, "--%s must be at most %lld", name, max);
  return SD_OK;
}

/* ---- JSON printing as JavaScript's JSON.stringify(value, null, 2) ---- */
static void print_json(FILE *f, const cJSON *item, int depth) {
  if (cJSON_IsObject(item) || cJSON_IsArray(item)) {
    int obj = cJSON_IsObject(item);
    if (item->child == NULL) {
      fputs(obj ? "{}" : "[]", f);
      return;
    }
    fputc(obj ? '{' : '[', f);
    for (const cJSON *c = item->child; c != NULL; c = c->next) {
      fprintf(f, "\n%*s", 2 * (depth + 1), "");
      if (obj) {
        cJSON *key = cJSON_CreateString(c->string);
        char *k = cJSON_PrintUnformatted(key);
        fprintf(f, "%s: ", k);
        cJSON_free(k);
        cJSON_Delete(key);
      }
      print_json(f, c, depth + 1);
      if (c->next != NULL) fputc(',', f);
    }
    fprintf(f, "\n%*s%c", 2 * depth, "", obj ? '}' : ']');
    return;
  }
  char *text = cJSON_PrintUnformatted(item);
  fputs(text != NULL ? text : "null", f);
  cJSON_free(text);
}

/* Prints JSON with every line after the first indented by `pad` spaces (the text output's continuation lines). */
static void print_json_indented(const cJSON *item, int pad) {
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  if (mem == NULL) return;
  print_json(mem, item, 0);
  fclose(mem);
  for (const char *p = buf; *p != '\0'; p++) {
    putchar(*p);
    if (*p == '\n') printf("%*s", pad, "");
  }
  free(buf);
}

/* ---- keys ---- */
typedef struct keys {
  char *device_key; /* owned; cleansed on free */
  const char *attestation;
} keys;

static void free_keys(keys *k) {
  if (k->device_key != NULL) {
    OPENSSL_cleanse(k->device_key, strlen(k->device_key));
    free(k->device_key);
  }
  k->device_key = NULL;
}

/* Keys from flags, else from the environment (keeps them out of shell history and `ps`). The group key derives for `id`. */
static int pick_key(const values *v, const char *id, keys *out, sd_error *err) {
  const char *sym = get(v, "symmetric-key");
  const char *group = get(v, "group-key");
  if (sym == NULL && group == NULL) {
    const char *e1 = getenv("DEVICE_SYMMETRIC_KEY");
    const char *e2 = getenv("DEVICE_GROUP_KEY");
    if (e1 != NULL && strspn(e1, " \t\n") != strlen(e1)) sym = e1;
    if (e2 != NULL && strspn(e2, " \t\n") != strlen(e2)) group = e2;
  }
  if (sym != NULL && group != NULL) {
    return sd_fail(err, SD_USAGE, "--symmetric-key and --group-key exclude each other (also via DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY); give one");
  }
  if (sym != NULL) {
    if (sd_check_symmetric_key(sym) != 0) return sd_fail(err, SD_USAGE, "--symmetric-key must be a base64 key as shown by DPS (primary or secondary key)");
    /* Trimmed, as the Node sample uses it. */
    while (*sym == ' ' || *sym == '\t' || *sym == '\n') sym++;
    size_t n = strlen(sym);
    while (n > 0 && (sym[n - 1] == ' ' || sym[n - 1] == '\t' || sym[n - 1] == '\n' || sym[n - 1] == '\r')) n--;
    out->device_key = strndup(sym, n);
    out->attestation = "symmetric-key";
    return out->device_key != NULL ? SD_OK : sd_fail(err, SD_INTERNAL, "out of memory");
  }
  if (group != NULL) {
    out->device_key = sd_derive_device_key(group, id);
    if (out->device_key == NULL) return sd_fail(err, SD_USAGE, "--group-key must be a base64 key as shown by DPS (primary or secondary key)");
    out->attestation = "group-key";
    return SD_OK;
  }
  return sd_fail(err, SD_USAGE, "--symmetric-key or --group-key is required (or set DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY)");
}

/* ---- commands ---- */
static int cmd_keygen(const values *v, sd_error *err) {
  const char *dir;
  if (required(v, "out-dir", &dir, err) != SD_OK) return err->code;
  const char *name = get(v, "name") != NULL ? get(v, "name") : "device";
  size_t n = strlen(name);
  int ok = n >= 1 && n <= 128 && name[0] != '.' && strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
  if (!ok) return sd_fail(err, SD_USAGE, "--name must be a plain file name: 1-128 of letters, digits, . _ : - (no /, no leading dot)");
  char priv[4200], pub[4200];
  char *thumb = NULL;
  if (sd_keygen(dir, name, priv, sizeof priv, pub, sizeof pub, &thumb, err) != SD_OK) return err->code;
  printf("Wrote a P-256 key pair:\n"
         "  private key:  %s  (PKCS#8, mode 0600: keep it on the device)\n"
         "  public key:   %s  (SPKI: give it to the webhook's key store)\n"
         "  thumbprint:   %s  (JWK SHA-256 thumbprint, a good --kid=<thumbprint>)\n",
         priv, pub, thumb);
  free(thumb);
  return SD_OK;
}

typedef struct token_inputs {
  const char *registration_id;
  const char *id_scope;
  const char *host;
  const char *kid;
  long long lifetime;
} token_inputs;

static int token_flags(const values *v, token_inputs *t, sd_error *err) {
  if (!sd_valid_registration_id(t->registration_id)) {
    return sd_fail(err, SD_USAGE, "--registration-id must be 1-128 characters of letters, digits, - . _ : and end in a letter, digit or -");
  }
  long long lifetime;
  if (whole(v, "lifetime", " of seconds", 1LL << 40, &lifetime, err) != SD_OK) return err->code;
  t->lifetime = lifetime < 0 ? SD_DEFAULT_LIFETIME : lifetime;
  if (t->lifetime < 1 || t->lifetime > SD_MAX_LIFETIME) return sd_fail(err, SD_USAGE, "--lifetime must be a whole number of seconds from 1 to %d", SD_MAX_LIFETIME);
  t->kid = get(v, "kid");
  if (t->kid != NULL && strspn(t->kid, " \t") == strlen(t->kid)) return sd_fail(err, SD_USAGE, "--kid must not be empty");
  return SD_OK;
}

static int cmd_token(const values *v, sd_error *err) {
  const char *key_file;
  token_inputs t = {0};
  if (required(v, "private-key", &key_file, err) || required(v, "registration-id", &t.registration_id, err)) return err->code;
  t.id_scope = get(v, "id-scope");
  t.host = get(v, "host");
  if (token_flags(v, &t, err) != SD_OK) return err->code;
  /* Fixed jti and iat for test vectors: the same JSON-safe characters the Node sample allows (assertJti). */
  const char *jti = get(v, "jti");
  if (jti != NULL) {
    size_t n = strlen(jti);
    if (n < 1 || n > 128 || strspn(jti, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") != n) {
      return sd_fail(err, SD_USAGE, "--jti must be 1-128 of letters, digits, . _ : -");
    }
  }
  long long iat;
  if (whole(v, "iat", " of seconds", 1LL << 36, &iat, err) != SD_OK) return err->code;
  EVP_PKEY *key = NULL;
  if (sd_load_private_key(key_file, "--private-key", &key, err) != SD_OK) return err->code;
  sd_token_request req = {key, t.registration_id, t.id_scope, t.host, t.kid, t.lifetime, iat >= 0 ? iat : sd_epoch_ms() / 1000, jti};
  cJSON *header = NULL, *claims = NULL;
  char *token = sd_sign_token(&req, &header, &claims);
  char *thumb = sd_jwk_thumbprint(key);
  EVP_PKEY_free(key);
  if (token == NULL || thumb == NULL) {
    free(token);
    free(thumb);
    return sd_fail(err, SD_INTERNAL, "cannot sign the token");
  }
  char expires[32];
  sd_iso_time((req.now + req.lifetime) * 1000, expires);
  printf("%s\n\nheader: ", token);
  print_json(stdout, header, 0);
  printf("\nclaims: ");
  print_json(stdout, claims, 0);
  printf("\nsigned by key thumbprint %s; expires %s\n", thumb, expires);
  OPENSSL_cleanse(token, strlen(token));
  free(token);
  free(thumb);
  cJSON_Delete(header);
  cJSON_Delete(claims);
  return SD_OK;
}

typedef struct registration_result {
  sd_registration reg;
  char host[300];
  char attestation[16];
  char thumbprint[64];
  char expires[32];
  char registration_id[130];
} registration_result;

static int do_register(const values *v, registration_result *r, keys *k, sd_error *err) {
  token_inputs t = {0};
  const char *key_file;
  if (required(v, "registration-id", &t.registration_id, err) || required(v, "id-scope", &t.id_scope, err) ||
      required(v, "private-key", &key_file, err)) {
    return err->code;
  }
  const char *transport = get(v, "transport") != NULL ? get(v, "transport") : "mqtt";
  if (strcmp(transport, "mqtt") != 0) {
    if (strcmp(transport, "http") == 0) {
      sd_fail(err, SD_USAGE, "--transport http is not available in the C sample, which speaks MQTT only; use --transport mqtt");
      sd_hint(err, "The Node sample (sample-device/) registers over HTTPS too.");
      return SD_USAGE;
    }
    return sd_fail(err, SD_USAGE, "--transport must be mqtt, got \"%.20s\"", transport);
  }
  long long timeout;
  if (whole(v, "timeout", " of seconds", 86400, &timeout, err) != SD_OK) return err->code;
  if (timeout == 0) return sd_fail(err, SD_USAGE, "--timeout must be at least 1 second");
  if (timeout < 0) timeout = DEFAULT_TIMEOUT_S;
  if (token_flags(v, &t, err) != SD_OK) return err->code;
  if (!sd_valid_id_scope(t.id_scope)) return sd_fail(err, SD_USAGE, "--id-scope must be the DPS ID scope, e.g. 0ne00A1B2C3");
  sd_register_options o = {0};
  const char *host = get(v, "host") != NULL ? get(v, "host") : DEFAULT_DPS_HOST;
  if (sd_parse_host(host, "--host", MQTT_PORT, &o.endpoint, err) != SD_OK) return err->code;
  if (pick_key(v, t.registration_id, k, err) != SD_OK) return err->code;
  const char *ca = get(v, "ca");
  if (ca != NULL && sd_check_ca_file(ca, err) != SD_OK) return err->code;
  EVP_PKEY *key = NULL;
  if (sd_load_private_key(key_file, "--private-key", &key, err) != SD_OK) return err->code;
  long long now = sd_epoch_ms() / 1000;
  sd_token_request req = {key, t.registration_id, t.id_scope, host, t.kid, t.lifetime, now, NULL};
  char *jwt = sd_sign_token(&req, NULL, NULL);
  char *thumb = sd_jwk_thumbprint(key);
  EVP_PKEY_free(key);
  if (jwt == NULL || thumb == NULL) {
    free(jwt);
    free(thumb);
    return sd_fail(err, SD_INTERNAL, "cannot sign the token");
  }
  snprintf(r->thumbprint, sizeof r->thumbprint, "%s", thumb);
  free(thumb);
  sd_iso_time((now + t.lifetime) * 1000, r->expires);
  snprintf(r->host, sizeof r->host, "%s", host);
  snprintf(r->attestation, sizeof r->attestation, "%s", k->attestation);
  snprintf(r->registration_id, sizeof r->registration_id, "%s", t.registration_id);
  o.registration_id = t.registration_id;
  o.id_scope = t.id_scope;
  o.device_key = k->device_key;
  o.attestation = k->attestation;
  o.jwt = jwt;
  o.ca_file = ca;
  o.timeout_ms = timeout * 1000;
  int code = sd_register(&o, &r->reg, err);
  OPENSSL_cleanse(jwt, strlen(jwt));
  free(jwt);
  return code;
}

static cJSON *registration_json(const registration_result *r) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "registrationId", r->registration_id);
  cJSON_AddStringToObject(j, "deviceId", r->reg.device_id);
  cJSON_AddStringToObject(j, "assignedHub", r->reg.assigned_hub);
  cJSON_AddStringToObject(j, "status", r->reg.status);
  if (r->reg.substatus[0] != '\0') cJSON_AddStringToObject(j, "substatus", r->reg.substatus);
  if (r->reg.payload != NULL) cJSON_AddItemToObject(j, "payload", cJSON_Duplicate(r->reg.payload, 1));
  cJSON_AddStringToObject(j, "transport", "mqtt");
  cJSON_AddStringToObject(j, "host", r->host);
  cJSON_AddStringToObject(j, "attestation", r->attestation);
  cJSON_AddStringToObject(j, "keyThumbprint", r->thumbprint);
  cJSON_AddStringToObject(j, "tokenExpiresAt", r->expires);
  return j;
}

static void print_registration(const registration_result *r) {
  printf("%s registered over mqtt with %s\n", r->registration_id, r->host);
  if (r->reg.substatus[0] != '\0') printf("  status:        %s (%s)\n", r->reg.status, r->reg.substatus);
  else printf("  status:        %s\n", r->reg.status);
  printf("  assigned hub:  %s\n  device id:     %s\n  payload:       ", r->reg.assigned_hub, r->reg.device_id);
  if (r->reg.payload == NULL) printf("(none)");
  else print_json_indented(r->reg.payload, 17);
  printf("\n  attestation:   %s; token signed by key %s, expires %s\n", r->attestation, r->thumbprint, r->expires);
  fflush(stdout);
}

static void print_doc(const cJSON *doc) {
  print_json(stdout, doc, 0);
  putchar('\n');
}

static int connect_flags(const values *v, sd_connect_options *o, sd_error *err) {
  long long count, twin, conn;
  if (whole(v, "count", "", 1LL << 40, &count, err) || whole(v, "twin-timeout", " of seconds", 86400, &twin, err) ||
      whole(v, "connect-timeout", " of seconds", 86400, &conn, err)) {
    return err->code;
  }
  if (twin == 0) return sd_fail(err, SD_USAGE, "--twin-timeout must be at least 1 second");
  if (conn == 0) return sd_fail(err, SD_USAGE, "--connect-timeout must be at least 1 second");
  o->count = count;
  o->twin_timeout_ms = (twin < 0 ? DEFAULT_TWIN_TIMEOUT_S : twin) * 1000;
  o->connect_timeout_ms = (conn < 0 ? DEFAULT_CONNECT_TIMEOUT_S : conn) * 1000;
  o->ca_file = get(v, "ca");
  o->progress_to_stderr = get(v, "json") != NULL;
  const char *via = get(v, "hub-host");
  if (via != NULL) {
    if (sd_parse_host(via, "--hub-host", MQTT_PORT, &o->via, err) != SD_OK) return err->code;
    o->has_via = 1;
  }
  return SD_OK;
}

static cJSON *connection_json(const sd_connect_options *o, const sd_connection *c) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "hub", o->hub);
  cJSON_AddStringToObject(j, "deviceId", o->device_id);
  cJSON_AddStringToObject(j, "via", o->has_via ? o->via.given : o->hub);
  cJSON_AddItemToObject(j, "desired", cJSON_Duplicate(c->desired, 1));
  cJSON_AddItemToObject(j, "reported", cJSON_Duplicate(c->reported, 1));
  cJSON_AddNumberToObject(j, "telemetrySent", (double)c->telemetry_sent);
  cJSON_AddNumberToObject(j, "telemetryIntervalSeconds", (double)c->interval_seconds);
  cJSON_AddNumberToObject(j, "desiredUpdates", (double)c->desired_updates);
  return j;
}

static void print_connection(const sd_connect_options *o, const sd_connection *c) {
  if (o->has_via) printf("%s connected to %s (via %s)\n", o->device_id, o->hub, o->via.given);
  else printf("%s connected to %s\n", o->device_id, o->hub);
  char *d = cJSON_PrintUnformatted(c->desired), *r = cJSON_PrintUnformatted(c->reported);
  printf("  desired:       %s\n  reported:      %s\n", d, r);
  printf("  telemetry:     %lld message(s), every %lld s; %lld desired update(s) received\n", c->telemetry_sent, c->interval_seconds, c->desired_updates);
  cJSON_free(d);
  cJSON_free(r);
}

static int do_connect(const values *v, const char *hub, const char *device_id, const char *device_key, sd_error *err) {
  sd_connect_options o = {0};
  o.hub = hub;
  o.device_id = device_id;
  o.device_key = device_key;
  if (connect_flags(v, &o, err) != SD_OK) return err->code;
  if (o.ca_file != NULL && sd_check_ca_file(o.ca_file, err) != SD_OK) return err->code;
  sd_connection c;
  if (sd_connect_hub(&o, &c, err) != SD_OK) return err->code;
  if (get(v, "json") != NULL) {
    cJSON *doc = connection_json(&o, &c);
    cJSON_AddTrueToObject(doc, "ok");
    print_doc(doc);
    cJSON_Delete(doc);
  } else {
    print_connection(&o, &c);
  }
  cJSON_Delete(c.desired);
  cJSON_Delete(c.reported);
  return SD_OK;
}

static int cmd_connect(const values *v, sd_error *err) {
  const char *hub, *device_id;
  if (required(v, "hub", &hub, err) || required(v, "device-id", &device_id, err)) return err->code;
  if (!sd_valid_hub_name(hub)) return sd_fail(err, SD_USAGE, "--hub must be the assigned hub's host name, e.g. hub-eu.azure-devices.net");
  if (!sd_valid_device_id(device_id)) return sd_fail(err, SD_USAGE, "--device-id must be an IoT Hub device id (1-128 characters)");
  keys k = {0};
  /* A group device's id is its registration id, so the group key derives for the device id. */
  if (pick_key(v, device_id, &k, err) != SD_OK) return err->code;
  int code = do_connect(v, hub, device_id, k.device_key, err);
  free_keys(&k);
  return code;
}

static int cmd_register(const values *v, int then_connect, sd_error *err) {
  registration_result r;
  memset(&r, 0, sizeof r);
  keys k = {0};
  if (then_connect) {
    /* `run`: a bad connect option is a usage error before anything is registered. */
    sd_connect_options check = {0};
    if (connect_flags(v, &check, err) != SD_OK) return err->code;
    if (check.ca_file != NULL && sd_check_ca_file(check.ca_file, err) != SD_OK) return err->code;
  }
  int code = do_register(v, &r, &k, err);
  int json = get(v, "json") != NULL;
  if (code == SD_OK && !then_connect) {
    if (json) {
      cJSON *doc = registration_json(&r);
      cJSON *ok = cJSON_CreateObject();
      cJSON_AddTrueToObject(ok, "ok");
      for (cJSON *c = doc->child; c != NULL; c = c->next) cJSON_AddItemToObject(ok, c->string, cJSON_Duplicate(c, 1));
      print_doc(ok);
      cJSON_Delete(ok);
      cJSON_Delete(doc);
    } else {
      print_registration(&r);
    }
  } else if (code == SD_OK) {
    if (!json) print_registration(&r);
    sd_connect_options o = {0};
    o.hub = r.reg.assigned_hub;
    o.device_id = r.reg.device_id;
    o.device_key = k.device_key;
    code = connect_flags(v, &o, err);
    sd_connection c;
    if (code == SD_OK) code = sd_connect_hub(&o, &c, err);
    if (code == SD_OK) {
      if (json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddTrueToObject(doc, "ok");
        cJSON_AddItemToObject(doc, "registration", registration_json(&r));
        cJSON_AddItemToObject(doc, "connection", connection_json(&o, &c));
        print_doc(doc);
        cJSON_Delete(doc);
      } else {
        print_connection(&o, &c);
      }
      cJSON_Delete(c.desired);
      cJSON_Delete(c.reported);
    }
  }
  cJSON_Delete(r.reg.payload);
  free_keys(&k);
  return code;
}

static void on_sigint(int sig) {
  (void)sig;
  /* A second Ctrl-C exits at once; so does one while Paho's connect blocks (nothing is half-written then). */
  if (sd_interrupted || sd_in_connect) _exit(SD_INTERRUPTED);
  sd_interrupted = 1;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    tool_help(stdout);
    return argc < 2 ? SD_USAGE : SD_OK;
  }
  const command *c = NULL;
  for (size_t i = 0; i < COMMAND_COUNT; i++) if (strcmp(argv[1], COMMANDS[i].name) == 0) c = &COMMANDS[i];
  if (c == NULL) {
    /* Echo an unknown command only if short and plain: it could be a pasted key. */
    fprintf(stderr, PROGRAM ": error: unknown command \"%.40s\"\n\n", argv[1]);
    tool_help(stderr);
    return SD_USAGE;
  }
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      command_help(c);
      return SD_OK;
    }
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  sd_error err;
  memset(&err, 0, sizeof err);
  values v;
  int code = parse(c, argc - 2, argv + 2, &v, &err);
  int json = code == SD_OK && get(&v, "json") != NULL;
  if (code == SD_OK) {
    if (strcmp(c->name, "keygen") == 0) code = cmd_keygen(&v, &err);
    else if (strcmp(c->name, "token") == 0) code = cmd_token(&v, &err);
    else if (strcmp(c->name, "register") == 0) code = cmd_register(&v, 0, &err);
    else if (strcmp(c->name, "run") == 0) code = cmd_register(&v, 1, &err);
    else code = cmd_connect(&v, &err);
  }
  fflush(stdout);
  if (code != SD_OK) {
    fprintf(stderr, PROGRAM " %s: error: %s\n", c->name, err.message);
    if (err.hint[0] != '\0') fprintf(stderr, "  hint: %s\n", err.hint);
    if (code == SD_USAGE) fprintf(stderr, "  usage: %s\n", c->usage);
    if (json) {
      cJSON *doc = cJSON_CreateObject();
      cJSON_AddFalseToObject(doc, "ok");
      cJSON_AddStringToObject(doc, "code", sd_code_name(code));
      cJSON_AddNumberToObject(doc, "exitCode", code);
      cJSON_AddStringToObject(doc, "message", err.message);
      if (err.dps_error_code != 0) cJSON_AddNumberToObject(doc, "dpsErrorCode", (double)err.dps_error_code);
      if (err.dps_status[0] != '\0') cJSON_AddStringToObject(doc, "dpsStatus", err.dps_status);
      if (err.hint[0] != '\0') cJSON_AddStringToObject(doc, "hint", err.hint);
      print_doc(doc);
      cJSON_Delete(doc);
    }
  }
  return code;
}
