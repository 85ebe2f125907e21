#!/usr/bin/env python3
"""Concurrent writers and reconnecting watchers across service replicas, with
an optional chaos command (e.g. rs.stepDown() on the primary) run in a loop;
then checks what a client was promised. Python 3 standard library only.

It talks REST as a client does. Writers book distinct (employee, vehicle,
date) slots, each create with its own Idempotency-Key (and an x-request-id of
KEY.ATTEMPT, which the booking's event records); a 429/5xx or a broken
connection is retried with the same key and body, on the next service, with
backoff, until answered 2xx or a definite 4xx, or --write-deadline passes.
Watchers follow GET /api/events/stream, hop to the next service whenever the
stream ends or fails (and every few seconds on purpose), and resume with
Last-Event-ID set to the last id received.

With the writers stopped, it fails (exit 1, saying why) unless:
  (a) every watcher reached the newest sequence (the event list's) within
      --settle seconds, and received exactly the listed events from its
      start to that newest, in increasing order: no gap, no duplicate,
      across every reconnect (on MongoDB a sequence whose transaction
      aborted holds no event, so the listed sequences need not be
      consecutive integers);
  (b) every acknowledged booking reads back (GET by id: 200, same employee,
      vehicle and date, on every service), is the one booking of its
      employee on its date in the history report, and replaying its
      create (same key and body, on another service) answers 2xx with
      the same id;
  (c) in the event list, each acknowledged key has exactly one
      allocation.created event, for its booking's id, and no key without a
      2xx has one unless its outcome stayed unknown (deadline passed); so
      the created events of the run number the acknowledged creates (plus
      at most the unknown ones). Every watcher and the list also agree on
      what each sequence they share holds.
Refusals (409 slot taken and the like) are counted, not failures, except a
refusal answered to a retry whose key did store a booking.

  tests/replica/chaos.py --service http://127.0.0.1:8081 \\
      --service http://127.0.0.1:8082 --duration 60 \\
      --chaos-command 'docker exec mongo1 mongosh --quiet --eval "rs.stepDown(5)"'
"""

import argparse
import datetime
import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

TRANSIENT = {429, 500, 502, 503, 504}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Service:
    """One service's base URL, and plain HTTP calls to it."""

    def __init__(self, url, token):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            sys.exit(f"chaos.py: --service {url!r}: give http://HOST:PORT")
        self.url = url.rstrip("/")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def connect(self, timeout):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method, path, body=None, headers=None, timeout=40):
        """(status, parsed JSON or None); raises OSError/HTTPException."""
        conn = self.connect(timeout)
        try:
            all_headers = dict(self.headers, **(headers or {}))
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                all_headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return response.status, parsed
        finally:
            conn.close()

    def call_patiently(self, method, path, body=None, headers=None, patience=60):
        """call(), retried on a 429/5xx or a broken connection for up to
        `patience` seconds (the checks run just after the last failover)."""
        give_up = time.monotonic() + patience
        while True:
            try:
                status, answer = self.call(method, path, body, headers)
                if status not in TRANSIENT or time.monotonic() > give_up:
                    return status, answer
            except (OSError, http.client.HTTPException):
                if time.monotonic() > give_up:
                    raise
            time.sleep(1)

    def get(self, path, **params):
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        status, body = self.call_patiently("GET", f"{path}?{query}" if query else path)
        if status != 200:
            raise RuntimeError(f"GET {self.url}{path}?{query}: {status} {body}")
        return body

    def list_all(self, path, field, **params):
        items, token = [], None
        while True:
            page = self.get(path, page_size=500, page_token=token, **params)
            items.extend(page[field])
            token = page.get("next_page_token")
            if not token:
                return items


def reason(body):
    error = (body or {}).get("error") or {}
    return error.get("reason") or error.get("status") or "?"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def fail(self, message):
        with self.lock:
            self.failures.append(message)


class Write:
    """One create and what became of it."""

    def __init__(self, key, body):
        self.key, self.body = key, body
        self.attempts = 0
        self.transient = 0  # attempts answered 429/5xx or by a broken connection
        self.outcome = None  # "acked", "refused", "unknown"
        self.booking_id = None
        self.refusal = None


