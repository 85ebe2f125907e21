#!/usr/bin/env bash
# A few seconds of tests/replica/chaos.py against one demo server on the
# embedded store (both --service URLs name it; no chaos command), then once
# more with an event dropped on purpose, which must fail: the script runs,
# and its contiguity check can fail. The replica-set job of the GitHub
# workflow runs it for real, on MongoDB.
#
# Usage: tests/replica/smoke.sh
#   VA_BIN=path/to/vehicle-allocation   the binary (default: the debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

VA_BIN=${VA_BIN:-${CARGO_TARGET_DIR:-target}/debug/vehicle-allocation}
case $VA_BIN in /*) ;; *) VA_BIN=$root/$VA_BIN ;; esac
[[ -x $VA_BIN ]] || { echo "smoke.sh: no binary at $VA_BIN (cargo build first, or set VA_BIN)" >&2; exit 1; }

# Nothing from the caller's environment or a .env may configure the server.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AUTH_|TLS_|GRPC_|HTTP_|DATA_DIR$|MONGODB_|REDIS_|CACHE_|RATE_LIMIT_|ALLOW_UNAUTHENTICATED$|ORG_TIMEZONE$|MAX_DAYS_AHEAD$|CORS_|LOG_FORMAT$)' || true)
export RUST_LOG=warn

tmp=$(mktemp -d)
mkdir "$tmp/work"
server=
cleanup() {
  if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

source tests/support/demo-server.sh
read -r gp hp < <(free_ports 2)
start_demo_server smoke.sh "$tmp" "$gp" "$hp"
api=http://127.0.0.1:$hp

python3 tests/replica/chaos.py --service "$api" --service "$api" \
  --duration 3 --writers 4 --watchers 3 --reconnect-every 1 --settle 15

# The second run books other days than the first.
if python3 tests/replica/chaos.py --service "$api" --service "$api" \
  --duration 2 --writers 2 --watchers 2 --settle 15 --first-day 80 --drop-event 20 >"$tmp/drop.out" 2>&1; then
  cat "$tmp/drop.out"
  echo "smoke.sh: a watcher that lost an event passed the contiguity check" >&2
  exit 1
fi
grep -q 'watcher 0: sequences not contiguous' "$tmp/drop.out" || {
  cat "$tmp/drop.out"
  echo "smoke.sh: the run with a lost event failed, but not on contiguity" >&2
  exit 1
}
echo "smoke.sh: OK (and a lost event fails the check)"
