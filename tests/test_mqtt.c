/* test_mqtt: the mqtt module against a real mosquitto broker that this program starts,
 * stops and restarts itself (in a temporary directory, on free 127.0.0.1 ports), plus a
 * second libmosquitto client that publishes. Exits 77 without a mosquitto binary; the
 * integration.sh that runs it then fails, saying it could not run.
 *
 * The broker has two listeners: an anonymous one, and one that refuses every CONNECT, to see
 * the CONNACK path. Persistence is on, so a restart keeps the sessions. What mosquitto will
 * not do (refuse a SUBSCRIBE: its acl_file never does; stay silent; hang up at once) a small
 * fake server in a child process does.
 *
 * "localhost" resolves to ::1 first and then 127.0.0.1 here, whatever this machine's
 * /etc/hosts says (see getaddrinfo below), as on Debian's stock /etc/hosts; the brokers
 * listen on 127.0.0.1 only. */
#include "config.h"

#include "mqtt.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* A test that cannot run here fails and says why; only the Debian package build
 * (HES_DEB_BUILD, set by debian/rules) may skip it. */
#define CANNOT_RUN(why)                                                                            \
  do {                                                                                             \
    if (getenv("HES_DEB_BUILD") != NULL)                                                           \
      skip();                                                                                      \
    else                                                                                           \
      fail_msg("cannot run: %s (tests/install-deps.sh --test installs it)", why);                  \
  } while (0)

#define TOPIC        "/1000000067/#"
#define MAX_MSGS     64
#define MAX_STATES   64
#define PAYLOAD_MAX  256
#define BROKER_SLACK 5.0 /* seconds a broker gets to start or stop */
#define WATCHDOG_S   120 /* the whole program; it takes about 6 s */

/* ---- name resolution ---------------------------------------------------------------------- */

/* The test hook for the module's address-family fallback: this program's getaddrinfo comes
 * before libc's for the module and for libmosquitto alike (the executable is searched
 * first), so both see "localhost" as ::1, then 127.0.0.1, as Debian's stock /etc/hosts has
 * it. Every other name goes to the real one. */
static atomic_int localhost_lookups;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
  int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
      (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(
          RTLD_NEXT, "getaddrinfo");
  if (real == NULL)
    return EAI_SYSTEM;
  if (node == NULL || strcmp(node, "localhost") != 0)
    return real(node, service, hints, res);
  atomic_fetch_add(&localhost_lookups, 1);
  struct addrinfo h;
  memset(&h, 0, sizeof(h));
  if (hints != NULL)
    h = *hints;
  int family = h.ai_family;
  h.ai_flags |= AI_NUMERICHOST;
  struct addrinfo *v6 = NULL, *v4 = NULL;
  if (family == AF_UNSPEC || family == AF_INET6) {
    h.ai_family = AF_INET6;
    int rc = real("::1", service, &h, &v6);
    if (rc != 0)
      return rc;
  }
  if (family == AF_UNSPEC || family == AF_INET) {
    h.ai_family = AF_INET;
    int rc = real("127.0.0.1", service, &h, &v4);
    if (rc != 0) {
      if (v6 != NULL)
        freeaddrinfo(v6);
      return rc;
    }
  }
  /* freeaddrinfo frees node by node, so the two lists can be chained. */
  struct addrinfo *tail = v6;
  while (tail != NULL && tail->ai_next != NULL)
    tail = tail->ai_next;
  if (tail != NULL)
    tail->ai_next = v4;
  *res = v6 != NULL ? v6 : v4;
  return *res != NULL ? 0 : EAI_NONAME;
}

/* ---- the broker -------------------------------------------------------------------------- */

static struct {
  const char *bin;
  char dir[64];
  char conf[128];
  int port;      /* anonymous */
  int auth_port; /* refuses everyone */
  int tls_port;  /* 0: no openssl to make certificates with */
  pid_t pid;
} broker;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* A port nobody listens on right now (and, bound then closed, nobody will soon). */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  socklen_t len = sizeof(sa);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return false;
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  return ok;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void broker_start(void) {
  char log[128];
  snprintf(log, sizeof(log), "%s/mosquitto.log", broker.dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execl(broker.bin, broker.bin, "-c", broker.conf, (char *)NULL);
    _exit(127);
  }
  broker.pid = pid;
  for (double end = now_s() + BROKER_SLACK; now_s() < end; sleep_s(0.01)) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      broker.pid = 0;
      fail_msg("mosquitto exited at start, see %s", log);
    }
    if (port_open(broker.port) && port_open(broker.auth_port) &&
        (broker.tls_port == 0 || port_open(broker.tls_port)))
      return;
  }
  fail_msg("mosquitto did not listen within %gs", BROKER_SLACK);
}

/* SIGTERM: mosquitto writes its persistence file on the way out. */
static void broker_stop(void) {
  if (broker.pid <= 0)
    return;
  kill(broker.pid, SIGTERM);
  int status;
  for (double end = now_s() + BROKER_SLACK; now_s() < end; sleep_s(0.01)) {
    if (waitpid(broker.pid, &status, WNOHANG) == broker.pid) {
      broker.pid = 0;
      return;
    }
  }
  kill(broker.pid, SIGKILL);
  waitpid(broker.pid, &status, 0);
  broker.pid = 0;
}

static void broker_kill_at_exit(void) {
  if (broker.pid > 0) {
    kill(broker.pid, SIGKILL);
    waitpid(broker.pid, NULL, 0);
  }
}

