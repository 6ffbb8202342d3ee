/* mqtt: the one libmosquitto session the plugin keeps to the broker the HES pushes to.
 *
 * The loop is ours, not libmosquitto's loop_forever or loop_start: a connect attempt is
 * asynchronous and mosquitto_loop waits at most LOOP_MS, so hes_mqtt_stop is seen promptly;
 * between attempts we sleep on a condition variable that hes_mqtt_stop signals. The
 * mosquitto handle lives as long as the hes_mqtt_t and is touched by the run thread only
 * (and by new/free, before and after it). Failures are reported through on_state, never
 * logged: the owner decides how loud to be. See mqtt.h for the contract.
 *
 * A host name with both IPv6 and IPv4 addresses is tried one family after the other within
 * one attempt: libmosquitto's asynchronous connect takes the first address that accepts a
 * socket and does not fall back when that connection is refused or never answers. On
 * Debian's stock /etc/hosts "localhost" is ::1 first, and a broker listening on 127.0.0.1
 * only would never be reached. The family is chosen with a bind address of that family
 * ("::" or "0.0.0.0"), so libmosquitto still connects by name and TLS still verifies the
 * configured host name. */
#include "config.h"
#include "errbuf.h"

#include "mqtt.h"
#include "clock.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#define LOOP_MS                 200
#define DEFAULT_PORT            1883
#define DEFAULT_TLS_PORT        8883
#define DEFAULT_KEEPALIVE       30
#define DEFAULT_BACKOFF_MIN     1.0
#define DEFAULT_BACKOFF_MAX     60.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define MQTT_STRING_MAX         65535 /* MQTT's length prefix is two bytes */
#define HOST_MAX                255
#define SYSTEM_CAPATH           "/etc/ssl/certs"
#define WHY_MAX                 384
#define REPORT_MAX              (2 * WHY_MAX + 64) /* our words, a reason and a library line */
#define ADDRS_MAX               128                /* one family's addresses, for reports */

typedef enum {
  LINK_DOWN,       /* no socket, or one we gave up on; waiting for the next attempt */
  LINK_CONNECTING, /* attempt started, no CONNACK yet */
  LINK_UP,         /* CONNACK 0 received */
} link_state_t;

struct hes_mqtt {
  /* configuration, owned copies */
  char *host;
  int port;
  char *user;
  char *password;
  char *client_id;
  int qos;
  bool clean_session;
  int keepalive;
  bool tls;
  char *ca_cert;
  char *cert_file;
  char *key_file;
  char *tls_protocol;
  char *topic;
  double backoff_min;
  double backoff_max;
  double connect_timeout;
  void (*on_message)(void *ctx, const char *topic, const void *payload, size_t len);
  void (*on_state)(void *ctx, bool ready, const char *why);
  void *ctx;

  /* shared with other threads */
  atomic_bool stop;
  atomic_bool running;
  atomic_bool ready;
  atomic_uint_fast64_t connects;
  atomic_uint_fast64_t attempts;
  pthread_mutex_t lock; /* with cond: wakes wait_ready and the backoff sleep */
  pthread_cond_t cond;

  /* the run thread's own */
  struct mosquitto *mosq;
  link_state_t link;
  double attempt_start;
  int sub_mid;
  bool subscribed_once; /* this handle has had one SUBACK: a kept session has the filter */
  unsigned failures;    /* attempts failed since the last time we were ready */
  uint64_t rng;
  char pending[WHY_MAX];     /* why the current attempt or connection is failing, if known */
  char lib_error[WHY_MAX];   /* first error line libmosquitto logged during the attempt */
  char reported[REPORT_MAX]; /* the last reason given to on_state(false) */
  /* The host's address families (AF_INET6, AF_INET) in the resolver's order, and their
   * addresses written out; n_families < 2: one plain try, as libmosquitto would. */
  int families[2];
  char addrs[2][ADDRS_MAX];
  int n_families;
  int family;             /* the one being tried */
  bool next_family;       /* the next try is the same attempt's next family */
  bool reached;           /* the broker answered this try: no other family is tried */
  int closed_loops;       /* loops the try's TCP connection has been seen closed */
  char tried[REPORT_MAX]; /* what the families tried so far in this attempt gave */
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_init_rc = MOSQ_ERR_UNKNOWN;

static void lib_init(void) {
  lib_init_rc = mosquitto_lib_init();
}

/* Appends to the string in buf, cutting what does not fit. */
static void appendf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void appendf(char *buf, size_t size, const char *fmt, ...) {
  size_t n = strnlen(buf, size);
  if (n + 1 >= size)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + n, size - n, fmt, ap);
  va_end(ap);
}

