#!/usr/bin/env python3
"""stackproof host exporter: runs the stack's smoke tests on the host and exposes
the results in the Prometheus text format.

It needs nothing but python3 (3.7 or newer, standard library only), so it runs on a
stock Debian or Ubuntu VPS. stackproof starts it from the current release directory:

    python3 host_exporter/exporter.py --listen=127.0.0.1:9101 --interval=15s \
        --tests=host_exporter/tests.json

The tests file lists commands; each is run without a shell, with its own timeout:

    {"tests": [{"name": "tmp-writable", "argv": ["sh", "-c", "..."], "timeout": "5s"}]}

Every test of a run is one "operation" and is timed. A test passes when its command
exits 0, fails otherwise; a test that cannot run at all (missing binary, timeout,
permission denied) fails *and* counts as an error. So passed + failed == total,
and errors are the subset of failures where the command itself never completed.

Honest numbers only: before the first run has finished, the counters are 0 and the
gauges about "the last run" are not exposed at all.

Fault injection (`stackproof drill --alert/--all`): with `--fault-file PATH` the exporter
reads PATH (JSON) between runs, at least every FAULT_CHECK seconds, and while it names a
mode whose `until` (unix seconds) has not passed, runs the suite faulted:

    {"mode": "fail" | "error" | "slow" | "silence", "until": 1764500000, "delay_s": 1.5}

  fail     every test reports failure (its command is not run): pass rate 0
  error    every test could not run (counts as failed and as an error)
  slow     every test runs, then takes `delay_s` longer (a real wait, so the duration
           histogram is real); the next run follows at once
  silence  /metrics answers, but no test runs
A change of mode starts a run at once. A missing, unreadable or expired file means no
fault: a drill whose connection was cut never leaves the host faulted past `until`.
`suite_fault_mode{mode="..."} 1` says which mode is in force (`none` normally).

Why hand-written and not prometheus_client: the exporter must run on a stock host
with no pip and no network, so it may use the standard library only.
"""

import argparse
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Upper bounds of the duration histogram, in seconds. 0.2 is a boundary on purpose:
# the stack alerts on a P95 above 200 ms, and histogram_quantile interpolates within a
# bucket, so the threshold should sit on a bucket edge.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DEFAULT_TIMEOUT = 10.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
FAULT_MODES = ("fail", "error", "slow", "silence")
# How often the fault file is read while waiting between runs or inside a slow test.
FAULT_CHECK = 0.5


class ConfigError(Exception):
    pass


def log(msg):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        sys.stderr.write("%s host-exporter: %s\n" % (stamp, msg))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # detached with a closed stderr: logging must never stop the exporter


