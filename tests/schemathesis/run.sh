#!/usr/bin/env bash
# Property-based tests of the REST gateway against its own OpenAPI document:
# schemathesis generates requests from /openapi.json (valid and invalid ones,
# and stateful sequences such as create-read-delete-read) and checks that no
# answer is a server error and every answer matches what the document says
# (status codes, content types, headers, body schemas, 405s with Allow).
#
# Usage: tests/schemathesis/run.sh [extra schemathesis options]
#
# Every operation is run, the SSE stream (streamEvents) too, with the
# bounds of tests/schemathesis/schemathesis.toml: it never ends, so each of
# its requests reads a few events or a second of it.
#
# One worker: with several, CPython 3.11's ast.parse, which hypothesis calls
# from each worker thread, fails now and then with "AST constructor recursion
# depth mismatch" (a CPython bug, fixed in later releases).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r tests/schemathesis/requirements.txt
fi

cargo build --quiet
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUST_LOG=warn LOG_FORMAT=json "${CARGO_TARGET_DIR:-target}/debug/vehicle-allocation" serve --demo --data-dir "$data" \
  --grpc-addr 127.0.0.1:0 --http-addr "127.0.0.1:$port" 2>"$data/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT

"$venv/bin/schemathesis" --config-file tests/schemathesis/schemathesis.toml \
  run "http://127.0.0.1:$port/openapi.json" \
  --wait-for-schema 60 \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,allow_header_conformance,use_after_free,ensure_resource_availability \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
  --workers 1 \
  "$@"

if grep -q '"level":"ERROR"' "$data/server.log"; then
  echo "the server logged errors:" >&2
  cat "$data/server.log" >&2
  exit 1
fi
