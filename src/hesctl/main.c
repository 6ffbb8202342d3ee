/* main.c: hesctl, the command-line tool of collectd-hes, for an operator at a terminal. It reads
 * meters, pages through history, switches breakers and edits DCU archives through the same
 * modules as the plugin (api, mqtt, plans, push, items, meters) and the same configuration
 * file, checked by the same rules (conf_tree, conf), and prints what the HES pushed back as a
 * table, JSON or CSV.
 *
 * Flow of a command that makes a plan: subscribe to /<TenantCode>/# (own client id, clean
 * session) and wait until the subscription is acknowledged, THEN send the request through
 * the session module (src/lib/session.h), the plugin's request path: a push that beats the
 * HTTP answer is parked and replayed once the plan is registered, and each push is routed to
 * hesctl's sink (session.c), which turns it into result rows under hesctl's lock.
 *
 * Exit codes (also in hesctl(1)): 0 all ok, 1 some meters failed or are missing, 2 usage
 * error (or a relay command not confirmed), 3 HES or HTTP error, 4 MQTT error or no push at
 * all for a plan within --timeout, 5 configuration error, 6 pushes came but were rejected
 * (not parseable, of the wrong kind, or no room to keep them) and a plan got no usable one.
 *
 * This file: the arguments, and main. */
#include "config.h"

#include "hesctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- arguments ------------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fputs(
      "usage: hesctl [options] read METER... --item ITEM [--item ITEM...] [--from T --to T]\n"
      "       hesctl [options] history METER... --item ITEM --from T --to T\n"
      "       hesctl [options] relay open|close METER... [--yes]\n"
      "       hesctl [options] dcu list DCU\n"
      "       hesctl [options] dcu add|remove DCU METER...\n"
      "       hesctl -c FILE check   check the <Plugin hes> block as the plugin would\n"
      "\n"
      "Connection (a <Plugin hes> <Server> block of the collectd config, or flags):\n"
      "  -c, --config FILE      read the plugin's collectd config file\n"
      "  -s, --server NAME      the <Server \"NAME\"> block, when there are several\n"
      "      --url URL          HES base URL (the tool appends /apis/openapi/...)\n"
      "      --tenant CODE      TenantCode\n"
      "      --username USER    Username\n"
      "      --broker HOST[:PORT]  the MQTT broker the HES pushes to\n"
      "      --mqtt-user USER   MQTT user (its password: HES_MQTT_PASSWORD)\n"
      "  Secrets never go on the command line (ps shows it): the HES password and secret key\n"
      "  come from the config or the environment variables HES_PASSWORD and HES_SECRET_KEY.\n"
      "\n"
      "What and how:\n"
      "  -i, --item ITEM        voltageA, importActiveEnergy, ..., dailyBilling, monthlyBilling,\n"
      "                         loadProfile, or a cgcode (repeatable for read)\n"
      "      --from T, --to T   \"YYYY-MM-DD[ HH:MM:SS]\" in the HES's time zone (the\n"
      "                         config's TimeZone, else TZ): frozen reads and history\n"
      "  -f, --meter-file FILE  more meters, one a line, '#' comments\n"
      "      --all              read: every meter the plugin reads (with -c: Meter, MeterFile,\n"
      "                         the DCU lists kept in StateDir, refreshed once)\n"
      "  -t, --timeout SEC      wait for the pushes this long (default 60)\n"
      "      --batch-size N     meters per request (default 100)\n"
      "      --page-size N      history entries per page (default 100)\n"
      "      --raw              values and units as the HES sent them (default: SI units)\n"
      "      --disabled         dcu add: add the meters disabled (status 0)\n"
      "  -y, --yes              relay: do not ask for confirmation\n"
      "      --json, --csv      machine-readable output (default: a table)\n"
      "  -h, --help, -V, --version\n"
      "\n"
      "Exit status: 0 all ok; 1 some meters failed or are missing; 2 usage error or relay not\n"
      "confirmed; 3 HES or HTTP error; 4 MQTT error or no push within --timeout;\n"
      "5 configuration error. See hesctl(1).\n",
      f);
}

static bool parse_long_arg(const char *name, const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
    errx_("%s %s: expected a whole number from %ld to %ld", name, s, lo, hi);
    return false;
  }
  *out = v;
  return true;
}

/* "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS" (or with a T): the HES's form, in out[20]. */
static bool parse_time_arg(const char *name, const char *s, bool end_of_day, char *out) {
  size_t len = strlen(s);
  if (len == 10) {
    snprintf(out, 20, "%s %s", s, end_of_day ? "23:59:59" : "00:00:00");
  } else if (len == 19 && (s[10] == ' ' || s[10] == 'T')) {
    memcpy(out, s, 19);
    out[10] = ' ';
    out[19] = '\0';
  } else {
    errx_("%s \"%.40s\": expected YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\"", name, s);
    return false;
  }
  char why[128];
  if (!hes_api_range_valid(out, out, why, sizeof(why))) {
    errx_("%s \"%.40s\": %s", name, s, why);
    return false;
  }
  return true;
}