static bool run_cmd(char *const argv[]) {
  pid_t pid = fork();
  if (pid < 0)
    return false;
  if (pid == 0) {
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
      dup2(fd, 0);
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  int status;
  return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A CA, a server certificate for IP 127.0.0.1 only, and a passphrase-protected key. */
static bool make_certs(void) {
  char ca_key[128], ca_crt[128], key[128], csr[128], crt[128], ext[128], enc[128];
  snprintf(ca_key, sizeof(ca_key), "%s/ca.key", broker.dir);
  snprintf(ca_crt, sizeof(ca_crt), "%s/ca.crt", broker.dir);
  snprintf(key, sizeof(key), "%s/server.key", broker.dir);
  snprintf(csr, sizeof(csr), "%s/server.csr", broker.dir);
  snprintf(crt, sizeof(crt), "%s/server.crt", broker.dir);
  snprintf(ext, sizeof(ext), "%s/ext.cnf", broker.dir);
  snprintf(enc, sizeof(enc), "%s/encrypted.key", broker.dir);
  write_file(ext, "subjectAltName=IP:127.0.0.1\n");
  char *ca[] = {"openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                ca_key,
                "-out",
                ca_crt,
                "-days",
                "2",
                "-subj",
                "/CN=hes test CA",
                NULL};
  char *req[] = {
      "openssl",       "req",     "-newkey", "ec",   "-pkeyopt", "ec_paramgen_curve:prime256v1",
      "-nodes",        "-keyout", key,       "-out", csr,        "-subj",
      "/CN=127.0.0.1", NULL};
  char *sign[] = {
      "openssl",         "x509", "-req", "-in",   csr, "-CA",      ca_crt, "-CAkey", ca_key,
      "-CAcreateserial", "-out", crt,    "-days", "2", "-extfile", ext,    NULL};
  char *pkey[] = {
      "openssl", "genpkey", "-algorithm",     "EC",   "-pkeyopt", "ec_paramgen_curve:P-256",
      "-aes256", "-pass",   "pass:not-given", "-out", enc,        NULL};
  return run_cmd(ca) && run_cmd(req) && run_cmd(sign) && run_cmd(pkey);
}

static void cert_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", broker.dir, name);
}

static int group_setup(void **state) {
  (void)state;
  char text[2048];
  /* Started as root, mosquitto would become user "mosquitto" and lose the temp dir. */
  struct passwd *pw = getpwuid(geteuid());
  assert_non_null(pw);
  int n = snprintf(text, sizeof(text),
                   "user %s\n"
                   "per_listener_settings true\n"
                   "persistence true\n"
                   "persistence_location %s/\n"
                   "autosave_interval 1\n"
                   "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                   "listener %d 127.0.0.1\n"
                   "allow_anonymous true\n"
                   "listener %d 127.0.0.1\n"
                   "allow_anonymous false\n",
                   pw->pw_name, broker.dir, broker.port, broker.auth_port);
  if (make_certs()) {
    broker.tls_port = free_port();
    snprintf(text + n, sizeof(text) - (size_t)n,
             "listener %d 127.0.0.1\n"
             "allow_anonymous true\n"
             "cafile %s/ca.crt\n"
             "certfile %s/server.crt\n"
             "keyfile %s/server.key\n",
             broker.tls_port, broker.dir, broker.dir, broker.dir);
  } else {
    printf("# no openssl to make certificates with: the TLS tests cannot run\n");
  }
  write_file(broker.conf, text);
  broker_start();
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  broker_stop();
  return 0;
}

/* ---- what the module reports ------------------------------------------------------------ */

typedef struct {
  pthread_mutex_t lock;
  int nmsgs;
  char topics[MAX_MSGS][64];
  unsigned char payloads[MAX_MSGS][PAYLOAD_MAX];
  size_t lens[MAX_MSGS];
  int nstates;
  bool ready[MAX_STATES];
  char why[MAX_STATES][512];
} record_t;

static void record_message(void *ctx, const char *topic, const void *payload, size_t len) {
  record_t *r = ctx;
  pthread_mutex_lock(&r->lock);
  if (r->nmsgs < MAX_MSGS) {
    snprintf(r->topics[r->nmsgs], sizeof(r->topics[0]), "%s", topic);
    r->lens[r->nmsgs] = len;
    memcpy(r->payloads[r->nmsgs], payload, len < PAYLOAD_MAX ? len : PAYLOAD_MAX);
    r->nmsgs++;
  }
  pthread_mutex_unlock(&r->lock);
}

static void record_state(void *ctx, bool ready, const char *why) {
  record_t *r = ctx;
  pthread_mutex_lock(&r->lock);
  if (r->nstates < MAX_STATES) {
    r->ready[r->nstates] = ready;
    snprintf(r->why[r->nstates], sizeof(r->why[0]), "%s", why);
    r->nstates++;
  }
  pthread_mutex_unlock(&r->lock);
}

static int count_msgs(record_t *r) {
  pthread_mutex_lock(&r->lock);
  int n = r->nmsgs;
  pthread_mutex_unlock(&r->lock);
  return n;
}

static int count_states(record_t *r) {
  pthread_mutex_lock(&r->lock);
  int n = r->nstates;
  pthread_mutex_unlock(&r->lock);
  return n;
}

static bool wait_msgs(record_t *r, int n, double timeout) {
  for (double end = now_s() + timeout; now_s() < end; sleep_s(0.01))
    if (count_msgs(r) >= n)
      return true;
  return count_msgs(r) >= n;
}

static bool wait_states(record_t *r, int n, double timeout) {
  for (double end = now_s() + timeout; now_s() < end; sleep_s(0.01))
    if (count_states(r) >= n)
      return true;
  return count_states(r) >= n;
}

/* Copies under the lock, asserts outside it: a failed assertion must not leave it held. */
static void assert_msg(record_t *r, int i, const char *topic, const char *payload) {
  char got_topic[sizeof(r->topics[0])];
  unsigned char got[PAYLOAD_MAX];
  size_t len = 0;
  pthread_mutex_lock(&r->lock);
  int n = r->nmsgs;
  if (i < n) {
    memcpy(got_topic, r->topics[i], sizeof(got_topic));
    len = r->lens[i];
    memcpy(got, r->payloads[i], sizeof(got));
  }
  pthread_mutex_unlock(&r->lock);
  assert_true(i < n);
  assert_string_equal(got_topic, topic);
  assert_int_equal(len, strlen(payload));
  assert_memory_equal(got, payload, strlen(payload));
}

/* The last state reported, copied under the lock. */
static bool last_state(record_t *r, char *why, size_t len) {
  pthread_mutex_lock(&r->lock);
  int n = r->nstates;
  bool ready = n > 0 && r->ready[n - 1];
  snprintf(why, len, "%s", n > 0 ? r->why[n - 1] : "");
  pthread_mutex_unlock(&r->lock);
  return ready;
}

static hes_mqtt_config_t base_config(record_t *r, const char *client_id) {
  return (hes_mqtt_config_t){
      .host = "127.0.0.1",
      .port = broker.port,
      .client_id = client_id,
      .qos = 1,
      .clean_session = false,
      .keepalive = 10,
      .topic = TOPIC,
      .backoff_min = 0.05,
      .backoff_max = 0.2,
      .connect_timeout = 2,
      .on_message = record_message,
      .on_state = record_state,
      .ctx = r,
  };
}

/* ---- the run thread --------------------------------------------------------------------- */

/* Runs and records live in static pools, not in a test's frame: when an assertion fails
 * mid-test, the per-test teardown still finds the run thread, stops it and joins it. */
typedef struct {
  hes_mqtt_t *m;
  pthread_t thread;
  int rc;
  bool active;
} runner_t;

static runner_t runners[4];
static pid_t
    fake_pid; /* the fake server running (see below), for the teardown after a failed test */
static record_t records[4];
static int nrecords;

static record_t *new_record(void) {
  assert_true(nrecords < (int)(sizeof(records) / sizeof(records[0])));
  record_t *r = &records[nrecords++];
  memset(r, 0, sizeof(*r));
  pthread_mutex_init(&r->lock, NULL);
  return r;
}

static void *run_thread(void *arg) {
  runner_t *t = arg;
  t->rc = hes_mqtt_run(t->m);
  return NULL;
}

static runner_t *start_run(hes_mqtt_t *m) {
  runner_t *t = NULL;
  for (size_t i = 0; i < sizeof(runners) / sizeof(runners[0]) && t == NULL; i++)
    if (!runners[i].active)
      t = &runners[i];
  assert_non_null(t);
  t->m = m;
  t->rc = -99;
  assert_int_equal(pthread_create(&t->thread, NULL, run_thread, t), 0);
  t->active = true;
  return t;
}

static void join_run(runner_t *t) {
  assert_int_equal(pthread_join(t->thread, NULL), 0);
  t->active = false;
  assert_int_equal(t->rc, 0);
}

/* Stops the run and returns how long that took. */
static double stop_run(runner_t *t) {
  double t0 = now_s();
  hes_mqtt_stop(t->m);
  join_run(t);
  return now_s() - t0;
}

/* After a failed assertion: no thread may outlive its test (the handle is left to leak). */
static int test_teardown(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(runners) / sizeof(runners[0]); i++) {
    if (runners[i].active) {
      hes_mqtt_stop(runners[i].m);
      pthread_join(runners[i].thread, NULL);
      runners[i].active = false;
    }
  }
  nrecords = 0;
  if (fake_pid > 0) {
    kill(fake_pid, SIGKILL);
    waitpid(fake_pid, NULL, 0);
    fake_pid = 0;
  }
  return 0;
}

