/* test_api: the HES client against a canned-answer HTTP server (libmicrohttpd) inside this
 * process, over real HTTP on 127.0.0.1. Each test scripts the answers; the server records
 * every request (path, headers, body) so the tests can check what the client sent. */
#include "config.h"

#include "api.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>

/* A test that cannot run here fails and says why; only the Debian package build
 * (HES_DEB_BUILD, set by debian/rules) may skip it. */
#define CANNOT_RUN(why)                                                                            \
  do {                                                                                             \
    if (getenv("HES_DEB_BUILD") != NULL)                                                           \
      skip();                                                                                      \
    else                                                                                           \
      fail_msg("cannot run: %s (tests/install-deps.sh --test installs it)", why);                  \
  } while (0)

#define PASSWORD "kd123456-PW-xyzzy"
#define SECRET   "55be0dc7ac554610165183db43991c50"
#define TOKEN_A  "eyJleHAiOjE3MjA1NzUyMTcsInVzZXJuYW1lIjoiYWRtaW5sb3dhbiJ9"
#define TOKEN_B  "tokB-0123456789abcdef"
#define ANSWER_TOKEN_A                                                                             \
  "{\"code\":200,\"msg\":\"success\",\"data\":{\"token\":\"" TOKEN_A "\",\"expireIn\":7200}}"
#define ANSWER_TOKEN_B                                                                             \
  "{\"code\":200,\"msg\":\"success\",\"data\":{\"token\":\"" TOKEN_B "\",\"expireIn\":7200}}"
#define ANSWER_PLAN                                                                                \
  "{\"code\":200,\"msg\":\"success\",\"data\":{\"planId\":\"P003_20240711162001113070\","          \
  "\"topicId\":\"/1000000067/P003_20240711162001113070\"}}"
#define PLAN_ID "P003_20240711162001113070"
#define NOW     1000.0

/* --- the canned-answer server ------------------------------------------------------------ */

typedef struct {
  int status;
  const char *body;
  int delay_ms;
  size_t chunked_bytes; /* > 0: answer this many 'x' without Content-Length */
} canned_t;

typedef struct {
  char method[16];
  char path[128];
  char *body;
  size_t body_len;
  bool has_token;
  char token[600];
  bool has_expect;
  char content_type[128];
} recorded_t;

#define MAX_SCRIPT 32
#define MAX_REQ    64

static struct {
  pthread_mutex_t lock;
  struct MHD_Daemon *d;
  int port;
  canned_t script[MAX_SCRIPT];
  size_t script_len, script_pos;
  recorded_t req[MAX_REQ];
  size_t nreq;
  int connections;
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct {
  char *buf;
  size_t len;
} upload_t;

static void script(int status, const char *body) {
  assert_true(srv.script_len < MAX_SCRIPT);
  srv.script[srv.script_len++] = (canned_t){.status = status, .body = body};
}

static void script_delay(int status, const char *body, int delay_ms) {
  script(status, body);
  srv.script[srv.script_len - 1].delay_ms = delay_ms;
}

static void script_chunked(size_t bytes) {
  script(200, NULL);
  srv.script[srv.script_len - 1].chunked_bytes = bytes;
}

static size_t nreq(void) {
  pthread_mutex_lock(&srv.lock);
  size_t n = srv.nreq;
  pthread_mutex_unlock(&srv.lock);
  return n;
}

static ssize_t chunk_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  size_t total = (size_t)(uintptr_t)cls;
  if (pos >= total)
    return MHD_CONTENT_READER_END_OF_STREAM;
  size_t n = total - (size_t)pos;
  if (n > max)
    n = max;
  memset(buf, 'x', n);
  return (ssize_t)n;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)version;
  upload_t *u = *con_cls;
  if (!u) {
    u = calloc(1, sizeof *u);
    *con_cls = u;
    return u ? MHD_YES : MHD_NO;
  }
  if (*upload_size) {
    char *p = realloc(u->buf, u->len + *upload_size + 1);
    if (!p)
      return MHD_NO;
    memcpy(p + u->len, upload_data, *upload_size);
    u->buf = p;
    u->len += *upload_size;
    u->buf[u->len] = '\0';
    *upload_size = 0;
    return MHD_YES;
  }

  canned_t a = {.status = 599, .body = "{\"unscripted\":true}"};
  pthread_mutex_lock(&srv.lock);
  if (srv.nreq < MAX_REQ) {
    recorded_t *r = &srv.req[srv.nreq++];
    memset(r, 0, sizeof *r);
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    r->body = u->buf ? u->buf : strdup("");
    r->body_len = u->len;
    u->buf = NULL;
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "HES_Access_Token");
    if (v) {
      r->has_token = true;
      snprintf(r->token, sizeof r->token, "%s", v);
    }
    r->has_expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect") != NULL;
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    snprintf(r->content_type, sizeof r->content_type, "%s", v ? v : "");
  }
  if (srv.script_pos < srv.script_len)
    a = srv.script[srv.script_pos++];
  pthread_mutex_unlock(&srv.lock);

  if (a.delay_ms)
    usleep((useconds_t)a.delay_ms * 1000);
  struct MHD_Response *resp;
  if (a.chunked_bytes)
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, chunk_reader,
                                             (void *)(uintptr_t)a.chunked_bytes, NULL);
  else
    resp = MHD_create_response_from_buffer(a.body ? strlen(a.body) : 0, (void *)a.body,
                                           MHD_RESPMEM_PERSISTENT);
  if (!resp)
    return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", "application/json;charset=UTF-8");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)a.status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  upload_t *u = *con_cls;
  if (u) {
    free(u->buf);
    free(u);
  }
  *con_cls = NULL;
}

static void conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe) {
  (void)cls;
  (void)c;
  (void)socket_context;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    pthread_mutex_lock(&srv.lock);
    srv.connections++;
    pthread_mutex_unlock(&srv.lock);
  }
}

/* A throw-away self-signed certificate for 127.0.0.1 (test only, valid until 2126). */
static const char tls_cert[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBkDCCATagAwIBAgIUD2FExobDFq7dWh4w8AcB+amJTI0wCgYIKoZIzj0EAwIw\n"
                               "FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyNjAwMTkyM1oYDzIxMjYxMTAy\n"
                               "MDAxOTIzWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO\n"
                               "PQMBBwNCAARb8/jw32Wg9yvYa/0aPBdXyejbCb2vuVLMnktCgP5oj9YvZ1pMMHwc\n"
                               "pNcAxjunfs2Hweni12NHoULB7/KvxTIqo2QwYjAdBgNVHQ4EFgQUioVpApu19PET\n"
                               "dhy1GVUtAVZbaJMwHwYDVR0jBBgwFoAUioVpApu19PETdhy1GVUtAVZbaJMwDwYD\n"
                               "VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC\n"
                               "IHHNqdeBQI/PCa8/vvdxZSsUUhdQ6eCe7Iwn1yNR/AlvAiEAqnl1Z3aG9LE0IiCw\n"
                               "/8slh/CZvv51KyOY+LmmZ+F1bMI=\n"
                               "-----END CERTIFICATE-----\n";
static const char tls_key[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggd7TihIHYpBDS4e6\n"
                              "bDlGSdQq8uPI89Bw2FJ3/oyltwWhRANCAARb8/jw32Wg9yvYa/0aPBdXyejbCb2v\n"
                              "uVLMnktCgP5oj9YvZ1pMMHwcpNcAxjunfs2Hweni12NHoULB7/KvxTIq\n"
                              "-----END PRIVATE KEY-----\n";

static int server_start(bool tls) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = 0;
  /* TLS: no error log, the refused handshake is expected */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | (tls ? MHD_USE_TLS : MHD_USE_ERROR_LOG);
  srv.d =
      MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, &sin,
                       MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
                       conn_notify, NULL, tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, tls_key,
                       MHD_OPTION_HTTPS_MEM_CERT, tls_cert, MHD_OPTION_END);
  if (!srv.d)
    return -1;
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
  srv.port = info ? info->port : 0;
  return srv.port > 0 ? 0 : -1;
}

static void server_reset(void) {
  for (size_t i = 0; i < srv.nreq; i++)
    free(srv.req[i].body);
  srv.nreq = 0;
  srv.script_len = srv.script_pos = 0;
  srv.connections = 0;
}

static int setup(void **state) {
  (void)state;
  server_reset();
  return server_start(false);
}