static int add_meter(ctl_t *c, const char *m) {
  hes_meters_result_t r = hes_meters_add(c->meters, m);
  if (r == HES_METERS_EDUPLICATE)
    return 0; /* listed twice: asked once */
  if (r == HES_METERS_EINVAL) {
    errx_("\"%.40s\" is not a meter number (1..%d of 0-9 A-Z a-z _ -)", m, HES_METER_MAX_LEN);
    return EXIT_USAGE;
  }
  if (r != HES_METERS_OK) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  return 0;
}

enum {
  OPT_URL = 256,
  OPT_TENANT,
  OPT_USERNAME,
  OPT_BROKER,
  OPT_MQTT_USER,
  OPT_FROM,
  OPT_TO,
  OPT_JSON,
  OPT_CSV,
  OPT_RAW,
  OPT_PAGE,
  OPT_BATCH,
  OPT_DISABLED,
  OPT_ALL,
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"server", required_argument, NULL, 's'},
    {"url", required_argument, NULL, OPT_URL},
    {"tenant", required_argument, NULL, OPT_TENANT},
    {"username", required_argument, NULL, OPT_USERNAME},
    {"broker", required_argument, NULL, OPT_BROKER},
    {"mqtt-user", required_argument, NULL, OPT_MQTT_USER},
    {"item", required_argument, NULL, 'i'},
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"meter-file", required_argument, NULL, 'f'},
    {"timeout", required_argument, NULL, 't'},
    {"batch-size", required_argument, NULL, OPT_BATCH},
    {"page-size", required_argument, NULL, OPT_PAGE},
    {"raw", no_argument, NULL, OPT_RAW},
    {"disabled", no_argument, NULL, OPT_DISABLED},
    {"all", no_argument, NULL, OPT_ALL},
    {"yes", no_argument, NULL, 'y'},
    {"json", no_argument, NULL, OPT_JSON},
    {"csv", no_argument, NULL, OPT_CSV},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Returns -1 to go on, or the exit code. */
