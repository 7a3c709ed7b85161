/*
 * After `assigned`: the device on its IoT hub over MQTT 3.1.1 on TLS (Microsoft Learn iot-mqtt-connect-to-iot-hub):
 * clientId = device id, username `{hub}/{deviceId}/?api-version=2021-04-12`, password a SAS over
 * `urlencode({hub}/devices/{deviceId})` without skn. Reads the twin (`$iothub/twin/GET/?$rid=`), reports
 * properties (`$iothub/twin/PATCH/properties/reported/?$rid=`, answered 204), sends telemetry to
 * `devices/{id}/messages/events/{property bag}` at QoS 1, and follows desired-property pushes
 * (`$iothub/twin/PATCH/properties/desired/?$version=`). What `connect` of the Node sample does.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "sd.h"

#define HUB_API_VERSION "2021-04-12"
#define TWIN_PREFIX "$iothub/twin/"
#define TWIN_RESPONSE "$iothub/twin/res/"
#define DESIRED_PUSH "$iothub/twin/PATCH/properties/desired/"
#define DEFAULT_INTERVAL 30
#define MAX_INTERVAL (24 * 3600)
#define SAS_LIFETIME_SECONDS 3600
#define SEND_TIMEOUT_MS 30000

int sd_valid_hub_name(const char *hub) {
  size_t n = strlen(hub);
  if (n < 1 || n > 253) return 0;
  size_t label = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)hub[i];
    if (c == '.') {
      if (label == 0 || hub[i - 1] == '-') return 0;
      label = 0;
      continue;
    }
    if (!(isalnum(c) || c == '-') || (label == 0 && c == '-') || ++label > 63) return 0;
  }
  return label > 0 && hub[n - 1] != '-';
}

int sd_valid_device_id(const char *id) {
  /* IoT Hub device ids: up to 128 of letters, digits and - . + % _ # * ? ! ( ) , : = @ $ ' (identity registry docs). */
  size_t n = strlen(id);
  if (n < 1 || n > 128) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    if (!isalnum(c) && strchr("-.+%_#*?!(),:=@$'", c) == NULL) return 0;
  }
  return 1;
}

__attribute__((format(printf, 2, 3))) static void progress(const sd_connect_options *o, const char *fmt, ...) {
  FILE *f = o->progress_to_stderr ? stderr : stdout;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fflush(f);
}

static long long interval_from(const cJSON *desired, long long fallback) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(desired, "telemetryInterval");
  if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > MAX_INTERVAL) return fallback;
  return (long long)v->valuedouble;
}

/* `...?$rid=R&...`: whether the topic carries this rid. */
static int has_rid(const char *topic, const char *rid) {
  char needle[40];
  snprintf(needle, sizeof needle, "$rid=%s", rid);
  const char *p = strstr(topic, needle);
  if (p == NULL || (p[-1] != '?' && p[-1] != '&')) return 0;
  char after = p[strlen(needle)];
  return after == '\0' || after == '&';
}

typedef struct hub_state {
  const sd_connect_options *o;
  sd_mqtt *m;
  sd_connection *out;
  int interval_changed;
} hub_state;

/* A desired-properties push: count it, print it, follow a new telemetryInterval. */
static void on_desired_push(hub_state *s, const char *topic, const char *payload) {
  cJSON *patch = cJSON_Parse(payload);
  if (!cJSON_IsObject(patch)) {
    cJSON_Delete(patch);
    return;
  }
  const cJSON *version = cJSON_GetObjectItemCaseSensitive(patch, "$version");
  char version_text[32] = "?";
  if (cJSON_IsNumber(version)) snprintf(version_text, sizeof version_text, "%lld", (long long)version->valuedouble);
  else {
    const char *v = strstr(topic, "$version=");
    if (v != NULL) snprintf(version_text, sizeof version_text, "%.20s", v + 9);
  }
  s->out->desired_updates++;
  cJSON_DeleteItemFromObjectCaseSensitive(patch, "$version");
  char *text = cJSON_PrintUnformatted(patch);
  char head[64];
  snprintf(head, sizeof head, "desired update (version %s): ", version_text);
  progress(s->o, "%s%s", head, text != NULL ? text : "{}");
  cJSON_free(text);
  long long next = interval_from(patch, s->out->interval_seconds);
  if (next != s->out->interval_seconds) {
    s->out->interval_seconds = next;
    char n[24];
    snprintf(n, sizeof n, "%lld", next);
    progress(s->o, "telemetry interval now %s s", n);
    s->interval_changed = 1;
  }
  cJSON_Delete(patch);
}

