/*
 * Registration with DPS over MQTT (dps-protocol §4; Microsoft Learn iot-dps-mqtt-support): connect with clientId =
 * registration id, username `{idScope}/registrations/{id}/api-version=2019-03-31`, password the SAS; subscribe
 * `$dps/registrations/res/#`; publish the register body to `$dps/registrations/PUT/iotdps-register/?$rid={rid}`; on
 * `res/202/?$rid=..&retry-after=N` wait N seconds and poll `$dps/registrations/GET/iotdps-get-operationstatus/
 * ?$rid={rid}&operationId={op}` until `res/200` says assigned or failed. 429 and 5xx are retried after retry-after,
 * as the Node SDK's MQTT transport does. Errors are mapped as sample-device/dps-errors.ts maps them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "sd.h"

#define API_VERSION "2019-03-31"
#define RESPONSE_PREFIX "$dps/registrations/res/"
/* DPS says 3 s (dps-protocol §3) when an answer names no retry-after. */
#define DEFAULT_RETRY_MS 3000
#define MAX_RETRY_MS 60000
/* Each request must be answered within this (the Node SDK's limit is 30 s too). */
#define REQUEST_TIMEOUT_MS 30000
#define SAS_LIFETIME_SECONDS 3600

typedef struct known_error {
  long code;
  int exit_code;
  const char *name;
  const char *meaning;
  const char *hint;
} known_error;

/* The table of sample-device/dps-errors.ts DPS_ERRORS. */
static const known_error KNOWN[] = {
    {400207, SD_REFUSED, "CustomAllocationFailed", "the webhook refused this device (bad/expired token, unknown key, disabled key...)",
     "The webhook's log names the reason code for this registration id; `token` shows the claims this device signs."},
    {400208, SD_WEBHOOK_MISCONFIGURED, "CustomAllocationIotHubNotSpecified",
     "the webhook accepted the device but named no IoT hub (it must answer an iotHubHostName from linkedHubs)",
     "Check that the enrollment links at least one IoT hub and the webhook can pick it."},
    {400209, SD_WEBHOOK_MISCONFIGURED, "CustomAllocationUnauthorizedAccess",
     "the webhook URL lacks a valid function key (the webhook answered 401 to DPS)",
     "Set the enrollment's webhookUrl with ?code=<function key> (the portal hides it; use the CLI or API)."},
    {401002, SD_UNAUTHORIZED, "Unauthorized",
     "the symmetric key / SAS is wrong (or no enrollment in this id scope matches the registration id)",
     "Check --id-scope and --registration-id, and that --symmetric-key is the enrollment's key or --group-key the group's."},
};

/*
 * The webhook answers a refusal with {"code": "<reason>", "message": ...} (functions/core/webhook.ts). DPS does not
 * document handing that body to the device, and the local DPS does not; when a DPS message does carry it, the reason
 * is named on its own line. Only a snake_case word is taken, so nothing else of the message is echoed twice.
 */
static void webhook_reason(const char *message, char *out, size_t cap) {
  out[0] = '\0';
  const char *p = message != NULL ? strstr(message, "\"code\"") : NULL;
  if (p == NULL) return;
  p += 6;
  while (*p == ' ' || *p == ':') p++;
  if (*p++ != '"') return;
  size_t n = 0;
  while ((p[n] >= 'a' && p[n] <= 'z') || p[n] == '_') n++;
  if (n < 3 || n >= cap || p[n] != '"' || strchr(p, '_') == NULL) return;
  memcpy(out, p, n);
  out[n] = '\0';
}

