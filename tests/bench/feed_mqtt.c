/* feed_mqtt: feeds collectd's stock mqtt plugin for tests/bench/compare.sh the way it can
 * take readings: one value per MQTT message, topic "hes/<host>/hes-<meter>/<type-instance>"
 * (the mqtt plugin keeps the last three levels as the identifier) and payload
 * "<epoch>:<value>". Publishes meters x items values per second (as the simulator's readings
 * for the hes plugin), QoS 0, for the given number of seconds.
 *
 *   feed_mqtt HOST PORT HOSTNAME METERS METER_BASE RATE SECONDS
 *
 * Built by compare.sh: gcc -O2 feed_mqtt.c -lmosquitto */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *const items[] = {"voltage-A", "current-A", "power-total", "reactive_power-A",
                                    "power_factor-total"};
#define NITEMS (sizeof items / sizeof items[0])

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: feed_mqtt HOST PORT HOSTNAME METERS METER_BASE RATE SECONDS\n");
    return 2;
  }
  const char *host = argv[1], *hostname = argv[3];
  int port = atoi(argv[2]);
  long meters = atol(argv[4]);
  long long base = atoll(argv[5]);
  double rate = atof(argv[6]), secs = atof(argv[7]);
  mosquitto_lib_init();
  struct mosquitto *m = mosquitto_new("feed-mqtt", true, NULL);
  if (m == NULL || mosquitto_connect(m, host, port, 30) != MOSQ_ERR_SUCCESS ||
      mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS) {
    fprintf(stderr, "feed_mqtt: cannot connect to %s:%d\n", host, port);
    return 1;
  }
  double t0 = now(), sent = 0;
  long i = 0;
  char topic[128], payload[64];
  while (now() - t0 < secs) {
    /* Paced in 1 ms slices: at most `rate` values a second. */
    double due = (now() - t0) * rate;
    while (sent < due) {
      long meter = i % meters;
      size_t item = (size_t)(i / meters) % NITEMS;
      snprintf(topic, sizeof topic, "hes/%s/hes-%lld/%s", hostname, base + meter, items[item]);
      int n = snprintf(payload, sizeof payload, "%.3f:%.3f", (double)time(NULL),
                       230.0 + (double)(meter % 100) / 10.0);
      if (mosquitto_publish(m, NULL, topic, n, payload, 0, false) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "feed_mqtt: publish failed\n");
        return 1;
      }
      sent++;
      i++;
    }
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  mosquitto_disconnect(m);
  mosquitto_loop_stop(m, false);
  mosquitto_destroy(m);
  mosquitto_lib_cleanup();
  printf("%.0f\n", sent);
  return 0;
}