static int teardown(void **state) {
  (void)state;
  if (srv.d)
    MHD_stop_daemon(srv.d);
  srv.d = NULL;
  server_reset();
  return 0;
}

/* --- helpers ------------------------------------------------------------------------------ */

static char url_buf[64];

static hes_api_config_t config(void) {
  snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d", srv.port);
  return (hes_api_config_t){.url = url_buf,
                            .tenant_code = "1000000067",
                            .username = "kuangda",
                            .password = PASSWORD,
                            .secret_key = SECRET,
                            .verify_peer = true,
                            .verify_host = true,
                            .timeout_ms = 3000};
}

static hes_api_t *api_new(void) {
  hes_api_config_t cfg = config();
  hes_api_error_t err;
  hes_api_t *api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  return api;
}

/* No credential ever reaches a message. */
static void assert_clean(const hes_api_error_t *err) {
  assert_null(strstr(err->msg, PASSWORD));
  assert_null(strstr(err->msg, SECRET));
  assert_null(strstr(err->msg, TOKEN_A));
  assert_null(strstr(err->msg, TOKEN_B));
  assert_null(strstr(err->msg, "kd123456"));
  for (const char *p = err->msg; *p; p++)
    assert_true(*p >= 0x20 && *p < 0x7f);
  assert_true(strlen(err->msg) < sizeof err->msg);
}

static json_object *req_json(size_t i) {
  assert_true(i < srv.nreq);
  json_object *o = json_tokener_parse(srv.req[i].body);
  assert_non_null(o);
  assert_true(json_object_is_type(o, json_type_object));
  return o;
}

static void assert_str_field(json_object *o, const char *key, const char *want) {
  json_object *v;
  assert_true(json_object_object_get_ex(o, key, &v));
  assert_true(json_object_is_type(v, json_type_string));
  assert_string_equal(json_object_get_string(v), want);
}

static void assert_int_field(json_object *o, const char *key, int64_t want) {
  json_object *v;
  assert_true(json_object_object_get_ex(o, key, &v));
  assert_true(json_object_is_type(v, json_type_int));
  assert_int_equal(json_object_get_int64(v), want);
}

static const char *const two_meters[] = {"202407100001", "202407100002"};

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- token -------------------------------------------------------------------------------- */

static void test_token_request(void **state) {
  (void)state;
  script(200, ANSWER_TOKEN_A);
  hes_api_t *api = api_new();
  hes_api_error_t err;
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  assert_int_equal(err.kind, HES_API_OK);
  assert_int_equal(nreq(), 1);
  assert_string_equal(srv.req[0].method, "POST");
  assert_string_equal(srv.req[0].path, "/apis/openapi/getToken");
  assert_string_equal(srv.req[0].content_type, "application/json; charset=UTF-8");
  assert_false(srv.req[0].has_token);
  json_object *o = req_json(0);
  assert_int_equal(json_object_object_length(o), 4);
  assert_str_field(o, "tenantCode", "1000000067");
  assert_str_field(o, "username", "kuangda");
  assert_str_field(o, "password", PASSWORD);
  assert_str_field(o, "secretKey", SECRET);
  json_object_put(o);
  assert_int_equal(hes_api_token_fetches(api), 1);

  /* cached: no second request */
  assert_int_equal(hes_api_token(api, NOW + 100, &err), HES_API_OK);
  assert_int_equal(nreq(), 1);
  assert_int_equal(hes_api_token_fetches(api), 1);

  /* forgotten: fetched again */
  script(200, ANSWER_TOKEN_B);
  hes_api_token_forget(api);
  assert_int_equal(hes_api_token(api, NOW + 101, &err), HES_API_OK);
  assert_int_equal(nreq(), 2);
  assert_int_equal(hes_api_token_fetches(api), 2);
  hes_api_free(api);
}

static void test_token_renewal(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_api_error_t err;
  /* 7200 s: renewed at min(0.8 * 7200, 7200 - 60) = 5760 s */
  script(200, ANSWER_TOKEN_A);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  assert_int_equal(hes_api_token(api, NOW + 5759.9, &err), HES_API_OK);
  assert_int_equal(hes_api_token_fetches(api), 1);
  script(200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"short\",\"expireIn\":250}}");
  assert_int_equal(hes_api_token(api, NOW + 5760, &err), HES_API_OK);
  assert_int_equal(hes_api_token_fetches(api), 2);
  /* 250 s: min(200, 190) = 190 */
  assert_int_equal(hes_api_token(api, NOW + 5760 + 189.9, &err), HES_API_OK);
  assert_int_equal(hes_api_token_fetches(api), 2);
  script(200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"tiny\",\"expireIn\":100}}");
  assert_int_equal(hes_api_token(api, NOW + 5760 + 190, &err), HES_API_OK);
  assert_int_equal(hes_api_token_fetches(api), 3);
  /* 100 s: min(80, 40) = 40, but never before half the lifetime: 50 */
  double t = NOW + 5760 + 190;
  assert_int_equal(hes_api_token(api, t + 49.9, &err), HES_API_OK);
  assert_int_equal(hes_api_token_fetches(api), 3);
  script(200, ANSWER_TOKEN_A);
  assert_int_equal(hes_api_token(api, t + 50, &err), HES_API_OK);
  assert_int_equal(hes_api_token_fetches(api), 4);
  /* a clock that went backwards renews */
  script(200, ANSWER_TOKEN_B);
  assert_int_equal(hes_api_token(api, t - 1000, &err), HES_API_OK);
  assert_int_equal(hes_api_token_fetches(api), 5);
  assert_int_equal(nreq(), 5);
  hes_api_free(api);
}

/* A failed early renewal keeps the token in hand until HES_API_TOKEN_MARGIN before its end. */
static void test_token_renewal_fails(void **state) {
  (void)state;
  static hes_latency_t latency;
  hes_latency_init(&latency);
  hes_api_config_t cfg = config();
  cfg.latency = &latency;
  hes_api_error_t err0;
  hes_api_t *api = hes_api_new(&cfg, &err0);
  assert_non_null(api);
  hes_api_error_t err;
  hes_api_plan_t plan;
  script(200, ANSWER_TOKEN_A);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  script(500, "busy");
  script(200, ANSWER_PLAN);
  assert_int_equal(hes_api_read_single(api, NOW + 5760, two_meters, 2, 5069, &plan, &err),
                   HES_API_OK);
  assert_int_equal(err.kind, HES_API_OK);
  assert_string_equal(err.msg, "");
  assert_string_equal(srv.req[1].path, "/apis/openapi/getToken");
  assert_string_equal(srv.req[2].token, TOKEN_A);
  script(200, "{\"code\":500,\"msg\":\"later\"}");
  assert_int_equal(hes_api_token(api, NOW + 7189.9, &err), HES_API_OK);
  assert_int_equal(hes_api_requests(api), 4);
  /* 10 s before the end: the failure is the call's */
  script(500, "still busy");
  assert_int_equal(hes_api_read_single(api, NOW + 7190, two_meters, 2, 5069, &plan, &err),
                   HES_API_EHTTP);
  assert_string_equal(err.endpoint, "getToken");
  assert_string_equal(err.msg, "HTTP 500: still busy");
  assert_int_equal(hes_api_requests(api), 5);
  /* a renewal that works replaces the token */
  script(200, ANSWER_TOKEN_B);
  script(200, ANSWER_PLAN);
  assert_int_equal(hes_api_read_single(api, NOW + 7191, two_meters, 2, 5069, &plan, &err),
                   HES_API_OK);
  assert_string_equal(srv.req[6].token, TOKEN_B);
  assert_int_equal(hes_api_token_fetches(api), 2);
  assert_int_equal(nreq(), 7);
  assert_int_equal(hes_api_requests(api), 7);
  /* Every request's duration, failed ones included. */
  hes_latency_summary_t ls;
  hes_latency_take(&latency, &ls);
  assert_int_equal(ls.count, 7);
  assert_true(ls.max > 0 && ls.mean <= ls.max);
  hes_api_free(api);
}

static void test_token_used_in_calls(void **state) {
  (void)state;
  script(200, ANSWER_TOKEN_A);
  script(200, ANSWER_PLAN);
  script(200, ANSWER_PLAN);
  hes_api_t *api = api_new();
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_OK);
  assert_int_equal(hes_api_read_single(api, NOW + 60, two_meters, 2, 5050, &plan, &err),
                   HES_API_OK);
  assert_int_equal(nreq(), 3);
  assert_int_equal(hes_api_token_fetches(api), 1);
  for (size_t i = 1; i < 3; i++) {
    assert_true(srv.req[i].has_token);
    assert_string_equal(srv.req[i].token, TOKEN_A);
  }
  hes_api_free(api);
}

