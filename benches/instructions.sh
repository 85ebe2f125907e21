#!/usr/bin/env bash
# Instructions per cached GetAllocation, counted by valgrind's callgrind in
# the release service (and per call of the load benchmark's bare tonic
# echo), for the configurations benches/h2load.sh measures:
#
#   default      the defaults: a text log line per request, metrics on
#   quiet        RUST_LOG=warn, metrics on
#   metrics off  RUST_LOG=warn, METRICS=false
#
# Throughput on a shared machine moves by ±20 % from run to run; these
# counts do not depend on what else the machine is doing (the echo's repeat
# to 0.2 %, the service's to a few per cent, hence the rounds), so they
# show what a change to the request path costs or saves. They count
# the service's own work in user space only: not the kernel's, and not the
# load generator's. Each configuration is warmed with 500 calls, then
# counted over CALLS calls from h2load (16 connections, 8 calls in flight
# on each).
#
#   benches/instructions.sh          (ROUNDS=3 CALLS=4000; VA_BIN to count another build)
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(run ...) stops the script
cd "$(dirname "$0")/.."
root=$PWD
CALLS=${CALLS:-4000}
ROUNDS=${ROUNDS:-3}
for tool in h2load valgrind callgrind_control; do
  command -v "$tool" >/dev/null || {
    echo "instructions.sh: install $tool (apt-get install nghttp2-client valgrind)" >&2
    exit 1
  }
done

load=$(cargo bench --bench load --no-run 2>&1 | sed -n 's/.*Executable benches\/load\/main.rs (\(.*\))/\1/p')
VA_BIN=${VA_BIN:-$root/target/release/vehicle-allocation}
[[ -x $load && -x $VA_BIN ]] || { echo "instructions.sh: no release build" >&2; exit 1; }

source tests/support/demo-server.sh
source benches/support.sh
tmp=$(mktemp -d)
# Processes are started in subshells ($(run ...)), so their pids go to a file.
cleanup() {
  local pid
  for pid in $(cat "$tmp/pids" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$tmp"
}
started() { # the pid of a process just started in the background
  echo "$1" >>"$tmp/pids"
  disown "$1" # killed when counted, with no "Killed" line from the shell
}
trap cleanup EXIT

"$VA_BIN" seed --data-dir "$tmp/seeded" --employees 1000 --vehicles 1000 --allocations 100000 >/dev/null 2>&1

echo_frame "$tmp/echo.bin"

# h2load's calls of `path` on `port` with `body`; fails unless every one gets an
# HTTP 200 (which gRPC errors get too: `run` checks one call's grpc-status).
h2() { # port path body calls
  h2load -n "$4" -c 16 -m 8 -d "$3" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1$2" | grep -q "status codes: $4 2xx" \
    || { echo "instructions.sh: not every call of $2 answered" >&2; exit 1; }
}

# counted PID OUT PORT PATH BODY: instructions per call of the process PID
# (running under callgrind, writing OUT) over CALLS warm calls.
counted() {
  h2 "$3" "$4" "$5" 500
  callgrind_control -z "$1" >/dev/null 2>&1
  h2 "$3" "$4" "$5" "$CALLS"
  callgrind_control -d "$1" >/dev/null 2>&1
  for _ in $(seq 100); do [[ -s $2.1 ]] && break; sleep 0.1; done
  echo $(($(sed -n 's/^summary: //p' "$2.1") / CALLS))
  kill -9 "$1" 2>/dev/null || true
  sed -i "/^$1\$/d" "$tmp/pids" # gone: cleanup must not signal a reused pid
}

# run CONFIG: instructions per call of CONFIG, started afresh.
run() {
  local config=$1 env=() gp hp out
  if [[ $config == echo ]]; then
    read -r gp < <(free_ports 1)
    out=$(mktemp -u "$tmp/callgrind.XXXXXX")
    valgrind --tool=callgrind --dump-line=no --callgrind-out-file="$out" \
      "$load" --serve-echo "127.0.0.1:$gp" >/dev/null 2>&1 &
    local pid=$!
    started "$pid"
    for _ in $(seq 300); do (echo >"/dev/tcp/127.0.0.1/$gp") 2>/dev/null && break; sleep 0.1; done
    counted "$pid" "$out" "$gp" /bench.v1.Echo/Echo "$tmp/echo.bin"
    return
  fi
  read -ra env < <(config_env "$config")
  read -r gp hp < <(free_ports 2)
  rm -rf "$tmp/data" && cp -r "$tmp/seeded" "$tmp/data"
  out=$(mktemp -u "$tmp/callgrind.XXXXXX")
  env "${env[@]}" valgrind --tool=callgrind --dump-line=no --callgrind-out-file="$out" \
    "$VA_BIN" serve --data-dir "$tmp/data" \
    --grpc-addr "127.0.0.1:$gp" --http-addr "127.0.0.1:$hp" >"$tmp/server.log" 2>&1 &
  local pid=$!
  started "$pid"
  wait_ready "$hp" 1200 || { echo "instructions.sh: the service ($config) never got ready" >&2; exit 1; }
  get_frame "$tmp/get.bin" "$hp" "$gp" \
    || { echo "instructions.sh: GetAllocation did not answer OK ($config)" >&2; exit 1; }
  counted "$pid" "$out" "$gp" /vehicle_allocation.v1.AllocationService/GetAllocation "$tmp/get.bin"
}

# The service's counts move by a few per cent from start to start (how
# calls fall into HTTP/2 writes and cache housekeeping under valgrind's one
# thread at a time), so each configuration is started ROUNDS times.
configs=(echo default quiet "metrics off")
declare -A results
for round in $(seq "$ROUNDS"); do
  for config in "${configs[@]}"; do
    count=$(run "$config")
    results[$config]+="$count "
    echo "round $round: $config $count instructions per call" >&2
  done
done

echo_median=$(median <<<"${results[echo]}")
printf '| configuration | instructions per call (each round) | median | / echo |\n| --- | --- | ---: | ---: |\n'
for config in "${configs[@]}"; do
  m=$(median <<<"${results[$config]}")
  printf '| %s | %s | %.0f | %.2f |\n' "$config" "${results[$config]% }" "$m" "$(python3 -c "print($m / $echo_median)")"
done
