# Shared by benches/h2load.sh and benches/instructions.sh: the gRPC frames
# they send, the service's configurations, and reading the results.
# Sourced from the repository's root, after tests/support/demo-server.sh.

# A gRPC message frame around `bytes` (one protobuf field 1 of them).
frame() { # file hex-of-field-1-value
  python3 - "$1" "$2" <<'PY'
import struct, sys
value = bytes.fromhex(sys.argv[2])
length, n = b"", len(value)
while True:
    byte, n = n & 0x7F, n >> 7
    length += bytes([byte | (0x80 if n else 0)])
    if not n:
        break
message = b"\x0a" + length + value
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY
}

# The echo's request: 200 bytes, about the size of a booking.
echo_frame() { # file
  frame "$1" "$(printf '07%.0s' $(seq 200))"
}

# The environment of a configuration of the service, one word each:
#   default      the defaults: a text log line per request, metrics on
#   quiet        RUST_LOG=warn, metrics on
#   metrics off  RUST_LOG=warn, METRICS=false
config_env() { # config
  case $1 in
    default) echo RUST_LOG=info LOG_FORMAT=text ;;
    quiet) echo RUST_LOG=warn ;;
    "metrics off") echo RUST_LOG=warn METRICS=false ;;
    *) echo "unknown configuration: $1" >&2; return 1 ;;
  esac
}

# Waits up to `tries` × 0.1 s for the service's /readyz on `http_port`.
wait_ready() { # http_port tries
  for _ in $(seq "$2"); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# Writes to `file` a GetAllocation of a seeded booking, and checks that the
# service answers it with grpc-status 0: h2load counts any HTTP 200 as a
# success, gRPC errors included.
get_frame() { # file http_port grpc_port
  local id
  id=$(curl -fsS "http://127.0.0.1:$2/api/allocations/history?page_size=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["allocations"][0]["id"])')
  frame "$1" "$(printf %s "$id" | od -An -tx1 | tr -d ' \n')"
  curl -s --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary "@$1" -D - -o /dev/null \
    "http://127.0.0.1:$3/vehicle_allocation.v1.AllocationService/GetAllocation" | grep -q '^grpc-status: 0'
}

# The median of the numbers on stdin, separated by spaces or lines.
median() {
  tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}
