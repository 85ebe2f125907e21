# Sourced by the scripts that check the service as a client would
# (tests/readme/check.sh, tests/docs/check-pages.sh): free ports, and a demo
# server on them.

# Prints N free loopback ports, none of them a default the README names.
free_ports() {
  python3 -c '
import socket, sys
socks, ports = [], []
while len(ports) < int(sys.argv[1]):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
    p = s.getsockname()[1]
    if p not in (50051, 8080): ports.append(p)
print(*ports)' "$1"
}

# start_demo_server WHO DIR GRPC_PORT HTTP_PORT [NAME=VALUE...]: runs
# `$VA_BIN serve --demo` in DIR/work on DIR/data, logging to DIR/server.log,
# with the NAME=VALUE pairs added to its environment (e.g. authentication);
# sets $server to its pid and returns once /readyz answers (exits naming WHO
# if it never does).
start_demo_server() {
  local who=$1 dir=$2 grpc_port=$3 http_port=$4
  shift 4
  (cd "$dir/work" && exec env "$@" "$VA_BIN" serve --demo --data-dir "$dir/data" \
    --grpc-addr "127.0.0.1:$grpc_port" --http-addr "127.0.0.1:$http_port") >"$dir/server.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || { echo "$who: the demo server died:" >&2; cat "$dir/server.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$who: the demo server never got ready" >&2
  exit 1
}