def writer(index, services, slots, args, stop, stats, writes, writes_lock):
    rng = random.Random(index)
    for n, (employee, vehicle, day) in enumerate(slots):
        if stop.is_set():
            return
        write = Write(
            f"{args.run_id}-w{index}-{n}",
            {"employee_id": employee, "vehicle_id": vehicle,
             "allocation_date": day, "purpose": "replica chaos test"},
        )
        with writes_lock:
            writes.append(write)
        deadline = time.monotonic() + args.write_deadline
        pause = 0.05
        while True:
            service = services[(index + write.attempts) % len(services)]
            write.attempts += 1
            headers = {"Idempotency-Key": write.key,
                       "x-request-id": f"{write.key}.{write.attempts}"}
            try:
                status, body = service.call("POST", "/api/allocations", write.body, headers)
            except (OSError, http.client.HTTPException) as error:
                status, body = None, str(error)
            if status is not None and 200 <= status < 300:
                write.outcome, write.booking_id = "acked", body["id"]
                stats.add("acknowledged")
                break
            if status is not None and status not in TRANSIENT:
                write.outcome, write.refusal = "refused", f"{status} {reason(body)}"
                stats.add("refused")
                stats.add(f"refused {status} {reason(body)}")
                break
            write.transient += 1
            stats.add("retries")
            stats.add(f"retried on {status or 'connection error'}"
                      + (f" {reason(body)}" if status else ""))
            if time.monotonic() + pause > deadline:
                write.outcome = "unknown"
                stats.add("unknown (deadline)")
                log(f"writer {index}: {write.key} unanswered after {write.attempts} attempts: {status} {body}")
                break
            time.sleep(pause * (0.5 + rng.random()))
            pause = min(pause * 2, 2.0)
        time.sleep(args.write_pause)