static void test_token_errors(void **state) {
  (void)state;
  static const struct {
    int status;
    const char *body;
    hes_api_result_t want;
    const char *msg;
  } cases[] = {
      {200, "{\"code\":500,\"msg\":\"wrong password " PASSWORD "\",\"data\":null}", HES_API_EHES,
       "wrong password *****************"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"expireIn\":7200}}", HES_API_EANSWER,
       "data.token: expected a string"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":7,\"expireIn\":7200}}", HES_API_EANSWER,
       "data.token: expected a string"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"\",\"expireIn\":7200}}",
       HES_API_EANSWER, "data.token: length 0 not in 1..512"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"a b\",\"expireIn\":7200}}",
       HES_API_EANSWER, "data.token: space, control or non-ASCII character at 1"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"a\\r\\nX: y\",\"expireIn\":7200}}",
       HES_API_EANSWER, "data.token: space, control or non-ASCII character at 1"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"abc\"}}", HES_API_EANSWER,
       "data.expireIn: expected an integer"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"abc\",\"expireIn\":\"7200\"}}",
       HES_API_EANSWER, "data.expireIn: expected an integer"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"abc\",\"expireIn\":0}}",
       HES_API_EANSWER, "data.expireIn: 0 not in 1..31622400"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"abc\",\"expireIn\":-5}}",
       HES_API_EANSWER, "data.expireIn: -5 not in 1..31622400"},
      {200,
       "{\"code\":200,\"msg\":\"\",\"data\":{\"token\":\"abc\",\"expireIn\":"
       "99999999999999999999999}}",
       HES_API_EANSWER, "data.expireIn: 9223372036854775807 not in 1..31622400"},
      {200, "{\"code\":200,\"msg\":\"\",\"data\":[]}", HES_API_EANSWER,
       "answer has code 200 but no \"data\" object"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    server_reset();
    script(cases[i].status, cases[i].body);
    hes_api_t *api = api_new();
    hes_api_error_t err;
    hes_api_plan_t plan;
    assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err),
                     cases[i].want);
    assert_int_equal(err.kind, cases[i].want);
    assert_string_equal(err.endpoint, "getToken");
    assert_string_equal(err.msg, cases[i].msg);
    assert_int_equal(err.http_status, 200);
    assert_string_equal(plan.plan_id, "");
    assert_clean(&err);
    assert_int_equal(nreq(), 1); /* the call itself was never sent */
    assert_int_equal(hes_api_token_fetches(api), 0);
    hes_api_free(api);
  }
  /* an over-long token */
  char big[700];
  char token[514];
  memset(token, 'a', 513);
  token[513] = '\0';
  snprintf(big, sizeof big, "{\"code\":200,\"data\":{\"token\":\"%s\",\"expireIn\":7200}}", token);
  server_reset();
  script(200, big);
  hes_api_t *api = api_new();
  hes_api_error_t err;
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_EANSWER);
  assert_string_equal(err.msg, "data.token: length 513 not in 1..512");
  hes_api_free(api);
}

/* --- stale token ---------------------------------------------------------------------- */

static void test_stale_token_http401(void **state) {
  (void)state;
  script(200, ANSWER_TOKEN_A);
  script(401, "Unauthorized");
  script(200, ANSWER_TOKEN_B);
  script(200, ANSWER_PLAN);
  hes_api_t *api = api_new();
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_OK);
  assert_string_equal(plan.plan_id, PLAN_ID);
  assert_int_equal(nreq(), 4);
  assert_int_equal(hes_api_requests(api), 4);
  assert_int_equal(hes_api_token_fetches(api), 2);
  assert_string_equal(srv.req[2].path, "/apis/openapi/getToken");
  assert_string_equal(srv.req[3].path, "/apis/openapi/meter/readSingle");
  assert_string_equal(srv.req[3].token, TOKEN_B);
  json_object *o = req_json(3);
  assert_str_field(o, "token", TOKEN_B);
  json_object_put(o);
  hes_api_free(api);
}

static void test_stale_token_hes_msg(void **state) {
  (void)state;
  script(200, ANSWER_TOKEN_A);
  script(200, "{\"code\":500,\"msg\":\"Invalid TOKEN, please login\",\"data\":null}");
  script(200, ANSWER_TOKEN_B);
  script(200,
         "{\"code\":200,\"msg\":\"success\",\"data\":{\"planId\":\"P9\",\"topic\":\"/t/P9/\"}}");
  hes_api_t *api = api_new();
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_relay(api, NOW, two_meters, 1, 1, &plan, &err), HES_API_OK);
  assert_string_equal(plan.plan_id, "P9");
  assert_string_equal(plan.topic, "/t/P9/");
  assert_int_equal(nreq(), 4);
  assert_string_equal(srv.req[3].token, TOKEN_B);
  hes_api_free(api);
}

static void test_stale_token_retried_once(void **state) {
  (void)state;
  static const int statuses[] = {401, 403};
  for (size_t i = 0; i < 2; i++) {
    server_reset();
    script(200, ANSWER_TOKEN_A);
    script(statuses[i], "denied");
    script(200, ANSWER_TOKEN_B);
    script(statuses[i], "denied");
    script(200, ANSWER_TOKEN_A); /* must not be asked for */
    script(200, ANSWER_PLAN);
    hes_api_t *api = api_new();
    hes_api_error_t err;
    hes_api_plan_t plan;
    assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err),
                     HES_API_EHTTP);
    assert_int_equal(err.http_status, statuses[i]);
    char want[32];
    snprintf(want, sizeof want, "HTTP %d: denied", statuses[i]);
    assert_string_equal(err.msg, want);
    assert_string_equal(err.endpoint, "readSingle");
    assert_int_equal(nreq(), 4);
    assert_int_equal(hes_api_token_fetches(api), 2);
    assert_clean(&err);
    hes_api_free(api);
  }
  /* HES msg about the token, twice */
  server_reset();
  script(200, ANSWER_TOKEN_A);
  script(200, "{\"code\":500,\"msg\":\"token expired\"}");
  script(200, ANSWER_TOKEN_B);
  script(200, "{\"code\":500,\"msg\":\"token expired\"}");
  hes_api_t *api = api_new();
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_archive(api, NOW, "2211000051", &plan, &err), HES_API_EHES);
  assert_int_equal(err.code, 500);
  assert_string_equal(err.msg, "token expired");
  assert_int_equal(nreq(), 4);
  hes_api_free(api);
}

/* --- request bodies --------------------------------------------------------------------- */

static hes_api_t *api_with_token(void) {
  script(200, ANSWER_TOKEN_A);
  hes_api_t *api = api_new();
  hes_api_error_t err;
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  return api;
}

static void test_read_single_body(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  script(200, ANSWER_PLAN);
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_OK);
  assert_int_equal(err.kind, HES_API_OK);
  assert_string_equal(plan.plan_id, PLAN_ID);
  assert_string_equal(plan.topic, "/1000000067/" PLAN_ID);
  assert_string_equal(srv.req[1].path, "/apis/openapi/meter/readSingle");
  assert_string_equal(srv.req[1].content_type, "application/json; charset=UTF-8");
  assert_true(srv.req[1].has_token);
  assert_string_equal(srv.req[1].token, TOKEN_A);
  json_object *o = req_json(1);
  assert_int_equal(json_object_object_length(o), 3);
  assert_str_field(o, "devList", "202407100001,202407100002");
  assert_str_field(o, "cgcode", "5069");
  assert_str_field(o, "token", TOKEN_A);
  json_object_put(o);
  hes_api_free(api);
}