/* xorshift64*: jitter only needs to keep clients from reconnecting in step. */
static double rand_unit(hes_mqtt_t *m) {
  m->rng ^= m->rng >> 12;
  m->rng ^= m->rng << 25;
  m->rng ^= m->rng >> 27;
  return (double)((m->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* The wait before the next attempt: backoff_min doubled per failure up to backoff_max,
 * then +-20%. */
static double next_delay(hes_mqtt_t *m) {
  double d = m->backoff_min;
  for (unsigned i = 0; i < m->failures && d < m->backoff_max; i++)
    d *= 2;
  if (d > m->backoff_max)
    d = m->backoff_max;
  if (m->failures < 64)
    m->failures++;
  return d * (0.8 + 0.4 * rand_unit(m));
}

static char *dup_opt(const char *s, bool *ok) {
  if (s == NULL)
    return NULL;
  char *d = strdup(s);
  if (d == NULL)
    *ok = false;
  return d;
}

static void free_secret(char *s) {
  if (s == NULL)
    return;
  explicit_bzero(s, strlen(s));
  free(s);
}

static bool valid_string(const char *s, size_t max) {
  size_t len = strlen(s);
  return len <= max && mosquitto_validate_utf8(s, (int)len) == MOSQ_ERR_SUCCESS;
}

static bool valid_seconds(double v) {
  return isfinite(v) && v >= 0 && v <= 86400;
}

/* Guard clauses for everything hes_mqtt_new copies; the first problem goes to err. */
static bool check_config(const hes_mqtt_config_t *cfg, char *err, size_t errlen) {
  if (cfg == NULL) {
    hes_errbuf_printf(err, errlen, "no configuration");
    return false;
  }
  if (cfg->host == NULL || cfg->host[0] == '\0') {
    hes_errbuf_printf(err, errlen, "host is required");
    return false;
  }
  if (strlen(cfg->host) > HOST_MAX) {
    hes_errbuf_printf(err, errlen, "host is longer than %d characters", HOST_MAX);
    return false;
  }
  if (cfg->port < 0 || cfg->port > 65535) {
    hes_errbuf_printf(err, errlen, "port %d is out of range 1..65535", cfg->port);
    return false;
  }
  if (cfg->qos < 0 || cfg->qos > 2) {
    hes_errbuf_printf(err, errlen, "qos %d is out of range 0..2", cfg->qos);
    return false;
  }
  if (cfg->topic == NULL || cfg->topic[0] == '\0') {
    hes_errbuf_printf(err, errlen, "topic is required");
    return false;
  }
  if (!valid_string(cfg->topic, MQTT_STRING_MAX) ||
      mosquitto_sub_topic_check(cfg->topic) != MOSQ_ERR_SUCCESS) {
    hes_errbuf_printf(err, errlen, "topic \"%.100s\" is not a valid subscription filter",
                      cfg->topic);
    return false;
  }
  if (cfg->client_id == NULL || cfg->client_id[0] == '\0') {
    hes_errbuf_printf(err, errlen, "client_id is required");
    return false;
  }
  if (!valid_string(cfg->client_id, MQTT_STRING_MAX)) {
    hes_errbuf_printf(err, errlen, "client_id is not valid UTF-8 of at most %d bytes",
                      MQTT_STRING_MAX);
    return false;
  }
  if (cfg->user != NULL && (cfg->user[0] == '\0' || !valid_string(cfg->user, MQTT_STRING_MAX))) {
    hes_errbuf_printf(err, errlen, "user is empty or not valid UTF-8 of at most %d bytes",
                      MQTT_STRING_MAX);
    return false;
  }
  if (cfg->password != NULL && cfg->user == NULL) {
    hes_errbuf_printf(err, errlen, "a password needs a user (MQTT 3.1.1)");
    return false;
  }
  if (cfg->password != NULL && strlen(cfg->password) > MQTT_STRING_MAX) {
    hes_errbuf_printf(err, errlen, "password is longer than %d bytes", MQTT_STRING_MAX);
    return false;
  }
  if (cfg->keepalive != 0 && (cfg->keepalive < 5 || cfg->keepalive > 65535)) {
    hes_errbuf_printf(err, errlen, "keepalive %d is out of range 5..65535", cfg->keepalive);
    return false;
  }
  if ((cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
    hes_errbuf_printf(err, errlen, "cert_file and key_file go together");
    return false;
  }
  if (cfg->tls_protocol != NULL && strcmp(cfg->tls_protocol, "tlsv1.2") != 0 &&
      strcmp(cfg->tls_protocol, "tlsv1.3") != 0) {
    hes_errbuf_printf(err, errlen, "tls_protocol \"%.20s\" is neither tlsv1.2 nor tlsv1.3",
                      cfg->tls_protocol);
    return false;
  }
  const char *files[] = {cfg->ca_cert, cfg->cert_file, cfg->key_file};
  const char *names[] = {"ca_cert", "cert_file", "key_file"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    if (files[i] != NULL && access(files[i], R_OK) != 0) {
      char ebuf[128];
      hes_errbuf_printf(err, errlen, "%s \"%.200s\": %s", names[i], files[i],
                        strerror_r(errno, ebuf, sizeof(ebuf)));
      return false;
    }
  }
  if (!valid_seconds(cfg->backoff_min) || !valid_seconds(cfg->backoff_max) ||
      !valid_seconds(cfg->connect_timeout)) {
    hes_errbuf_printf(err, errlen,
                      "backoff_min, backoff_max and connect_timeout are seconds in 0..86400");
    return false;
  }
  double bmin = cfg->backoff_min > 0 ? cfg->backoff_min : DEFAULT_BACKOFF_MIN;
  double bmax = cfg->backoff_max > 0 ? cfg->backoff_max : DEFAULT_BACKOFF_MAX;
  if (bmax < bmin) {
    hes_errbuf_printf(err, errlen, "backoff_max %g is below backoff_min %g", bmax, bmin);
    return false;
  }
  return true;
}

static bool copy_config(hes_mqtt_t *m, const hes_mqtt_config_t *cfg) {
  bool ok = true;
  m->host = dup_opt(cfg->host, &ok);
  m->user = dup_opt(cfg->user, &ok);
  m->password = dup_opt(cfg->password, &ok);
  m->client_id = dup_opt(cfg->client_id, &ok);
  m->ca_cert = dup_opt(cfg->ca_cert, &ok);
  m->cert_file = dup_opt(cfg->cert_file, &ok);
  m->key_file = dup_opt(cfg->key_file, &ok);
  m->tls_protocol = dup_opt(cfg->tls_protocol, &ok);
  m->topic = dup_opt(cfg->topic, &ok);
  m->tls = cfg->tls || cfg->ca_cert != NULL || cfg->cert_file != NULL;
  m->port = cfg->port != 0 ? cfg->port : (m->tls ? DEFAULT_TLS_PORT : DEFAULT_PORT);
  m->qos = cfg->qos;
  m->clean_session = cfg->clean_session;
  m->keepalive = cfg->keepalive != 0 ? cfg->keepalive : DEFAULT_KEEPALIVE;
  m->backoff_min = cfg->backoff_min > 0 ? cfg->backoff_min : DEFAULT_BACKOFF_MIN;
  m->backoff_max = cfg->backoff_max > 0 ? cfg->backoff_max : DEFAULT_BACKOFF_MAX;
  m->connect_timeout = cfg->connect_timeout > 0 ? cfg->connect_timeout : DEFAULT_CONNECT_TIMEOUT;
  m->on_message = cfg->on_message;
  m->on_state = cfg->on_state;
  m->ctx = cfg->ctx;
  return ok;
}

/* ---- state changes and reports (run thread) --------------------------------------------- */

static void set_pending(hes_mqtt_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_pending(hes_mqtt_t *m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->pending, sizeof(m->pending), fmt, ap);
  va_end(ap);
}

static void become_ready(hes_mqtt_t *m, const char *why) {
  pthread_mutex_lock(&m->lock);
  atomic_store(&m->ready, true);
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  m->failures = 0;
  m->reported[0] = '\0';
  if (m->on_state != NULL)
    m->on_state(m->ctx, true, why);
}

/* Not ready (any more): tells the owner on the transition, and otherwise once per reason. */
static void report_down(hes_mqtt_t *m, const char *why) {
  bool was_ready = atomic_exchange(&m->ready, false);
  if (!was_ready && strcmp(m->reported, why) == 0)
    return;
  snprintf(m->reported, sizeof(m->reported), "%s", why);
  if (m->on_state != NULL)
    m->on_state(m->ctx, false, why);
}

/* Why a libmosquitto call failed; errno is the one saved right after it. */
static void describe_rc(char *buf, size_t len, int rc, int saved_errno) {
  if (rc == MOSQ_ERR_ERRNO) {
    char ebuf[128];
    snprintf(buf, len, "%s", strerror_r(saved_errno, ebuf, sizeof(ebuf)));
  } else {
    snprintf(buf, len, "%s", mosquitto_strerror(rc));
  }
  /* More words follow; the library's sentences end in a full stop. */
  size_t n = strlen(buf);
  if (n > 0 && buf[n - 1] == '.')
    buf[n - 1] = '\0';
}

static const char *family_name(int family) {
  return family == AF_INET6 ? "IPv6" : "IPv4";
}

/* The attempt or the connection is over; schedule the next one. Returns its time: now when
 * the attempt goes on with the host's next address family. */
static double link_failed(hes_mqtt_t *m, int rc, int saved_errno) {
  char why[REPORT_MAX];
  bool was_up = m->link == LINK_UP;
  bool by_family = !was_up && !m->reached && m->n_families > 1;
  char what[160];
  describe_rc(what, sizeof(what), rc, saved_errno);
  if (by_family) {
    appendf(m->tried, sizeof(m->tried), "%s%s %s: ", m->tried[0] != '\0' ? "; " : "",
            family_name(m->families[m->family]), m->addrs[m->family]);
    if (m->pending[0] != '\0')
      appendf(m->tried, sizeof(m->tried), "%s", m->pending);
    else
      appendf(m->tried, sizeof(m->tried), "%s%s%s", what, m->lib_error[0] != '\0' ? ": " : "",
              m->lib_error);
    if (m->family + 1 < m->n_families) {
      m->family++;
      m->next_family = true;
      m->link = LINK_DOWN;
      m->pending[0] = '\0';
      m->lib_error[0] = '\0';
      return hes_clock_mono();
    }
    why[0] = '\0';
    appendf(why, sizeof(why), "cannot connect to %s:%d at any of its addresses: %s", m->host,
            m->port, m->tried);
  } else if (m->pending[0] != '\0') {
    snprintf(why, sizeof(why), "%s", m->pending);
  } else {
    why[0] = '\0';
    appendf(why, sizeof(why), "%s %s:%d: %s%s%s",
            was_up ? "connection lost to" : "cannot connect to", m->host, m->port, what,
            m->lib_error[0] != '\0' ? ": " : "", m->lib_error);
  }
  m->link = LINK_DOWN;
  m->pending[0] = '\0';
  m->lib_error[0] = '\0';
  report_down(m, why);
  return hes_clock_mono() + next_delay(m);
}

/* ---- libmosquitto callbacks (run thread, inside mosquitto_loop) ------------------------- */

static void on_connect_cb(struct mosquitto *mosq, void *obj, int rc, int flags) {
  hes_mqtt_t *m = obj;
  m->reached = true;
  if (rc != 0) {
    set_pending(m, "broker %s:%d refused the connection: %s", m->host, m->port,
                mosquitto_connack_string(rc));
    return;
  }
  m->link = LINK_UP;
  m->lib_error[0] = '\0';
  atomic_fetch_add(&m->connects, 1);
  bool session_kept = (flags & 1) != 0 && !m->clean_session;
  /* A kept session has our filter only if this handle subscribed before: the same client
   * id may have been used with another topic. */
  if (session_kept && m->subscribed_once) {
    become_ready(m, "connected, session and subscription kept by the broker");
    return;
  }
  int src = mosquitto_subscribe(mosq, &m->sub_mid, m->topic, m->qos);
  if (src != MOSQ_ERR_SUCCESS) {
    set_pending(m, "cannot subscribe to %s: %s", m->topic, mosquitto_strerror(src));
    mosquitto_disconnect(mosq);
  }
}

static void on_subscribe_cb(struct mosquitto *mosq, void *obj, int mid, int qos_count,
                            const int *granted_qos) {
  hes_mqtt_t *m = obj;
  if (mid != m->sub_mid || m->link != LINK_UP)
    return;
  if (qos_count < 1 || granted_qos[0] < 0 || granted_qos[0] > 2) {
    set_pending(m, "broker %s:%d refused the subscription to %s", m->host, m->port, m->topic);
    mosquitto_disconnect(mosq);
    return;
  }
  m->subscribed_once = true;
  if (granted_qos[0] < m->qos) {
    /* Still usable, but the owner should know that QoS 0 loses messages across drops. */
    char why[128];
    snprintf(why, sizeof(why), "connected and subscribed, broker granted QoS %d only",
             granted_qos[0]);
    become_ready(m, why);
    return;
  }
  become_ready(m, "connected and subscribed");
}

static void on_message_cb(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg) {
  (void)mosq;
  hes_mqtt_t *m = obj;
  if (m->on_message == NULL || msg == NULL || msg->topic == NULL)
    return;
  size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
  const void *payload = len > 0 && msg->payload != NULL ? msg->payload : "";
  m->on_message(m->ctx, msg->topic, payload, len);
}

/* libmosquitto explains TLS failures only through its log; keep the first error line of an
 * attempt for the report. Nothing else is kept and nothing is logged. */
static void on_log_cb(struct mosquitto *mosq, void *obj, int level, const char *str) {
  (void)mosq;
  hes_mqtt_t *m = obj;
  if (level != MOSQ_LOG_ERR || str == NULL || m->lib_error[0] != '\0')
    return;
  snprintf(m->lib_error, sizeof(m->lib_error), "%s", str);
}

/* An encrypted key would make OpenSSL prompt on the terminal; fail instead. */
static int no_key_password(char *buf, int size, int rwflag, void *userdata) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)userdata;
  return 0;
}

static bool setup_mosquitto(hes_mqtt_t *m, char *err, size_t errlen) {
  m->mosq = mosquitto_new(m->client_id, m->clean_session, m);
  if (m->mosq == NULL) {
    char ebuf[128];
    hes_errbuf_printf(err, errlen, "mosquitto_new: %s", strerror_r(errno, ebuf, sizeof(ebuf)));
    return false;
  }
  int rc = mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  if (rc == MOSQ_ERR_SUCCESS && m->user != NULL)
    rc = mosquitto_username_pw_set(m->mosq, m->user, m->password);
  if (rc != MOSQ_ERR_SUCCESS) {
    hes_errbuf_printf(err, errlen, "cannot set protocol or credentials: %s",
                      mosquitto_strerror(rc));
    return false;
  }
  if (m->tls) {
    /* Without a capath libmosquitto trusts nothing rather than the system store. */
    rc = mosquitto_tls_set(m->mosq, m->ca_cert, m->ca_cert == NULL ? SYSTEM_CAPATH : NULL,
                           m->cert_file, m->key_file, no_key_password);
    if (rc == MOSQ_ERR_SUCCESS)
      rc = mosquitto_tls_opts_set(m->mosq, 1 /* SSL_VERIFY_PEER */, m->tls_protocol, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
      rc = mosquitto_tls_insecure_set(m->mosq, false);
    if (rc != MOSQ_ERR_SUCCESS) {
      hes_errbuf_printf(err, errlen, "TLS setup: %s", mosquitto_strerror(rc));
      return false;
    }
  }
  mosquitto_connect_with_flags_callback_set(m->mosq, on_connect_cb);
  mosquitto_subscribe_callback_set(m->mosq, on_subscribe_cb);
  mosquitto_message_callback_set(m->mosq, on_message_cb);
  mosquitto_log_callback_set(m->mosq, on_log_cb);
  return true;
}

hes_mqtt_t *hes_mqtt_new(const hes_mqtt_config_t *cfg, char *err, size_t errlen) {
  if (!check_config(cfg, err, errlen))
    return NULL;
  pthread_once(&lib_once, lib_init);
  if (lib_init_rc != MOSQ_ERR_SUCCESS) {
    hes_errbuf_printf(err, errlen, "mosquitto_lib_init: %s", mosquitto_strerror(lib_init_rc));
    return NULL;
  }
  hes_mqtt_t *m = calloc(1, sizeof(*m));
  if (m == NULL) {
    hes_errbuf_printf(err, errlen, "out of memory");
    return NULL;
  }
  if (hes_clock_cond_init(&m->cond) != 0) {
    free(m);
    hes_errbuf_printf(err, errlen, "pthread_cond_init failed");
    return NULL;
  }
  pthread_mutex_init(&m->lock, NULL);
  atomic_init(&m->stop, false);
  atomic_init(&m->running, false);
  atomic_init(&m->ready, false);
  atomic_init(&m->connects, 0);
  atomic_init(&m->attempts, 0);
  m->link = LINK_DOWN;
  m->rng = ((uint64_t)(uintptr_t)m ^ (uint64_t)(hes_clock_mono() * 1e9)) | 1;

  if (!copy_config(m, cfg)) {
    hes_errbuf_printf(err, errlen, "out of memory");
    hes_mqtt_free(m);
    return NULL;
  }
  if (!setup_mosquitto(m, err, errlen)) {
    hes_mqtt_free(m);
    return NULL;
  }
  return m;
}

/* Sleeps until deadline (monotonic seconds) or hes_mqtt_stop. */
static void sleep_until(hes_mqtt_t *m, double deadline) {
  struct timespec ts;
  ts.tv_sec = (time_t)deadline;
  ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
  pthread_mutex_lock(&m->lock);
  while (!atomic_load(&m->stop) && hes_clock_mono() < deadline) {
    if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
      break;
  }
  pthread_mutex_unlock(&m->lock);
}

/* Closes a socket libmosquitto has not closed itself. There is no call for that alone:
 * after shutdown() the socket reads EOF, so a non-blocking mosquitto_loop sees the loss and
 * closes it (a TLS handshake in progress fails the same way). What is still open after that
 * goes at the next attempt or at mosquitto_destroy. */
static void drop_socket(hes_mqtt_t *m) {
  int fd = mosquitto_socket(m->mosq);
  if (fd < 0)
    return;
  shutdown(fd, SHUT_RDWR);
  for (int i = 0; i < 3 && mosquitto_socket(m->mosq) >= 0; i++)
    mosquitto_loop(m->mosq, 0, 1);
}

/* True when the TCP connection of the try in progress has been closed for a whole loop.
 * libmosquitto does not always see that: with TLS it keeps retrying the handshake's first
 * write on a refused socket (the refusal went to that write, as EPIPE after), and the try
 * would only end at connect_timeout. It gets one loop to report a close itself, in its own
 * words. Sets the reason. */
static bool connect_closed(hes_mqtt_t *m) {
  int fd = mosquitto_socket(m->mosq);
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
      ti.tcpi_state != TCP_CLOSE) {
    m->closed_loops = 0;
    return false;
  }
  if (++m->closed_loops < 2)
    return false;
  int err = 0;
  len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
    char ebuf[128];
    set_pending(m, "%s", strerror_r(err, ebuf, sizeof(ebuf)));
  } else {
    set_pending(m, "connection refused or closed before the broker answered");
  }
  return true;
}

/* Gives up on an attempt that got no CONNACK in time. */
static double abandon_attempt(hes_mqtt_t *m) {
  if (m->pending[0] == '\0') {
    char what[WHY_MAX];
    snprintf(what, sizeof(what), "%s", m->lib_error);
    if (m->n_families > 1)
      set_pending(m, "no MQTT answer within %gs%s%s", m->connect_timeout,
                  what[0] != '\0' ? ": " : "", what);
    else
      set_pending(m, "no MQTT answer from %s:%d within %gs%s%s", m->host, m->port,
                  m->connect_timeout, what[0] != '\0' ? ": " : "", what);
  }
  drop_socket(m);
  return link_failed(m, MOSQ_ERR_NO_CONN, 0);
}

/* The host's address families, in the resolver's order, for one attempt. A lookup that
 * fails leaves one plain try: libmosquitto looks the name up again and reports why. */
static void resolve_families(hes_mqtt_t *m) {
  m->n_families = 0;
  m->family = 0;
  m->tried[0] = '\0';
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(m->host, NULL, &hints, &res) != 0)
    return;
  for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
      continue;
    int i = 0;
    while (i < m->n_families && m->families[i] != ai->ai_family)
      i++;
    if (i == m->n_families) {
      m->families[i] = ai->ai_family;
      m->addrs[i][0] = '\0';
      m->n_families++;
    }
    char addr[NI_MAXHOST];
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST) != 0)
      continue;
    /* /etc/hosts may list an address twice */
    char listed[ADDRS_MAX + 2];
    snprintf(listed, sizeof(listed), ",%s,", m->addrs[i]);
    char item[NI_MAXHOST + 2];
    snprintf(item, sizeof(item), ",%s,", addr);
    if (strstr(listed, item) == NULL)
      appendf(m->addrs[i], sizeof(m->addrs[i]), "%s%s", m->addrs[i][0] != '\0' ? "," : "", addr);
  }
  freeaddrinfo(res);
}

