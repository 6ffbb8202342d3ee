/* api: a client for the HES OpenAPI of the seed document (getToken, readSingle, readFrozen,
 * historySingle, historyFrozen, relay, readArchive, addArchive, removeArchive).
 *
 * One hes_api_t is one server seen from one thread: it owns one curl easy handle, reused so
 * the connection stays alive, and the cached token. It is NOT thread-safe: a thread that
 * talks to the HES makes its own (the token is per tenant on the HES side, so two handles
 * asking for it get the same token).
 *
 * Token: fetched on first use, renewed before `expireIn` runs out, and fetched again once
 * (then the call retried once) when a call fails in a way that means it was stale: HTTP 401
 * or 403, or a HES answer whose msg mentions the token. When a renewal fails while the token
 * in hand has more than HES_API_TOKEN_MARGIN seconds left, the call goes on with it (and the
 * next call tries to renew again); only then does the failure of getToken fail the call.
 *
 * Errors: every call returns HES_API_OK or an error kind, and fills a hes_api_error_t with
 * what a log line needs: the HES's code and msg, the HTTP status, or curl's error text.
 * Neither the error text nor anything else this module writes contains the password,
 * secret key or token. */
#ifndef HES_API_H
#define HES_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latency.h"
#include "push.h"

struct json_object;

#define HES_API_TOPIC_MAX 256
#define HES_API_MSG_MAX   256
/* Bodies of HES answers larger than this are refused (they are small: a planId, or a page). */
#define HES_API_DEFAULT_MAX_ANSWER (32u * 1024u * 1024u)
/* The seed says history ranges must lie "within half a year". */
#define HES_API_HISTORY_MAX_SECONDS (184 * 86400)
/* A token with less life left than this is not used any more. */
#define HES_API_TOKEN_MARGIN 10

typedef enum {
  HES_API_OK = 0,
  HES_API_EINVAL,     /* bad arguments: nothing was sent */
  HES_API_ETRANSPORT, /* connect, TLS, timeout...: msg is curl's error text */
  HES_API_EHTTP,      /* an HTTP status other than 200, body not a HES answer */
  HES_API_EHES,       /* the HES answered code != 200: code and msg are the HES's */
  HES_API_EANSWER,    /* 200, but the body is not the documented JSON */
  HES_API_ENOMEM,
} hes_api_result_t;

typedef struct {
  hes_api_result_t kind;
  long http_status;          /* 0 when no HTTP answer was read */
  int code;                  /* the HES's `code`, 0 when none */
  char msg[HES_API_MSG_MAX]; /* the HES's `msg`, curl's text, or ours; never a credential */
  char endpoint[32];         /* "readSingle", ... */
} hes_api_error_t;

typedef struct {
  const char *url; /* base, e.g. "https://hes.example.com"; the client appends /apis/openapi/... */
  const char *tenant_code;
  const char *username;
  const char *password;
  const char *secret_key;
  bool verify_peer; /* TLS */
  bool verify_host;
  const char *ca_cert; /* NULL: the system store */
  long timeout_ms;     /* whole-request timeout; 0: 10000 */
  size_t max_answer;   /* 0: HES_API_DEFAULT_MAX_ANSWER */
  /* Each HTTP request's duration (monotonic clock), failed ones included, is recorded into
   * it; NULL: not recorded. Borrowed: every handle made from this config records into the
   * same histogram (lock-free), which must outlive them. */
  hes_latency_t *latency;
} hes_api_config_t;

/* A created operation plan. The topic comes from `topicId` (reads) or `topic` (relay and
 * DCU calls), whichever the HES sent; "" when it sent neither. */
typedef struct {
  char plan_id[HES_PLAN_ID_MAX];
  char topic[HES_API_TOPIC_MAX];
} hes_api_plan_t;

typedef struct {
  const char *dev_addr;
  bool enabled;
} hes_api_archive_t;

typedef struct hes_api hes_api_t;

/* Copies cfg. Returns NULL (and err filled) for a bad config or no memory. */
hes_api_t *hes_api_new(const hes_api_config_t *cfg, hes_api_error_t *err);
void hes_api_free(hes_api_t *api);

