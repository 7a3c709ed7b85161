/* Small helpers at the edges: host[:port] parsing, the CA file check, clocks. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sd.h"

volatile sig_atomic_t sd_interrupted = 0;
volatile sig_atomic_t sd_in_connect = 0;

int sd_parse_host(const char *value, const char *flag, int default_port, sd_endpoint *out, sd_error *err) {
  memset(out, 0, sizeof *out);
  size_t n = strlen(value);
  if (n == 0 || n >= sizeof out->given) return sd_fail(err, SD_USAGE, "%s must be a host name, optionally with :port (e.g. localhost:8883)", flag);
  snprintf(out->given, sizeof out->given, "%s", value);
  const char *port_text = NULL;
  if (value[0] == '[') {
    /* [IPv6]:port */
    const char *close = strchr(value, ']');
    if (close == NULL || close == value + 1 || (size_t)(close - value - 1) >= sizeof out->host) goto bad;
    memcpy(out->host, value + 1, (size_t)(close - value - 1));
    if (close[1] == ':') port_text = close + 2;
    else if (close[1] != '\0') goto bad;
  } else {
    const char *colon = strchr(value, ':');
    size_t host_len = colon != NULL ? (size_t)(colon - value) : n;
    if (host_len == 0 || host_len >= sizeof out->host) goto bad;
    memcpy(out->host, value, host_len);
    if (colon != NULL) port_text = colon + 1;
    for (size_t i = 0; i < host_len; i++) {
      unsigned char c = (unsigned char)out->host[i];
      if (!(isalnum(c) || c == '-' || c == '.')) goto bad;
    }
  }
  out->port = default_port;
  if (port_text != NULL) {
    if (*port_text == '\0' || strlen(port_text) > 5) goto bad;
    for (const char *p = port_text; *p != '\0'; p++) if (!isdigit((unsigned char)*p)) goto bad;
    long port = strtol(port_text, NULL, 10);
    if (port < 1 || port > 65535) return sd_fail(err, SD_USAGE, "%s port must be 1-65535", flag);
    out->port = (int)port;
  }
  return SD_OK;
bad:
  return sd_fail(err, SD_USAGE, "%s must be a host name, optionally with :port (e.g. localhost:8883), without scheme or path", flag);
}

int sd_check_ca_file(const char *path, sd_error *err) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return sd_fail(err, SD_FILE, "--ca %s cannot be read (%s)", path, errno == ENOENT ? "ENOENT" : strerror(errno));
  char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  if (strstr(buf, "-----BEGIN CERTIFICATE-----") == NULL) return sd_fail(err, SD_FILE, "--ca %s is not a PEM certificate", path);
  return SD_OK;
}

long long sd_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long sd_epoch_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sd_iso_time(long long epoch_ms, char out[32]) {
  time_t secs = (time_t)(epoch_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char base[24];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, 32, "%s.%03dZ", base, (int)(epoch_ms % 1000));
}

/* ---- the MQTT session ---- */
#include <netdb.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

static int on_ssl_error(const char *str, size_t len, void *context) {
  sd_mqtt *m = context;
  /* OpenSSL's own text ("...certificate verify failed..."): read only to tell an untrusted server apart. */
  char line[512];
  size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
  memcpy(line, str, n);
  line[n] = '\0';
  if (strstr(line, "certificate verify failed") != NULL || strstr(line, "CERTIFICATE_VERIFY_FAILED") != NULL) m->tls_untrusted = 1;
  return 0;
}

