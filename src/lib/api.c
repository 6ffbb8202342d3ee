/* api: the HES OpenAPI client of api.h. Builds request bodies with json-c, sends them over
 * one reused curl easy handle (keep-alive), reads the answer into a bounded buffer, checks
 * its shape, and keeps the token fresh.
 *
 * Every message this file writes into a hes_api_error_t goes through api__clean(), which
 * masks the password, secret key and token wherever they appear (a HES may echo a request
 * back in an error page) and keeps only printable ASCII. */
#include "config.h"

#include "api.h"
#include "clock.h"
#include "meterid.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <json-c/json.h>

#define API_TOKEN_MAX              512        /* longest token accepted from the HES */
#define API_CRED_MAX               256        /* longest tenant, username, password, secret key */
#define API_URL_MAX                1024       /* longest base URL */
#define API_DCU_MAX                32         /* a DCU number is checked like a meter number */
#define API_METER_MAX              32         /* HES_METER_MAX_LEN (meterid.h) */
#define API_SNIPPET                100        /* bytes of a non-HES error body quoted in err->msg */
#define API_JSON_DEPTH             64         /* answers are 5 levels deep; deeper is hostile */
#define API_SHRINK                 (1u << 20) /* answer buffers above this are released after a call */
#define API_DEFAULT_TIMEOUT_MS     10000L
#define API_CONNECT_TIMEOUT_MAX_MS 5000L
#define API_EXPIRE_MAX             (366L * 86400L) /* an expireIn beyond a year is a broken answer */
#define API_PAGE_SIZE_MAX          1000
#define API_CURPAGE_MAX            10000000L
_Static_assert(API_METER_MAX == HES_METER_MAX_LEN, "one meter-number rule (meterid.h)");

typedef struct {
  const char *name;
  const char *path;
  bool token_in_body; /* removeArchive carries it in the header only */
} api_endpoint_t;

static const api_endpoint_t ep_token = {"getToken", "/apis/openapi/getToken", false};
static const api_endpoint_t ep_read_single = {"readSingle", "/apis/openapi/meter/readSingle", true};
static const api_endpoint_t ep_read_frozen = {"readFrozen", "/apis/openapi/meter/readFrozen", true};
static const api_endpoint_t ep_history_single = {"historySingle",
                                                 "/apis/openapi/meter/historySingle", true};
static const api_endpoint_t ep_history_frozen = {"historyFrozen",
                                                 "/apis/openapi/meter/historyFrozen", true};
static const api_endpoint_t ep_relay = {"relay", "/apis/openapi/meter/relay", true};
static const api_endpoint_t ep_read_archive = {"readArchive", "/apis/openapi/dcu/readArchive",
                                               true};
static const api_endpoint_t ep_add_archive = {"addArchive", "/apis/openapi/dcu/addArchive", true};
static const api_endpoint_t ep_remove_archive = {"removeArchive", "/apis/openapi/dcu/removeArchive",
                                                 false};
#define API_PATH_MAX 40 /* longer than every path above */

struct hes_api {
  char *url; /* the base, then room for the longest path */
  size_t base_len;
  char *tenant;
  char *username;
  char *password;
  char *secret_key;
  size_t max_answer;

  CURL *curl;
  struct curl_slist *hdr_plain; /* Content-Type, Expect: */
  struct curl_slist *hdr_token; /* the same plus HES_Access_Token; NULL without a token */
  char errbuf[CURL_ERROR_SIZE];

  char *answer;
  size_t answer_len;
  size_t answer_cap;
  bool answer_overflow;
  bool answer_nomem;

  char token[API_TOKEN_MAX + 1];
  bool have_token;
  double token_at;       /* `now` when it was fetched */
  double token_renew_at; /* `now` from which it is fetched again */
  double token_end_at;   /* `now` from which it is no longer used */
  uint64_t token_fetches;
  uint64_t requests;
  hes_latency_t *latency; /* not owned; NULL: durations not recorded */
};

struct hes_api_history {
  hes_api_t *api;
  const api_endpoint_t *ep;
  struct json_object *body; /* devList, cgcode, start, end, pageSize; curPage set per page */
  hes_push_parser_t *parser;
  struct json_object *root; /* the answer the current page points into */
  int page_size;
  long next_page;
  long total;
  long fetched; /* list entries received so far */
  bool done;
};

/* --- messages --------------------------------------------------------------------------- */

static void api__wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--)
    *v++ = 0;
}

/* Masks in buf[0..len) every occurrence of a credential with '*' (same length, so byte
 * positions stay). */
static void api__mask(const hes_api_t *api, char *buf, size_t len) {
  if (!api)
    return;
  const char *secrets[3] = {api->password, api->secret_key, api->have_token ? api->token : NULL};
  for (size_t i = 0; i < 3; i++) {
    const char *s = secrets[i];
    if (!s || !*s)
      continue;
    size_t sl = strlen(s);
    for (size_t at = 0; at + sl <= len;) {
      char *hit = memmem(buf + at, len - at, s, sl);
      if (!hit)
        break;
      memset(hit, '*', sl);
      at = (size_t)(hit - buf) + sl;
    }
  }
}

/* Copies src[0..len) into dst (size dstsize >= 1): credentials masked, bytes outside
 * printable ASCII replaced by '?', truncated to fit. Masking runs on a window longer than
 * dst by the longest credential, so one that straddles the cut is masked whole. */