/*
 * Waits for the twin answer with this rid (handling desired pushes meanwhile). Returns 1 with *status and *body
 * (caller frees), 0 deadline, -1 connection lost, -2 interrupted. rid NULL: just process pushes until the deadline.
 */
static int await_twin(hub_state *s, const char *rid, long long deadline, int *status, char **body) {
  for (;;) {
    char *topic = NULL, *payload = NULL;
    int rc = sd_mqtt_wait(s->m, TWIN_PREFIX, deadline, &topic, &payload);
    if (rc != 1) return rc;
    if (strncmp(topic, DESIRED_PUSH, strlen(DESIRED_PUSH)) == 0) {
      on_desired_push(s, topic, payload);
      free(topic);
      free(payload);
      if (rid == NULL && s->interval_changed) return 0;
      continue;
    }
    if (rid != NULL && strncmp(topic, TWIN_RESPONSE, strlen(TWIN_RESPONSE)) == 0 && has_rid(topic, rid)) {
      *status = atoi(topic + strlen(TWIN_RESPONSE));
      *body = payload;
      free(topic);
      return 1;
    }
    free(topic);
    free(payload);
  }
}

static long long lifetime_of(const sd_connect_options *o) {
  return o->sas_lifetime_seconds > 0 ? o->sas_lifetime_seconds : SAS_LIFETIME_SECONDS;
}

/* Renew this long before the SAS expires: 5 minutes, or half the lifetime of a short one. */
static long long renew_margin(const sd_connect_options *o) {
  long long lifetime = lifetime_of(o);
  return lifetime > 600 ? 300 : lifetime / 2;
}

/*
 * Connects with a fresh SAS (one hour; *expiry gets its se) and subscribes to the twin topics.
 * IoT Hub closes a connection whose SAS expires, so the telemetry loop opens a new session before that.
 */
static int open_session(const sd_connect_options *o, const sd_endpoint *ep, const char *where, sd_mqtt *m, long long *expiry, sd_error *err) {
  char resource[400];
  snprintf(resource, sizeof resource, "%s/devices/%s", o->hub, o->device_id);
  *expiry = sd_epoch_ms() / 1000 + lifetime_of(o);
  char *sas = sd_sas(resource, 1, o->device_key, NULL, *expiry);
  if (sas == NULL) return sd_fail(err, SD_INTERNAL, "cannot compute the hub SAS token");
  char username[600];
  snprintf(username, sizeof username, "%s/%s/?api-version=" HUB_API_VERSION, o->hub, o->device_id);
  int rc = sd_mqtt_open(m, ep, o->device_id, username, sas, o->ca_file, o->connect_timeout_ms);
  OPENSSL_cleanse(sas, strlen(sas));
  free(sas);
  if (rc != 0 && sd_interrupted) return sd_fail(err, SD_INTERRUPTED, "interrupted");
  if (rc == 4 || rc == 5) {
    sd_fail(err, SD_HUB_UNAUTHORIZED, "the hub refused %s: not authorized (CONNACK %d)", where, rc);
    sd_hint(err, "the key is not this device's, or the device does not exist on that hub (registered through DPS first?)");
    return err->code;
  }
  if (rc != 0) {
    char why[160];
    int tls = 0;
    if (rc > 0) snprintf(why, sizeof why, "CONNACK %d", rc);
    else sd_describe_connect_failure(m, ep, why, sizeof why, &tls);
    sd_fail(err, SD_HUB_UNREACHABLE, "cannot reach %s (%s)", where, tls ? "TLS certificate not trusted" : why);
    sd_hint(err, "is the hub (or the local one: npm run dps) running, and --hub-host right? An untrusted certificate needs --ca.");
    return err->code;
  }
  char *filters[] = {TWIN_RESPONSE "#", DESIRED_PUSH "#"};
  int qos[] = {0, 0};
  if (MQTTClient_subscribeMany(m->client, 2, filters, qos) != MQTTCLIENT_SUCCESS) {
    return sd_fail(err, SD_HUB_UNREACHABLE, "%s: the hub refused the twin subscriptions", where);
  }
  return SD_OK;
}

