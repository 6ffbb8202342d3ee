/* push: the parser of the HES's MQTT push messages (seed sections 3.2-3.9) into typed
 * structs, and of the "list" of history answers, which has the same entry shapes.
 *
 * Every byte comes from the network: sizes are bounded, every field's JSON type is checked,
 * unknown extra fields are ignored, and a rejection says exactly what was wrong. A push with
 * a broken top level (not JSON, no planId, a bad status) is rejected whole; a list entry that
 * is broken on its own is skipped and counted, so one bad meter does not cost the others.
 *
 * Hot path: a parser is reused for every message. hes_push_parse reads the bytes in one pass
 * with its own strict scanner (RFC 8259; no json-c tree) and allocates nothing per reading:
 * the result's strings are decoded into one buffer the parser owns, and its arrays grow
 * once and are reused. A repeated member name: the last one counts. hes_push_parse_list
 * walks a json-c tree and points into it. A parser is not thread-safe; use one per thread. */
#ifndef HES_PUSH_H
#define HES_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

#define HES_PUSH_DEFAULT_MAX_BYTES (16u * 1024u * 1024u)
#define HES_PLAN_ID_MAX            64 /* planId: 1..63 printable ASCII characters */

typedef enum {
  HES_PUSH_OK = 0,
  HES_PUSH_ETOOBIG, /* larger than the parser's max_bytes */
  HES_PUSH_ESYNTAX, /* not (complete) JSON */
  HES_PUSH_ESHAPE,  /* JSON, but not a push: wrong types, missing planId, bad status */
  HES_PUSH_ENOMEM,
  HES_PUSH_EINVAL, /* a NULL parser or result, or a NULL buffer with a length */
} hes_push_result_t;

typedef enum {
  HES_PUSH_SUCCESS, /* "00" */
  HES_PUSH_PARTIAL, /* "01" */
  HES_PUSH_FAILURE, /* "02" */
} hes_push_status_t;

typedef enum {
  HES_PUSH_EMPTY,    /* status only (DCU add/remove), or an empty or absent list */
  HES_PUSH_READINGS, /* single readings: devAddr, timestamp, cgcode, unit, value */
  HES_PUSH_CHANNELS, /* composite: devAddr, timestamp, channelData[] (flattened) */
  HES_PUSH_RELAY,    /* devAddr, successful */
  HES_PUSH_ARCHIVE,  /* devAddr, status, commType, moduleNext */
} hes_push_kind_t;

/* dev_addr: 1..32 characters of [0-9A-Za-z_-], NUL-terminated. Strings contain no NUL. */
typedef struct {
  const char *dev_addr;
  size_t dev_addr_len;
  int64_t timestamp_ms; /* 0 .. before 2200-01-01 */
  int cgcode;           /* 0 when the entry has none (historySingle answers) */
  const char *unit;     /* as sent, may be "", at most 32 bytes */
  const char *value;    /* as sent: "7340.740", at most 64 bytes; converting it is items' job */
  uint32_t entry;       /* index of the list entry: the channels of one meter share it */
} hes_push_reading_t;

typedef struct {
  const char *dev_addr;
  size_t dev_addr_len;
  bool successful;
} hes_push_relay_t;

typedef struct {
  const char *dev_addr;
  size_t dev_addr_len;
  bool enabled;            /* status "1" */
  const char *comm_type;   /* "" when absent */
  const char *module_next; /* "" when absent */
} hes_push_archive_t;

typedef struct {
  char plan_id[HES_PLAN_ID_MAX]; /* "" for a history list */
  hes_push_status_t status;
  /* Decided by the first list entry of a known shape; an entry of another shape is skipped.
   * A composite entry counts in `entries` once its devAddr, timestamp and channelData are
   * valid, even if each of its channels is skipped. */
  hes_push_kind_t kind;
  size_t count;             /* elements in the array that matches kind */
  size_t entries;           /* list entries accepted (meters); == count except for CHANNELS */
  size_t skipped;           /* list entries (or channels) rejected one by one */
  char skipped_reason[160]; /* why the first skipped one was rejected, "" if none */
  const hes_push_reading_t *readings; /* READINGS and CHANNELS */
  const hes_push_relay_t *relays;     /* RELAY */
  const hes_push_archive_t *archives; /* ARCHIVE */
} hes_push_t;

typedef struct hes_push_parser hes_push_parser_t;

/* max_bytes: the largest message accepted (0: HES_PUSH_DEFAULT_MAX_BYTES). */
hes_push_parser_t *hes_push_parser_new(size_t max_bytes);
void hes_push_parser_free(hes_push_parser_t *p);

/* Parses one push. On HES_PUSH_OK *out is filled; its pointers stay valid until the next
 * call with the same parser or hes_push_parser_free. On failure *out is zeroed and err
 * (if given) holds a one-line reason such as "data.list[3].timestamp: expected an integer". */
hes_push_result_t hes_push_parse(hes_push_parser_t *p, const void *buf, size_t len, hes_push_t *out,
                                 char *err, size_t errlen);

/* Parses the "list" array of a history answer, which has the entry shapes of a push.
 * plan_id is "" and status SUCCESS. Pointers refer into `list`, of which the parser takes a
 * reference until the next call: they stay valid until then, as for hes_push_parse. */
hes_push_result_t hes_push_parse_list(hes_push_parser_t *p, struct json_object *list,
                                      hes_push_t *out, char *err, size_t errlen);

const char *hes_push_result_string(hes_push_result_t r);

#endif
