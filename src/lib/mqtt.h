/* mqtt: one libmosquitto session to the broker the HES pushes to, kept alive for as long
 * as the owner wants it: subscribed to one topic filter before anything else, resubscribed
 * on every connect whose session the broker did not keep, reconnected with bounded
 * exponential backoff and jitter, TLS verified against the system CA store unless told
 * otherwise. A host name with IPv6 and IPv4 addresses is tried family by family (in the
 * resolver's order) within one attempt, so "localhost" reaches a broker on 127.0.0.1 only
 * even where it resolves to ::1 first; TLS verifies the configured name either way. When no
 * family answers, one report names host:port and what each family's addresses gave.
 *
 * Knows nothing of the HES: messages go to the owner's callback as they arrive.
 *
 * Threads: hes_mqtt_run() is the loop and runs in a thread of the owner's choosing (the
 * plugin uses plugin_thread_create so values carry collectd's context). The callbacks run
 * in that thread. hes_mqtt_stop() and hes_mqtt_ready() may be called from any thread. */
#ifndef HES_MQTT_H
#define HES_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *host;
  int port;             /* 0: 1883, or 8883 with TLS */
  const char *user;     /* NULL: none */
  const char *password; /* NULL: none */
  const char *client_id;
  int qos;               /* 0..2 */
  bool clean_session;    /* false: a persistent session loses nothing across reconnects */
  int keepalive;         /* seconds; 0: 30 */
  bool tls;              /* also implied by ca_cert / cert_file */
  const char *ca_cert;   /* NULL with tls: the system store (/etc/ssl/certs) */
  const char *cert_file; /* client certificate, optional */
  const char *key_file;
  const char *tls_protocol; /* "tlsv1.2", "tlsv1.3", NULL: library default */
  const char *topic;        /* the one filter to subscribe, e.g. "/1000000067/#" */
  double backoff_min;       /* seconds; 0: 1 */
  double backoff_max;       /* seconds; 0: 60 */
  /* seconds from the start of a connection attempt to the broker's CONNACK; 0: 10. Beyond
   * it the attempt counts as failed (a peer that accepts TCP but never speaks MQTT, or TLS
   * offered to a plain listener). */
  double connect_timeout;

  /* payload is NOT NUL-terminated; both pointers valid during the call only. */
  void (*on_message)(void *ctx, const char *topic, const void *payload, size_t len);
  /* ready: connected and subscribed (true), or the connection was lost (false). Also called
   * with false while not ready when an attempt fails, once per distinct reason, so a broker
   * that stays down is reported once, not on every retry. why never holds the password. */
  void (*on_state)(void *ctx, bool ready, const char *why);
  void *ctx;
} hes_mqtt_config_t;

typedef struct hes_mqtt hes_mqtt_t;

/* Copies cfg; does not connect yet. NULL (and err filled) for a bad config. */
hes_mqtt_t *hes_mqtt_new(const hes_mqtt_config_t *cfg, char *err, size_t errlen);
/* Connects, subscribes and handles messages until hes_mqtt_stop; reconnects on its own.
 * Returns 0 after stop (having sent DISCONNECT if connected), -1 if m is NULL or another
 * run of m is in progress. May be called again after it returned: the session resumes. */
int hes_mqtt_run(hes_mqtt_t *m);
/* Ends the run in progress within about 0.5 s, or, if none is, the next one at once. */
void hes_mqtt_stop(hes_mqtt_t *m);
/* Connected and the subscription acknowledged (or kept by the broker's session). */
bool hes_mqtt_ready(const hes_mqtt_t *m);
/* Waits up to timeout seconds for hes_mqtt_ready. */
bool hes_mqtt_wait_ready(hes_mqtt_t *m, double timeout);
/* Connections the broker accepted (CONNACK 0) since hes_mqtt_new. */
uint64_t hes_mqtt_connects(const hes_mqtt_t *m);
/* Connections accepted after the first: the broker dropped us and we came back. */
uint64_t hes_mqtt_reconnects(const hes_mqtt_t *m);
/* Connection attempts started since hes_mqtt_new, failed or not. */
uint64_t hes_mqtt_attempts(const hes_mqtt_t *m);
/* Disconnects (if run is not running) and frees. Call after run returned. */
void hes_mqtt_free(hes_mqtt_t *m);

#endif
