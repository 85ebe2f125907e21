#!/usr/bin/env python3
"""Turns a page's marked examples (README.md, docs/api.md, ...) into a bash
script for check.sh.

A fenced block is checked only when the line before it (blank lines aside)
is one of these markers:

  <!-- check -->               run against the demo server check.sh started
  <!-- check: own-server -->   the block starts a server of its own with
                               `cargo run -- serve ... &`; it gets other ports
  <!-- check: file NAME -->    not run: its text is written to NAME in the
                               working directory (a file a later block uses)

Each block is split into commands: a command is the shortest run of lines that
bash parses as complete (so multi-line quotes and backslash continuations stay
one command); blank and comment-only lines between commands are skipped. Each
command becomes one line `__va_unit FILE:LINE TEXT SHOWN`, TEXT being the
command with the default addresses and `cargo run` rewritten, SHOWN the page's
own.

Usage: extract.py PAGE VA_BIN GRPC_PORT HTTP_PORT OWN_GRPC_PORT OWN_HTTP_PORT OWN_DATA_DIR PID_FILE
"""

import re
import shlex
import subprocess
import sys

MARKER = re.compile(r"^<!-- check(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")


PAGE = "README.md"  # the page being read, for messages


def fail(msg):
    print(f"extract.py: {msg}", file=sys.stderr)
    sys.exit(2)


def complete(text):
    """Whether bash parses `text` as whole commands (no open quote or $( )."""
    if text.rstrip("\n").endswith("\\"):
        return False
    return subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True).returncode == 0


def blocks(lines):
    """(marker argument, language, first line number, lines) of each marked block."""
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if not m:
            i += 1
            continue
        marker_line = i + 1
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        f = FENCE.match(lines[i]) if i < len(lines) else None
        if not f:
            fail(f"{PAGE}:{marker_line}: a check marker must be followed by a fenced block")
        lang = f.group(1)
        start = i + 2  # 1-based number of the block's first line
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            fail(f"{PAGE}:{marker_line}: unterminated fenced block")
        i += 1
        yield (m.group(1) or "").strip(), lang, start, body


def commands(start, body):
    """(line number, text) of each command of a block."""
    acc, first = [], None
    for n, line in enumerate(body, start):
        if not acc and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not acc:
            first = n
        acc.append(line)
        text = "\n".join(acc) + "\n"
        if complete(text):
            yield first, text.rstrip("\n")
            acc = []
    if acc:
        fail(f"{PAGE}:{first}: this command does not parse as complete shell")


def rewrite(text, grpc_port, http_port, va_bin, own):
    text = text.replace(":50051", f":{grpc_port}").replace(":8080", f":{http_port}")
    if own is not None:
        own_data, pid_file = own
        serve = re.compile(r"cargo run -- serve(?P<args>[^&\n]*)&")
        text = serve.sub(
            lambda m: (
                f"{shlex.quote(va_bin)} serve{m.group('args')}--data-dir {shlex.quote(own_data)} "
                f"--grpc-addr 127.0.0.1:{grpc_port} --http-addr 127.0.0.1:{http_port} "
                f">>{shlex.quote(own_data)}.log 2>&1 & echo $! >>{shlex.quote(pid_file)}; "
                f"__va_wait_ready {http_port} $!"
            ),
            text,
        )
    text = re.sub(r"cargo run (-q )?-- ", f"{shlex.quote(va_bin)} ", text)
    if "cargo " in text:
        fail(f"a checked command still runs cargo after rewriting: {text!r}")
    return text


def main():
    if len(sys.argv) != 9:
        fail(__doc__.strip().splitlines()[-1])
    global PAGE
    PAGE, va_bin, gp, hp, own_gp, own_hp, own_data, pid_file = sys.argv[1:]
    with open(PAGE, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, count = [], 0
    for kind, lang, start, body in blocks(lines):
        if kind.startswith("file "):
            name = kind[len("file "):].strip()
            out.append(f"__va_file {shlex.quote(f'{PAGE}:{start}')} {shlex.quote(name)} {shlex.quote(chr(10).join(body) + chr(10))}")
            continue
        if lang not in ("sh", "bash"):
            fail(f"{PAGE}:{start - 1}: a checked block must be ```sh, not ```{lang}")
        if kind == "":
            ports, own = (gp, hp), None
        elif kind == "own-server":
            ports, own = (own_gp, own_hp), (own_data, pid_file)
        else:
            fail(f"{PAGE}:{start - 2}: unknown check marker {kind!r}")
        for n, text in commands(start, body):
            new = rewrite(text, *ports, va_bin, own)
            out.append(f"__va_unit {shlex.quote(f'{PAGE}:{n}')} {shlex.quote(new)} {shlex.quote(text)}")
            count += 1
    if count == 0:
        fail(f"no checked commands: are the <!-- check --> markers gone from {PAGE}?")
    print("\n".join(out))


if __name__ == "__main__":
    main()