static void test_read_frozen_body(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  script(200, ANSWER_PLAN);
  hes_api_error_t err;
  hes_api_plan_t plan;
  const char *five[] = {"216088078", "214670998", "216769554", "216088076", "216088077"};
  assert_int_equal(hes_api_read_frozen(api, NOW, five, 5, 2, "2024-06-01 00:00:00",
                                       "2024-07-01 00:00:00", &plan, &err),
                   HES_API_OK);
  assert_string_equal(srv.req[1].path, "/apis/openapi/meter/readFrozen");
  json_object *o = req_json(1);
  assert_int_equal(json_object_object_length(o), 5);
  assert_str_field(o, "devList", "216088078,214670998,216769554,216088076,216088077");
  assert_str_field(o, "cgcode", "2");
  assert_str_field(o, "start", "2024-06-01 00:00:00");
  assert_str_field(o, "end", "2024-07-01 00:00:00");
  assert_str_field(o, "token", TOKEN_A);
  json_object_put(o);
  /* a bad range is refused before sending */
  assert_int_equal(hes_api_read_frozen(api, NOW, five, 5, 2, "2024-07-01 00:00:00",
                                       "2024-06-01 00:00:00", &plan, &err),
                   HES_API_EINVAL);
  assert_string_equal(err.msg, "end is before start");
  assert_string_equal(err.endpoint, "readFrozen");
  assert_int_equal(nreq(), 2);
  hes_api_free(api);
}

static void test_relay_body(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  script(200, "{\"code\":200,\"msg\":\"success\",\"data\":{\"planId\":\"" PLAN_ID
              "\",\"topic\":\"/20240701/" PLAN_ID "\"}}");
  script(200, ANSWER_PLAN);
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_relay(api, NOW, two_meters, 2, 1, &plan, &err), HES_API_OK);
  assert_string_equal(plan.topic, "/20240701/" PLAN_ID);
  assert_int_equal(hes_api_relay(api, NOW, two_meters + 1, 1, 2, &plan, &err), HES_API_OK);
  assert_string_equal(srv.req[1].path, "/apis/openapi/meter/relay");
  json_object *o = req_json(1);
  assert_int_equal(json_object_object_length(o), 3);
  assert_str_field(o, "devList", "202407100001,202407100002");
  assert_int_field(o, "controlMode", 1);
  assert_str_field(o, "token", TOKEN_A);
  json_object_put(o);
  o = req_json(2);
  assert_str_field(o, "devList", "202407100002");
  assert_int_field(o, "controlMode", 2);
  json_object_put(o);
  hes_api_free(api);
}

static void test_archive_bodies(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  script(200, ANSWER_PLAN);
  script(200, ANSWER_PLAN);
  script(200, ANSWER_PLAN);
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_archive(api, NOW, "2211000051", &plan, &err), HES_API_OK);
  const hes_api_archive_t arch[] = {{"202407100001", true}, {"202407100002", false}};
  assert_int_equal(hes_api_add_archive(api, NOW, "2211000051", arch, 2, &plan, &err), HES_API_OK);
  assert_int_equal(hes_api_remove_archive(api, NOW, "2211000051", two_meters, 2, &plan, &err),
                   HES_API_OK);
  assert_string_equal(plan.plan_id, PLAN_ID);

  assert_string_equal(srv.req[1].path, "/apis/openapi/dcu/readArchive");
  json_object *o = req_json(1);
  assert_int_equal(json_object_object_length(o), 2);
  assert_str_field(o, "dcuNo", "2211000051");
  assert_str_field(o, "token", TOKEN_A);
  json_object_put(o);

  assert_string_equal(srv.req[2].path, "/apis/openapi/dcu/addArchive");
  o = req_json(2);
  assert_int_equal(json_object_object_length(o), 3);
  assert_str_field(o, "dcuNo", "2211000051");
  assert_str_field(o, "token", TOKEN_A);
  json_object *a, *e;
  assert_true(json_object_object_get_ex(o, "archives", &a));
  assert_true(json_object_is_type(a, json_type_array));
  assert_int_equal(json_object_array_length(a), 2);
  e = json_object_array_get_idx(a, 0);
  assert_int_equal(json_object_object_length(e), 2);
  assert_str_field(e, "devAddr", "202407100001");
  assert_str_field(e, "status", "1");
  e = json_object_array_get_idx(a, 1);
  assert_str_field(e, "devAddr", "202407100002");
  assert_str_field(e, "status", "0");
  json_object_put(o);

  /* removeArchive: the token in the header only */
  assert_string_equal(srv.req[3].path, "/apis/openapi/dcu/removeArchive");
  assert_true(srv.req[3].has_token);
  assert_string_equal(srv.req[3].token, TOKEN_A);
  o = req_json(3);
  assert_int_equal(json_object_object_length(o), 2);
  assert_str_field(o, "dcuNo", "2211000051");
  assert_false(json_object_object_get_ex(o, "token", NULL));
  assert_true(json_object_object_get_ex(o, "archives", &a));
  assert_int_equal(json_object_array_length(a), 2);
  assert_string_equal(json_object_get_string(json_object_array_get_idx(a, 0)), "202407100001");
  assert_string_equal(json_object_get_string(json_object_array_get_idx(a, 1)), "202407100002");
  assert_true(json_object_is_type(json_object_array_get_idx(a, 1), json_type_string));
  json_object_put(o);
  hes_api_free(api);
}

/* libcurl 7.88 adds "Expect: 100-continue" to POST bodies over 1 MiB and then waits up to
 * 1 s for a "100 Continue" many servers never send: 90,000 meters make such a body. */
static void test_no_expect_header(void **state) {
  (void)state;
  enum { N = 90000 };
  static char buf[N][24];
  static const char *meters[N];
  hes_api_t *api = api_with_token();
  script(200, ANSWER_PLAN);
  for (int i = 0; i < N; i++) {
    snprintf(buf[i], sizeof buf[i], "2024071%05d", i);
    meters[i] = buf[i];
  }
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, meters, N, 5069, &plan, &err), HES_API_OK);
  assert_true(srv.req[1].body_len > 1024 * 1024);
  assert_false(srv.req[1].has_expect);
  json_object *o = req_json(1);
  json_object *v;
  assert_true(json_object_object_get_ex(o, "devList", &v));
  assert_int_equal(json_object_get_string_len(v), N * 12 + N - 1);
  assert_memory_equal(json_object_get_string(v), "202407100000,202407100001,", 26);
  assert_string_equal(json_object_get_string(v) + N * 13 - 13, "202407189999");
  json_object_put(o);
  hes_api_free(api);
}

static void test_keepalive(void **state) {
  (void)state;
  script(200, ANSWER_TOKEN_A);
  for (int i = 0; i < 4; i++)
    script(200, ANSWER_PLAN);
  hes_api_t *api = api_new();
  hes_api_error_t err;
  hes_api_plan_t plan;
  for (int i = 0; i < 4; i++)
    assert_int_equal(hes_api_read_single(api, NOW + i, two_meters, 2, 5069, &plan, &err),
                     HES_API_OK);
  assert_int_equal(nreq(), 5);
  pthread_mutex_lock(&srv.lock);
  int conns = srv.connections;
  pthread_mutex_unlock(&srv.lock);
  assert_int_equal(conns, 1);
  hes_api_free(api);
}

/* --- errors ----------------------------------------------------------------------------- */

static void test_hes_error(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  script(200, "{\"code\":500,\"msg\":\"meter\\u0001 offline\\n\",\"data\":null}");
  script(500, "{\"code\":500,\"msg\":\"internal failure\"}");
  script(200, "{\"code\":404}");
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHES);
  assert_int_equal(err.kind, HES_API_EHES);
  assert_int_equal(err.code, 500);
  assert_int_equal(err.http_status, 200);
  assert_string_equal(err.msg, "meter? offline?");
  assert_string_equal(err.endpoint, "readSingle");
  assert_clean(&err);
  /* an HTTP error whose body is a HES answer is the HES's error */
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHES);
  assert_int_equal(err.code, 500);
  assert_int_equal(err.http_status, 500);
  assert_string_equal(err.msg, "internal failure");
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHES);
  assert_int_equal(err.code, 404);
  assert_string_equal(err.msg, "");
  assert_int_equal(nreq(), 4); /* no retry: not about the token */
  hes_api_free(api);
}

static void test_http_error(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  char long_body[400];
  memset(long_body, 'b', sizeof long_body - 1);
  long_body[sizeof long_body - 1] = '\0';
  memcpy(long_body, "<html>\n", 7);
  script(500, "<h1>Internal\tError</h1>\r\n");
  script(502, long_body);
  script(503, "");
  script(302, "{\"code\":200,\"msg\":\"\",\"data\":{\"planId\":\"P1\"}}");
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHTTP);
  assert_int_equal(err.http_status, 500);
  assert_int_equal(err.code, 0);
  assert_string_equal(err.msg, "HTTP 500: <h1>Internal?Error</h1>??");
  assert_clean(&err);
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHTTP);
  assert_int_equal(strlen(err.msg), strlen("HTTP 502: ") + 100);
  assert_memory_equal(err.msg, "HTTP 502: <html>?bbb", 20);
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHTTP);
  assert_string_equal(err.msg, "HTTP 503");
  /* no redirects followed, even to a good answer */
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHTTP);
  assert_int_equal(err.http_status, 302);
  assert_string_equal(plan.plan_id, "");
  assert_int_equal(nreq(), 5);
  hes_api_free(api);
}