static int parse_args(ctl_t *c, int argc, char **argv) {
  opts_t *o = &c->opt;
  o->timeout = 60;
  o->page_size = 100;
  o->batch_size = CTL_DEFAULT_BATCH;
  int ch;
  long n;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":c:s:i:f:t:yhV", long_opts, NULL)) != -1) {
    switch (ch) {
    case 'c':
      o->config = optarg;
      break;
    case 's':
      o->server = optarg;
      break;
    case OPT_URL:
      o->url = optarg;
      break;
    case OPT_TENANT:
      o->tenant = optarg;
      break;
    case OPT_USERNAME:
      o->username = optarg;
      break;
    case OPT_BROKER:
      o->broker = optarg;
      break;
    case OPT_MQTT_USER:
      o->mqtt_user = optarg;
      break;
    case 'i':
      if (o->nitems == CTL_ITEMS_MAX) {
        errx_("at most %d --item", CTL_ITEMS_MAX);
        return EXIT_USAGE;
      }
      o->items[o->nitems++] = optarg;
      break;
    case OPT_FROM:
      o->from = optarg;
      break;
    case OPT_TO:
      o->to = optarg;
      break;
    case 'f':
      o->meter_file = optarg;
      break;
    case 't':
      if (!parse_long_arg("--timeout", optarg, 1, 86400, &n))
        return EXIT_USAGE;
      o->timeout = (double)n;
      break;
    case OPT_BATCH:
      if (!parse_long_arg("--batch-size", optarg, 1, 10000, &o->batch_size))
        return EXIT_USAGE;
      break;
    case OPT_PAGE:
      if (!parse_long_arg("--page-size", optarg, 1, 10000, &o->page_size))
        return EXIT_USAGE;
      break;
    case OPT_RAW:
      o->raw = true;
      break;
    case OPT_DISABLED:
      o->disabled = true;
      break;
    case OPT_ALL:
      o->all = true;
      break;
    case 'y':
      o->yes = true;
      break;
    case OPT_JSON:
      o->fmt = FMT_JSON;
      break;
    case OPT_CSV:
      o->fmt = FMT_CSV;
      break;
    case 'h':
      usage(stdout);
      return EXIT_ALL_OK;
    case 'V':
      printf("hesctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
      return EXIT_ALL_OK;
    case ':':
      errx_("%s needs a value (see --help)", argv[optind - 1]);
      return EXIT_USAGE;
    default:
      errx_("unknown option %s (see --help)", argv[optind - 1]);
      return EXIT_USAGE;
    }
  }
  char **args = argv + optind;
  int nargs = argc - optind;
  if (nargs < 1) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = args[0];
  int first_meter = 1;
  if (strcmp(cmd, "check") == 0) {
    if (nargs != 1 || o->config == NULL) {
      errx_("check: usage: hesctl -c FILE check");
      return EXIT_USAGE;
    }
    c->op = OP_CHECK;
    return -1;
  }
  if (strcmp(cmd, "read") == 0 || strcmp(cmd, "history") == 0) {
    c->op = OP_READ;
  } else if (strcmp(cmd, "relay") == 0) {
    c->op = OP_RELAY;
    if (nargs < 2 || (strcmp(args[1], "open") != 0 && strcmp(args[1], "close") != 0)) {
      errx_("relay: expected open or close, then meters");
      return EXIT_USAGE;
    }
    c->control_mode = strcmp(args[1], "open") == 0 ? 1 : 2;
    first_meter = 2;
  } else if (strcmp(cmd, "dcu") == 0) {
    if (nargs < 3) {
      errx_("dcu: expected list DCU, add DCU METER... or remove DCU METER...");
      return EXIT_USAGE;
    }
    if (strcmp(args[1], "list") == 0)
      c->op = OP_DCU_LIST;
    else if (strcmp(args[1], "add") == 0)
      c->op = OP_DCU_ADD;
    else if (strcmp(args[1], "remove") == 0)
      c->op = OP_DCU_REMOVE;
    else {
      errx_("dcu: expected list, add or remove, not \"%.20s\"", args[1]);
      return EXIT_USAGE;
    }
    c->dcu = args[2];
    if (!hes_meter_is_valid(c->dcu)) {
      errx_("\"%.40s\" is not a DCU number", c->dcu);
      return EXIT_USAGE;
    }
    if (c->op == OP_DCU_LIST && nargs > 3) {
      errx_("dcu list: takes one DCU and no meters");
      return EXIT_USAGE;
    }
    first_meter = 3;
  } else {
    errx_("unknown command \"%.20s\" (see --help)", cmd);
    return EXIT_USAGE;
  }
  bool history = strcmp(cmd, "history") == 0;
  c->meters = hes_meters_new();
  if (c->meters == NULL) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  for (int i = first_meter; i < nargs; i++) {
    int r = add_meter(c, args[i]);
    if (r != 0)
      return r;
  }
  if (o->meter_file != NULL) {
    size_t bad = 0;
    hes_meters_result_t r = hes_meters_add_file(c->meters, o->meter_file, &bad);
    if (r == HES_METERS_EIO) {
      errx_("%s: %s", o->meter_file, strerror(errno));
      return EXIT_USAGE;
    }
    if (r == HES_METERS_EDUPLICATE) {
      /* the module stops at a duplicate: going on would drop the meters after it */
      errx_("%s:%zu: a meter listed twice (in the file, or also on the command line)",
            o->meter_file, bad);
      return EXIT_USAGE;
    }
    if (r != HES_METERS_OK) {
      errx_("%s:%zu: not a meter number", o->meter_file, bad);
      return EXIT_USAGE;
    }
  }
  if (o->all && (c->op != OP_READ || history || o->config == NULL || first_meter < nargs ||
                 o->meter_file != NULL)) {
    errx_("--all: usage: hesctl -c FILE read --all --item ITEM (no meters of its own)");
    return EXIT_USAGE;
  }
  c->nmeters = hes_meters_count(c->meters);
  if (c->op != OP_DCU_LIST && c->nmeters == 0 && !o->all) {
    errx_("%s: no meters given", cmd);
    return EXIT_USAGE;
  }
  if (c->nmeters > CTL_MEMBERS_MAX) {
    errx_("%zu meters: at most %d at a time", c->nmeters, CTL_MEMBERS_MAX);
    return EXIT_USAGE;
  }
  if (hes_meters_seal(c->meters) != HES_METERS_OK) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  c->meter_list = calloc(c->nmeters ? c->nmeters : 1, sizeof(*c->meter_list));
  if (c->meter_list == NULL) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  for (size_t i = 0; i < c->nmeters; i++)
    c->meter_list[i] = hes_meters_at(c->meters, (uint32_t)i);

  if (c->op == OP_READ) {
    if (o->nitems == 0) {
      errx_("%s: --item is required", cmd);
      return EXIT_USAGE;
    }
    if (history && o->nitems > 1) {
      errx_("history: one --item at a time");
      return EXIT_USAGE;
    }
    bool frozen = false, single = false;
    for (size_t i = 0; i < o->nitems; i++) {
      const hes_item_t *it = hes_item_parse(o->items[i]);
      if (it == NULL) {
        errx_("--item %.40s: unknown item (see hesctl(1) for the list)", o->items[i]);
        return EXIT_USAGE;
      }
      c->items[c->nitems++] = it;
      frozen |= it->category == HES_ITEM_COMPOSITE;
      single |= it->category == HES_ITEM_SINGLE;
    }
    bool ranged = history || frozen;
    if (!history && frozen && single) {
      errx_("read: frozen items (%s) and instantaneous ones cannot be mixed",
            "dailyBilling, monthlyBilling, loadProfile");
      return EXIT_USAGE;
    }
    if (ranged && (o->from == NULL || o->to == NULL)) {
      errx_("%s %s: --from and --to are required", cmd, history ? "" : "of a frozen item");
      return EXIT_USAGE;
    }
    if (!ranged && (o->from != NULL || o->to != NULL)) {
      errx_("read: --from and --to are for frozen items (and history) only");
      return EXIT_USAGE;
    }
    if (ranged) {
      char why[128];
      if (!parse_time_arg("--from", o->from, false, c->from) ||
          !parse_time_arg("--to", o->to, true, c->to))
        return EXIT_USAGE;
      if (!hes_api_range_valid(c->from, c->to, why, sizeof(why))) {
        errx_("--from %s --to %s: %s", c->from, c->to, why);
        return EXIT_USAGE;
      }
    }
  } else if (o->nitems > 0 || o->from != NULL || o->to != NULL) {
    errx_("%s: --item, --from and --to are for read and history", cmd);
    return EXIT_USAGE;
  }
  if (o->disabled && c->op != OP_DCU_ADD) {
    errx_("--disabled is for dcu add");
    return EXIT_USAGE;
  }
  if (o->yes && c->op != OP_RELAY) {
    errx_("--yes is for relay");
    return EXIT_USAGE;
  }
  return history ? -2 : -1;
}

