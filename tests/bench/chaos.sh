#!/bin/bash
# tests/bench/chaos.sh [MINUTES [BUILD_DIR]]: the soak (tests/bench/soak.sh, same load and
# figures) under faults: the broker restarted every 5 minutes, 60-second windows of 30% HTTP
# 500 answers and of 30% "System busy" answers every 10 minutes, tokens that live 300 s, a
# second <Server> reading dailyBilling from a simulator whose history answers are 1.5 s late,
# and the meter list swapped every 10 minutes (CHAOS_METER_SWAP=0: not). Pass: the soak's
# memory, descriptor and thread criteria, memory counted from the end of the first full cycle
# of faults (15 minutes; so `chaos.sh 135` is that and 2 hours); every reading the simulator delivered dispatched,
# counted missing or (a meter that had left) rejected, so nothing twice; no [error] line but
# the injected faults'. collectd runs with the service's environment, as in soak.sh (one
# malloc arena; SOAK_COLLECTD_ENV= for glibc's defaults). Knobs: soak.sh's, and
# CHAOS_RESTART, CHAOS_CYCLE, CHAOS_WINDOW, CHAOS_SWAP (seconds), CHAOS_TOKEN_LIFETIME,
# CHAOS_HISTORY_MS, CHAOS_BILLING_METERS.
SOAK_CHAOS=1 exec bash "$(dirname "${BASH_SOURCE[0]}")/soak.sh" "$@"