static void test_secret_in_answers_masked(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  char body[400];
  /* the secret straddles the 100-byte snippet cut */
  memset(body, '.', 95);
  snprintf(body + 95, sizeof body - 95, "%s tail", SECRET);
  script(500, body);
  script(200, "{\"code\":500,\"msg\":\"bad credentials " TOKEN_A " kuangda/" PASSWORD "\"}");
  script(200, "{\"code\":500,\"msg\":\"bad token " TOKEN_A "\"}");
  script(200, ANSWER_TOKEN_B);
  script(200, "{\"code\":500,\"msg\":\"bad token " TOKEN_B "\"}");
  hes_api_error_t err;
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHTTP);
  assert_clean(&err);
  assert_null(strstr(err.msg, "55be0"));
  assert_int_equal(strlen(err.msg), strlen("HTTP 500: ") + 100);
  assert_string_equal(err.msg + strlen("HTTP 500: ") + 95, "*****");
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHES);
  char want[200];
  snprintf(want, sizeof want, "bad credentials %.*s kuangda/%.*s", (int)strlen(TOKEN_A),
           "**************************************************************************",
           (int)strlen(PASSWORD), "**************************************************");
  assert_string_equal(err.msg, want);
  assert_clean(&err);
  /* stale, retried: the retry's answer names the new token */
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_EHES);
  snprintf(want, sizeof want, "bad token %.*s", (int)strlen(TOKEN_B),
           "**************************************************");
  assert_string_equal(err.msg, want);
  assert_clean(&err);
  assert_int_equal(nreq(), 6);
  hes_api_free(api);
}

static void test_bad_answers(void **state) {
  (void)state;
  static const struct {
    const char *body;
    const char *msg;
  } cases[] = {
      {"", "empty answer"},
      {"not json", "answer is not JSON: null expected"},
      {"{\"code\":200,\"data\":{\"planId\":\"P1\"}", "answer is truncated JSON"},
      {"{\"code\":200,\"data\":{\"planId\":\"P1\"}} x", "answer has bytes after the JSON value"},
      {"[1,2]", "answer is not a JSON object"},
      {"\"str\"", "answer is not a JSON object"},
      {"{}", "answer has no integer \"code\""},
      {"{\"code\":\"200\",\"data\":{\"planId\":\"P1\"}}", "answer has no integer \"code\""},
      {"{\"code\":200.0,\"data\":{\"planId\":\"P1\"}}", "answer has no integer \"code\""},
      {"{\"code\":4294967496,\"msg\":\"x\"}", "answer \"code\" is out of range"},
      {"{\"code\":200,\"msg\":\"ok\"}", "answer has code 200 but no \"data\" object"},
      {"{\"code\":200,\"data\":null}", "answer has code 200 but no \"data\" object"},
      {"{\"code\":200,\"data\":\"P1\"}", "answer has code 200 but no \"data\" object"},
      {"{\"code\":200,\"data\":{}}", "data.planId: expected a string"},
      {"{\"code\":200,\"data\":{\"planId\":12345}}", "data.planId: expected a string"},
      {"{\"code\":200,\"data\":{\"planId\":null}}", "data.planId: expected a string"},
      {"{\"code\":200,\"data\":{\"planId\":\"\"}}", "data.planId: length 0 not in 1..63"},
      {"{\"code\":200,\"data\":{\"planId\":"
       "\"P123456789012345678901234567890123456789012345678901234567890123\"}}",
       "data.planId: length 64 not in 1..63"},
      {"{\"code\":200,\"data\":{\"planId\":\"P1\\u0000x\"}}",
       "data.planId: control or non-ASCII character at 2"},
      {"{\"code\":200,\"data\":{\"planId\":\"P1\\n\"}}",
       "data.planId: control or non-ASCII character at 2"},
      {"{\"code\":200,\"data\":{\"planId\":\"P\\u00e9\"}}",
       "data.planId: control or non-ASCII character at 1"},
  };
  hes_api_t *api = api_with_token();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    script(200, cases[i].body);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hes_api_error_t err;
    hes_api_plan_t plan;
    hes_api_result_t r = hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err);
    if (r != HES_API_EANSWER)
      fail_msg("case %zu: %s -> %d %s", i, cases[i].body, r, err.msg);
    assert_int_equal(err.kind, HES_API_EANSWER);
    assert_int_equal(err.http_status, 200);
    assert_string_equal(err.msg, cases[i].msg);
    assert_string_equal(plan.plan_id, "");
    assert_clean(&err);
  }
  assert_int_equal(nreq(), 1 + sizeof cases / sizeof cases[0]);
  hes_api_free(api);
}

static void test_topic_variants(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  char longtopic[600];
  int n = snprintf(longtopic, sizeof longtopic,
                   "{\"code\":200,\"data\":{\"planId\":\"P1\",\"topic\":\"");
  memset(longtopic + n, 't', 300);
  snprintf(longtopic + n + 300, sizeof longtopic - (size_t)n - 300, "\"}}");
  script(200, "{\"code\":200,\"data\":{\"planId\":\"P1\"}}");
  script(200, "{\"code\":200,\"data\":{\"planId\":\"P1\",\"topicId\":7,\"topic\":\"/x/P1/#\"}}");
  script(200, "{\"code\":200,\"data\":{\"planId\":\"P1\",\"topic\":\"/x/\\u0007P1\"}}");
  script(200, longtopic);
  script(200, "{\"code\":200,\"data\":{\"planId\":\"P1\",\"topicId\":\"/a\",\"topic\":\"/b\"}}");
  const char *want[] = {"", "/x/P1/#", "/x/?P1", NULL, "/a"};
  for (size_t i = 0; i < 5; i++) {
    hes_api_error_t err;
    hes_api_plan_t plan;
    assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_OK);
    assert_string_equal(plan.plan_id, "P1");
    if (want[i])
      assert_string_equal(plan.topic, want[i]);
    else
      assert_int_equal(strlen(plan.topic), HES_API_TOPIC_MAX - 1);
  }
  hes_api_free(api);
}

static void test_oversized_answer(void **state) {
  (void)state;
  hes_api_config_t cfg = config();
  cfg.max_answer = 1000;
  hes_api_error_t err;
  hes_api_t *api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  script(200, ANSWER_TOKEN_A);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  static char big[5001];
  memset(big, ' ', 5000);
  memcpy(big, ANSWER_PLAN, strlen(ANSWER_PLAN));
  script(200, big);         /* with Content-Length */
  script_chunked(5000);     /* without */
  script_chunked(1000);     /* exactly the limit: read, then found not JSON */
  script(200, ANSWER_PLAN); /* the handle still works */
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err),
                   HES_API_EANSWER);
  assert_string_equal(err.msg, "answer larger than 1000 bytes");
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err),
                   HES_API_EANSWER);
  assert_string_equal(err.msg, "answer larger than 1000 bytes");
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err),
                   HES_API_EANSWER);
  assert_string_equal(err.msg, "answer is not JSON: unexpected character");
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err), HES_API_OK);
  assert_string_equal(plan.plan_id, PLAN_ID);
  hes_api_free(api);
}

static void test_timeout(void **state) {
  (void)state;
  hes_api_config_t cfg = config();
  cfg.timeout_ms = 200;
  static hes_latency_t latency;
  hes_latency_init(&latency);
  cfg.latency = &latency;
  hes_api_error_t err;
  hes_api_t *api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  script_delay(200, ANSWER_TOKEN_A, 700);
  double t0 = mono();
  hes_api_plan_t plan;
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, &plan, &err),
                   HES_API_ETRANSPORT);
  double dt = mono() - t0;
  assert_true(dt >= 0.19 && dt < 0.6);
  /* The timed-out request is recorded, with the time it took. */
  hes_latency_summary_t ls;
  hes_latency_take(&latency, &ls);
  assert_int_equal(ls.count, 1);
  assert_true(ls.max >= 0.19 && ls.max <= dt);
  assert_string_equal(err.endpoint, "getToken");
  assert_int_equal(err.http_status, 0);
  assert_non_null(strstr(err.msg, "timed out"));
  assert_clean(&err);
  hes_api_free(api);
}