int sd_mqtt_open(sd_mqtt *m, const sd_endpoint *ep, const char *client_id, const char *username, const char *password,
                 const char *ca_file, long long timeout_ms) {
  char uri[320];
  if (strchr(ep->host, ':') != NULL) snprintf(uri, sizeof uri, "ssl://[%s]:%d", ep->host, ep->port);
  else snprintf(uri, sizeof uri, "ssl://%s:%d", ep->host, ep->port);
  if (MQTTClient_create(&m->client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTCLIENT_SUCCESS) return -1;
  m->created = 1;
  MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
  MQTTClient_SSLOptions ssl = MQTTClient_SSLOptions_initializer;
  ssl.trustStore = ca_file; /* NULL: the system's CAs (Paho loads the default verify paths) */
  ssl.enableServerCertAuth = 1;
  ssl.verify = 1; /* check the certificate names the host */
  ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
  ssl.ssl_error_cb = on_ssl_error;
  ssl.ssl_error_context = m;
  conn.ssl = &ssl;
  conn.MQTTVersion = MQTTVERSION_3_1_1; /* DPS and IoT Hub speak MQTT 3.1.1 */
  conn.cleansession = 1;
  conn.keepAliveInterval = 240;
  conn.username = username;
  conn.password = password;
  long long secs = (timeout_ms + 999) / 1000;
  conn.connectTimeout = (int)(secs < 1 ? 1 : secs);
  conn.retryInterval = 0;
  sd_in_connect = 1;
  int rc = sd_interrupted ? MQTTCLIENT_FAILURE : MQTTClient_connect(m->client, &conn);
  sd_in_connect = 0;
  if (rc == MQTTCLIENT_SUCCESS) {
    m->connected = 1;
    return 0;
  }
  return rc > 0 && rc <= 5 ? rc : -1;
}

void sd_mqtt_close(sd_mqtt *m) {
  if (m->connected) MQTTClient_disconnect(m->client, 1000);
  if (m->created) MQTTClient_destroy(&m->client);
  m->connected = 0;
  m->created = 0;
}

int sd_mqtt_wait(sd_mqtt *m, const char *prefix, long long deadline_ms, char **topic, char **payload) {
  for (;;) {
    if (sd_interrupted) return -2;
    long long left = deadline_ms - sd_now_ms();
    if (left <= 0) return 0;
    /* Short slices, so Ctrl-C is noticed promptly. */
    unsigned long slice = (unsigned long)(left < 200 ? left : 200);
    char *name = NULL;
    int name_len = 0;
    MQTTClient_message *msg = NULL;
    int rc = MQTTClient_receive(m->client, &name, &name_len, &msg, slice);
    if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
      if (msg != NULL) MQTTClient_freeMessage(&msg);
      if (name != NULL) MQTTClient_free(name);
      return -1;
    }
    if (msg == NULL) {
      if (name != NULL) MQTTClient_free(name);
      if (!MQTTClient_isConnected(m->client)) return -1;
      continue;
    }
    size_t tlen = name_len > 0 ? (size_t)name_len : strlen(name);
    int match = tlen >= strlen(prefix) && strncmp(name, prefix, strlen(prefix)) == 0;
    if (match) {
      *topic = malloc(tlen + 1);
      *payload = malloc((size_t)msg->payloadlen + 1);
      if (*topic != NULL && *payload != NULL) {
        memcpy(*topic, name, tlen);
        (*topic)[tlen] = '\0';
        memcpy(*payload, msg->payload, (size_t)msg->payloadlen);
        (*payload)[msg->payloadlen] = '\0';
      }
    }
    MQTTClient_freeMessage(&msg);
    MQTTClient_free(name);
    if (match) {
      if (*topic == NULL || *payload == NULL) {
        free(*topic);
        free(*payload);
        return -1;
      }
      return 1;
    }
  }
}

int sd_mqtt_publish(sd_mqtt *m, const char *topic, const char *payload, int qos, long long timeout_ms) {
  MQTTClient_deliveryToken token = 0;
  int rc = MQTTClient_publish(m->client, topic, (int)strlen(payload), payload, qos, 0, &token);
  if (rc != MQTTCLIENT_SUCCESS) return -1;
  if (qos == 0) return 0;
  return MQTTClient_waitForCompletion(m->client, token, (unsigned long)timeout_ms) == MQTTCLIENT_SUCCESS ? 0 : -1;
}

void sd_describe_connect_failure(const sd_mqtt *m, const sd_endpoint *ep, char *out, size_t cap, int *tls) {
  *tls = 0;
  if (m->tls_untrusted) {
    *tls = 1;
    snprintf(out, cap, "its TLS certificate is not trusted");
    return;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  char port[8];
  snprintf(port, sizeof port, "%d", ep->port);
  int gai = getaddrinfo(ep->host, port, &hints, &res);
  if (gai != 0) {
    snprintf(out, cap, "ENOTFOUND: the name %s does not resolve", ep->host);
    return;
  }
  /* A plain TCP connect tells a refused port from a TLS or MQTT failure further on. */
  int err = ECONNREFUSED;
  for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    err = rc == 0 ? 0 : errno;
    close(fd);
    if (rc == 0) break;
  }
  freeaddrinfo(res);
  /* Paho checks the certificate's names after the handshake (X509_check_host), which reports through no callback. */
  if (err == 0) snprintf(out, cap, "the TLS handshake or the MQTT CONNECT failed: is the server's certificate for %s?", ep->host);
  else if (err == ECONNREFUSED) snprintf(out, cap, "ECONNREFUSED");
  else if (err == ETIMEDOUT) snprintf(out, cap, "ETIMEDOUT");
  else if (err == EHOSTUNREACH) snprintf(out, cap, "EHOSTUNREACH");
  else if (err == ENETUNREACH) snprintf(out, cap, "ENETUNREACH");
  else snprintf(out, cap, "%s", strerror(err));
}