static void api__clean(const hes_api_t *api, char *dst, size_t dstsize, const char *src,
                       size_t len) {
  char window[HES_API_MSG_MAX + API_TOKEN_MAX + 2];
  if (dstsize == 0)
    return;
  if (len > sizeof window)
    len = sizeof window;
  memcpy(window, src, len);
  size_t cut = len < dstsize - 1 ? len : dstsize - 1;
  api__mask(api, window, len);
  for (size_t i = 0; i < cut; i++) {
    unsigned char c = (unsigned char)window[i];
    dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  dst[cut] = '\0';
}

static void api__err_reset(hes_api_error_t *err, const char *endpoint) {
  memset(err, 0, sizeof *err);
  snprintf(err->endpoint, sizeof err->endpoint, "%s", endpoint);
}

static hes_api_result_t api__fail(const hes_api_t *api, hes_api_error_t *err, hes_api_result_t kind,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static hes_api_result_t api__fail(const hes_api_t *api, hes_api_error_t *err, hes_api_result_t kind,
                                  const char *fmt, ...) {
  char tmp[HES_API_MSG_MAX + API_TOKEN_MAX + 2];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof tmp)
    n = (int)sizeof tmp - 1;
  err->kind = kind;
  api__clean(api, err->msg, sizeof err->msg, tmp, (size_t)n);
  return kind;
}

const char *hes_api_result_string(hes_api_result_t r) {
  switch (r) {
  case HES_API_OK:
    return "ok";
  case HES_API_EINVAL:
    return "invalid argument";
  case HES_API_ETRANSPORT:
    return "transport error";
  case HES_API_EHTTP:
    return "HTTP error";
  case HES_API_EHES:
    return "HES error";
  case HES_API_EANSWER:
    return "malformed answer";
  case HES_API_ENOMEM:
    return "out of memory";
  }
  return "unknown error";
}

/* --- checks ----------------------------------------------------------------------------- */

static bool api__cred_ok(const char *s) {
  if (!s || !*s)
    return false;
  return strnlen(s, API_CRED_MAX + 1) <= API_CRED_MAX;
}

/* The base URL: http or https, a host, no user:password@, no query or fragment. The reason
 * never quotes the URL, which might hold a password. */
static const char *api__url_problem(const char *url) {
  if (!url || !*url)
    return "URL is empty";
  size_t len = strnlen(url, API_URL_MAX + 1);
  if (len > API_URL_MAX)
    return "URL is too long";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= 0x20 || c >= 0x7f)
      return "URL contains spaces, control or non-ASCII characters";
    if (c == '?' || c == '#')
      return "URL must be a base without query or fragment";
  }
  const char *auth;
  if (strncasecmp(url, "http://", 7) == 0)
    auth = url + 7;
  else if (strncasecmp(url, "https://", 8) == 0)
    auth = url + 8;
  else
    return "URL must start with http:// or https://";
  size_t auth_len = strcspn(auth, "/");
  if (auth_len == 0)
    return "URL has no host";
  if (memchr(auth, '@', auth_len))
    return "URL must not carry user:password@ (use Username and Password)";
  return NULL;
}

static int64_t api__days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int api__digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* "YYYY-MM-DD HH:MM:SS" exactly, to seconds since 1970 of that wall-clock time (the zone
 * cancels out of differences). */
static bool api__parse_time(const char *s, int64_t *t) {
  if (!s || strnlen(s, 20) != 19)
    return false;
  if (s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':')
    return false;
  int y = api__digits(s, 4), mo = api__digits(s + 5, 2), d = api__digits(s + 8, 2);
  int h = api__digits(s + 11, 2), mi = api__digits(s + 14, 2), se = api__digits(s + 17, 2);
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
      se > 59)
    return false;
  static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  int dim = mdays[mo - 1] + (mo == 2 && leap);
  if (d > dim)
    return false;
  *t = api__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return true;
}

bool hes_api_range_valid(const char *start, const char *end, char *why, size_t whylen) {
  char dummy[8];
  if (!why || whylen == 0) {
    why = dummy;
    whylen = sizeof dummy;
  }
  why[0] = '\0';
  int64_t ts, te;
  if (!api__parse_time(start, &ts)) {
    snprintf(why, whylen, "start is not a valid \"YYYY-MM-DD HH:MM:SS\"");
    return false;
  }
  if (!api__parse_time(end, &te)) {
    snprintf(why, whylen, "end is not a valid \"YYYY-MM-DD HH:MM:SS\"");
    return false;
  }
  if (te < ts) {
    snprintf(why, whylen, "end is before start");
    return false;
  }
  if (te - ts > HES_API_HISTORY_MAX_SECONDS) {
    snprintf(why, whylen, "range is longer than %d days", HES_API_HISTORY_MAX_SECONDS / 86400);
    return false;
  }
  return true;
}

/* --- json helpers ----------------------------------------------------------------------- */

static bool api__put(struct json_object *o, const char *key, struct json_object *v) {
  if (!v)
    return false;
  if (json_object_object_add(o, key, v) != 0) {
    json_object_put(v);
    return false;
  }
  return true;
}

static bool api__put_str(struct json_object *o, const char *key, const char *val) {
  return api__put(o, key, json_object_new_string(val));
}

static bool api__put_int_str(struct json_object *o, const char *key, int val) {
  char buf[16];
  snprintf(buf, sizeof buf, "%d", val);
  return api__put_str(o, key, buf);
}

/* devList: the meters joined by commas. EINVAL names the first bad meter by position only
 * (its bytes may be anything). */
static hes_api_result_t api__devlist(const char *const *meters, size_t n, char **out,
                                     hes_api_error_t *err) {
  *out = NULL;
  if (!meters || n == 0)
    return api__fail(NULL, err, HES_API_EINVAL, "no meters");
  if (n > SIZE_MAX / (API_METER_MAX + 1))
    return api__fail(NULL, err, HES_API_EINVAL, "too many meters");
  for (size_t i = 0; i < n; i++) {
    if (!hes_meterid_ok(meters[i], API_METER_MAX))
      return api__fail(NULL, err, HES_API_EINVAL,
                       "meter #%zu is not 1..%d characters of [0-9A-Za-z_-]", i + 1, API_METER_MAX);
  }
  char *s = malloc(n * (API_METER_MAX + 1) + 1);
  if (!s)
    return api__fail(NULL, err, HES_API_ENOMEM, "out of memory");
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    if (i)
      s[at++] = ',';
    size_t l = strlen(meters[i]);
    memcpy(s + at, meters[i], l);
    at += l;
  }
  s[at] = '\0';
  *out = s;
  return HES_API_OK;
}

/* --- the answer ------------------------------------------------------------------------- */