/* ---- the publisher ---------------------------------------------------------------------- */

static void on_published(struct mosquitto *mosq, void *obj, int mid) {
  (void)mosq;
  if (*(int *)obj == mid)
    *(int *)obj = -1;
}

/* Publishes and waits for the broker to have it (PUBACK for QoS 1). */
static void publish(const char *topic, const void *payload, size_t len, int qos) {
  int mid = 0;
  struct mosquitto *p = mosquitto_new(NULL, true, &mid);
  assert_non_null(p);
  mosquitto_publish_callback_set(p, on_published);
  assert_int_equal(mosquitto_connect(p, "127.0.0.1", broker.port, 10), MOSQ_ERR_SUCCESS);
  assert_int_equal(mosquitto_publish(p, &mid, topic, (int)len, payload, qos, false),
                   MOSQ_ERR_SUCCESS);
  for (double end = now_s() + 3; mid != -1 && now_s() < end;)
    assert_int_equal(mosquitto_loop(p, 50, 1), MOSQ_ERR_SUCCESS);
  assert_int_equal(mid, -1);
  mosquitto_disconnect(p);
  mosquitto_destroy(p);
}

static void publish_str(const char *topic, const char *payload) {
  publish(topic, payload, strlen(payload), 1);
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void expect_bad(hes_mqtt_config_t cfg, const char *want) {
  char err[256] = "";
  hes_mqtt_t *m = hes_mqtt_new(&cfg, err, sizeof(err));
  assert_null(m);
  assert_string_equal(err, want);
}

static void test_config_errors(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t ok = base_config(r, "hes-config");
  hes_mqtt_config_t c;
  char err[256] = "";

  assert_null(hes_mqtt_new(NULL, err, sizeof(err)));
  assert_string_equal(err, "no configuration");
  c = ok, c.host = NULL;
  expect_bad(c, "host is required");
  c = ok, c.host = "";
  expect_bad(c, "host is required");
  c = ok, c.port = -1;
  expect_bad(c, "port -1 is out of range 1..65535");
  c = ok, c.port = 65536;
  expect_bad(c, "port 65536 is out of range 1..65535");
  c = ok, c.qos = 3;
  expect_bad(c, "qos 3 is out of range 0..2");
  c = ok, c.qos = -1;
  expect_bad(c, "qos -1 is out of range 0..2");
  c = ok, c.topic = NULL;
  expect_bad(c, "topic is required");
  c = ok, c.topic = "/a/#/b";
  expect_bad(c, "topic \"/a/#/b\" is not a valid subscription filter");
  c = ok, c.topic = "/a+/b";
  expect_bad(c, "topic \"/a+/b\" is not a valid subscription filter");
  c = ok, c.topic = "/a/\xff\xfe";
  expect_bad(c, "topic \"/a/\xff\xfe\" is not a valid subscription filter");
  c = ok, c.client_id = NULL;
  expect_bad(c, "client_id is required");
  c = ok, c.client_id = "";
  expect_bad(c, "client_id is required");
  c = ok, c.client_id = "bad\xc3";
  expect_bad(c, "client_id is not valid UTF-8 of at most 65535 bytes");
  c = ok, c.keepalive = 4;
  expect_bad(c, "keepalive 4 is out of range 5..65535");
  c = ok, c.keepalive = 65536;
  expect_bad(c, "keepalive 65536 is out of range 5..65535");
  c = ok, c.backoff_min = -1;
  expect_bad(c, "backoff_min, backoff_max and connect_timeout are seconds in 0..86400");
  c = ok, c.connect_timeout = 1.0 / 0.0;
  expect_bad(c, "backoff_min, backoff_max and connect_timeout are seconds in 0..86400");
  c = ok, c.backoff_min = 5, c.backoff_max = 2;
  expect_bad(c, "backoff_max 2 is below backoff_min 5");
  c = ok, c.backoff_min = 90, c.backoff_max = 0; /* 0 means 60 */
  expect_bad(c, "backoff_max 60 is below backoff_min 90");
  c = ok, c.cert_file = "/etc/hostname";
  expect_bad(c, "cert_file and key_file go together");
  c = ok, c.tls_protocol = "sslv3";
  expect_bad(c, "tls_protocol \"sslv3\" is neither tlsv1.2 nor tlsv1.3");
  c = ok, c.ca_cert = "/nonexistent/ca.pem";
  expect_bad(c, "ca_cert \"/nonexistent/ca.pem\": No such file or directory");
  c = ok, c.user = "";
  expect_bad(c, "user is empty or not valid UTF-8 of at most 65535 bytes");

  /* The password never shows, whatever else is wrong. */
  c = ok, c.password = "s3cret-pw";
  expect_bad(c, "a password needs a user (MQTT 3.1.1)");
  c = ok, c.user = "u", c.password = "s3cret-pw", c.qos = 7;
  expect_bad(c, "qos 7 is out of range 0..2");

  /* err may be absent. */
  c = ok, c.host = NULL;
  assert_null(hes_mqtt_new(&c, NULL, 0));

  /* Limits and defaults that are fine. */
  c = ok, c.port = 0, c.keepalive = 0, c.backoff_min = 0, c.backoff_max = 0, c.qos = 2;
  c.connect_timeout = 0, c.topic = "#", c.user = "u", c.password = "p";
  hes_mqtt_t *m = hes_mqtt_new(&c, err, sizeof(err));
  assert_non_null(m);
  assert_false(hes_mqtt_ready(m));
  assert_int_equal(hes_mqtt_connects(m), 0);
  assert_int_equal(hes_mqtt_attempts(m), 0);
  hes_mqtt_free(m);
  c = ok, c.port = 65535, c.keepalive = 5, c.tls = true, c.tls_protocol = "tlsv1.3";
  m = hes_mqtt_new(&c, err, sizeof(err));
  assert_non_null(m);
  hes_mqtt_free(m);
  hes_mqtt_free(NULL);
  hes_mqtt_stop(NULL);
  assert_int_equal(hes_mqtt_run(NULL), -1);
  assert_false(hes_mqtt_ready(NULL));
  assert_false(hes_mqtt_wait_ready(NULL, 0.1));
}

static void test_receive(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-receive");
  cfg.clean_session = true;
  char err[256] = "";
  hes_mqtt_t *m = hes_mqtt_new(&cfg, err, sizeof(err));
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(hes_mqtt_wait_ready(m, 5));
  assert_int_equal(hes_mqtt_connects(m), 1);
  assert_int_equal(hes_mqtt_reconnects(m), 0); /* the first connection is not a reconnect */
  assert_int_equal(hes_mqtt_attempts(m), 1);
  assert_true(wait_states(r, 1, 1));
  assert_int_equal(count_states(r), 1);
  assert_true(r->ready[0]);
  assert_string_equal(r->why[0], "connected and subscribed");
  /* A second run while one is going is refused. */
  assert_int_equal(hes_mqtt_run(m), -1);

  publish_str("/1000000067/plan/1", "{\"a\":1}");
  publish_str("/other/x", "not for us");
  publish("/1000000067/empty", "", 0, 0);
  static const unsigned char bin[] = {0x00, 0xff, 0x7b, 0x00, 0x22};
  publish("/1000000067/bin", bin, sizeof(bin), 2);
  publish_str("/1000000067/plan/2", "{\"b\":2}");
  assert_true(wait_msgs(r, 4, 3));
  sleep_s(0.1);
  assert_int_equal(count_msgs(r), 4);
  assert_msg(r, 0, "/1000000067/plan/1", "{\"a\":1}");
  assert_msg(r, 1, "/1000000067/empty", "");
  assert_string_equal(r->topics[2], "/1000000067/bin");
  assert_int_equal(r->lens[2], sizeof(bin));
  assert_memory_equal(r->payloads[2], bin, sizeof(bin));
  assert_msg(r, 3, "/1000000067/plan/2", "{\"b\":2}");

  assert_true(stop_run(t) < 0.5);
  assert_false(hes_mqtt_ready(m));
  assert_int_equal(count_states(r), 2);
  assert_false(r->ready[1]);
  assert_string_equal(r->why[1], "stopped");
  hes_mqtt_free(m);
}

/* QoS 1 messages published while we are away arrive when we come back. */
static void test_persistent_session(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-persist");
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(hes_mqtt_wait_ready(m, 5));
  assert_true(stop_run(t) < 0.5);

  publish_str("/1000000067/away/1", "first");
  publish_str("/1000000067/away/2", "second");
  sleep_s(0.1);
  assert_int_equal(count_msgs(r), 0);

  t = start_run(m);
  assert_true(hes_mqtt_wait_ready(m, 5));
  assert_true(wait_msgs(r, 2, 3));
  assert_int_equal(count_msgs(r), 2);
  assert_msg(r, 0, "/1000000067/away/1", "first");
  assert_msg(r, 1, "/1000000067/away/2", "second");
  assert_int_equal(hes_mqtt_connects(m), 2);
  /* The broker kept the subscription: ready at CONNACK, no new SUBACK. */
  assert_true(wait_states(r, 3, 1));
  assert_int_equal(count_states(r), 3);
  assert_true(r->ready[2]);
  assert_string_equal(r->why[2], "connected, session and subscription kept by the broker");
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);

  /* A new handle with the same id resubscribes once (the filter may have changed) and still
   * gets what was queued for the session. */
  publish_str("/1000000067/away/3", "third");
  record_t *r2 = new_record();
  cfg = base_config(r2, "hes-persist");
  m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  t = start_run(m);
  assert_true(hes_mqtt_wait_ready(m, 5));
  assert_true(wait_msgs(r2, 1, 3));
  assert_msg(r2, 0, "/1000000067/away/3", "third");
  assert_true(wait_states(r2, 1, 1));
  assert_string_equal(r2->why[0], "connected and subscribed");
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

/* The broker goes away and comes back with its sessions: the persistent client resumes its
 * session, the clean one subscribes again, and both get messages again. */
static void test_broker_restart(void **state) {
  (void)state;
  record_t *r = new_record(), *rc = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-restart");
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  cfg = base_config(rc, "hes-restart-clean");
  cfg.clean_session = true;
  hes_mqtt_t *mc = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(mc);
  runner_t *t = start_run(m);
  runner_t *tc = start_run(mc);
  assert_true(hes_mqtt_wait_ready(m, 5));
  assert_true(hes_mqtt_wait_ready(mc, 5));
  publish_str("/1000000067/before", "1");
  assert_true(wait_msgs(r, 1, 3));
  assert_true(wait_msgs(rc, 1, 3));

  broker_stop();
  assert_true(wait_states(r, 2, 3));
  assert_false(hes_mqtt_ready(m));
  assert_false(r->ready[1]);
  char want[128];
  snprintf(want, sizeof(want), "connection lost to 127.0.0.1:%d: ", broker.port);
  assert_memory_equal(r->why[1], want, strlen(want));
  sleep_s(0.3); /* a few refused attempts: reported once */
  assert_true(hes_mqtt_attempts(m) >= 3);
  int n = count_states(r);
  assert_true(n <= 3);
  if (n == 3) {
    snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%d: Connection refused", broker.port);
    assert_false(r->ready[2]);
    assert_string_equal(r->why[2], want);
  }

  broker_start();
  assert_true(hes_mqtt_wait_ready(m, 5));
  assert_true(hes_mqtt_wait_ready(mc, 5));
  assert_int_equal(hes_mqtt_connects(m), 2);
  assert_int_equal(hes_mqtt_connects(mc), 2);
  assert_int_equal(hes_mqtt_reconnects(m), 1);
  publish_str("/1000000067/after", "2");
  assert_true(wait_msgs(r, 2, 3));
  assert_true(wait_msgs(rc, 2, 3));
  assert_msg(r, 0, "/1000000067/before", "1");
  assert_msg(r, 1, "/1000000067/after", "2");
  assert_msg(rc, 1, "/1000000067/after", "2");
  char why[512];
  assert_true(last_state(r, why, sizeof(why)));
  assert_string_equal(why, "connected, session and subscription kept by the broker");
  assert_true(last_state(rc, why, sizeof(why)));
  assert_string_equal(why, "connected and subscribed");
  assert_true(stop_run(t) < 0.5);
  assert_true(stop_run(tc) < 0.5);
  hes_mqtt_free(m);
  hes_mqtt_free(mc);
}

static void test_broker_down_at_start(void **state) {
  (void)state;
  broker_stop();
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-late");
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_false(hes_mqtt_wait_ready(m, 0.5));
  assert_true(hes_mqtt_attempts(m) >= 3);
  assert_int_equal(hes_mqtt_connects(m), 0);
  /* Many refusals, one report. */
  assert_int_equal(count_states(r), 1);
  assert_false(r->ready[0]);
  char want[128];
  snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%d: Connection refused", broker.port);
  assert_string_equal(r->why[0], want);

  broker_start();
  assert_true(hes_mqtt_wait_ready(m, 5));
  assert_int_equal(hes_mqtt_connects(m), 1);
  publish_str("/1000000067/late", "ok");
  assert_true(wait_msgs(r, 1, 3));
  assert_msg(r, 0, "/1000000067/late", "ok");
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

static void test_stop_during_backoff(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-backoff");
  cfg.port = free_port();
  cfg.backoff_min = 30;
  cfg.backoff_max = 60;
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(wait_states(r, 1, 2));
  sleep_s(0.1);
  assert_int_equal(hes_mqtt_attempts(m), 1);
  assert_true(stop_run(t) < 0.5);
  assert_int_equal(count_states(r), 1); /* never ready: nothing to report at stop */

  /* A stop before the run ends the next run at once; the run after that runs. */
  hes_mqtt_stop(m);
  t = start_run(m);
  join_run(t);
  assert_int_equal(hes_mqtt_attempts(m), 1);
  t = start_run(m);
  for (double end = now_s() + 2; hes_mqtt_attempts(m) < 2 && now_s() < end;)
    sleep_s(0.01);
  assert_int_equal(hes_mqtt_attempts(m), 2);
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

/* A listener in a child process (so its descriptors are not counted here) that accepts and
 * then hangs up at once, says nothing and holds the connection until it is killed, or
 * speaks just enough MQTT to accept the CONNECT and refuse the SUBSCRIBE or grant QoS 0. */
typedef enum { FAKE_HANGUP, FAKE_SILENT, FAKE_REFUSE_SUB, FAKE_GRANT_QOS0 } fake_mode_t;

typedef struct {
  pid_t pid;
  int port;
} fake_server_t;

static bool read_all(int fd, unsigned char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = read(fd, buf, len);
    if (n <= 0)
      return false;
    buf += n;
    len -= (size_t)n;
  }
  return true;
}

/* One MQTT packet: its type nibble, and up to sizeof(body) bytes of body. */
static int read_packet(int fd, unsigned char *body, size_t size, size_t *len) {
  unsigned char b;
  if (!read_all(fd, &b, 1))
    return -1;
  int type = b >> 4;
  size_t rl = 0;
  for (int shift = 0; shift < 28; shift += 7) {
    unsigned char d;
    if (!read_all(fd, &d, 1))
      return -1;
    rl |= (size_t)(d & 0x7f) << shift;
    if ((d & 0x80) == 0)
      break;
  }
  if (rl > size || !read_all(fd, body, rl))
    return -1;
  *len = rl;
  return type;
}

static void fake_suback(int c, unsigned char granted) {
  unsigned char body[1024];
  size_t len;
  if (read_packet(c, body, sizeof(body), &len) != 1) /* CONNECT */
    return;
  static const unsigned char connack[] = {0x20, 0x02, 0x00, 0x00};
  if (write(c, connack, sizeof(connack)) != sizeof(connack))
    return;
  if (read_packet(c, body, sizeof(body), &len) != 8 || len < 2) /* SUBSCRIBE */
    return;
  const unsigned char suback[] = {0x90, 0x03, body[0], body[1], granted};
  if (write(c, suback, sizeof(suback)) != sizeof(suback))
    return;
  while (read_packet(c, body, sizeof(body), &len) >= 0) /* until the client hangs up */
    ;
}

static void fake_server_start(fake_server_t *s, fake_mode_t mode) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  socklen_t len = sizeof(sa);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  assert_int_equal(listen(fd, 64), 0);
  s->port = ntohs(sa.sin_port);
  s->pid = fork();
  assert_true(s->pid >= 0);
  if (s->pid > 0)
    fake_pid = s->pid;
  if (s->pid == 0) {
    for (;;) {
      int c = accept(fd, NULL, NULL);
      if (c < 0 || mode == FAKE_SILENT)
        continue;
      if (mode == FAKE_REFUSE_SUB || mode == FAKE_GRANT_QOS0)
        fake_suback(c, mode == FAKE_REFUSE_SUB ? 0x80 : 0x00);
      close(c);
    }
  }
  close(fd);
}

static void fake_server_stop(fake_server_t *s) {
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  fake_pid = 0;
}

/* Fails n times against port and checks no descriptor is left behind. */
static void fail_many(int port, double connect_timeout, uint64_t n, const char *why_part) {
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-fds");
  cfg.port = port;
  cfg.backoff_min = 0.001;
  cfg.backoff_max = 0.002;
  cfg.connect_timeout = connect_timeout;
  int before = count_fds();
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  int with_handle = count_fds();
  runner_t *t = start_run(m);
  int most = 0;
  for (double end = now_s() + 8; hes_mqtt_attempts(m) < n && now_s() < end;) {
    int fds = count_fds();
    most = fds > most ? fds : most;
    sleep_s(0.002);
  }
  assert_true(hes_mqtt_attempts(m) >= n);
  assert_true(stop_run(t) < 0.5);
  assert_int_equal(hes_mqtt_connects(m), 0);
  /* At most the socket of the current attempt, while running; none after. */
  assert_true(most <= with_handle + 1);
  assert_int_equal(count_fds(), with_handle);
  assert_true(count_states(r) >= 1);
  assert_false(r->ready[0]);
  assert_non_null(strstr(r->why[0], why_part));
  hes_mqtt_free(m);
  assert_int_equal(count_fds(), before);
}

static void test_no_fd_leak_refused(void **state) {
  (void)state;
  fail_many(free_port(), 2, 50, "Connection refused");
}

static void test_no_fd_leak_hangup(void **state) {
  (void)state;
  fake_server_t s;
  fake_server_start(&s, FAKE_HANGUP);
  fail_many(s.port, 2, 50, "cannot connect to 127.0.0.1:");
  fake_server_stop(&s);
}

static void test_no_fd_leak_silent(void **state) {
  (void)state;
  fake_server_t s;
  fake_server_start(&s, FAKE_SILENT);
  fail_many(s.port, 0.02, 20, "no MQTT answer from 127.0.0.1:");
  fake_server_stop(&s);
}

static void test_tls_to_plain_broker(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-tls");
  cfg.tls = true;
  cfg.connect_timeout = 3;
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(wait_states(r, 1, 5));
  assert_false(hes_mqtt_wait_ready(m, 0.3));
  assert_int_equal(hes_mqtt_connects(m), 0);
  assert_false(r->ready[0]);
  printf("# %s\n", r->why[0]);
  /* The library's words, then OpenSSL's, which vary by version. */
  char want[128];
  snprintf(want, sizeof(want),
           "cannot connect to 127.0.0.1:%d: A TLS error occurred: ", broker.port);
  assert_memory_equal(r->why[0], want, strlen(want));
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

static void test_connack_refused(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-auth");
  cfg.port = broker.auth_port;
  cfg.user = "collectd";
  cfg.password = "s3cret-pw";
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(wait_states(r, 1, 3));
  assert_false(hes_mqtt_wait_ready(m, 0.3));
  assert_true(hes_mqtt_attempts(m) >= 2);
  assert_int_equal(hes_mqtt_connects(m), 0);
  assert_int_equal(count_states(r), 1);
  char want[160];
  snprintf(want, sizeof(want),
           "broker 127.0.0.1:%d refused the connection: Connection Refused: not authorised.",
           broker.auth_port);
  assert_string_equal(r->why[0], want);
  assert_null(strstr(r->why[0], "s3cret"));
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

static void test_suback_refused(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-acl");
  fake_server_t s;
  fake_server_start(&s, FAKE_REFUSE_SUB);
  cfg.port = s.port;
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(wait_states(r, 1, 3));
  assert_false(hes_mqtt_wait_ready(m, 0.3));
  assert_true(hes_mqtt_connects(m) >= 1);
  assert_int_equal(count_states(r), 1);
  char want[160];
  snprintf(want, sizeof(want), "broker 127.0.0.1:%d refused the subscription to " TOPIC, s.port);
  assert_string_equal(r->why[0], want);
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
  fake_server_stop(&s);
}

/* A broker that downgrades the subscription: usable, and the owner is told. */
static void test_suback_downgraded(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-qos0");
  fake_server_t s;
  fake_server_start(&s, FAKE_GRANT_QOS0);
  cfg.port = s.port;
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(hes_mqtt_wait_ready(m, 3));
  assert_true(wait_states(r, 1, 1));
  assert_true(r->ready[0]);
  assert_string_equal(r->why[0], "connected and subscribed, broker granted QoS 0 only");
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
  fake_server_stop(&s);
}

/* Host "localhost" is ::1 first, the broker listens on 127.0.0.1 only: after ::1 the module
 * tries IPv4 in the same attempt and connects. */
static void test_localhost_ipv4_only_broker(void **state) {
  (void)state;
  int lookups = atomic_load(&localhost_lookups);
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-localhost");
  cfg.host = "localhost";
  cfg.clean_session = true;
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(hes_mqtt_wait_ready(m, 5));
  assert_true(atomic_load(&localhost_lookups) > lookups); /* the hook was used */
  assert_int_equal(hes_mqtt_connects(m), 1);
  assert_int_equal(hes_mqtt_attempts(m), 1);
  assert_true(wait_states(r, 1, 1));
  assert_int_equal(count_states(r), 1); /* ::1 failing is no report of its own */
  assert_true(r->ready[0]);
  assert_string_equal(r->why[0], "connected and subscribed");
  publish_str("/1000000067/localhost", "via 127.0.0.1");
  assert_true(wait_msgs(r, 1, 3));
  assert_msg(r, 0, "/1000000067/localhost", "via 127.0.0.1");
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

/* Nothing listens on either address: one report names host:port and every address tried. */
static void test_localhost_nothing_listens(void **state) {
  (void)state;
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-localhost-down");
  cfg.host = "localhost";
  cfg.port = free_port();
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(wait_states(r, 1, 5));
  assert_false(hes_mqtt_wait_ready(m, 0.3));
  assert_int_equal(hes_mqtt_connects(m), 0);
  char want[256];
  snprintf(want, sizeof(want),
           "cannot connect to localhost:%d at any of its addresses: IPv6 ::1: Connection "
           "refused; IPv4 127.0.0.1: Connection refused",
           cfg.port);
  assert_false(r->ready[0]);
  assert_string_equal(r->why[0], want);
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

static void test_tls_verified(void **state) {
  (void)state;
  if (broker.tls_port == 0)
    CANNOT_RUN("no openssl to make the test certificates with");
  char ca[128];
  cert_path(ca, sizeof(ca), "ca.crt");
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-tls-ok");
  cfg.port = broker.tls_port;
  cfg.ca_cert = ca; /* implies TLS */
  cfg.tls_protocol = "tlsv1.2";
  hes_mqtt_t *m = hes_mqtt_new(&cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(hes_mqtt_wait_ready(m, 5));
  publish_str("/1000000067/tls", "secure");
  assert_true(wait_msgs(r, 1, 3));
  assert_msg(r, 0, "/1000000067/tls", "secure");
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

/* A broker whose certificate we cannot verify: no connection, and the report says why. */
static void expect_tls_failure(hes_mqtt_config_t *cfg, record_t *r, const char *want) {
  hes_mqtt_t *m = hes_mqtt_new(cfg, NULL, 0);
  assert_non_null(m);
  runner_t *t = start_run(m);
  assert_true(wait_states(r, 1, 3));
  assert_false(hes_mqtt_wait_ready(m, 0.3));
  assert_int_equal(hes_mqtt_connects(m), 0);
  assert_false(r->ready[0]);
  printf("# %s\n", r->why[0]);
  if (strstr(r->why[0], want) == NULL)
    fail_msg("\"%s\" does not say \"%s\"", r->why[0], want);
  assert_true(stop_run(t) < 0.5);
  hes_mqtt_free(m);
}

static void test_tls_untrusted(void **state) {
  (void)state;
  if (broker.tls_port == 0)
    CANNOT_RUN("no openssl to make the test certificates with");
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-tls-untrusted");
  cfg.port = broker.tls_port;
  cfg.tls = true; /* the system store does not know our test CA */
  expect_tls_failure(&cfg, r, "certificate verify failed");
}

static void test_tls_wrong_host(void **state) {
  (void)state;
  if (broker.tls_port == 0)
    CANNOT_RUN("no openssl to make the test certificates with");
  char ca[128];
  cert_path(ca, sizeof(ca), "ca.crt");
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-tls-host");
  /* The certificate names 127.0.0.1 only; ::1 refuses, 127.0.0.1 is the broker. */
  cfg.host = "localhost";
  cfg.port = broker.tls_port;
  cfg.ca_cert = ca;
  /* Both families were tried, and the name, not the address, was verified. */
  expect_tls_failure(&cfg, r, "localhost:");
  assert_non_null(strstr(r->why[0], "IPv6 ::1: "));
  assert_non_null(strstr(
      r->why[0], "IPv4 127.0.0.1: A TLS error occurred: Error: host name verification failed"));
}

static void test_tls_encrypted_key(void **state) {
  (void)state;
  if (broker.tls_port == 0)
    CANNOT_RUN("no openssl to make the test certificates with");
  char ca[128], crt[128], key[128];
  cert_path(ca, sizeof(ca), "ca.crt");
  cert_path(crt, sizeof(crt), "server.crt");
  cert_path(key, sizeof(key), "encrypted.key");
  record_t *r = new_record();
  hes_mqtt_config_t cfg = base_config(r, "hes-tls-key");
  cfg.port = broker.tls_port;
  cfg.ca_cert = ca;
  cfg.cert_file = crt;
  cfg.key_file = key; /* no passphrase to give: fails, never prompts */
  expect_tls_failure(&cfg, r, "A TLS error occurred: Error: Unable to load client key file");
}

/* Whatever hangs, the program ends within WATCHDOG_S seconds and takes its children along. */
static void watchdog(int sig) {
  (void)sig;
  static const char msg[] = "Bail out! test_mqtt took too long\n";
  if (write(1, msg, sizeof(msg) - 1) < 0) {
    /* nothing more to do */
  }
  if (broker.pid > 0)
    kill(broker.pid, SIGKILL);
  if (fake_pid > 0)
    kill(fake_pid, SIGKILL);
  _exit(1);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int main(void) {
  broker.bin = getenv("MOSQUITTO_BIN");
  if (broker.bin == NULL || broker.bin[0] == '\0')
    broker.bin = "/usr/sbin/mosquitto";
  if (access(broker.bin, X_OK) != 0) {
    printf("1..0 # SKIP no mosquitto broker at %s (set MOSQUITTO_BIN)\n", broker.bin);
    return 77;
  }
  snprintf(broker.dir, sizeof(broker.dir), "/tmp/test_mqtt.XXXXXX");
  if (mkdtemp(broker.dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(broker.conf, sizeof(broker.conf), "%s/mosquitto.conf", broker.dir);
  broker.port = free_port();
  broker.auth_port = free_port();
  atexit(broker_kill_at_exit);
  signal(SIGALRM, watchdog);
  alarm(WATCHDOG_S);
  signal(SIGPIPE, SIG_IGN);
  mosquitto_lib_init();

  /* clang-format off */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_config_errors, test_teardown),
      cmocka_unit_test_teardown(test_receive, test_teardown),
      cmocka_unit_test_teardown(test_persistent_session, test_teardown),
      cmocka_unit_test_teardown(test_broker_restart, test_teardown),
      cmocka_unit_test_teardown(test_broker_down_at_start, test_teardown),
      cmocka_unit_test_teardown(test_stop_during_backoff, test_teardown),
      cmocka_unit_test_teardown(test_no_fd_leak_refused, test_teardown),
      cmocka_unit_test_teardown(test_no_fd_leak_hangup, test_teardown),
      cmocka_unit_test_teardown(test_no_fd_leak_silent, test_teardown),
      cmocka_unit_test_teardown(test_tls_to_plain_broker, test_teardown),
      cmocka_unit_test_teardown(test_localhost_ipv4_only_broker, test_teardown),
      cmocka_unit_test_teardown(test_localhost_nothing_listens, test_teardown),
      cmocka_unit_test_teardown(test_tls_verified, test_teardown),
      cmocka_unit_test_teardown(test_tls_untrusted, test_teardown),
      cmocka_unit_test_teardown(test_tls_wrong_host, test_teardown),
      cmocka_unit_test_teardown(test_tls_encrypted_key, test_teardown),
      cmocka_unit_test_teardown(test_connack_refused, test_teardown),
      cmocka_unit_test_teardown(test_suback_refused, test_teardown),
      cmocka_unit_test_teardown(test_suback_downgraded, test_teardown),
  };
  /* clang-format on */
  int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
  mosquitto_lib_cleanup();
  if (failed == 0)
    nftw(broker.dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
  else
    fprintf(stderr, "# broker files kept in %s\n", broker.dir);
  return failed;
}