static void test_connection_refused(void **state) {
  (void)state;
  /* a port nobody listens on: bind one, read its number, close it */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sin;
  assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
  close(fd);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sin.sin_port));
  hes_api_config_t cfg = config();
  cfg.url = url;
  hes_api_error_t err;
  hes_api_t *api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_ETRANSPORT);
  assert_int_equal(err.kind, HES_API_ETRANSPORT);
  assert_string_equal(err.endpoint, "getToken");
  assert_true(strlen(err.msg) > 0);
  assert_clean(&err);
  hes_api_free(api);
}

static void test_tls(void **state) {
  (void)state;
  if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
    CANNOT_RUN("libmicrohttpd without TLS");
    return;
  }
  teardown(NULL);
  assert_int_equal(server_start(true), 0);
  char url[64], ca[] = "/tmp/test_api_ca_XXXXXX";
  snprintf(url, sizeof url, "https://127.0.0.1:%d", srv.port);
  int fd = mkstemp(ca);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, tls_cert, strlen(tls_cert)), (ssize_t)strlen(tls_cert));
  close(fd);

  hes_api_config_t cfg = config();
  cfg.url = url;
  hes_api_error_t err;
  /* verification on, system store: the self-signed certificate is refused */
  hes_api_t *api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_ETRANSPORT);
  assert_clean(&err);
  hes_api_free(api);
  assert_int_equal(nreq(), 0);

  /* verification on, the certificate as CA */
  script(200, ANSWER_TOKEN_A);
  cfg.ca_cert = ca;
  api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  hes_api_free(api);

  /* the certificate names 127.0.0.1 only: "localhost" fails host verification alone */
  char url_name[64];
  snprintf(url_name, sizeof url_name, "https://localhost:%d", srv.port);
  cfg.url = url_name;
  api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_ETRANSPORT);
  hes_api_free(api);
  script(200, ANSWER_TOKEN_A);
  cfg.verify_host = false;
  api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  hes_api_free(api);
  cfg.url = url;

  /* verification off */
  script(200, ANSWER_TOKEN_A);
  cfg.ca_cert = NULL;
  cfg.verify_peer = false;
  cfg.verify_host = false;
  api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  hes_api_free(api);
  assert_int_equal(nreq(), 3);
  unlink(ca);
}

/* --- arguments ---------------------------------------------------------------------------- */