static hes_api_result_t api__parse(const hes_api_t *api, const char *body, size_t len,
                                   struct json_object **root, struct json_object **data,
                                   hes_api_error_t *err) {
  *root = NULL;
  *data = NULL;
  if (!body || len == 0)
    return api__fail(api, err, HES_API_EANSWER, "empty answer");
  if (len > INT_MAX)
    return api__fail(api, err, HES_API_EANSWER, "answer larger than %d bytes", INT_MAX);

  struct json_tokener *tok = json_tokener_new_ex(API_JSON_DEPTH);
  if (!tok)
    return api__fail(api, err, HES_API_ENOMEM, "out of memory");
  struct json_object *obj = json_tokener_parse_ex(tok, body, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  if (jerr == json_tokener_continue) {
    json_object_put(obj);
    return api__fail(api, err, HES_API_EANSWER, "answer is truncated JSON");
  }
  if (jerr != json_tokener_success || !obj) {
    json_object_put(obj);
    return api__fail(api, err, HES_API_EANSWER, "answer is not JSON: %s",
                     json_tokener_error_desc(jerr));
  }
  for (size_t i = end; i < len; i++) {
    char c = body[i];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      json_object_put(obj);
      return api__fail(api, err, HES_API_EANSWER, "answer has bytes after the JSON value");
    }
  }
  if (!json_object_is_type(obj, json_type_object)) {
    json_object_put(obj);
    return api__fail(api, err, HES_API_EANSWER, "answer is not a JSON object");
  }

  struct json_object *jcode = NULL;
  if (!json_object_object_get_ex(obj, "code", &jcode) ||
      !json_object_is_type(jcode, json_type_int)) {
    json_object_put(obj);
    return api__fail(api, err, HES_API_EANSWER, "answer has no integer \"code\"");
  }
  int64_t code = json_object_get_int64(jcode);
  if (code < INT_MIN || code > INT_MAX) {
    json_object_put(obj);
    return api__fail(api, err, HES_API_EANSWER, "answer \"code\" is out of range");
  }
  if (code != 200) {
    struct json_object *jmsg = NULL;
    err->code = (int)code;
    err->kind = HES_API_EHES;
    err->msg[0] = '\0';
    if (json_object_object_get_ex(obj, "msg", &jmsg) && json_object_is_type(jmsg, json_type_string))
      api__clean(api, err->msg, sizeof err->msg, json_object_get_string(jmsg),
                 (size_t)json_object_get_string_len(jmsg));
    json_object_put(obj);
    return HES_API_EHES;
  }

  struct json_object *jdata = NULL;
  if (!json_object_object_get_ex(obj, "data", &jdata) ||
      !json_object_is_type(jdata, json_type_object)) {
    json_object_put(obj);
    return api__fail(api, err, HES_API_EANSWER, "answer has code 200 but no \"data\" object");
  }
  *root = obj;
  *data = jdata;
  return HES_API_OK;
}

hes_api_result_t hes_api_parse_answer(const char *body, size_t len, struct json_object **root,
                                      struct json_object **data, hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  api__err_reset(err, "");
  if (!root || !data) {
    if (root)
      *root = NULL;
    if (data)
      *data = NULL;
    return api__fail(NULL, err, HES_API_EINVAL, "root and data are required");
  }
  return api__parse(NULL, body, len, root, data, err);
}

/* --- transport -------------------------------------------------------------------------- */

static size_t api__write(char *ptr, size_t size, size_t nmemb, void *ud) {
  hes_api_t *api = ud;
  size_t n = size * nmemb; /* curl documents size as always 1 */
  if (n > api->max_answer - api->answer_len) {
    api->answer_overflow = true;
    return 0;
  }
  size_t need = api->answer_len + n + 1;
  if (need > api->answer_cap) {
    size_t cap = api->answer_cap ? api->answer_cap : 4096;
    while (cap < need)
      cap = cap <= SIZE_MAX / 2 ? cap * 2 : need;
    if (cap > api->max_answer + 1)
      cap = api->max_answer + 1;
    char *p = realloc(api->answer, cap);
    if (!p) {
      api->answer_nomem = true;
      return 0;
    }
    api->answer = p;
    api->answer_cap = cap;
  }
  memcpy(api->answer + api->answer_len, ptr, n);
  api->answer_len += n;
  api->answer[api->answer_len] = '\0';
  return n;
}

static void api__answer_release(hes_api_t *api) {
  if (api->answer_cap > API_SHRINK) {
    free(api->answer);
    api->answer = NULL;
    api->answer_cap = 0;
  }
  api->answer_len = 0;
}

/* One POST. On HES_API_OK the caller owns *root. */
static hes_api_result_t api__post(hes_api_t *api, const api_endpoint_t *ep,
                                  struct json_object *body, bool with_token,
                                  struct json_object **root, struct json_object **data,
                                  hes_api_error_t *err) {
  *root = NULL;
  *data = NULL;
  api__err_reset(err, ep->name);

  size_t blen = 0;
  const char *b = json_object_to_json_string_length(body, JSON_C_TO_STRING_PLAIN, &blen);
  if (!b)
    return api__fail(api, err, HES_API_ENOMEM, "out of memory");
  memcpy(api->url + api->base_len, ep->path, strlen(ep->path) + 1);

  struct curl_slist *hdr = with_token && api->hdr_token ? api->hdr_token : api->hdr_plain;
  if (curl_easy_setopt(api->curl, CURLOPT_URL, api->url) != CURLE_OK ||
      curl_easy_setopt(api->curl, CURLOPT_HTTPHEADER, hdr) != CURLE_OK ||
      curl_easy_setopt(api->curl, CURLOPT_POSTFIELDS, b) != CURLE_OK ||
      curl_easy_setopt(api->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen) != CURLE_OK)
    return api__fail(api, err, HES_API_ENOMEM, "curl refused the request options");

  api->answer_len = 0;
  api->answer_overflow = false;
  api->answer_nomem = false;
  api->errbuf[0] = '\0';
  api->requests++;
  /* Every request of every handle passes here: the one place its duration is taken. */
  double t0 = hes_clock_mono();
  CURLcode rc = curl_easy_perform(api->curl);
  hes_latency_record(api->latency, hes_clock_mono() - t0);
  long status = 0;
  curl_easy_getinfo(api->curl, CURLINFO_RESPONSE_CODE, &status);

  hes_api_result_t r;
  if (rc != CURLE_OK) {
    err->http_status = status;
    if (api->answer_overflow || rc == CURLE_FILESIZE_EXCEEDED)
      r = api__fail(api, err, HES_API_EANSWER, "answer larger than %zu bytes", api->max_answer);
    else if (api->answer_nomem)
      r = api__fail(api, err, HES_API_ENOMEM, "out of memory for the answer");
    else
      r = api__fail(api, err, HES_API_ETRANSPORT, "%s",
                    api->errbuf[0] ? api->errbuf : curl_easy_strerror(rc));
    api__answer_release(api);
    return r;
  }

  r = api__parse(api, api->answer, api->answer_len, root, data, err);
  err->http_status = status;
  if (status != 200 && r != HES_API_EHES) {
    char snippet[API_SNIPPET + 1];
    json_object_put(*root);
    *root = NULL;
    *data = NULL;
    err->code = 0;
    api__clean(api, snippet, sizeof snippet, api->answer ? api->answer : "", api->answer_len);
    if (snippet[0])
      r = api__fail(api, err, HES_API_EHTTP, "HTTP %ld: %s", status, snippet);
    else
      r = api__fail(api, err, HES_API_EHTTP, "HTTP %ld", status);
  }
  api__answer_release(api);
  return r;
}

