/* Exit code names and summaries: the same table as sample-device/errors.ts, so both samples read alike. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "sd.h"

const int SD_ALL_CODES[] = {SD_INTERNAL, SD_USAGE, SD_FILE, SD_UNREACHABLE, SD_UNAUTHORIZED, SD_REFUSED,
                            SD_WEBHOOK_MISCONFIGURED, SD_DISABLED, SD_DPS_FAILED, SD_TIMEOUT, SD_HUB_UNREACHABLE,
                            SD_HUB_UNAUTHORIZED, SD_TWIN_TIMEOUT, SD_INTERRUPTED};
const size_t SD_ALL_CODES_COUNT = sizeof SD_ALL_CODES / sizeof SD_ALL_CODES[0];

int sd_fail(sd_error *err, int code, const char *fmt, ...) {
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return code;
}

void sd_hint(sd_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->hint, sizeof err->hint, fmt, ap);
  va_end(ap);
}

const char *sd_code_name(int code) {
  switch (code) {
    case SD_INTERNAL: return "internal";
    case SD_USAGE: return "usage";
    case SD_FILE: return "file";
    case SD_UNREACHABLE: return "unreachable";
    case SD_UNAUTHORIZED: return "unauthorized";
    case SD_REFUSED: return "refused";
    case SD_WEBHOOK_MISCONFIGURED: return "webhook_misconfigured";
    case SD_DISABLED: return "disabled";
    case SD_DPS_FAILED: return "dps_failed";
    case SD_TIMEOUT: return "timeout";
    case SD_HUB_UNREACHABLE: return "hub_unreachable";
    case SD_HUB_UNAUTHORIZED: return "hub_unauthorized";
    case SD_TWIN_TIMEOUT: return "twin_timeout";
    case SD_INTERRUPTED: return "interrupted";
    default: return "ok";
  }
}

const char *sd_code_summary(int code) {
  switch (code) {
    case SD_INTERNAL: return "unexpected error (a bug)";
    case SD_USAGE: return "bad or missing arguments";
    case SD_FILE: return "key or CA file missing, unreadable, wrong kind, or would be overwritten";
    case SD_UNREACHABLE: return "DPS not reachable (DNS, connection, untrusted TLS certificate)";
    case SD_UNAUTHORIZED: return "DPS 401002: wrong symmetric key / SAS, or no matching enrollment";
    case SD_REFUSED: return "DPS 400207: the webhook refused this device";
    case SD_WEBHOOK_MISCONFIGURED: return "DPS 400208/400209: webhook chose no hub / URL lacks a valid function key";
    case SD_DISABLED: return "the enrollment is disabled";
    case SD_DPS_FAILED: return "another DPS failure (code and message printed)";
    case SD_TIMEOUT: return "no result within --timeout";
    case SD_HUB_UNREACHABLE: return "the assigned hub is not reachable (connection, DNS, TLS trust, no answer)";
    case SD_HUB_UNAUTHORIZED: return "the hub refused the device (CONNACK 5: wrong key or unknown device)";
    case SD_TWIN_TIMEOUT: return "connected, but no twin / reported-properties answer in time";
    case SD_INTERRUPTED: return "Ctrl-C";
    default: return "";
  }
}

/* Replaces the value after each needle (up to a delimiter) with "[redacted]", in place, never growing the text. */
static void redact_after(char *text, const char *needle, int case_fold) {
  size_t n = strlen(needle);
  for (char *p = text; *p != '\0'; p++) {
    int match = case_fold ? strncasecmp(p, needle, n) == 0 : strncmp(p, needle, n) == 0;
    if (!match) continue;
    char *value = p + n;
    char *end = value;
    while (*end != '\0' && !isspace((unsigned char)*end) && strchr("\"',;&", *end) == NULL) end++;
    const char *mark = "[redacted]";
    size_t len = (size_t)(end - value);
    size_t mark_len = strlen(mark);
    if (len >= mark_len) {
      memcpy(value, mark, mark_len);
      memmove(value + mark_len, end, strlen(end) + 1);
    } else {
      memset(value, '*', len);
    }
    p = value;
  }
}

void sd_redact(char *text) {
  redact_after(text, "SharedAccessSignature ", 1);
  redact_after(text, "sig=", 1);
}