/* Ensures a token valid at `now` (seconds, any clock that moves with real time; the same
 * clock for every call on this handle), fetching or renewing it as needed. */
hes_api_result_t hes_api_token(hes_api_t *api, double now, hes_api_error_t *err);
/* Forgets the token, so the next call fetches one. */
void hes_api_token_forget(hes_api_t *api);
/* Tokens fetched so far (for tests and self-metrics). */
uint64_t hes_api_token_fetches(const hes_api_t *api);
/* HTTP requests sent so far, getToken and retries included (for self-metrics): a call may
 * send up to four (getToken, the call, getToken again, the retry) or none (EINVAL). */
uint64_t hes_api_requests(const hes_api_t *api);

/* devList calls: meters[0..n-1], each a valid meter number. */
hes_api_result_t hes_api_read_single(hes_api_t *api, double now, const char *const *meters,
                                     size_t n, int cgcode, hes_api_plan_t *plan,
                                     hes_api_error_t *err);
/* start/end: "YYYY-MM-DD HH:MM:SS" in the HES's zone; end >= start, at most half a year. */
hes_api_result_t hes_api_read_frozen(hes_api_t *api, double now, const char *const *meters,
                                     size_t n, int cgcode, const char *start, const char *end,
                                     hes_api_plan_t *plan, hes_api_error_t *err);
/* control_mode: 1 open the breaker, 2 close it. */
hes_api_result_t hes_api_relay(hes_api_t *api, double now, const char *const *meters, size_t n,
                               int control_mode, hes_api_plan_t *plan, hes_api_error_t *err);
hes_api_result_t hes_api_read_archive(hes_api_t *api, double now, const char *dcu,
                                      hes_api_plan_t *plan, hes_api_error_t *err);
hes_api_result_t hes_api_add_archive(hes_api_t *api, double now, const char *dcu,
                                     const hes_api_archive_t *archives, size_t n,
                                     hes_api_plan_t *plan, hes_api_error_t *err);
hes_api_result_t hes_api_remove_archive(hes_api_t *api, double now, const char *dcu,
                                        const char *const *meters, size_t n, hes_api_plan_t *plan,
                                        hes_api_error_t *err);

/* History: a page iterator over curPage/pageSize.
 *
 *   hes_api_history_t *h = hes_api_history_new(api, true, meters, n, 1, start, end, 100, &err);
 *   hes_push_t page;
 *   while ((r = hes_api_history_next(h, now, &page, &err)) == HES_API_OK && page.entries > 0)
 *     ... page.readings[0 .. page.count) ...
 *   hes_api_history_free(h);
 *
 * The range is checked (format, order, half a year) before anything is sent. A page's
 * pointers stay valid until the next call. next returns HES_API_OK with an empty page
 * after the last one (total reached, or a short page). */
typedef struct hes_api_history hes_api_history_t;
hes_api_history_t *hes_api_history_new(hes_api_t *api, bool frozen, const char *const *meters,
                                       size_t n, int cgcode, const char *start, const char *end,
                                       int page_size, hes_api_error_t *err);
hes_api_result_t hes_api_history_next(hes_api_history_t *h, double now, hes_push_t *page,
                                      hes_api_error_t *err);
/* total as reported by the HES's first answer (0 before it). */
long hes_api_history_total(const hes_api_history_t *h);
void hes_api_history_free(hes_api_history_t *h);

/* Checks a "YYYY-MM-DD HH:MM:SS" pair: well-formed, end >= start, at most half a year. */
bool hes_api_range_valid(const char *start, const char *end, char *why, size_t whylen);

/* Parses a HES answer body (exposed for unit and fuzz tests): sets *data to the borrowed
 * "data" member of *root (which the caller frees with json_object_put). */
hes_api_result_t hes_api_parse_answer(const char *body, size_t len, struct json_object **root,
                                      struct json_object **data, hes_api_error_t *err);

const char *hes_api_result_string(hes_api_result_t r);

#endif