int sd_explain_dps_failure(const char *registration_id, long error_code, const char *status, int mqtt_status,
                           const char *dps_message, sd_error *err) {
  char said[460] = "";
  if (dps_message != NULL && dps_message[0] != '\0') {
    char msg[300];
    snprintf(msg, sizeof msg, "%s", dps_message);
    sd_redact(msg);
    char reason[64];
    webhook_reason(msg, reason, sizeof reason);
    if (reason[0] != '\0') snprintf(said, sizeof said, " DPS said: \"%s\" The webhook's reason: %s.", msg, reason);
    else snprintf(said, sizeof said, " DPS said: \"%s\"", msg);
  }
  err->dps_error_code = error_code;
  snprintf(err->dps_status, sizeof err->dps_status, "%s", status != NULL ? status : "");
  for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0]; i++) {
    if (KNOWN[i].code != error_code) continue;
    sd_fail(err, KNOWN[i].exit_code, "registration of %s failed: DPS error %ld %s: %s.%s", registration_id, error_code,
            KNOWN[i].name, KNOWN[i].meaning, said);
    sd_hint(err, "%s", KNOWN[i].hint);
    return err->code;
  }
  if (status != NULL && strcmp(status, "disabled") == 0) {
    sd_fail(err, SD_DISABLED, "registration of %s failed: the enrollment or registration is disabled in DPS.%s", registration_id, said);
    sd_hint(err, "Enable the enrollment (provisioningStatus: enabled) or ask the operator why it was disabled.");
    return err->code;
  }
  if (mqtt_status == 401 || error_code / 1000 == 401) {
    if (error_code != 0) {
      sd_fail(err, SD_UNAUTHORIZED, "registration of %s failed: DPS error %ld: %s.%s", registration_id, error_code, KNOWN[3].meaning, said);
    } else {
      sd_fail(err, SD_UNAUTHORIZED, "registration of %s failed: DPS answered unauthorized: %s.%s", registration_id, KNOWN[3].meaning, said);
    }
    sd_hint(err, "%s", KNOWN[3].hint);
    return err->code;
  }
  if (error_code != 0) sd_fail(err, SD_DPS_FAILED, "registration of %s failed: DPS error %ld.%s", registration_id, error_code, said);
  else if (mqtt_status != 0 && mqtt_status != 200) sd_fail(err, SD_DPS_FAILED, "registration of %s failed: DPS answered %d.%s", registration_id, mqtt_status, said);
  else sd_fail(err, SD_DPS_FAILED, "registration of %s failed: DPS reported status %s.%s", registration_id, status != NULL ? status : "failed", said);
  if (mqtt_status == 429 || error_code / 1000 == 429) sd_hint(err, "DPS is throttling registrations; retry later with backoff.");
  return err->code;
}

/* `res/{status}/?$rid={rid}&retry-after={s}`: status, whether the rid is ours, and retry-after in ms (-1 if none). */
static int parse_response_topic(const char *topic, const char *rid, int *status, long long *retry_ms) {
  const char *p = topic + strlen(RESPONSE_PREFIX);
  char *end = NULL;
  long s = strtol(p, &end, 10);
  if (end == p || s < 100 || s > 599 || strncmp(end, "/?", 2) != 0) return 0;
  *status = (int)s;
  *retry_ms = -1;
  int ours = 0;
  for (const char *q = end + 2; *q != '\0';) {
    const char *amp = strchr(q, '&');
    size_t len = amp != NULL ? (size_t)(amp - q) : strlen(q);
    if (len > 5 && strncmp(q, "$rid=", 5) == 0 && len - 5 == strlen(rid) && strncmp(q + 5, rid, len - 5) == 0) ours = 1;
    if (len > 12 && strncmp(q, "retry-after=", 12) == 0) {
      double v = strtod(q + 12, NULL);
      if (v >= 0) *retry_ms = (long long)(v * 1000) > MAX_RETRY_MS ? MAX_RETRY_MS : (long long)(v * 1000);
    }
    if (amp == NULL) break;
    q = amp + 1;
  }
  return ours;
}