int main(int argc, char **argv) {
  static ctl_t ctl; /* zeroed */
  ctl_t *c = &ctl;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);

  catch_interrupts();
  int rc = parse_args(c, argc, argv);
  bool history = rc == -2;
  if (rc < 0 && settings_init(&c->set) != 0) {
    errx_("out of memory");
    rc = EXIT_CONFIG;
  }
  if (rc >= 0)
    goto out;
  rc = EXIT_ALL_OK;
  if (c->op == OP_CHECK) {
    rc = check_config(c->opt.config) == 0 ? EXIT_ALL_OK : EXIT_CONFIG;
    goto out;
  }
  if (c->opt.config != NULL && load_config(c->opt.config, c->opt.server, &c->set) != 0) {
    rc = EXIT_CONFIG;
    goto out;
  }
  if (c->opt.config == NULL && c->opt.server != NULL) {
    errx_("--server needs --config");
    rc = EXIT_USAGE;
    goto out;
  }
  if (settings_finish(&c->set, &c->opt) != 0) {
    rc = EXIT_CONFIG;
    goto out;
  }
  {
    /* The HES's zone, for --from/--to and the times printed: the config's TimeZone, else TZ,
     * else the host's. The tz module reads the zone itself, as the plugin does. */
    const char *zone = c->set.srv->time_zone;
    if (zone == NULL && getenv("TZ") != NULL && getenv("TZ")[0] != '\0')
      zone = getenv("TZ")[0] == ':' ? getenv("TZ") + 1 : getenv("TZ");
    char why[256] = "";
    c->tz = hes_tz_load(zone, why, sizeof(why));
    if (c->tz == NULL) {
      errx_("TimeZone \"%s\": %s", zone != NULL ? zone : "", why);
      rc = EXIT_CONFIG;
      goto out;
    }
  }
  rc = session_api(c);
  if (rc == EXIT_ALL_OK && c->opt.all)
    rc = roster_meters(c);
  if (rc != EXIT_ALL_OK)
    goto out;
  if (history)
    rc = cmd_history(c);
  else if (c->op == OP_READ)
    rc = cmd_read(c);
  else if (c->op == OP_RELAY)
    rc = cmd_relay(c);
  else
    rc = cmd_dcu(c);
  if (interrupted) {
    errx_("interrupted");
    rc = EXIT_INTERRUPTED;
  }

out:
  session_free(c);
  hes_tz_free(c->tz);
  hes_meters_free(c->meters);
  free(c->meter_list);
  free(c->plans_made);
  free(c->rows);
  free(c->answered);
  settings_free(&c->set);
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
  if (fflush(stdout) != 0 && rc == EXIT_ALL_OK)
    rc = EXIT_SOME_FAILED;
  return rc;
}