def parse_duration(text):
    """`30s`, `1m30s`, `500ms`, `2h`, or a bare number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip()
        try:
            value = float(s)
        except ValueError:
            pos, value = 0, 0.0
            for m in DURATION_RE.finditer(s):
                if m.start() != pos:
                    break
                unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
                value += float(m.group(1)) * unit
                pos = m.end()
            if pos != len(s) or not s:
                raise ConfigError("invalid duration %r (use e.g. 30s, 1m, 500ms)" % (text,))
    if not value > 0 or math.isinf(value):
        raise ConfigError("duration must be positive, got %r" % (text,))
    return value


def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("--listen must be HOST:PORT, e.g. 127.0.0.1:9101, got %r" % (text,))
    return host.strip("[]"), int(port)


def load_tests(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ConfigError("cannot read tests file %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise ConfigError("tests file %s is not valid JSON: %s" % (path, e))
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise ConfigError('tests file %s must be an object with a "tests" list' % path)
    unknown = set(doc) - {"tests", "comment"}
    if unknown:
        raise ConfigError("tests file %s: unknown key(s) %s" % (path, ", ".join(sorted(unknown))))
    if not doc["tests"]:
        raise ConfigError("tests file %s lists no tests; a suite with nothing to run reports nothing honest" % path)
    tests, seen = [], set()
    for i, t in enumerate(doc["tests"]):
        where = "%s: tests[%d]" % (path, i)
        if not isinstance(t, dict):
            raise ConfigError("%s must be an object" % where)
        unknown = set(t) - {"name", "argv", "timeout", "comment"}
        if unknown:
            raise ConfigError("%s: unknown key(s) %s" % (where, ", ".join(sorted(unknown))))
        name = t.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError("%s: name must match %s" % (where, NAME_RE.pattern))
        if name in seen:
            raise ConfigError("%s: duplicate test name %r" % (where, name))
        seen.add(name)
        argv = t.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError("%s (%s): argv must be a non-empty list of strings" % (where, name))
        timeout = parse_duration(t["timeout"]) if "timeout" in t else DEFAULT_TIMEOUT
        tests.append({"name": name, "argv": argv, "timeout": timeout})
    return tests


class Fault:
    """The fault file, read at most every FAULT_CHECK seconds. `mode()` is "none" unless
    the file names a known mode whose `until` is still in the future."""

    def __init__(self, path, clock=time.time):
        self.path, self.clock = path, clock
        self.read_at = None
        self.doc = None
        self.complained = None

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            why = "fault file %s unreadable, ignored: %s" % (self.path, e)
            if why != self.complained:
                log(why)
                self.complained = why
            return None
        if not isinstance(doc, dict) or doc.get("mode") not in FAULT_MODES or not isinstance(doc.get("until"), (int, float)):
            why = "fault file %s ignored: it needs a mode (%s) and a numeric until" % (self.path, ", ".join(FAULT_MODES))
            if why != self.complained:
                log(why)
                self.complained = why
            return None
        return doc

    def current(self):
        if self.path is None:
            return None
        now = time.monotonic()
        if self.read_at is None or now - self.read_at >= FAULT_CHECK:
            self.doc = self._read()
            self.read_at = now
        doc = self.doc
        if doc is None or doc["until"] <= self.clock():
            return None
        return doc

    def mode(self):
        doc = self.current()
        return doc["mode"] if doc else "none"

    def delay(self):
        doc = self.current()
        try:
            d = float((doc or {}).get("delay_s", 1.5))
        except (TypeError, ValueError):
            d = 1.5
        return min(max(d, 0.0), 30.0)


class Metrics:
    """The exporter's state. One lock guards everything; rendering takes a snapshot."""

    def __init__(self, names):
        self.lock = threading.Lock()
        self.tests_total = 0
        self.passed_total = 0
        self.failed_total = 0
        self.errors_total = 0
        self.runs_total = 0
        self.pass_rate = None  # of the last finished run; None until one has finished
        self.last_run = None  # unix time the last run finished
        self.last_success = {}  # test name -> 1/0 in the last run
        # per operation: bucket counts (non-cumulative, one per bound plus +Inf), sum, count
        self.hist = {n: [[0] * (len(BUCKETS) + 1), 0.0, 0] for n in names}
        self.fault_mode = None  # "none" or the injected mode; None without --fault-file

    def record_run(self, results, finished_at):
        with self.lock:
            self.runs_total += 1
            passed = 0
            for name, outcome, seconds in results:
                self.tests_total += 1
                if outcome == "pass":
                    passed += 1
                    self.passed_total += 1
                else:
                    self.failed_total += 1
                    if outcome == "error":
                        self.errors_total += 1
                self.last_success[name] = 1 if outcome == "pass" else 0
                h = self.hist[name]
                i = 0
                while i < len(BUCKETS) and seconds > BUCKETS[i]:
                    i += 1
                h[0][i] += 1
                h[1] += seconds
                h[2] += 1
            self.pass_rate = passed / len(results)
            self.last_run = finished_at

    def render(self):
        with self.lock:
            out = []

            def family(name, kind, help_text):
                out.append("# HELP %s %s" % (name, help_text))
                out.append("# TYPE %s %s" % (name, kind))

            family("suite_tests_total", "counter", "Test executions since the exporter started (passed + failed).")
            out.append("suite_tests_total %d" % self.tests_total)
            family("suite_tests_passed_total", "counter", "Test executions whose command exited 0.")
            out.append("suite_tests_passed_total %d" % self.passed_total)
            family("suite_tests_failed_total", "counter", "Test executions that did not pass (non-zero exit, or could not run).")
            out.append("suite_tests_failed_total %d" % self.failed_total)
            family("suite_errors_total", "counter", "Test executions that could not run at all (timeout, missing binary, permission denied).")
            out.append("suite_errors_total %d" % self.errors_total)
            family("suite_runs_total", "counter", "Finished runs of the whole test suite.")
            out.append("suite_runs_total %d" % self.runs_total)
            if self.pass_rate is not None:
                family("suite_test_pass_rate", "gauge", "Fraction of the tests of the last finished run that passed (0..1).")
                out.append("suite_test_pass_rate %s" % fmt(self.pass_rate))
                family("suite_last_run_timestamp_seconds", "gauge", "Unix time at which the last run of the suite finished.")
                out.append("suite_last_run_timestamp_seconds %s" % fmt(self.last_run))
                family("suite_test_success", "gauge", "1 if the test passed in the last finished run, else 0.")
                for name in sorted(self.last_success):
                    out.append('suite_test_success{test="%s"} %d' % (escape(name), self.last_success[name]))
            family("suite_operation_duration_seconds", "histogram", "Wall time of each test execution (one operation per test per run).")
            for name in sorted(self.hist):
                counts, total, count = self.hist[name]
                label = escape(name)
                cumulative = 0
                for bound, c in zip(BUCKETS + (math.inf,), counts):
                    cumulative += c
                    out.append('suite_operation_duration_seconds_bucket{operation="%s",le="%s"} %d' % (label, fmt(bound), cumulative))
                out.append('suite_operation_duration_seconds_sum{operation="%s"} %s' % (label, fmt(total)))
                out.append('suite_operation_duration_seconds_count{operation="%s"} %d' % (label, count))
            if self.fault_mode is not None:
                family("suite_fault_mode", "gauge", "1 for the fault injected by stackproof's drill (none: no fault).")
                out.append('suite_fault_mode{mode="%s"} 1' % escape(self.fault_mode))
            return "\n".join(out) + "\n"


