#!/usr/bin/env bash
# Checks the API docs pages as a browser shows them: starts a demo server of
# its own on free ports, opens /docs/ (Swagger UI) and /redoc (ReDoc) in
# headless Chromium with every request off loopback blocked, and fails when a
# page does not render the API's operation list, or logs a console error,
# throws, or has a request fail (tests/docs/check-pages.mjs). Then, on a
# second demo server with authentication on (an HS256 secret and an API
# keys file made up here), it uses Swagger UI's "Authorize" dialog as a
# reader would: a call without credentials shows 401, with the API key
# (apiKey) 200, and with a bearer token from `$VA_BIN token` (bearerAuth)
# 200. Screenshots of the pages are left in a temp dir whose path it prints.
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

# Nothing from the caller's environment or a .env may configure the servers.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AUTH_|TLS_|GRPC_|HTTP_|DATA_DIR$|MONGODB_|REDIS_|CACHE_|RATE_LIMIT_|ALLOW_UNAUTHENTICATED$|ORG_TIMEZONE$|MAX_DAYS_AHEAD$|CORS_|LOG_FORMAT$)' || true)
export RUST_LOG=warn

tmp=$(mktemp -d)
mkdir "$tmp/work" "$tmp/auth" "$tmp/auth/work"
shots=$(mktemp -d "${TMPDIR:-/tmp}/docs-pages.XXXXXX") # kept, for a look
servers=() server=
cleanup() {
  local pid
  for pid in "${servers[@]}" $server; do kill "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}" $server; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

source tests/support/demo-server.sh
read -r gp hp auth_gp auth_hp < <(free_ports 4)
start_demo_server check-pages.sh "$tmp" "$gp" "$hp"
servers+=("$server")

# The second server, for the Authorize check: a JWT secret and one API key
# (an auditor), both made up for this run; the key file holds its digest.
jwt_secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
api_key=docs-check-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
api_key_sha256=$(printf %s "$api_key" | sha256sum | cut -d' ' -f1)
printf '[[key]]\nname = "docs-check"\nsha256 = "%s"\nroles = ["auditor"]\n' "$api_key_sha256" >"$tmp/auth/keys.toml"
bearer_token=$(AUTH_JWT_HS256_SECRET=$jwt_secret "$VA_BIN" token --employee emp-00042 --role employee) || {
  echo "check-pages.sh: \`$VA_BIN token\` failed" >&2
  exit 1
}
start_demo_server check-pages.sh "$tmp/auth" "$auth_gp" "$auth_hp" \
  "AUTH_JWT_HS256_SECRET=$jwt_secret" "AUTH_API_KEYS_FILE=$tmp/auth/keys.toml"
servers+=("$server")

echo "docs pages: screenshots in $shots"
DOCS_API_KEY=$api_key DOCS_BEARER_TOKEN=$bearer_token \
  node tests/docs/check-pages.mjs "http://127.0.0.1:$hp" "$shots" "http://127.0.0.1:$auth_hp"