/* --- token ------------------------------------------------------------------------------ */

static void api__slist_wipe_free(struct curl_slist *l) {
  for (struct curl_slist *p = l; p; p = p->next)
    api__wipe(p->data, strlen(p->data));
  curl_slist_free_all(l);
}

static struct curl_slist *api__headers(const char *token) {
  struct curl_slist *l = NULL, *t;
  static const char *const base[] = {"Content-Type: application/json; charset=UTF-8",
                                     "Accept: application/json",
                                     /* no "Expect: 100-continue" and its 1 s wait */
                                     "Expect:"};
  for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
    t = curl_slist_append(l, base[i]);
    if (!t) {
      curl_slist_free_all(l);
      return NULL;
    }
    l = t;
  }
  if (token) {
    char line[sizeof "HES_Access_Token: " + API_TOKEN_MAX];
    snprintf(line, sizeof line, "HES_Access_Token: %s", token);
    t = curl_slist_append(l, line);
    api__wipe(line, sizeof line);
    if (!t) {
      curl_slist_free_all(l);
      return NULL;
    }
    l = t;
  }
  return l;
}

void hes_api_token_forget(hes_api_t *api) {
  if (!api)
    return;
  api->have_token = false;
  api__wipe(api->token, sizeof api->token);
  api__slist_wipe_free(api->hdr_token);
  api->hdr_token = NULL;
}

uint64_t hes_api_token_fetches(const hes_api_t *api) {
  return api ? api->token_fetches : 0;
}

uint64_t hes_api_requests(const hes_api_t *api) {
  return api ? api->requests : 0;
}

/* Renew at 80% of the lifetime or a minute before the end, whichever comes first, but not
 * before half of it (a short-lived token is not fetched on every call). */
static double api__renew_after(long expire_in) {
  double e = (double)expire_in;
  double a = 0.8 * e, b = e - 60.0;
  double r = a < b ? a : b;
  return r < 0.5 * e ? 0.5 * e : r;
}

static hes_api_result_t api__token_fetch(hes_api_t *api, double now, hes_api_error_t *err) {
  struct json_object *body = json_object_new_object();
  if (!body || !api__put_str(body, "tenantCode", api->tenant) ||
      !api__put_str(body, "username", api->username) ||
      !api__put_str(body, "password", api->password) ||
      !api__put_str(body, "secretKey", api->secret_key)) {
    json_object_put(body);
    api__err_reset(err, ep_token.name);
    return api__fail(api, err, HES_API_ENOMEM, "out of memory");
  }
  struct json_object *root, *data;
  hes_api_result_t r = api__post(api, &ep_token, body, false, &root, &data, err);
  json_object_put(body);
  if (r != HES_API_OK)
    return r;

  struct json_object *jtok = NULL, *jexp = NULL;
  if (!json_object_object_get_ex(data, "token", &jtok) ||
      !json_object_is_type(jtok, json_type_string)) {
    json_object_put(root);
    return api__fail(api, err, HES_API_EANSWER, "data.token: expected a string");
  }
  const char *tok = json_object_get_string(jtok);
  int tlen = json_object_get_string_len(jtok);
  if (tlen < 1 || tlen > API_TOKEN_MAX) {
    json_object_put(root);
    return api__fail(api, err, HES_API_EANSWER, "data.token: length %d not in 1..%d", tlen,
                     API_TOKEN_MAX);
  }
  for (int i = 0; i < tlen; i++) {
    unsigned char c = (unsigned char)tok[i];
    if (c <= 0x20 || c >= 0x7f) {
      json_object_put(root);
      return api__fail(api, err, HES_API_EANSWER,
                       "data.token: space, control or non-ASCII character at %d", i);
    }
  }
  if (!json_object_object_get_ex(data, "expireIn", &jexp) ||
      !json_object_is_type(jexp, json_type_int)) {
    json_object_put(root);
    return api__fail(api, err, HES_API_EANSWER, "data.expireIn: expected an integer");
  }
  int64_t expire = json_object_get_int64(jexp);
  if (expire < 1 || expire > API_EXPIRE_MAX) {
    json_object_put(root);
    return api__fail(api, err, HES_API_EANSWER, "data.expireIn: %lld not in 1..%ld",
                     (long long)expire, API_EXPIRE_MAX);
  }

  struct curl_slist *hdr = api__headers(tok);
  if (!hdr) {
    json_object_put(root);
    return api__fail(api, err, HES_API_ENOMEM, "out of memory");
  }
  hes_api_token_forget(api);
  memcpy(api->token, tok, (size_t)tlen);
  api->token[tlen] = '\0';
  json_object_put(root);
  api->hdr_token = hdr;
  api->have_token = true;
  api->token_at = now;
  api->token_renew_at = now + api__renew_after((long)expire);
  api->token_end_at = now + (double)expire - HES_API_TOKEN_MARGIN;
  api->token_fetches++;
  return HES_API_OK;
}

