#!/usr/bin/env bash
# Cached GetAllocation measured from outside with h2load (Debian's
# nghttp2-client), beside the load benchmark's bare tonic echo, as the
# telemetry issue measured it: 16 connections, 8 calls in flight on each.
# Rounds alternate the echo and three configurations of the release build:
#
#   default      the defaults: a text log line per request, metrics on
#   quiet        RUST_LOG=warn, metrics on
#   metrics off  RUST_LOG=warn, METRICS=false
#
# Every configuration answers the call with grpc-status 0 before the run,
# and where metrics are on, /metrics shows every call of the run answered
# OK: h2load itself counts any HTTP 200 as a success, gRPC errors included.
#
#   benches/h2load.sh            (ROUNDS=3 REQUESTS=200000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
command -v h2load >/dev/null || { echo "h2load.sh: install h2load (apt-get install nghttp2-client)" >&2; exit 1; }

# The release service, and the load benchmark's binary for the echo.
load=$(cargo bench --bench load --no-run 2>&1 | sed -n 's/.*Executable benches\/load\/main.rs (\(.*\))/\1/p')
VA_BIN=${VA_BIN:-$root/target/release/vehicle-allocation}
[[ -x $load && -x $VA_BIN ]] || { echo "h2load.sh: no release build" >&2; exit 1; }

source tests/support/demo-server.sh
source benches/support.sh
tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

"$VA_BIN" seed --data-dir "$tmp/seeded" --employees 1000 --vehicles 1000 --allocations 100000 >/dev/null 2>&1

echo_frame "$tmp/echo.bin"

# h2load's req/s for `path` on `port` with `body`.
h2() { # port path body requests
  h2load -n "$4" -c 16 -m 8 -d "$3" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1$2" | sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p'
}

# start CONFIG GRPC_PORT HTTP_PORT: the service on a copy of the seeded data.
start() {
  local config=$1 gp=$2 hp=$3 env=()
  read -ra env < <(config_env "$config")
  rm -rf "$tmp/data" && cp -r "$tmp/seeded" "$tmp/data"
  # Its lines go to a file, as a container's go to its log driver.
  env "${env[@]}" "$VA_BIN" serve --data-dir "$tmp/data" \
    --grpc-addr "127.0.0.1:$gp" --http-addr "127.0.0.1:$hp" >"$tmp/server.log" 2>&1 &
  service=$!
  pids+=("$service")
  wait_ready "$hp" 300 && return 0
  echo "h2load.sh: the service ($config) never got ready" >&2
  cat "$tmp/server.log" >&2
  exit 1
}

configs=(echo default quiet "metrics off")
declare -A results
for round in $(seq "$ROUNDS"); do
  for config in "${configs[@]}"; do
    read -r gp hp < <(free_ports 2)
    if [[ $config == echo ]]; then
      "$load" --serve-echo "127.0.0.1:$gp" &
      service=$!
      pids+=("$service")
      for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$gp") 2>/dev/null && break; sleep 0.05; done
      path=/bench.v1.Echo/Echo body=$tmp/echo.bin
    else
      start "$config" "$gp" "$hp"
      path=/vehicle_allocation.v1.AllocationService/GetAllocation body=$tmp/get.bin
      get_frame "$body" "$hp" "$gp" \
        || { echo "h2load.sh: GetAllocation did not answer OK ($config)" >&2; exit 1; }
    fi
    h2 "$gp" "$path" "$body" 20000 >/dev/null # warm-up: connections, cache (the check above made one call)
    rate=$(h2 "$gp" "$path" "$body" "$REQUESTS")
    if [[ $config != echo ]]; then
      ok=$(curl -s "http://127.0.0.1:$hp/metrics" | sed -n 's/^grpc_server_handled_total{.*grpc_method="GetAllocation",grpc_code="OK"} //p')
      if [[ $config == "metrics off" ]]; then
        [[ -z $ok ]] || { echo "h2load.sh: metrics were on" >&2; exit 1; }
      elif [[ $ok != $((REQUESTS + 20001)) ]]; then
        echo "h2load.sh: $config answered $ok calls OK, not $((REQUESTS + 20001))" >&2
        exit 1
      fi
    fi
    results[$config]+="$rate "
    echo "round $round: $config ${rate} req/s" >&2
    kill "$service" && wait "$service" 2>/dev/null || true
  done
done

echo_median=$(median <<<"${results[echo]}")
printf '| configuration | req/s (each round) | median | / echo |\n| --- | --- | ---: | ---: |\n'
for config in "${configs[@]}"; do
  m=$(median <<<"${results[$config]}")
  printf '| %s | %s | %.0f | %.2f |\n' "$config" "${results[$config]% }" "$m" "$(python3 -c "print($m / $echo_median)")"
done
