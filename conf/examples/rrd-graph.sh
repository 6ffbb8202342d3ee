#!/bin/bash
# rrd-graph.sh: draws one meter's phase voltages (A, B, C; left axis, V) and its import
# energy register (right axis, kWh) from the RRD files of collectd's rrdtool plugin.
#
#   rrd-graph.sh RRD_DIR METER OUT.png [START]
#
# RRD_DIR is the rrdtool plugin's DataDir (holding <host>/hes-<METER>/) or one host's
# directory (holding hes-<METER>/). START is an rrdtool time, default "end-1h" (e.g.
# "end-10min", "end-1d"); the graph ends now. A series whose file is missing is left out;
# the script fails when none of the four exists. Needs rrdtool (Debian: rrdtool).
#
# rrdtool's right axis is a fixed linear map of the left one (--right-axis scale:shift), so a
# first pass prints the window's minimum and maximum and the energy line is drawn mapped
# onto the voltage range: both curves use the full height, each axis reads in its own unit.
set -euo pipefail

usage() {
  echo "usage: $0 RRD_DIR METER OUT.png [START]" >&2
  exit 2
}
if [ $# -lt 3 ] || [ $# -gt 4 ]; then usage; fi
rrd_dir=$1 meter=$2 out=$3 start=${4:-end-1h}
if [ -z "$meter" ] || [ -z "$out" ]; then usage; fi
command -v rrdtool >/dev/null || {
  echo "$0: rrdtool not found (Debian: apt-get install rrdtool)" >&2
  exit 1
}

if [ -d "$rrd_dir/hes-$meter" ]; then
  dir=$rrd_dir/hes-$meter
else
  dirs=()
  for d in "$rrd_dir"/*/"hes-$meter"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  if [ "${#dirs[@]}" -ne 1 ]; then
    echo "$0: ${#dirs[@]} directories hes-$meter under $rrd_dir (want one); pass the host directory" >&2
    exit 1
  fi
  dir=${dirs[0]}
fi

# ':' separates the fields of a DEF: escape it in paths.
esc() { printf '%s' "$1" | sed 's/:/\\:/g'; }

defs=()
phases=()
for ph in A B C; do
  f=$dir/voltage-$ph.rrd
  [ -f "$f" ] || continue
  defs+=("DEF:v$ph=$(esc "$f"):value:AVERAGE")
  phases+=("$ph")
done
have_e=0
if [ -f "$dir/energy_wh-import.rrd" ]; then
  defs+=("DEF:e=$(esc "$dir/energy_wh-import.rrd"):value:AVERAGE")
  have_e=1
fi
if [ "${#phases[@]}" = 0 ] && [ "$have_e" = 0 ]; then
  echo "$0: none of voltage-A/B/C.rrd, energy_wh-import.rrd in $dir" >&2
  exit 1
fi

# First pass: "name=value" lines of the minima and maxima (nan without data).
prints=()
for ph in "${phases[@]}"; do
  prints+=("VDEF:v${ph}lo=v$ph,MINIMUM" "VDEF:v${ph}hi=v$ph,MAXIMUM"
    "PRINT:v${ph}lo:vlo=%.6lf" "PRINT:v${ph}hi:vhi=%.6lf")
done
if [ "$have_e" = 1 ]; then
  prints+=("VDEF:elo=e,MINIMUM" "VDEF:ehi=e,MAXIMUM" "PRINT:elo:elo=%.6lf" "PRINT:ehi:ehi=%.6lf")
fi
ranges=$(rrdtool graph /dev/null --start "$start" --end now "${defs[@]}" "${prints[@]}")

# Left axis: the voltages with a margin (at least 1 V), in n grid steps of a round size g.
# Right axis: the energy imported since the window's lowest register value (the register
# itself has eight digits or more), in Wh or, from 10 kWh on, kWh, with a round step per
# grid line so that its labels read well.
read -r vlo vhi g vfmt e0 ediv eunit efmt scale < <(printf '%s\n' "$ranges" | awk -F= '
  function num(s) { return s ~ /^-?[0-9]+(\.[0-9]+)?$/ }
  function nice(x,  p, f) {
    p = 10 ^ int(log(x) / log(10)); if (p > x) p /= 10
    f = x / p
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p
  }
  function fmt(step) { return step >= 1 ? "%.0lf" : step >= 0.1 ? "%.1lf" : "%.2lf" }
  $1 == "vlo" && num($2) { if (!hv || $2 < vlo) vlo = $2; hv = 1 }
  $1 == "vhi" && num($2) { if (!hvh || $2 > vhi) vhi = $2; hvh = 1 }
  $1 == "elo" && num($2) { elo = $2; he = 1 }
  $1 == "ehi" && num($2) { ehi = $2 }
  END {
    if (!hv) { vlo = 0; vhi = 1 } else {
      m = (vhi - vlo) * 0.1; if (m < 0.5) m = 0.5; vlo -= m; vhi += m
    }
    if (!he) { elo = 0; ehi = 0 }
    span = ehi - elo
    if (span >= 10000) { div = 1000; unit = "kWh" } else { div = 1; unit = "Wh" }
    top = span / div; if (top <= 0) top = 1
    # Without voltages the energy gets the left axis itself (scale 1).
    if (!hv) { vlo = 0; vhi = top }
    g = nice((vhi - vlo) / 8)
    f = int(vlo / g); if (f * g > vlo) f--
    vlo = f * g
    n = int((vhi - vlo) / g); if (vlo + n * g < vhi) n++
    vhi = vlo + n * g
    estep = hv ? nice(top / n) : g
    printf "%.6f %.6f %.6g %s %.6f %d %s %s %.9g\n", vlo, vhi, g, fmt(g), elo, div, unit,
      fmt(estep), estep / g
  }')

declare -A color=([A]='#D62728' [B]='#2CA02C' [C]='#1F77B4')

args=(--start "$start" --end now --width 800 --height 300 --imgformat PNG
  --title "Meter $meter: phase voltages and import energy"
  --vertical-label "V" --lower-limit "$vlo" --upper-limit "$vhi" --rigid
  --units-exponent 0 --left-axis-format "$vfmt" --y-grid "$g:1")
draw=()
for ph in "${phases[@]}"; do
  draw+=("LINE2:v$ph${color[$ph]}:Phase $ph"
    "GPRINT:v$ph:LAST:last %7.2lf V" "GPRINT:v$ph:MIN:min %7.2lf V"
    "GPRINT:v$ph:MAX:max %7.2lf V\\n")
done
if [ "$have_e" = 1 ] && [ "${#phases[@]}" = 0 ]; then
  args+=(--vertical-label "$eunit imported")
  draw+=("CDEF:ed=e,$e0,-,$ediv,/" "LINE2:ed#FF7F0E:Import energy in the window\\n"
    "CDEF:ek=e,1000,/" "GPRINT:ek:LAST:   register last %.3lf kWh"
    "GPRINT:ed:LAST:   imported %.1lf $eunit\\n")
elif [ "$have_e" = 1 ]; then
  # right = left * scale + shift, with right = 0 at the bottom of the left axis
  shift=$(awk -v s="$scale" -v l="$vlo" 'BEGIN { printf "%.9g", -l * s }')
  args+=(--right-axis "$scale:$shift" --right-axis-label "$eunit imported"
    --right-axis-format "$efmt")
  draw+=("CDEF:ed=e,$e0,-,$ediv,/" "CDEF:eplot=ed,$scale,/,$vlo,+"
    "LINE2:eplot#FF7F0E:Import energy in the window (right axis)\\n"
    "CDEF:ek=e,1000,/" "GPRINT:ek:LAST:   register last %.3lf kWh"
    "GPRINT:ed:LAST:   imported %.1lf $eunit\\n")
fi

rrdtool graph "$out" "${args[@]}" "${defs[@]}" "${draw[@]}" >/dev/null