/* Starts one try: the whole host (one family or a failed lookup), or one of its families,
 * chosen by binding to that family's unspecified address. */
static int start_try(hes_mqtt_t *m) {
  m->attempt_start = hes_clock_mono();
  m->link = LINK_CONNECTING;
  m->reached = false;
  m->closed_loops = 0;
  const char *bind_address = NULL;
  if (m->n_families > 1)
    bind_address = m->families[m->family] == AF_INET6 ? "::" : "0.0.0.0";
  return mosquitto_connect_bind_async(m->mosq, m->host, m->port, m->keepalive, bind_address);
}

int hes_mqtt_run(hes_mqtt_t *m) {
  if (m == NULL || atomic_exchange(&m->running, true))
    return -1;
  m->link = LINK_DOWN;
  m->pending[0] = '\0';
  m->lib_error[0] = '\0';
  m->failures = 0;
  m->next_family = false;
  double next_attempt = 0;

  while (!atomic_load(&m->stop)) {
    if (m->link == LINK_DOWN) {
      if (hes_clock_mono() < next_attempt) {
        sleep_until(m, next_attempt);
        continue;
      }
      if (!m->next_family) {
        atomic_fetch_add(&m->attempts, 1);
        resolve_families(m);
      }
      m->next_family = false;
      int rc = start_try(m);
      if (rc != MOSQ_ERR_SUCCESS) {
        next_attempt = link_failed(m, rc, errno);
        continue;
      }
    }
    int timeout_ms = LOOP_MS;
    if (m->link == LINK_CONNECTING) {
      double left = m->attempt_start + m->connect_timeout - hes_clock_mono();
      if (left <= 0) {
        next_attempt = abandon_attempt(m);
        continue;
      }
      if (left * 1000 < LOOP_MS)
        timeout_ms = (int)(left * 1000) + 1;
    }
    int rc = mosquitto_loop(m->mosq, timeout_ms, 1);
    int saved_errno = errno;
    if (rc == MOSQ_ERR_SUCCESS && m->link == LINK_CONNECTING && connect_closed(m)) {
      drop_socket(m);
      rc = MOSQ_ERR_NO_CONN;
    }
    if (rc != MOSQ_ERR_SUCCESS)
      next_attempt = link_failed(m, rc, saved_errno);
  }

  /* Not in a callback, so the DISCONNECT is written at once and the socket closed. */
  if (m->link == LINK_UP)
    mosquitto_disconnect(m->mosq);
  drop_socket(m);
  m->link = LINK_DOWN;
  m->reported[0] = '\0';
  if (atomic_exchange(&m->ready, false) && m->on_state != NULL)
    m->on_state(m->ctx, false, "stopped");
  atomic_store(&m->stop, false);
  atomic_store(&m->running, false);
  return 0;
}