static hes_api_result_t api__token_ensure(hes_api_t *api, double now, hes_api_error_t *err) {
  /* A clock that went backwards says nothing about the token's age: renew, no fallback. */
  bool usable = api->have_token && now >= api->token_at;
  if (usable && now < api->token_renew_at)
    return HES_API_OK;
  hes_api_result_t r = api__token_fetch(api, now, err);
  /* A renewal is early on purpose: while the token in hand lasts, its failure costs nothing
   * but another try on the next call. */
  if (r != HES_API_OK && r != HES_API_ENOMEM && usable && now < api->token_end_at) {
    api__err_reset(err, ep_token.name);
    return HES_API_OK;
  }
  return r;
}

hes_api_result_t hes_api_token(hes_api_t *api, double now, hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  api__err_reset(err, ep_token.name);
  if (!api)
    return api__fail(NULL, err, HES_API_EINVAL, "no api handle");
  return api__token_ensure(api, now, err);
}

/* The token in use is stale when the HES refuses it: HTTP 401/403, or a HES answer that
 * talks about the token. */
static bool api__stale(const hes_api_error_t *err) {
  if ((err->kind == HES_API_EHTTP || err->kind == HES_API_EHES) &&
      (err->http_status == 401 || err->http_status == 403))
    return true;
  return err->kind == HES_API_EHES && strcasestr(err->msg, "token") != NULL;
}

/* A call with the token: fetched if needed, and once more (with one retry of the call)
 * when the HES says it is stale. body gets "token" when the endpoint wants it there. */
static hes_api_result_t api__call(hes_api_t *api, double now, const api_endpoint_t *ep,
                                  struct json_object *body, struct json_object **root,
                                  struct json_object **data, hes_api_error_t *err) {
  hes_api_result_t r = HES_API_OK;
  *root = NULL;
  *data = NULL;
  for (int attempt = 0; attempt < 2; attempt++) {
    r = api__token_ensure(api, now, err);
    if (r != HES_API_OK)
      return r;
    if (ep->token_in_body && !api__put_str(body, "token", api->token)) {
      api__err_reset(err, ep->name);
      return api__fail(api, err, HES_API_ENOMEM, "out of memory");
    }
    r = api__post(api, ep, body, true, root, data, err);
    if (r == HES_API_OK || !api__stale(err))
      break;
    if (attempt == 0)
      hes_api_token_forget(api);
  }
  if (ep->token_in_body)
    json_object_object_del(body, "token");
  return r;
}

/* --- plan calls ------------------------------------------------------------------------- */

static hes_api_result_t api__plan_from(const hes_api_t *api, struct json_object *data,
                                       hes_api_plan_t *plan, hes_api_error_t *err) {
  struct json_object *jid = NULL, *jtopic = NULL;
  if (!json_object_object_get_ex(data, "planId", &jid) ||
      !json_object_is_type(jid, json_type_string))
    return api__fail(api, err, HES_API_EANSWER, "data.planId: expected a string");
  const char *id = json_object_get_string(jid);
  int len = json_object_get_string_len(jid);
  if (len < 1 || len >= HES_PLAN_ID_MAX)
    return api__fail(api, err, HES_API_EANSWER, "data.planId: length %d not in 1..%d", len,
                     HES_PLAN_ID_MAX - 1);
  for (int i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c < 0x20 || c >= 0x7f)
      return api__fail(api, err, HES_API_EANSWER,
                       "data.planId: control or non-ASCII character at %d", i);
  }
  memcpy(plan->plan_id, id, (size_t)len);
  plan->plan_id[len] = '\0';

  /* Reads name it topicId, relay and DCU calls topic; it is informative only, so a
   * missing or mistyped one is no error. */
  if ((json_object_object_get_ex(data, "topicId", &jtopic) &&
       json_object_is_type(jtopic, json_type_string)) ||
      (json_object_object_get_ex(data, "topic", &jtopic) &&
       json_object_is_type(jtopic, json_type_string)))
    api__clean(api, plan->topic, sizeof plan->topic, json_object_get_string(jtopic),
               (size_t)json_object_get_string_len(jtopic));
  return HES_API_OK;
}

/* Sends body (consumed) and fills plan from the answer. */
static hes_api_result_t api__plan_call(hes_api_t *api, double now, const api_endpoint_t *ep,
                                       struct json_object *body, hes_api_plan_t *plan,
                                       hes_api_error_t *err) {
  struct json_object *root, *data;
  hes_api_result_t r = api__call(api, now, ep, body, &root, &data, err);
  json_object_put(body);
  if (r != HES_API_OK)
    return r;
  r = api__plan_from(api, data, plan, err);
  json_object_put(root);
  if (r != HES_API_OK)
    memset(plan, 0, sizeof *plan);
  return r;
}

/* The common start of every plan call. */
static hes_api_result_t api__begin(hes_api_t *api, const api_endpoint_t *ep, hes_api_plan_t *plan,
                                   hes_api_error_t *err) {
  api__err_reset(err, ep->name);
  if (plan)
    memset(plan, 0, sizeof *plan);
  if (!api || !plan)
    return api__fail(NULL, err, HES_API_EINVAL, "api and plan are required");
  return HES_API_OK;
}

static hes_api_result_t api__nomem(hes_api_t *api, struct json_object *body, hes_api_error_t *err) {
  json_object_put(body);
  return api__fail(api, err, HES_API_ENOMEM, "out of memory");
}

/* A body holding devList (and cgcode when cgcode >= 0). */
static hes_api_result_t api__devlist_body(hes_api_t *api, const char *const *meters, size_t n,
                                          int cgcode, struct json_object **body,
                                          hes_api_error_t *err) {
  char *list;
  *body = NULL;
  hes_api_result_t r = api__devlist(meters, n, &list, err);
  if (r != HES_API_OK)
    return r;
  struct json_object *b = json_object_new_object();
  bool ok = b && api__put_str(b, "devList", list) &&
            (cgcode < 0 || api__put_int_str(b, "cgcode", cgcode));
  free(list);
  if (!ok)
    return api__nomem(api, b, err);
  *body = b;
  return HES_API_OK;
}