def fmt(v):
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Runner(threading.Thread):
    """Runs the suite at start, again `warmup` seconds later (so that rates and latency
    percentiles have two samples right after a start, not one interval later), and then
    every `interval` seconds (measured start to start; a run that overruns is followed
    at once by the next). A change of the injected fault's mode starts a run at once;
    while `slow`, runs follow each other without a pause; while `silence`, none runs."""

    def __init__(self, tests, interval, metrics, stop, warmup=0.0, fault=None):
        super().__init__(name="suite-runner", daemon=True)
        self.tests, self.interval, self.metrics, self.stop = tests, interval, metrics, stop
        self.warmup = warmup
        self.fault = fault or Fault(None)
        self.current = None  # the running Popen, so a shutdown can kill it
        self.current_lock = threading.Lock()

    def mode(self):
        m = self.fault.mode()
        if self.fault.path is not None:
            with self.metrics.lock:
                if self.metrics.fault_mode != m:
                    if self.metrics.fault_mode is not None:
                        log("fault injection: mode %s (was %s)" % (m, self.metrics.fault_mode))
                    self.metrics.fault_mode = m
        return m

    def wait(self, seconds, mode):
        """Wait up to `seconds`; True when the fault's mode changed (start a run now)."""
        end = time.monotonic() + seconds
        while not self.stop.is_set():
            if self.mode() != mode:
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.stop.wait(min(left, FAULT_CHECK))
        return False

    def run(self):
        next_start = time.monotonic()
        runs = 0
        while not self.stop.is_set():
            mode = self.mode()
            if mode == "silence":
                self.wait(3600.0, mode)
                next_start = time.monotonic()
                continue
            results = []
            for t in self.tests:
                if self.stop.is_set():
                    return  # a half run is not reported
                results.append(self.run_one(t))
            if self.stop.is_set():
                return
            self.metrics.record_run(results, time.time())
            failed = [n for n, o, _ in results if o != "pass"]
            log("run finished: %d/%d passed%s%s" % (len(results) - len(failed), len(results),
                                                      (", not passed: " + ", ".join(failed)) if failed else "",
                                                      (" (fault injected: %s)" % mode) if mode != "none" else ""))
            runs += 1
            next_start += self.warmup if runs == 1 and 0 < self.warmup < self.interval else self.interval
            now = time.monotonic()
            if next_start < now or self.mode() == "slow":
                next_start = now
            if self.wait(next_start - now, mode):
                next_start = time.monotonic()

    def run_one(self, t):
        mode = self.mode()
        start = time.monotonic()
        if mode == "fail":
            return (t["name"], "fail", time.monotonic() - start)
        if mode == "error":
            return (t["name"], "error", time.monotonic() - start)
        try:
            proc = subprocess.Popen(t["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        except OSError as e:
            log("test %s could not start: %s" % (t["name"], e.strerror or e))
            return (t["name"], "error", time.monotonic() - start)
        with self.current_lock:
            self.current = proc
        try:
            _, err = proc.communicate(timeout=t["timeout"])
            outcome = "pass" if proc.returncode == 0 else "fail"
            if outcome == "fail" and not self.stop.is_set():
                tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
                log("test %s failed with exit %d%s" % (t["name"], proc.returncode,
                                                       (": " + " | ".join(tail)) if tail else ""))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.communicate()
            outcome = "error"
            log("test %s timed out after %gs" % (t["name"], t["timeout"]))
        finally:
            with self.current_lock:
                self.current = None
        if mode == "slow":
            # A real wait inside the operation: it ends early when the fault ends.
            self.wait(self.fault.delay(), mode)
        return (t["name"], outcome, time.monotonic() - start)

    def kill_current(self):
        with self.current_lock:
            if self.current is not None:
                kill_group(self.current)


def kill_group(proc):
    # The test runs in its own session, so its children (sh -c ...) go too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def make_handler(metrics):
    class Handler(BaseHTTPRequestHandler):
        server_version = "stackproof-host-exporter"

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self.reply(200, metrics.render(), CONTENT_TYPE)
            elif path == "/-/healthy":
                self.reply(200, "OK\n", "text/plain; charset=utf-8")
            elif path == "/":
                self.reply(200, "stackproof host exporter: see /metrics\n", "text/plain; charset=utf-8")
            else:
                self.reply(404, "not found\n", "text/plain; charset=utf-8")

        def do_HEAD(self):
            self.do_GET()

        def reply(self, status, body, ctype):
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, fmt, *args):
            pass  # scrapes every few seconds would flood the log

    return Handler


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the stack's smoke tests and expose the results for Prometheus.")
    ap.add_argument("--listen", default="127.0.0.1:9101", help="HOST:PORT to serve /metrics on (default 127.0.0.1:9101)")
    ap.add_argument("--interval", default="30s", help="time between the starts of two runs (default 30s)")
    ap.add_argument("--warmup", default="2s", help="start the second run this long after the first (0 = one interval), so a fresh start has two samples at once (default 2s)")
    ap.add_argument("--tests", default="host_exporter/tests.json", help="JSON file listing the tests")
    ap.add_argument("--pid-file", help="write the process id here once listening")
    ap.add_argument("--fault-file", help="JSON file naming a fault to inject (stackproof drill); absent = no fault")
    args = ap.parse_args(argv)

    try:
        host, port = parse_listen(args.listen)
        interval = parse_duration(args.interval)
        warmup = parse_duration(args.warmup) if args.warmup not in ("0", "0s") else 0.0
        tests = load_tests(args.tests)
    except ConfigError as e:
        log("error: %s" % e)
        return 2

    metrics = Metrics([t["name"] for t in tests])
    stop = threading.Event()
    try:
        server = ThreadingHTTPServer((host, port), make_handler(metrics))
    except OSError as e:
        log("error: cannot listen on %s: %s" % (args.listen, e.strerror or e))
        return 2
    server.daemon_threads = True
    if args.pid_file:
        tmp = args.pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(tmp, args.pid_file)

    # Signals: the Python-level handler runs in the main thread between bytecodes, and
    # may run while that thread holds a lock inside Event.wait(); calling stop.set()
    # there can deadlock. So the handler does nothing, and the C-level handler's write to
    # a wakeup pipe wakes the main thread, which then stops everything normally.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    signal.signal(signal.SIGINT, lambda _signum, _frame: None)

    # A short poll interval so that shutdown() returns quickly after SIGTERM.
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True)
    serving.start()
    fault = Fault(args.fault_file) if args.fault_file else None
    runner = Runner(tests, interval, metrics, stop, warmup, fault)
    runner.mode()  # expose suite_fault_mode from the first scrape
    runner.start()
    log("listening on %s, %d tests every %gs" % (args.listen, len(tests), interval))

    select.select([wake_r], [], [])
    stop.set()
    log("stopping")
    runner.kill_current()
    server.shutdown()
    server.server_close()
    runner.join(5.0)
    if args.pid_file:
        try:
            with open(args.pid_file) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(args.pid_file)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