static const char *json_string(const cJSON *obj, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long json_code(const cJSON *obj, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (cJSON_IsNumber(v)) return (long)v->valuedouble;
  if (cJSON_IsString(v)) return strtol(v->valuestring, NULL, 10);
  return 0;
}

/* Sleeps until `until` while keeping the MQTT session alive; 0 done, else an exit code already set in err. */
static int pause_until(sd_mqtt *m, long long until, long long deadline, const sd_register_options *o, sd_error *err) {
  long long stop = until < deadline ? until : deadline;
  char *topic = NULL, *payload = NULL;
  /* No topic starts with "\x01": this only drains and keeps the connection alive. */
  int rc = sd_mqtt_wait(m, "\x01", stop, &topic, &payload);
  if (rc == -2) return sd_fail(err, SD_INTERRUPTED, "registration of %s was interrupted", o->registration_id);
  if (rc == -1) {
    sd_fail(err, SD_UNREACHABLE, "cannot reach DPS at %s over mqtt (the connection closed)", o->endpoint.given);
    sd_hint(err, "Check --host (and the port) and --transport.");
    return err->code;
  }
  if (sd_now_ms() >= deadline) {
    sd_fail(err, SD_TIMEOUT, "registration of %s did not finish within %lld s (%s over mqtt)", o->registration_id,
            o->timeout_ms / 1000, o->endpoint.given);
    sd_hint(err, "DPS may still be retrying an unavailable webhook; raise --timeout or check the webhook.");
    return err->code;
  }
  return 0;
}

static int fill_result(const cJSON *state, sd_registration *out, const char *registration_id) {
  snprintf(out->status, sizeof out->status, "%s", json_string(state, "status") ? json_string(state, "status") : "assigned");
  snprintf(out->substatus, sizeof out->substatus, "%s", json_string(state, "substatus") ? json_string(state, "substatus") : "");
  snprintf(out->assigned_hub, sizeof out->assigned_hub, "%s", json_string(state, "assignedHub") ? json_string(state, "assignedHub") : "");
  snprintf(out->device_id, sizeof out->device_id, "%s", json_string(state, "deviceId") ? json_string(state, "deviceId") : registration_id);
  const cJSON *payload = cJSON_GetObjectItemCaseSensitive(state, "payload");
  out->payload = payload != NULL && !cJSON_IsNull(payload) ? cJSON_Duplicate(payload, 1) : NULL;
  out->assigned_at_ms = sd_now_ms();
  return out->assigned_hub[0] != '\0';
}

int sd_register(const sd_register_options *o, sd_registration *out, sd_error *err) {
  memset(out, 0, sizeof *out);
  long long start = sd_now_ms();
  long long deadline = start + o->timeout_ms;
  char resource[256];
  snprintf(resource, sizeof resource, "%s/registrations/%s", o->id_scope, o->registration_id);
  long long se = sd_epoch_ms() / 1000 + SAS_LIFETIME_SECONDS;
  char *sas = sd_sas(resource, 0, o->device_key, "registration", se);
  if (sas == NULL) return sd_fail(err, SD_INTERNAL, "cannot compute the SAS token");
  char username[400];
  snprintf(username, sizeof username, "%s/registrations/%s/api-version=" API_VERSION "&ClientVersion=dps-jwt-webhook-sample-device-c%%2F1.0",
           o->id_scope, o->registration_id);

  sd_mqtt m = {0};
  long long connect_ms = deadline - sd_now_ms();
  int rc = sd_mqtt_open(&m, &o->endpoint, o->registration_id, username, sas, o->ca_file, connect_ms < REQUEST_TIMEOUT_MS ? connect_ms : REQUEST_TIMEOUT_MS);
  OPENSSL_cleanse(sas, strlen(sas));
  free(sas);
  int code = SD_OK;
  cJSON *body = NULL;
  char *topic = NULL, *payload = NULL;
  if (rc == 4 || rc == 5) {
    code = sd_explain_dps_failure(o->registration_id, 0, NULL, 401, NULL, err);
    goto done;
  }
  if (rc != 0 && sd_interrupted) {
    code = sd_fail(err, SD_INTERRUPTED, "registration of %s was interrupted", o->registration_id);
    goto done;
  }
  if (rc < 0 && sd_now_ms() >= deadline) {
    /* The whole --timeout went on a connection that opened but never completed the TLS or MQTT handshake. */
    code = sd_fail(err, SD_TIMEOUT, "registration of %s did not finish within %lld s (%s over mqtt: no MQTT answer to CONNECT)",
                   o->registration_id, o->timeout_ms / 1000, o->endpoint.given);
    sd_hint(err, "Check --host: something listens there but does not answer as DPS does.");
    goto done;
  }
  if (rc != 0) {
    char why[160];
    int tls = 0;
    if (rc > 0) snprintf(why, sizeof why, "MQTT CONNACK %d", rc);
    else sd_describe_connect_failure(&m, &o->endpoint, why, sizeof why, &tls);
    if (tls) {
      code = sd_fail(err, SD_UNREACHABLE, "cannot reach DPS at %s over mqtt: %s", o->endpoint.given, why);
      sd_hint(err, "For a local DPS pass its CA certificate with --ca FILE.");
    } else {
      code = sd_fail(err, SD_UNREACHABLE, "cannot reach DPS at %s over mqtt (%s)", o->endpoint.given, why);
      sd_hint(err, "Check --host (and the port) and that nothing blocks the connection (MQTT uses 8883 by default).");
    }
    goto done;
  }
  if (MQTTClient_subscribe(m.client, RESPONSE_PREFIX "#", 1) != MQTTCLIENT_SUCCESS) {
    code = sd_fail(err, SD_UNREACHABLE, "cannot reach DPS at %s over mqtt (the subscription was refused)", o->endpoint.given);
    goto done;
  }

  /* The register body: the registration id and the webhook's payload {"jwt": ...}. */
  cJSON *request = cJSON_CreateObject();
  cJSON_AddStringToObject(request, "registrationId", o->registration_id);
  cJSON *pl = cJSON_AddObjectToObject(request, "payload");
  cJSON_AddStringToObject(pl, "jwt", o->jwt);
  char *register_body = cJSON_PrintUnformatted(request);
  cJSON_Delete(request);
  if (register_body == NULL) {
    code = sd_fail(err, SD_INTERNAL, "out of memory");
    goto done;
  }

  char operation_id[256] = "";
  unsigned rid_counter = 0;
  for (;;) {
    char rid[16];
    snprintf(rid, sizeof rid, "%u", ++rid_counter);
    char request_topic[512];
    const char *request_body;
    if (operation_id[0] == '\0') {
      snprintf(request_topic, sizeof request_topic, "$dps/registrations/PUT/iotdps-register/?$rid=%s", rid);
      request_body = register_body;
    } else {
      char *op = sd_urlencode(operation_id);
      snprintf(request_topic, sizeof request_topic, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%s&operationId=%s", rid, op != NULL ? op : "");
      free(op);
      request_body = "";
    }
    if (sd_mqtt_publish(&m, request_topic, request_body, 1, REQUEST_TIMEOUT_MS) != 0) {
      code = sd_fail(err, SD_UNREACHABLE, "cannot reach DPS at %s over mqtt (the connection closed)", o->endpoint.given);
      break;
    }
    long long answer_deadline = sd_now_ms() + REQUEST_TIMEOUT_MS;
    int status = 0;
    long long retry_ms = -1;
    for (;;) {
      rc = sd_mqtt_wait(&m, RESPONSE_PREFIX, answer_deadline < deadline ? answer_deadline : deadline, &topic, &payload);
      if (rc != 1) break;
      if (parse_response_topic(topic, rid, &status, &retry_ms)) break;
      free(topic);
      free(payload);
      topic = payload = NULL;
    }
    if (rc == -2) {
      code = sd_fail(err, SD_INTERRUPTED, "registration of %s was interrupted", o->registration_id);
      break;
    }
    if (rc == -1) {
      code = sd_fail(err, SD_UNREACHABLE, "cannot reach DPS at %s over mqtt (the connection closed)", o->endpoint.given);
      sd_hint(err, "Check --host (and the port) and --transport.");
      break;
    }
    if (rc == 0) {
      if (sd_now_ms() >= deadline) {
        code = sd_fail(err, SD_TIMEOUT, "registration of %s did not finish within %lld s (%s over mqtt)", o->registration_id, o->timeout_ms / 1000, o->endpoint.given);
        sd_hint(err, "DPS may still be retrying an unavailable webhook; raise --timeout or check the webhook.");
      } else {
        code = sd_fail(err, SD_TIMEOUT, "DPS at %s over mqtt did not answer a request within 30 s", o->endpoint.given);
      }
      break;
    }
    body = cJSON_Parse(payload);
    free(topic);
    free(payload);
    topic = payload = NULL;
    if (status == 429 || status >= 500) {
      /* Throttled or a DPS-side fault: retry the same request after retry-after. */
      cJSON_Delete(body);
      body = NULL;
      code = pause_until(&m, sd_now_ms() + (retry_ms >= 0 ? retry_ms : DEFAULT_RETRY_MS), deadline, o, err);
      if (code != 0) break;
      continue;
    }
    if (!cJSON_IsObject(body)) {
      code = sd_fail(err, SD_DPS_FAILED, "registration of %s failed: DPS answered %d with a body that is not JSON", o->registration_id, status);
      break;
    }
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(body, "registrationState");
    const char *op_status = json_string(body, "status");
    if (status == 202 || (status == 200 && op_status != NULL && (strcmp(op_status, "assigning") == 0 || strcmp(op_status, "unassigned") == 0))) {
      const char *op = json_string(body, "operationId");
      if (op == NULL || strlen(op) >= sizeof operation_id) {
        code = sd_fail(err, SD_DPS_FAILED, "registration of %s failed: DPS answered %d without an operationId", o->registration_id, status);
        break;
      }
      snprintf(operation_id, sizeof operation_id, "%s", op);
      cJSON_Delete(body);
      body = NULL;
      code = pause_until(&m, sd_now_ms() + (retry_ms >= 0 ? retry_ms : DEFAULT_RETRY_MS), deadline, o, err);
      if (code != 0) break;
      continue;
    }
    if (status == 200 && op_status != NULL && strcmp(op_status, "assigned") == 0 && cJSON_IsObject(state)) {
      if (!fill_result(state, out, o->registration_id)) {
        code = sd_fail(err, SD_DPS_FAILED, "registration of %s failed: DPS said assigned but named no hub", o->registration_id);
      }
      break;
    }
    /* A failed registration (200 with status failed/disabled) or an error answer (res/4xx with the error JSON). */
    const cJSON *src = cJSON_IsObject(state) ? state : body;
    long error_code = json_code(src, "errorCode");
    if (error_code == 0) error_code = json_code(body, "errorCode");
    const char *message = json_string(src, "errorMessage");
    if (message == NULL) message = json_string(body, "errorMessage");
    if (message == NULL) message = json_string(body, "message");
    const char *failed_status = json_string(src, "status");
    if (failed_status == NULL) failed_status = op_status;
    code = sd_explain_dps_failure(o->registration_id, error_code, failed_status, status, message, err);
    break;
  }
  OPENSSL_cleanse(register_body, strlen(register_body));
  cJSON_free(register_body);
done:
  cJSON_Delete(body);
  sd_mqtt_close(&m);
  if (code != SD_OK) {
    cJSON_Delete(out->payload);
    out->payload = NULL;
  }
  return code;
}
