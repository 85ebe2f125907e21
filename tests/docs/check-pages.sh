#!/usr/bin/env bash
# Checks the API docs pages as a browser shows them: starts a demo server of
# its own on free ports, opens /docs/ (Swagger UI) and /redoc (ReDoc) in
# headless Chromium with every request off loopback blocked, and fails when a
# page does not render the API's operation list, or logs a console error,
# throws, or has a request fail (tests/docs/check-pages.mjs). Screenshots of
# both pages are left in a temp dir whose path it prints.
#
# Needs: Debian's chromium (/usr/bin/chromium), node, playwright-core (npm,
# pinned in tests/docs/package.json; `npm ci --prefix tests/docs`), curl,
# python3. .ci/run shows how to install them.
#
# Usage: tests/docs/check-pages.sh
#   VA_BIN=path/to/vehicle-allocation   the binary (default: the debug build)
#   DOCS_CHROMIUM=path/to/chromium      the browser (default /usr/bin/chromium)
#   DOCS_TIMEOUT_MS=30000               how long a page may take to render
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

VA_BIN=${VA_BIN:-${CARGO_TARGET_DIR:-target}/debug/vehicle-allocation}
case $VA_BIN in /*) ;; *) VA_BIN=$root/$VA_BIN ;; esac
[[ -x $VA_BIN ]] || { echo "check-pages.sh: no binary at $VA_BIN (cargo build first, or set VA_BIN)" >&2; exit 1; }

for tool in node curl python3; do
  command -v "$tool" >/dev/null || { echo "check-pages.sh: $tool not found" >&2; exit 1; }
done
export DOCS_CHROMIUM=${DOCS_CHROMIUM:-/usr/bin/chromium}
[[ -x $DOCS_CHROMIUM ]] || {
  echo "check-pages.sh: no browser at $DOCS_CHROMIUM (apt-get install chromium, or set DOCS_CHROMIUM)" >&2
  exit 1
}
[[ -d tests/docs/node_modules/playwright-core ]] || {
  echo "check-pages.sh: playwright-core not installed (npm ci --prefix tests/docs)" >&2
  exit 1
}

# Nothing from the caller's environment or a .env may configure the server.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AUTH_|TLS_|GRPC_|HTTP_|DATA_DIR$|MONGODB_|REDIS_|CACHE_|RATE_LIMIT_|ALLOW_UNAUTHENTICATED$|ORG_TIMEZONE$|MAX_DAYS_AHEAD$|CORS_|LOG_FORMAT$)' || true)
export RUST_LOG=warn

tmp=$(mktemp -d)
mkdir "$tmp/work"
shots=$(mktemp -d "${TMPDIR:-/tmp}/docs-pages.XXXXXX") # kept, for a look
server=
cleanup() {
  if [[ -n $server ]]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

source tests/support/demo-server.sh
read -r gp hp < <(free_ports 2)
start_demo_server check-pages.sh "$tmp" "$gp" "$hp"

echo "docs pages: screenshots in $shots"
node tests/docs/check-pages.mjs "http://127.0.0.1:$hp" "$shots"