void hes_mqtt_stop(hes_mqtt_t *m) {
  if (m == NULL)
    return;
  pthread_mutex_lock(&m->lock);
  atomic_store(&m->stop, true);
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
}

bool hes_mqtt_ready(const hes_mqtt_t *m) {
  if (m == NULL)
    return false;
  return atomic_load(&((hes_mqtt_t *)m)->ready);
}

bool hes_mqtt_wait_ready(hes_mqtt_t *m, double timeout) {
  if (m == NULL)
    return false;
  double deadline = hes_clock_mono() + (isfinite(timeout) && timeout > 0 ? timeout : 0);
  struct timespec ts;
  ts.tv_sec = (time_t)deadline;
  ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
  pthread_mutex_lock(&m->lock);
  while (!atomic_load(&m->ready) && hes_clock_mono() < deadline) {
    if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
      break;
  }
  bool ready = atomic_load(&m->ready);
  pthread_mutex_unlock(&m->lock);
  return ready;
}

uint64_t hes_mqtt_connects(const hes_mqtt_t *m) {
  if (m == NULL)
    return 0;
  return atomic_load(&((hes_mqtt_t *)m)->connects);
}

uint64_t hes_mqtt_reconnects(const hes_mqtt_t *m) {
  uint64_t c = hes_mqtt_connects(m);
  return c > 1 ? c - 1 : 0;
}

uint64_t hes_mqtt_attempts(const hes_mqtt_t *m) {
  if (m == NULL)
    return 0;
  return atomic_load(&((hes_mqtt_t *)m)->attempts);
}

void hes_mqtt_free(hes_mqtt_t *m) {
  if (m == NULL)
    return;
  /* run disconnected on its way out; destroy closes whatever a never-run handle holds. */
  if (m->mosq != NULL)
    mosquitto_destroy(m->mosq);
  pthread_cond_destroy(&m->cond);
  pthread_mutex_destroy(&m->lock);
  free(m->host);
  free(m->user);
  free_secret(m->password);
  free(m->client_id);
  free(m->ca_cert);
  free(m->cert_file);
  free(m->key_file);
  free(m->tls_protocol);
  free(m->topic);
  free(m);
}