hes_api_result_t hes_api_read_single(hes_api_t *api, double now, const char *const *meters,
                                     size_t n, int cgcode, hes_api_plan_t *plan,
                                     hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  hes_api_result_t r = api__begin(api, &ep_read_single, plan, err);
  if (r != HES_API_OK)
    return r;
  if (cgcode <= 0)
    return api__fail(api, err, HES_API_EINVAL, "cgcode %d is not positive", cgcode);
  struct json_object *body;
  r = api__devlist_body(api, meters, n, cgcode, &body, err);
  if (r != HES_API_OK)
    return r;
  return api__plan_call(api, now, &ep_read_single, body, plan, err);
}

hes_api_result_t hes_api_read_frozen(hes_api_t *api, double now, const char *const *meters,
                                     size_t n, int cgcode, const char *start, const char *end,
                                     hes_api_plan_t *plan, hes_api_error_t *err) {
  hes_api_error_t dummy;
  char why[80];
  if (!err)
    err = &dummy;
  hes_api_result_t r = api__begin(api, &ep_read_frozen, plan, err);
  if (r != HES_API_OK)
    return r;
  if (cgcode <= 0)
    return api__fail(api, err, HES_API_EINVAL, "cgcode %d is not positive", cgcode);
  if (!hes_api_range_valid(start, end, why, sizeof why))
    return api__fail(api, err, HES_API_EINVAL, "%s", why);
  struct json_object *body;
  r = api__devlist_body(api, meters, n, cgcode, &body, err);
  if (r != HES_API_OK)
    return r;
  if (!api__put_str(body, "start", start) || !api__put_str(body, "end", end))
    return api__nomem(api, body, err);
  return api__plan_call(api, now, &ep_read_frozen, body, plan, err);
}

hes_api_result_t hes_api_relay(hes_api_t *api, double now, const char *const *meters, size_t n,
                               int control_mode, hes_api_plan_t *plan, hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  hes_api_result_t r = api__begin(api, &ep_relay, plan, err);
  if (r != HES_API_OK)
    return r;
  if (control_mode != 1 && control_mode != 2)
    return api__fail(api, err, HES_API_EINVAL, "controlMode %d is neither 1 nor 2", control_mode);
  struct json_object *body;
  r = api__devlist_body(api, meters, n, -1, &body, err);
  if (r != HES_API_OK)
    return r;
  if (!api__put(body, "controlMode", json_object_new_int(control_mode)))
    return api__nomem(api, body, err);
  return api__plan_call(api, now, &ep_relay, body, plan, err);
}

static hes_api_result_t api__dcu_body(hes_api_t *api, const char *dcu, struct json_object **body,
                                      hes_api_error_t *err) {
  *body = NULL;
  if (!hes_meterid_ok(dcu, API_DCU_MAX))
    return api__fail(api, err, HES_API_EINVAL,
                     "DCU number is not 1..%d characters of [0-9A-Za-z_-]", API_DCU_MAX);
  struct json_object *b = json_object_new_object();
  if (!b || !api__put_str(b, "dcuNo", dcu))
    return api__nomem(api, b, err);
  *body = b;
  return HES_API_OK;
}

hes_api_result_t hes_api_read_archive(hes_api_t *api, double now, const char *dcu,
                                      hes_api_plan_t *plan, hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  hes_api_result_t r = api__begin(api, &ep_read_archive, plan, err);
  if (r != HES_API_OK)
    return r;
  struct json_object *body;
  r = api__dcu_body(api, dcu, &body, err);
  if (r != HES_API_OK)
    return r;
  return api__plan_call(api, now, &ep_read_archive, body, plan, err);
}

hes_api_result_t hes_api_add_archive(hes_api_t *api, double now, const char *dcu,
                                     const hes_api_archive_t *archives, size_t n,
                                     hes_api_plan_t *plan, hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  hes_api_result_t r = api__begin(api, &ep_add_archive, plan, err);
  if (r != HES_API_OK)
    return r;
  if (!archives || n == 0)
    return api__fail(api, err, HES_API_EINVAL, "no archives");
  for (size_t i = 0; i < n; i++) {
    if (!hes_meterid_ok(archives[i].dev_addr, API_METER_MAX))
      return api__fail(api, err, HES_API_EINVAL,
                       "archive #%zu: meter is not 1..%d characters of [0-9A-Za-z_-]", i + 1,
                       API_METER_MAX);
  }
  struct json_object *body;
  r = api__dcu_body(api, dcu, &body, err);
  if (r != HES_API_OK)
    return r;
  struct json_object *arr = json_object_new_array_ext((int)(n < INT_MAX ? n : INT_MAX));
  if (!api__put(body, "archives", arr))
    return api__nomem(api, body, err);
  for (size_t i = 0; i < n; i++) {
    struct json_object *a = json_object_new_object();
    if (!a || !api__put_str(a, "devAddr", archives[i].dev_addr) ||
        !api__put_str(a, "status", archives[i].enabled ? "1" : "0") ||
        json_object_array_add(arr, a) != 0) {
      json_object_put(a);
      return api__nomem(api, body, err);
    }
  }
  return api__plan_call(api, now, &ep_add_archive, body, plan, err);
}

hes_api_result_t hes_api_remove_archive(hes_api_t *api, double now, const char *dcu,
                                        const char *const *meters, size_t n, hes_api_plan_t *plan,
                                        hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  hes_api_result_t r = api__begin(api, &ep_remove_archive, plan, err);
  if (r != HES_API_OK)
    return r;
  if (!meters || n == 0)
    return api__fail(api, err, HES_API_EINVAL, "no meters");
  for (size_t i = 0; i < n; i++) {
    if (!hes_meterid_ok(meters[i], API_METER_MAX))
      return api__fail(api, err, HES_API_EINVAL,
                       "meter #%zu is not 1..%d characters of [0-9A-Za-z_-]", i + 1, API_METER_MAX);
  }
  struct json_object *body;
  r = api__dcu_body(api, dcu, &body, err);
  if (r != HES_API_OK)
    return r;
  struct json_object *arr = json_object_new_array_ext((int)(n < INT_MAX ? n : INT_MAX));
  if (!api__put(body, "archives", arr))
    return api__nomem(api, body, err);
  for (size_t i = 0; i < n; i++) {
    struct json_object *s = json_object_new_string(meters[i]);
    if (!s || json_object_array_add(arr, s) != 0) {
      json_object_put(s);
      return api__nomem(api, body, err);
    }
  }
  return api__plan_call(api, now, &ep_remove_archive, body, plan, err);
}