class Watcher:
    def __init__(self, index, services, args, start_after, stats):
        self.index, self.services, self.args, self.stats = index, services, args, stats
        self.resume = str(start_after)
        self.sequences = []  # every event sequence received, in order
        self.held = {}  # sequence -> (kind, resource)
        self.received = 0
        self.connections = 0
        self.conn = None
        self.lock = threading.Lock()

    def last(self):
        with self.lock:
            return self.sequences[-1] if self.sequences else None

    def run(self, stop):
        rng = random.Random(1000 + self.index)
        pause = 0.1
        while not stop.is_set():
            service = self.services[(self.index + self.connections) % len(self.services)]
            self.connections += 1
            until = None
            if self.args.reconnect_every > 0:
                until = time.monotonic() + self.args.reconnect_every * (0.5 + rng.random())
            try:
                if self.follow(service, until, stop):
                    pause = 0.1
                    continue
            except (OSError, http.client.HTTPException, ValueError) as error:
                self.stats.add(f"watch reconnects after {type(error).__name__}")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def follow(self, service, until, stop):
        """Reads one stream until it ends, fails or `until`; True when it
        got that far without an error answer."""
        conn = service.connect(timeout=30)  # heartbeats come every 15 s
        with self.lock:
            self.conn = conn
        try:
            headers = dict(service.headers, **{"Accept": "text/event-stream",
                                               "Last-Event-ID": self.resume})
            conn.request("GET", "/api/events/stream", headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                body = response.read()
                try:
                    why = reason(json.loads(body))
                except ValueError:
                    why = body[:80]
                self.stats.add(f"watch refused {response.status} {why}")
                return False
            event, ident, data = "message", None, []
            while not stop.is_set() and (until is None or time.monotonic() < until):
                line = response.readline()
                if not line:
                    if not stop.is_set():
                        self.stats.add("watch streams ended by the server")
                    return True
                line = line.decode().rstrip("\r\n")
                if line.startswith(":"):
                    continue
                if line:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        event = value
                    elif field == "id":
                        ident = value
                    elif field == "data":
                        data.append(value)
                    continue
                if data or ident is not None:
                    self.dispatch(event, ident, "\n".join(data))
                event, ident, data = "message", None, []
            return True
        finally:
            with self.lock:
                self.conn = None
            conn.close()

    def dispatch(self, event, ident, data):
        payload = json.loads(data) if data else {}
        if event == "message":
            sequence = payload["sequence"]
            self.received += 1
            if self.received == self.args.drop_event and self.index == 0:
                # --drop-event: lose one on purpose, to see check (a) fail.
                log(f"watcher 0: dropping event {sequence} (--drop-event)")
            else:
                with self.lock:
                    self.sequences.append(sequence)
                    self.held[sequence] = (payload["kind"], payload["resource"])
        elif event == "error":
            self.stats.add(f"watch error event {reason(payload)}")
            token = ((payload.get("error") or {}).get("metadata") or {}).get("resume_token")
            if token:
                self.resume = token
            return
        if ident is not None:
            self.resume = ident

    def close(self):
        with self.lock:
            if self.conn is not None and self.conn.sock is not None:
                try:
                    self.conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def chaos(command, interval, stop, stats):
    while not stop.wait(interval):
        try:
            done = subprocess.run(command, shell=True, timeout=60,
                                  capture_output=True, text=True)
            stats.add("chaos actions run")
            if done.returncode != 0:
                stats.add("chaos actions that exited non-zero")
            log(f"chaos: exit {done.returncode} {(done.stdout + done.stderr).strip()[-200:]}")
        except subprocess.TimeoutExpired:
            stats.add("chaos actions timed out")


def plan_slots(service, args):
    """Distinct (employee, vehicle, date) slots per writer: on each date
    vehicle i goes with employee i + offset, so no two slots collide."""
    employees = [e["id"] for e in service.list_all("/api/employees", "employees")
                 if e.get("active", True)]
    vehicles = [v["id"] for v in service.list_all("/api/vehicles", "vehicles")
                if v.get("driver_id") and not v.get("retired")]
    if not employees or len(vehicles) > len(employees):
        vehicles = vehicles[:len(employees)]
    if not vehicles:
        sys.exit("chaos.py: no bookable vehicle or active employee: seed demo data first")
    today = datetime.datetime.now(datetime.timezone.utc).date()
    offset = random.Random(args.run_id).randrange(len(employees))
    slots = [[] for _ in range(args.writers)]
    for d in range(args.days):
        day = (today + datetime.timedelta(days=args.first_day + d)).isoformat()
        for i, vehicle in enumerate(vehicles):
            employee = employees[(i + offset + d) % len(employees)]
            slots[i % args.writers].append((employee, vehicle, day))
    return slots, len(employees), len(vehicles)


def newest_sequence(services, since=None):
    """The newest event's sequence, as each service's event list has it
    (the whole list, or the events from `since` on)."""
    newest = []
    for service in services:
        events = service.list_all("/api/events", "events", start_time=since)
        newest.append(max((e["sequence"] for e in events), default=0))
    return newest


def rfc3339(at):
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", action="append", required=True,
                        help="a service's REST base URL; repeat for each replica")
    parser.add_argument("--duration", type=float, default=60, help="seconds of writing")
    parser.add_argument("--writers", type=int, default=6)
    parser.add_argument("--write-pause", type=float, default=0.05,
                        help="seconds each writer waits between two creates")
    parser.add_argument("--watchers", type=int, default=4)
    parser.add_argument("--chaos-command", help="a shell command run every --chaos-interval s")
    parser.add_argument("--chaos-interval", type=float, default=10)
    parser.add_argument("--write-deadline", type=float, default=90,
                        help="seconds one create is retried before its outcome is unknown")
    parser.add_argument("--settle", type=float, default=60,
                        help="seconds the watchers get to reach the newest sequence")
    parser.add_argument("--reconnect-every", type=float, default=5,
                        help="watchers also drop their stream after about this many seconds (0: never)")
    parser.add_argument("--first-day", type=int, default=61,
                        help="book from today + this many days (the demo's bookings reach 60)")
    parser.add_argument("--days", type=int, default=29)
    parser.add_argument("--token", help="a bearer token, when the services want one")
    parser.add_argument("--run-id", default=f"chaos-{int(time.time())}-{random.randrange(10**6)}")
    parser.add_argument("--drop-event", type=int, default=0, metavar="N",
                        help="self-test: watcher 0 ignores the Nth event it receives (check (a) must fail)")
    args = parser.parse_args()

    services = [Service(url, args.token) for url in args.service]
    stats = Stats()

    def crashed(hook):
        stats.fail(f"{hook.thread.name} crashed: {hook.exc_type.__name__}: {hook.exc_value}")
        threading.__excepthook__(hook)

    threading.excepthook = crashed
    slots, employees, vehicles = plan_slots(services[0], args)
    # Events of the run are listed from here on (5 minutes' leeway for the
    # servers' clocks); the watchers start after everything stored before.
    since = rfc3339(time.time() - 300)
    start_after = max(newest_sequence(services))
    log(f"run {args.run_id}: {len(services)} services, {args.writers} writers over "
        f"{sum(map(len, slots))} slots ({employees} employees, {vehicles} vehicles), "
        f"{args.watchers} watchers from sequence {start_after}")

    stop_writes, stop_watch = threading.Event(), threading.Event()
    watchers = [Watcher(i, services, args, start_after, stats) for i in range(args.watchers)]
    watch_threads = [threading.Thread(target=w.run, args=(stop_watch,), daemon=True) for w in watchers]
    for thread in watch_threads:
        thread.start()
    writes, writes_lock = [], threading.Lock()
    write_threads = [
        threading.Thread(target=writer, daemon=True,
                         args=(i, services, slots[i], args, stop_writes, stats, writes, writes_lock))
        for i in range(args.writers)
    ]
    for thread in write_threads:
        thread.start()
    chaos_thread = None
    if args.chaos_command:
        chaos_thread = threading.Thread(target=chaos, daemon=True,
                                        args=(args.chaos_command, args.chaos_interval, stop_writes, stats))
        chaos_thread.start()

    time.sleep(args.duration)
    stop_writes.set()
    log("writers stopping")
    for thread in write_threads:
        thread.join(args.write_deadline + 60)
        if thread.is_alive():
            stats.fail("a writer did not stop within --write-deadline + 60 s")
    if chaos_thread:
        chaos_thread.join(70)

    # The newest sequence, once the writes are done; asked until the
    # services answer (a failover may still be settling).
    newest = None
    settle_by = time.monotonic() + args.settle
    while newest is None:
        try:
            newest = newest_sequence(services, since)
        except (OSError, http.client.HTTPException, RuntimeError) as error:
            if time.monotonic() > settle_by:
                stats.fail(f"the event list never answered: {error}")
                newest = [start_after]
            time.sleep(1)
    if len(set(newest)) > 1:
        stats.fail(f"the services disagree on the newest sequence: {newest}")
    target = max(newest)
    log(f"newest sequence {target}; waiting for the watchers")
    while time.monotonic() < settle_by and any((w.last() or start_after) < target for w in watchers):
        time.sleep(0.2)
    stop_watch.set()
    for w in watchers:
        w.close()
    for thread in watch_threads:
        thread.join(5)

    # (a) each watcher: every listed event from the start to the newest, in
    # order, once. Not every sequence is an event: on MongoDB a sequence
    # whose transaction aborted is given up (a void), so "contiguous" means
    # contiguous in the event list, not in the integers.
    listed_sequences = sorted(
        e["sequence"]
        for e in services[0].list_all("/api/events", "events", start_time=since)
        if start_after < e["sequence"] <= target)
    for w in watchers:
        with w.lock:
            seqs = [s for s in w.sequences if s <= target]
        if not seqs:
            if listed_sequences:
                stats.fail(f"watcher {w.index} received nothing (newest is {target})")
            continue
        problems = [f"{a} then {b}" for a, b in zip(seqs, seqs[1:]) if b <= a]
        received = set(seqs)
        problems += [f"missed {s}" for s in listed_sequences if s not in received]
        problems += [f"{s} is not listed" for s in sorted(received - set(listed_sequences))]
        if seqs[-1] != target:
            problems.append(f"ended at {seqs[-1]}, not the newest {target}")
        if problems:
            stats.fail(f"watcher {w.index}: sequences not contiguous: {', '.join(problems[:10])}"
                       + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))

    # (c) the event list, and what the watchers received of it.
    events = services[0].list_all("/api/events", "events", start_time=since)
    events = [e for e in events if e["sequence"] > start_after]
    listed = {e["sequence"]: (e["kind"], e["resource"]) for e in events}
    for w in watchers:
        differ = [s for s, held in w.held.items() if listed.get(s) != held]
        if differ:
            stats.fail(f"watcher {w.index} and the event list disagree on sequences {differ[:10]}")
    created = {}
    prefix = f"{args.run_id}-w"
    for e in events:
        if e["kind"] == "allocation.created" and e["request_id"].startswith(prefix):
            key = e["request_id"].rsplit(".", 1)[0]
            created.setdefault(key, []).append(e["resource"])
    by_key = {w.key: w for w in writes}
    for key, resources in created.items():
        write = by_key.get(key)
        if write is None:
            stats.fail(f"{key}: an allocation.created event for a key never sent")
        elif len(resources) > 1:
            stats.fail(f"{key}: stored {len(resources)} times: {resources}")
        elif write.outcome == "acked" and resources[0] != f"allocations/{write.booking_id}":
            stats.fail(f"{key}: acknowledged as {write.booking_id}, but its event is {resources[0]}")
        elif write.outcome == "refused":
            stats.fail(f"{key}: answered {write.refusal} after {write.attempts} attempts, "
                       f"yet stored as {resources[0]}")
    acked = [w for w in writes if w.outcome == "acked"]
    unknown = [w for w in writes if w.outcome == "unknown"]
    for write in acked:
        if write.key not in created:
            stats.fail(f"{write.key}: acknowledged as {write.booking_id}, but no allocation.created event")

    # (b) every acknowledged booking, read back, in the history, replayed.
    history = {}
    for day in sorted({w.body["allocation_date"] for w in acked}):
        for booking in services[-1].list_all("/api/allocations/history", "allocations",
                                             start_date=day, end_date=day):
            history.setdefault((booking["employee_id"], day), []).append(booking["id"])
    for n, write in enumerate(acked):
        expected = write.body
        for service in services:
            status, body = service.call_patiently("GET", f"/api/allocations/{write.booking_id}")
            if status != 200:
                stats.fail(f"{write.key}: GET {service.url}/api/allocations/{write.booking_id} answered {status}")
                continue
            if any(body[f] != expected[f] for f in ("employee_id", "vehicle_id", "allocation_date")):
                stats.fail(f"{write.key}: {write.booking_id} reads back as {body}, not {expected}")
        held = history.get((expected["employee_id"], expected["allocation_date"]), [])
        if held != [write.booking_id]:
            stats.fail(f"{write.key}: the history holds {held} for its employee and date, "
                       f"not just {write.booking_id}")
        service = services[(n + 1) % len(services)]
        status, body = service.call_patiently("POST", "/api/allocations", expected,
                                              {"Idempotency-Key": write.key,
                                               "x-request-id": f"{write.key}.replay"})
        if not (200 <= status < 300 and (body or {}).get("id") == write.booking_id):
            stats.fail(f"{write.key}: replayed on {service.url}: {status} "
                       f"{(body or {}).get('id') or reason(body)}, not {write.booking_id}")
    replayed = sum(1 for e in services[0].list_all(
        "/api/events", "events", start_time=since, kind="allocation.created")
        if e["request_id"].endswith(".replay") and e["request_id"].startswith(prefix))
    if replayed:
        stats.fail(f"{replayed} replays of acknowledged keys stored a booking again")

    # The summary.
    print(f"run {args.run_id}")
    print(f"  writes: {len(writes)} sent, {len(acked)} acknowledged, "
          f"{sum(1 for w in writes if w.outcome == 'refused')} refused, {len(unknown)} unknown; "
          f"{sum(w.transient for w in writes)} retries "
          f"({sum(1 for w in writes if w.transient)} writes retried)")
    for name in sorted(stats.counts):
        if name.startswith(("refused ", "retried ", "watch ", "chaos actions t")):
            print(f"    {name}: {stats.counts[name]}")
    print(f"  allocation.created events of the run: {sum(map(len, created.values()))} "
          f"(acknowledged {len(acked)}, unknown {len(unknown)})")
    print(f"  events {start_after + 1}..{target}: {target - start_after}")
    for w in watchers:
        print(f"  watcher {w.index}: {len(w.sequences)} events, "
              f"{w.sequences[0] if w.sequences else '-'}..{w.sequences[-1] if w.sequences else '-'}, "
              f"{w.connections} connections")
    if args.chaos_command:
        print(f"  chaos actions run: {stats.counts.get('chaos actions run', 0)}")
    if stats.failures:
        print(f"FAILED: {len(stats.failures)} problem(s)")
        for failure in stats.failures[:50]:
            print(f"  {failure}")
        if len(stats.failures) > 50:
            print(f"  ... and {len(stats.failures) - 50} more")
        sys.exit(1)
    if not acked:
        print("FAILED: no write was acknowledged")
        sys.exit(1)
    print("OK: every watcher got every listed event up to the newest; every acknowledged write stored once")


if __name__ == "__main__":
    main()