static void test_invalid_arguments(void **state) {
  (void)state;
  script(200, ANSWER_TOKEN_A);
  hes_api_t *api = api_new();
  hes_api_error_t err;
  hes_api_plan_t plan;
  const char *comma[] = {"202407100001", "1,2"};
  const char *quote[] = {"12\"3"};
  const char *empty[] = {""};
  const char *null[] = {NULL};
  const char *long33[] = {"123456789012345678901234567890123"};
  const char *ok32[] = {"12345678901234567890123456789012"};
  const char *space[] = {"1 2"};

  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 0, 5069, &plan, &err), HES_API_EINVAL);
  assert_string_equal(err.msg, "no meters");
  assert_string_equal(err.endpoint, "readSingle");
  assert_int_equal(hes_api_read_single(api, NOW, NULL, 2, 5069, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_single(api, NOW, comma, 2, 5069, &plan, &err), HES_API_EINVAL);
  assert_string_equal(err.msg, "meter #2 is not 1..32 characters of [0-9A-Za-z_-]");
  assert_int_equal(hes_api_read_single(api, NOW, quote, 1, 5069, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_single(api, NOW, empty, 1, 5069, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_single(api, NOW, null, 1, 5069, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_single(api, NOW, long33, 1, 5069, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_single(api, NOW, space, 1, 5069, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 0, &plan, &err), HES_API_EINVAL);
  assert_string_equal(err.msg, "cgcode 0 is not positive");
  assert_int_equal(hes_api_read_single(api, NOW, two_meters, 2, 5069, NULL, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_single(NULL, NOW, two_meters, 2, 5069, &plan, &err),
                   HES_API_EINVAL);
  assert_int_equal(hes_api_relay(api, NOW, two_meters, 2, 0, &plan, &err), HES_API_EINVAL);
  assert_string_equal(err.msg, "controlMode 0 is neither 1 nor 2");
  assert_int_equal(hes_api_relay(api, NOW, two_meters, 2, 3, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_relay(api, NOW, two_meters, 0, 1, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_archive(api, NOW, "", &plan, &err), HES_API_EINVAL);
  assert_string_equal(err.msg, "DCU number is not 1..32 characters of [0-9A-Za-z_-]");
  assert_int_equal(hes_api_read_archive(api, NOW, NULL, &plan, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_read_archive(api, NOW, "22/11", &plan, &err), HES_API_EINVAL);
  const hes_api_archive_t bad_arch[] = {{"1", true}, {"x y", true}};
  assert_int_equal(hes_api_add_archive(api, NOW, "2211000051", bad_arch, 2, &plan, &err),
                   HES_API_EINVAL);
  assert_string_equal(err.msg, "archive #2: meter is not 1..32 characters of [0-9A-Za-z_-]");
  assert_int_equal(hes_api_add_archive(api, NOW, "2211000051", bad_arch, 0, &plan, &err),
                   HES_API_EINVAL);
  assert_int_equal(hes_api_add_archive(api, NOW, "2211000051", NULL, 1, &plan, &err),
                   HES_API_EINVAL);
  assert_int_equal(hes_api_add_archive(api, NOW, "bad dcu", bad_arch, 1, &plan, &err),
                   HES_API_EINVAL);
  assert_int_equal(hes_api_remove_archive(api, NOW, "2211000051", comma, 2, &plan, &err),
                   HES_API_EINVAL);
  assert_int_equal(hes_api_remove_archive(api, NOW, "2211000051", comma, 0, &plan, &err),
                   HES_API_EINVAL);
  assert_int_equal(hes_api_remove_archive(api, NOW, "2211000051/", ok32, 1, &plan, &err),
                   HES_API_EINVAL);
  assert_int_equal(nreq(), 0); /* nothing was sent, not even getToken */
  assert_int_equal(hes_api_requests(api), 0);
  assert_int_equal(err.kind, HES_API_EINVAL);

  /* 32 characters and the whole alphabet are fine */
  script(200, ANSWER_PLAN);
  const char *wide[] = {ok32[0], "Az09_-"};
  assert_int_equal(hes_api_read_single(api, NOW, wide, 2, 5069, &plan, &err), HES_API_OK);
  json_object *o = req_json(1);
  assert_str_field(o, "devList", "12345678901234567890123456789012,Az09_-");
  json_object_put(o);
  hes_api_free(api);
}

static void test_new_config(void **state) {
  (void)state;
  hes_api_error_t err;
  hes_api_config_t cfg = config();
  static const struct {
    const char *url;
    const char *msg;
  } urls[] = {
      {"http://user:" PASSWORD "@127.0.0.1:1",
       "URL must not carry user:password@ (use Username and Password)"},
      {"https://u@hes.example.com/x",
       "URL must not carry user:password@ (use Username and Password)"},
      {"ftp://hes.example.com", "URL must start with http:// or https://"},
      {"hes.example.com", "URL must start with http:// or https://"},
      {"http://", "URL has no host"},
      {"http:///apis", "URL has no host"},
      {"http://hes.example.com/?a=" PASSWORD, "URL must be a base without query or fragment"},
      {"http://hes example.com", "URL contains spaces, control or non-ASCII characters"},
      {"http://hes.example.com\n", "URL contains spaces, control or non-ASCII characters"},
      {"", "URL is empty"},
      {NULL, "URL is empty"},
  };
  for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
    cfg.url = urls[i].url;
    assert_null(hes_api_new(&cfg, &err));
    assert_int_equal(err.kind, HES_API_EINVAL);
    assert_string_equal(err.msg, urls[i].msg);
    assert_clean(&err);
  }
  cfg = config();
  cfg.password = "";
  assert_null(hes_api_new(&cfg, &err));
  assert_string_equal(err.msg, "Password must be 1..256 characters");
  cfg = config();
  cfg.secret_key = NULL;
  assert_null(hes_api_new(&cfg, &err));
  assert_string_equal(err.msg, "SecretKey must be 1..256 characters");
  cfg = config();
  cfg.tenant_code = NULL;
  assert_null(hes_api_new(&cfg, &err));
  assert_string_equal(err.msg, "TenantCode must be 1..256 characters");
  cfg = config();
  cfg.timeout_ms = -1;
  assert_null(hes_api_new(&cfg, &err));
  assert_string_equal(err.msg, "timeout -1 ms is negative");
  assert_null(hes_api_new(NULL, &err));
  assert_string_equal(err.msg, "no configuration");
  assert_null(hes_api_new(NULL, NULL));

  /* trailing slashes of the base are dropped; an HTTPS base and defaults are accepted */
  script(200, ANSWER_TOKEN_A);
  char url[64];
  snprintf(url, sizeof url, "HTTP://127.0.0.1:%d//", srv.port);
  cfg = config();
  cfg.url = url;
  cfg.timeout_ms = 0;
  hes_api_t *api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  assert_int_equal(hes_api_token(api, NOW, &err), HES_API_OK);
  assert_string_equal(srv.req[0].path, "/apis/openapi/getToken");
  hes_api_free(api);
  cfg.url = "https://hes.example.com";
  api = hes_api_new(&cfg, &err);
  assert_non_null(api);
  hes_api_free(api);
  hes_api_free(NULL);
}

/* --- range and history -------------------------------------------------------------------- */

static void test_range_valid(void **state) {
  (void)state;
  char why[80];
  assert_true(hes_api_range_valid("2024-07-10 00:00:00", "2024-07-10 00:00:00", why, sizeof why));
  assert_string_equal(why, "");
  assert_true(hes_api_range_valid("2024-07-10 00:00:00", "2024-07-11 00:15:00", why, sizeof why));
  assert_true(hes_api_range_valid("2024-02-29 23:59:59", "2024-03-01 00:00:00", NULL, 0));
  /* exactly 184 days, across a year end and a leap day */
  assert_true(hes_api_range_valid("2023-12-01 00:00:00", "2024-06-02 00:00:00", why, sizeof why));
  assert_false(hes_api_range_valid("2023-12-01 00:00:00", "2024-06-02 00:00:01", why, sizeof why));
  assert_string_equal(why, "range is longer than 184 days");
  assert_false(hes_api_range_valid("2024-07-10 00:00:01", "2024-07-10 00:00:00", why, sizeof why));
  assert_string_equal(why, "end is before start");
  static const char *const bad[] = {
      "2024-07-10",           "2024-07-10 00:00",     "2024-07-10T00:00:00",
      "2024-07-10 00:00:00 ", " 2024-07-10 00:00:00", "2024-7-10 00:00:00 ",
      "2024-13-10 00:00:00",  "2024-00-10 00:00:00",  "2024-07-32 00:00:00",
      "2024-07-00 00:00:00",  "2023-02-29 00:00:00",  "2100-02-29 00:00:00",
      "2024-04-31 00:00:00",  "2024-07-10 24:00:00",  "2024-07-10 00:60:00",
      "2024-07-10 00:00:60",  "2024-07-10 0a:00:00",  "2024/07/10 00:00:00",
      "0000-01-01 00:00:00",  "+024-07-10 00:00:00",  "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (hes_api_range_valid(bad[i], "2024-07-10 00:00:00", why, sizeof why))
      fail_msg("start \"%s\" accepted", bad[i]);
    assert_string_equal(why, "start is not a valid \"YYYY-MM-DD HH:MM:SS\"");
    if (hes_api_range_valid("2024-07-10 00:00:00", bad[i], why, sizeof why))
      fail_msg("end \"%s\" accepted", bad[i]);
    assert_string_equal(why, "end is not a valid \"YYYY-MM-DD HH:MM:SS\"");
  }
  assert_true(hes_api_range_valid("2000-02-29 00:00:00", "2000-02-29 00:00:00", why, sizeof why));
  assert_false(hes_api_range_valid(NULL, "2000-02-29 00:00:00", why, sizeof why));
  char small[4];
  assert_false(hes_api_range_valid("x", "y", small, sizeof small));
  assert_string_equal(small, "sta");
}

#define HIST_ENTRY(m, ts)                                                                          \
  "{\"devAddr\":\"" m "\",\"timestamp\":" #ts ",\"unit\":\"kWh\",\"value\":\"1.5\"}"
#define HIST_PAGE(total, page, list)                                                               \
  "{\"code\":200,\"msg\":\"success\",\"data\":{\"total\":" #total ",\"curPage\":" #page            \
  ",\"pageSize\":2,\"list\":[" list "]}}"

static void test_history_paging(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  script(200, HIST_PAGE(5, 1, HIST_ENTRY("m1", 1720540800000) "," HIST_ENTRY("m1", 1720627200000)));
  script(200, HIST_PAGE(5, 2, HIST_ENTRY("m2", 1720540800000) "," HIST_ENTRY("m2", 1720627200000)));
  script(200, HIST_PAGE(5, 3, HIST_ENTRY("m3", 1720540800000)));
  hes_api_error_t err;
  const char *meters[] = {"m1", "m2", "m3"};
  hes_api_history_t *h = hes_api_history_new(api, false, meters, 3, 5069, "2024-07-10 00:00:00",
                                             "2024-07-11 00:00:00", 2, &err);
  assert_non_null(h);
  assert_int_equal(hes_api_history_total(h), 0);
  hes_push_t page;
  const char *want_meter[] = {"m1", "m2", "m3"};
  size_t want_count[] = {2, 2, 1};
  for (int p = 0; p < 3; p++) {
    assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_OK);
    assert_int_equal(page.entries, want_count[p]);
    assert_int_equal(page.count, want_count[p]);
    assert_int_equal(page.kind, HES_PUSH_READINGS);
    assert_int_equal(page.skipped, 0);
    for (size_t i = 0; i < page.count; i++) {
      assert_string_equal(page.readings[i].dev_addr, want_meter[p]);
      assert_string_equal(page.readings[i].value, "1.5");
      assert_string_equal(page.readings[i].unit, "kWh");
      assert_int_equal(page.readings[i].timestamp_ms, 1720540800000LL + (int64_t)i * 86400000);
    }
    assert_int_equal(hes_api_history_total(h), 5);
    json_object *o = req_json(1 + (size_t)p);
    assert_string_equal(srv.req[1 + p].path, "/apis/openapi/meter/historySingle");
    assert_string_equal(srv.req[1 + p].token, TOKEN_A);
    assert_int_equal(json_object_object_length(o), 7);
    assert_str_field(o, "devList", "m1,m2,m3");
    assert_str_field(o, "cgcode", "5069");
    assert_str_field(o, "start", "2024-07-10 00:00:00");
    assert_str_field(o, "end", "2024-07-11 00:00:00");
    assert_int_field(o, "curPage", p + 1);
    assert_int_field(o, "pageSize", 2);
    assert_str_field(o, "token", TOKEN_A);
    json_object_put(o);
  }
  /* the end: an empty page, nothing sent */
  assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_OK);
  assert_int_equal(page.entries, 0);
  assert_int_equal(page.count, 0);
  assert_int_equal(nreq(), 4);
  hes_api_history_free(h);
  hes_api_free(api);
}

static void test_history_ends(void **state) {
  (void)state;
  hes_api_t *api = api_with_token();
  hes_api_error_t err;
  hes_push_t page;
  const char *meters[] = {"m1"};
  /* total reached with a full page: no further request */
  script(200, HIST_PAGE(2, 1, HIST_ENTRY("m1", 1) "," HIST_ENTRY("m1", 2)));
  hes_api_history_t *h = hes_api_history_new(api, true, meters, 1, 1, "2024-07-10 00:00:00",
                                             "2024-07-11 00:00:00", 2, &err);
  assert_non_null(h);
  assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_OK);
  assert_int_equal(page.entries, 2);
  assert_string_equal(srv.req[1].path, "/apis/openapi/meter/historyFrozen");
  assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_OK);
  assert_int_equal(page.entries, 0);
  assert_int_equal(nreq(), 2);
  hes_api_history_free(h);

  /* an empty first page; a missing list counts as empty */
  script(200, HIST_PAGE(0, 1, ""));
  script(200, "{\"code\":200,\"data\":{\"total\":0,\"curPage\":1}}");
  for (int i = 0; i < 2; i++) {
    h = hes_api_history_new(api, false, meters, 1, 5069, "2024-07-10 00:00:00",
                            "2024-07-11 00:00:00", 2, &err);
    assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_OK);
    assert_int_equal(page.entries, 0);
    assert_int_equal(hes_api_history_total(h), 0);
    assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_OK);
    assert_int_equal(page.entries, 0);
    hes_api_history_free(h);
  }
  assert_int_equal(nreq(), 4);

  /* a short page ends it even when total says more */
  script(200, HIST_PAGE(100, 1, HIST_ENTRY("m1", 1)));
  h = hes_api_history_new(api, false, meters, 1, 5069, "2024-07-10 00:00:00", "2024-07-11 00:00:00",
                          2, &err);
  assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_OK);
  assert_int_equal(page.entries, 1);
  assert_int_equal(hes_api_history_total(h), 100);
  assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_OK);
  assert_int_equal(page.entries, 0);
  assert_int_equal(nreq(), 5);
  hes_api_history_free(h);
  hes_api_free(api);
}