/* --- history ---------------------------------------------------------------------------- */

hes_api_history_t *hes_api_history_new(hes_api_t *api, bool frozen, const char *const *meters,
                                       size_t n, int cgcode, const char *start, const char *end,
                                       int page_size, hes_api_error_t *err) {
  hes_api_error_t dummy;
  char why[80];
  if (!err)
    err = &dummy;
  const api_endpoint_t *ep = frozen ? &ep_history_frozen : &ep_history_single;
  api__err_reset(err, ep->name);
  if (!api) {
    api__fail(NULL, err, HES_API_EINVAL, "no api handle");
    return NULL;
  }
  if (cgcode <= 0) {
    api__fail(api, err, HES_API_EINVAL, "cgcode %d is not positive", cgcode);
    return NULL;
  }
  if (page_size < 1 || page_size > API_PAGE_SIZE_MAX) {
    api__fail(api, err, HES_API_EINVAL, "pageSize %d not in 1..%d", page_size, API_PAGE_SIZE_MAX);
    return NULL;
  }
  if (!hes_api_range_valid(start, end, why, sizeof why)) {
    api__fail(api, err, HES_API_EINVAL, "%s", why);
    return NULL;
  }
  struct json_object *body;
  if (api__devlist_body(api, meters, n, cgcode, &body, err) != HES_API_OK)
    return NULL;
  hes_api_history_t *h = calloc(1, sizeof *h);
  if (!h || !api__put_str(body, "start", start) || !api__put_str(body, "end", end) ||
      !api__put(body, "pageSize", json_object_new_int(page_size)) ||
      !(h->parser = hes_push_parser_new(0))) {
    free(h);
    api__nomem(api, body, err);
    return NULL;
  }
  h->api = api;
  h->ep = ep;
  h->body = body;
  h->page_size = page_size;
  h->next_page = 1;
  return h;
}

void hes_api_history_free(hes_api_history_t *h) {
  if (!h)
    return;
  json_object_put(h->root);
  json_object_put(h->body);
  hes_push_parser_free(h->parser);
  free(h);
}

long hes_api_history_total(const hes_api_history_t *h) {
  return h ? h->total : 0;
}

static void api__empty_page(hes_push_t *page) {
  memset(page, 0, sizeof *page);
  page->status = HES_PUSH_SUCCESS;
  page->kind = HES_PUSH_EMPTY;
}

/* Fetches page h->next_page. *list_len is the raw list length (entries the parser skipped
 * count for paging too). */
static hes_api_result_t api__history_page(hes_api_history_t *h, double now, hes_push_t *page,
                                          size_t *list_len, hes_api_error_t *err) {
  hes_api_t *api = h->api;
  struct json_object *root, *data, *jv = NULL, *list = NULL;
  *list_len = 0;
  api__empty_page(page);
  if (!api__put(h->body, "curPage", json_object_new_int64(h->next_page))) {
    api__err_reset(err, h->ep->name);
    return api__fail(api, err, HES_API_ENOMEM, "out of memory");
  }
  hes_api_result_t r = api__call(api, now, h->ep, h->body, &root, &data, err);
  if (r != HES_API_OK)
    return r;

  if (!json_object_object_get_ex(data, "total", &jv) || !json_object_is_type(jv, json_type_int) ||
      json_object_get_int64(jv) < 0 || json_object_get_int64(jv) > LONG_MAX) {
    json_object_put(root);
    return api__fail(api, err, HES_API_EANSWER, "data.total: expected a non-negative integer");
  }
  long total = (long)json_object_get_int64(jv);
  if (!json_object_object_get_ex(data, "curPage", &jv) || !json_object_is_type(jv, json_type_int)) {
    json_object_put(root);
    return api__fail(api, err, HES_API_EANSWER, "data.curPage: expected an integer");
  }
  int64_t cur = json_object_get_int64(jv);
  if (cur != h->next_page) {
    json_object_put(root);
    return api__fail(api, err, HES_API_EANSWER, "data.curPage is %lld, page %ld was asked for",
                     (long long)cur, h->next_page);
  }
  if (json_object_object_get_ex(data, "list", &list) && list &&
      !json_object_is_type(list, json_type_array)) {
    json_object_put(root);
    return api__fail(api, err, HES_API_EANSWER, "data.list: expected an array");
  }
  if (h->next_page == 1)
    h->total = total;
  *list_len = list ? json_object_array_length(list) : 0;
  if (*list_len > 0) {
    char why[160];
    hes_push_result_t pr = hes_push_parse_list(h->parser, list, page, why, sizeof why);
    if (pr != HES_PUSH_OK) {
      json_object_put(root);
      return api__fail(api, err, pr == HES_PUSH_ENOMEM ? HES_API_ENOMEM : HES_API_EANSWER,
                       "data.list: %s", why);
    }
  }
  h->root = root;
  h->fetched += (long)*list_len;
  h->next_page++;
  if (*list_len == 0 || *list_len < (size_t)h->page_size || h->fetched >= h->total ||
      h->next_page > API_CURPAGE_MAX)
    h->done = true;
  return HES_API_OK;
}

hes_api_result_t hes_api_history_next(hes_api_history_t *h, double now, hes_push_t *page,
                                      hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  api__err_reset(err, h ? h->ep->name : "history");
  if (page)
    api__empty_page(page);
  if (!h || !page)
    return api__fail(NULL, err, HES_API_EINVAL, "history and page are required");
  json_object_put(h->root);
  h->root = NULL;

  /* A page whose entries were all rejected is not the end: the caller's loop stops at an
   * empty page, so go on to the next one and report the skipped ones with it. */
  size_t skipped = 0;
  char reason[sizeof page->skipped_reason] = "";
  while (!h->done) {
    size_t list_len;
    hes_api_result_t r = api__history_page(h, now, page, &list_len, err);
    if (r != HES_API_OK)
      return r;
    if (!reason[0] && page->skipped_reason[0])
      memcpy(reason, page->skipped_reason, sizeof reason);
    skipped += page->skipped;
    if (page->entries > 0 || list_len == 0)
      break;
    json_object_put(h->root);
    h->root = NULL;
    api__empty_page(page);
  }
  page->skipped = skipped;
  memcpy(page->skipped_reason, reason, sizeof reason);
  return HES_API_OK;
}