/* IoT Hub closes a connection whose SAS expired: reconnect with a new one ahead of time, as the Node SDK renews. */
static int renew_session(const sd_connect_options *o, const sd_endpoint *ep, const char *where, sd_mqtt *m, long long *expiry, sd_error *err) {
  sd_mqtt_close(m);
  int code = open_session(o, ep, where, m, expiry, err);
  if (code == SD_OK) progress(o, "reconnected: %s with a renewed SAS", where);
  return code;
}

int sd_connect_hub(const sd_connect_options *o, sd_connection *out, sd_error *err) {
  memset(out, 0, sizeof *out);
  out->interval_seconds = DEFAULT_INTERVAL;
  char where[600];
  if (o->has_via) snprintf(where, sizeof where, "%s on %s via %s", o->device_id, o->hub, o->via.given);
  else snprintf(where, sizeof where, "%s on %s", o->device_id, o->hub);
  sd_endpoint ep;
  if (o->has_via) ep = o->via;
  else if (sd_parse_host(o->hub, "--hub", 8883, &ep, err) != SD_OK) return err->code;

  sd_mqtt m = {0};
  long long sas_expiry = 0;
  hub_state s = {o, &m, out, 0};
  char *body = NULL;
  int status = 0;
  int rc = 0;
  int code = open_session(o, &ep, where, &m, &sas_expiry, err);
  if (code != SD_OK) goto done;
  progress(o, "connected: %s (MQTT over TLS)", where);

  /* The twin. */
  long long twin_deadline = sd_now_ms() + o->twin_timeout_ms;
  if (sd_mqtt_publish(&m, "$iothub/twin/GET/?$rid=1", "", 0, o->twin_timeout_ms) != 0 ||
      (rc = await_twin(&s, "1", twin_deadline, &status, &body)) != 1) {
    if (rc == -2) code = sd_fail(err, SD_INTERRUPTED, "interrupted");
    else code = sd_fail(err, SD_TWIN_TIMEOUT, "%s: no twin within %lld s", where, o->twin_timeout_ms / 1000);
    goto done;
  }
  cJSON *twin = cJSON_Parse(body);
  free(body);
  body = NULL;
  cJSON *desired = cJSON_DetachItemFromObjectCaseSensitive(twin, "desired");
  cJSON_Delete(twin);
  if (status != 200 || !cJSON_IsObject(desired)) {
    cJSON_Delete(desired);
    code = sd_fail(err, SD_TWIN_TIMEOUT, "%s: the twin could not be read (status %d)", where, status);
    goto done;
  }
  cJSON_DeleteItemFromObjectCaseSensitive(desired, "$metadata");
  out->desired = desired;
  char *desired_text = cJSON_PrintUnformatted(desired);
  progress(o, "desired properties: %s", desired_text != NULL ? desired_text : "{}");
  cJSON_free(desired_text);
  out->interval_seconds = interval_from(desired, DEFAULT_INTERVAL);

  /* Report back what this device runs with. */
  char started[32];
  sd_iso_time(sd_epoch_ms(), started);
  out->reported = cJSON_CreateObject();
  cJSON_AddNumberToObject(out->reported, "telemetryInterval", (double)out->interval_seconds);
  cJSON_AddStringToObject(out->reported, "startedAtUtc", started);
  cJSON_AddStringToObject(out->reported, "agent", "dps-jwt-webhook sample-device-c");
  char *reported_text = cJSON_PrintUnformatted(out->reported);
  twin_deadline = sd_now_ms() + o->twin_timeout_ms;
  rc = reported_text != NULL && sd_mqtt_publish(&m, "$iothub/twin/PATCH/properties/reported/?$rid=2", reported_text, 0, o->twin_timeout_ms) == 0
           ? await_twin(&s, "2", twin_deadline, &status, &body)
           : -1;
  if (rc != 1 || status != 204) {
    cJSON_free(reported_text);
    if (rc == -2) code = sd_fail(err, SD_INTERRUPTED, "interrupted");
    else if (rc == 1) code = sd_fail(err, SD_TWIN_TIMEOUT, "%s: reporting properties failed (status %d)", where, status);
    else code = sd_fail(err, SD_TWIN_TIMEOUT, "%s: the reported properties were not acknowledged within %lld s", where, o->twin_timeout_ms / 1000);
    goto done;
  }
  free(body);
  body = NULL;
  progress(o, "reported: %s", reported_text);
  cJSON_free(reported_text);

  /* Telemetry: at once, then every interval; a desired update restarts the wait; Ctrl-C ends normally. */
  char events_topic[512];
  snprintf(events_topic, sizeof events_topic, "devices/%s/messages/events/$.ct=application%%2Fjson&$.ce=utf-8&source=sample-device-c", o->device_id);
  while (o->count < 0 || out->telemetry_sent < o->count) {
    if (sd_interrupted) break;
    if (out->telemetry_sent > 0) {
      long long until = sd_now_ms() + out->interval_seconds * 1000;
      for (;;) {
        /* Wake for whichever comes first: the next message, or the SAS renewal. */
        long long renew_at = sd_now_ms() + (sas_expiry - renew_margin(o) - sd_epoch_ms() / 1000) * 1000;
        s.interval_changed = 0;
        rc = await_twin(&s, NULL, until < renew_at ? until : renew_at, &status, &body);
        if (rc == -1) {
          code = sd_fail(err, SD_HUB_UNREACHABLE, "%s: the connection closed", where);
          goto done;
        }
        if (rc == -2) break;
        if (s.interval_changed) {
          until = sd_now_ms() + out->interval_seconds * 1000; /* a new interval restarts the wait */
          continue;
        }
        if (sd_now_ms() >= until) break;
        if ((code = renew_session(o, &ep, where, &m, &sas_expiry, err)) != SD_OK) goto done;
      }
      if (sd_interrupted) break;
    }
    if (sd_epoch_ms() / 1000 >= sas_expiry - renew_margin(o) && (code = renew_session(o, &ep, where, &m, &sas_expiry, err)) != SD_OK) goto done;
    char sent_at[32];
    sd_iso_time(sd_epoch_ms(), sent_at);
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "deviceId", o->device_id);
    cJSON_AddNumberToObject(msg, "seq", (double)(out->telemetry_sent + 1));
    cJSON_AddStringToObject(msg, "sentAtUtc", sent_at);
    char *msg_text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    int sent = msg_text != NULL && sd_mqtt_publish(&m, events_topic, msg_text, 1, SEND_TIMEOUT_MS) == 0;
    if (!sent) {
      cJSON_free(msg_text);
      if (sd_interrupted) break;
      code = sd_fail(err, SD_HUB_UNREACHABLE, "%s: telemetry not acknowledged within 30 s", where);
      goto done;
    }
    out->telemetry_sent++;
    char head[64];
    if (o->count >= 0) snprintf(head, sizeof head, "telemetry %lld/%lld sent: ", out->telemetry_sent, o->count);
    else snprintf(head, sizeof head, "telemetry %lld sent: ", out->telemetry_sent);
    progress(o, "%s%s", head, msg_text);
    cJSON_free(msg_text);
  }
done:
  free(body);
  sd_mqtt_close(&m);
  if (code != SD_OK) {
    cJSON_Delete(out->desired);
    cJSON_Delete(out->reported);
    out->desired = out->reported = NULL;
  }
  return code;
}