static void test_history_bad_pages(void **state) {
  (void)state;
  static const struct {
    const char *body;
    const char *msg;
  } cases[] = {
      {HIST_PAGE(5, 2, HIST_ENTRY("m1", 1)), "data.curPage is 2, page 1 was asked for"},
      {"{\"code\":200,\"data\":{\"total\":5,\"list\":[]}}", "data.curPage: expected an integer"},
      {"{\"code\":200,\"data\":{\"total\":5,\"curPage\":\"1\",\"list\":[]}}",
       "data.curPage: expected an integer"},
      {"{\"code\":200,\"data\":{\"curPage\":1,\"list\":[]}}",
       "data.total: expected a non-negative integer"},
      {"{\"code\":200,\"data\":{\"total\":-1,\"curPage\":1,\"list\":[]}}",
       "data.total: expected a non-negative integer"},
      {"{\"code\":200,\"data\":{\"total\":1,\"curPage\":1,\"list\":{}}}",
       "data.list: expected an array"},
  };
  hes_api_t *api = api_with_token();
  const char *meters[] = {"m1"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    script(200, cases[i].body);
    hes_api_error_t err;
    hes_push_t page;
    hes_api_history_t *h = hes_api_history_new(api, false, meters, 1, 5069, "2024-07-10 00:00:00",
                                               "2024-07-11 00:00:00", 2, &err);
    assert_non_null(h);
    assert_int_equal(hes_api_history_next(h, NOW, &page, &err), HES_API_EANSWER);
    assert_string_equal(err.msg, cases[i].msg);
    assert_string_equal(err.endpoint, "historySingle");
    assert_int_equal(page.entries, 0);
    assert_int_equal(page.count, 0);
    assert_clean(&err);
    hes_api_history_free(h);
  }
  hes_api_free(api);
}

static void test_history_new_invalid(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_api_error_t err;
  const char *meters[] = {"m1"};
  const char *bad[] = {"m,1"};
  const char *s = "2024-07-10 00:00:00", *e = "2024-07-11 00:00:00";
  assert_null(hes_api_history_new(api, false, meters, 1, 5069, s, e, 0, &err));
  assert_string_equal(err.msg, "pageSize 0 not in 1..1000");
  assert_null(hes_api_history_new(api, false, meters, 1, 5069, s, e, 1001, &err));
  assert_null(hes_api_history_new(api, false, meters, 1, 5069, e, s, 10, &err));
  assert_string_equal(err.msg, "end is before start");
  assert_null(hes_api_history_new(api, true, meters, 1, 1, s, "2025-07-11 00:00:00", 10, &err));
  assert_string_equal(err.msg, "range is longer than 184 days");
  assert_string_equal(err.endpoint, "historyFrozen");
  assert_null(hes_api_history_new(api, false, meters, 0, 5069, s, e, 10, &err));
  assert_string_equal(err.msg, "no meters");
  assert_null(hes_api_history_new(api, false, bad, 1, 5069, s, e, 10, &err));
  assert_null(hes_api_history_new(api, false, meters, 1, -1, s, e, 10, &err));
  assert_null(hes_api_history_new(NULL, false, meters, 1, 5069, s, e, 10, &err));
  assert_int_equal(err.kind, HES_API_EINVAL);
  hes_api_history_t *h = hes_api_history_new(api, false, meters, 1, 5069, s, e, 1000, &err);
  assert_non_null(h);
  hes_api_history_free(h);
  hes_api_history_free(NULL);
  assert_int_equal(hes_api_history_next(NULL, NOW, NULL, &err), HES_API_EINVAL);
  assert_int_equal(nreq(), 0);
  hes_api_free(api);
}

/* --- the answer parser on its own --------------------------------------------------------- */

static void test_parse_answer(void **state) {
  (void)state;
  const char *good = ANSWER_PLAN;
  json_object *root, *data;
  hes_api_error_t err;
  assert_int_equal(hes_api_parse_answer(good, strlen(good), &root, &data, &err), HES_API_OK);
  assert_non_null(root);
  json_object *v;
  assert_true(json_object_object_get_ex(data, "planId", &v));
  assert_string_equal(json_object_get_string(v), PLAN_ID);
  json_object_put(root);
  /* every proper prefix is refused, nothing leaks (ASan) */
  for (size_t n = 0; n < strlen(good); n++) {
    assert_int_not_equal(hes_api_parse_answer(good, n, &root, &data, &err), HES_API_OK);
    assert_null(root);
    assert_null(data);
  }
  /* embedded NUL */
  const char nul[] = "{\"code\":200,\"data\":{}}\0garbage";
  assert_int_equal(hes_api_parse_answer(nul, sizeof nul - 1, &root, &data, &err), HES_API_EANSWER);
  assert_string_equal(err.msg, "answer has bytes after the JSON value");
  /* deep nesting */
  static char deep[4096];
  size_t at = (size_t)snprintf(deep, sizeof deep, "{\"code\":200,\"data\":");
  for (int i = 0; i < 1000; i++)
    deep[at++] = '[';
  assert_int_equal(hes_api_parse_answer(deep, at, &root, &data, &err), HES_API_EANSWER);
  /* pseudo-random bytes */
  unsigned seed = 12345;
  char buf[256];
  for (int round = 0; round < 2000; round++) {
    size_t n = (size_t)(round % 256);
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      buf[i] = (char)(seed >> 16);
    }
    hes_api_result_t r = hes_api_parse_answer(buf, n, &root, &data, &err);
    assert_true(r == HES_API_EANSWER || r == HES_API_EHES);
    assert_null(root);
    assert_true(strlen(err.msg) < sizeof err.msg);
  }
  assert_int_equal(hes_api_parse_answer(good, strlen(good), NULL, &data, &err), HES_API_EINVAL);
  assert_int_equal(hes_api_parse_answer(NULL, 0, &root, &data, NULL), HES_API_EANSWER);
}

static void test_result_string(void **state) {
  (void)state;
  assert_string_equal(hes_api_result_string(HES_API_OK), "ok");
  assert_string_equal(hes_api_result_string(HES_API_EINVAL), "invalid argument");
  assert_string_equal(hes_api_result_string(HES_API_ETRANSPORT), "transport error");
  assert_string_equal(hes_api_result_string(HES_API_EHTTP), "HTTP error");
  assert_string_equal(hes_api_result_string(HES_API_EHES), "HES error");
  assert_string_equal(hes_api_result_string(HES_API_EANSWER), "malformed answer");
  assert_string_equal(hes_api_result_string(HES_API_ENOMEM), "out of memory");
  assert_string_equal(hes_api_result_string((hes_api_result_t)99), "unknown error");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_token_request),
      T(test_token_renewal),
      T(test_token_renewal_fails),
      T(test_token_used_in_calls),
      T(test_token_errors),
      T(test_stale_token_http401),
      T(test_stale_token_hes_msg),
      T(test_stale_token_retried_once),
      T(test_read_single_body),
      T(test_read_frozen_body),
      T(test_relay_body),
      T(test_archive_bodies),
      T(test_no_expect_header),
      T(test_keepalive),
      T(test_hes_error),
      T(test_http_error),
      T(test_secret_in_answers_masked),
      T(test_bad_answers),
      T(test_topic_variants),
      T(test_oversized_answer),
      T(test_timeout),
      T(test_connection_refused),
      T(test_tls),
      T(test_invalid_arguments),
      T(test_new_config),
      T(test_range_valid),
      T(test_history_paging),
      T(test_history_ends),
      T(test_history_bad_pages),
      T(test_history_new_invalid),
      T(test_parse_answer),
      T(test_result_string),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