/* --- handle ----------------------------------------------------------------------------- */

void hes_api_free(hes_api_t *api) {
  if (!api)
    return;
  if (api->curl)
    curl_easy_cleanup(api->curl);
  hes_api_token_forget(api);
  curl_slist_free_all(api->hdr_plain);
  if (api->password)
    api__wipe(api->password, strlen(api->password));
  if (api->secret_key)
    api__wipe(api->secret_key, strlen(api->secret_key));
  free(api->url);
  free(api->tenant);
  free(api->username);
  free(api->password);
  free(api->secret_key);
  free(api->answer);
  free(api);
}

/* curl_global_init is not thread-safe before curl 7.84 and otherwise runs lazily inside the
 * first curl_easy_init, on whatever thread gets there first: do it once, explicitly. */
static pthread_once_t api__curl_once = PTHREAD_ONCE_INIT;
static CURLcode api__curl_global;
static void api__curl_global_init(void) {
  api__curl_global = curl_global_init(CURL_GLOBAL_DEFAULT);
}

hes_api_t *hes_api_new(const hes_api_config_t *cfg, hes_api_error_t *err) {
  hes_api_error_t dummy;
  if (!err)
    err = &dummy;
  api__err_reset(err, "config");
  if (!cfg) {
    api__fail(NULL, err, HES_API_EINVAL, "no configuration");
    return NULL;
  }
  pthread_once(&api__curl_once, api__curl_global_init);
  if (api__curl_global != CURLE_OK) {
    api__fail(NULL, err, HES_API_ENOMEM, "curl_global_init: %s",
              curl_easy_strerror(api__curl_global));
    return NULL;
  }
  const char *problem = api__url_problem(cfg->url);
  if (problem) {
    api__fail(NULL, err, HES_API_EINVAL, "%s", problem);
    return NULL;
  }
  static const char *const names[4] = {"TenantCode", "Username", "Password", "SecretKey"};
  const char *creds[4] = {cfg->tenant_code, cfg->username, cfg->password, cfg->secret_key};
  for (size_t i = 0; i < 4; i++) {
    if (!api__cred_ok(creds[i])) {
      api__fail(NULL, err, HES_API_EINVAL, "%s must be 1..%d characters", names[i], API_CRED_MAX);
      return NULL;
    }
  }
  if (cfg->timeout_ms < 0) {
    api__fail(NULL, err, HES_API_EINVAL, "timeout %ld ms is negative", cfg->timeout_ms);
    return NULL;
  }
  long timeout = cfg->timeout_ms ? cfg->timeout_ms : API_DEFAULT_TIMEOUT_MS;
  long connect = timeout < API_CONNECT_TIMEOUT_MAX_MS ? timeout : API_CONNECT_TIMEOUT_MAX_MS;

  hes_api_t *api = calloc(1, sizeof *api);
  if (!api) {
    api__fail(NULL, err, HES_API_ENOMEM, "out of memory");
    return NULL;
  }
  size_t ulen = strlen(cfg->url);
  while (ulen > 0 && cfg->url[ulen - 1] == '/')
    ulen--;
  api->base_len = ulen;
  api->max_answer = cfg->max_answer ? cfg->max_answer : HES_API_DEFAULT_MAX_ANSWER;
  api->latency = cfg->latency;
  if (api->max_answer > SIZE_MAX / 4)
    api->max_answer = SIZE_MAX / 4;
  api->url = malloc(ulen + API_PATH_MAX + 1);
  api->tenant = strdup(cfg->tenant_code);
  api->username = strdup(cfg->username);
  api->password = strdup(cfg->password);
  api->secret_key = strdup(cfg->secret_key);
  api->hdr_plain = api__headers(NULL);
  api->curl = curl_easy_init();
  if (!api->url || !api->tenant || !api->username || !api->password || !api->secret_key ||
      !api->hdr_plain || !api->curl) {
    hes_api_free(api);
    api__fail(NULL, err, HES_API_ENOMEM, "out of memory");
    return NULL;
  }
  memcpy(api->url, cfg->url, ulen);
  api->url[ulen] = '\0';

  CURL *c = api->curl;
  const char *ca = cfg->ca_cert && *cfg->ca_cert ? cfg->ca_cert : NULL;
  CURLcode rc = CURLE_OK;
  /* Stop at the first refused option; rc keeps its code. */
#define API_SETOPT(opt, val)                                                                       \
  do {                                                                                             \
    if (rc == CURLE_OK)                                                                            \
      rc = curl_easy_setopt(c, opt, val);                                                          \
  } while (0)
  API_SETOPT(CURLOPT_NOSIGNAL, 1L);
  API_SETOPT(CURLOPT_TIMEOUT_MS, timeout);
  API_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect);
  API_SETOPT(CURLOPT_SSL_VERIFYPEER, cfg->verify_peer ? 1L : 0L);
  API_SETOPT(CURLOPT_SSL_VERIFYHOST, cfg->verify_host ? 2L : 0L);
  if (ca)
    API_SETOPT(CURLOPT_CAINFO, ca);
  API_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
  API_SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  API_SETOPT(CURLOPT_ERRORBUFFER, api->errbuf);
  API_SETOPT(CURLOPT_WRITEFUNCTION, api__write);
  API_SETOPT(CURLOPT_WRITEDATA, api);
  API_SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)api->max_answer);
  API_SETOPT(CURLOPT_POST, 1L);
  API_SETOPT(CURLOPT_USERAGENT, "collectd-hes/" PACKAGE_VERSION);
#undef API_SETOPT
  if (rc != CURLE_OK) {
    hes_api_free(api);
    api__fail(NULL, err, HES_API_EINVAL, "curl refused an option: %s", curl_easy_strerror(rc));
    return NULL;
  }
  return api;
}
