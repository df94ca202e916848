#!/usr/bin/python3
"""The sandbox's webhook receiver: where a page sent to a webhook arrives.

Started and stopped by scripts/sandbox (receivers-up / receivers-down); stdlib only.

  sandbox-webhook.py --listen 127.0.0.1:9798 --token-file TOKEN --store PAGES.jsonl

- POST with `Authorization: Bearer <the token in TOKEN>`: the request is appended to
  the store as one JSON line {"received_at", "path", "body"} (body: the JSON document,
  or the text when it is not JSON) and answered 200. The Authorization header is never
  stored or logged.
- POST without that token: 401, nothing stored. A body over --max-body bytes: 413.
- Any other method (GET, HEAD, OPTIONS, ...), with or without a token: 200 (OPTIONS:
  204) and a short text, nothing stored, so a reachability probe is never a page.
- When the store would grow past --max-store bytes it is renamed to STORE.1 (replacing
  an older STORE.1) and a new one is started; a log line says so.
- Listens on a loopback address only; SIGTERM or SIGINT stops it at once.
"""

import argparse
import datetime
import hmac
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIB = 1024 * 1024
DRAIN_LIMIT = 16 * MIB  # refused bodies up to this size are read before answering


def log(msg):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{now} {msg}", file=sys.stderr, flush=True)


def rfc3339_now():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """Append-only JSON lines file with a size cap (rotates to PATH.1)."""

    def __init__(self, path, max_bytes):
        self.path = path
        self.max_bytes = max_bytes
        self.lock = threading.Lock()

    def append(self, record):
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self.lock:
            try:
                size = os.path.getsize(self.path)
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                os.replace(self.path, self.path + ".1")
                log(f"store {self.path} would pass {self.max_bytes} bytes: moved to {self.path}.1, starting a new one")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


class Handler(BaseHTTPRequestHandler):
    server_version = "stackproof-sandbox-webhook"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # Set on the class by main().
    token = b""
    store = None
    max_body = MIB

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's name)
        # The request line and status only: never a header.
        log(f"{self.client_address[0]} {format % args}")

    def reply(self, status, text, extra_headers=()):
        body = (text + "\n").encode("utf-8") if text else b""
        self.send_response(status)
        for k, v in extra_headers:
            self.send_header(k, v)
        if body or status != 204:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def authorized(self):
        got = self.headers.get("Authorization", "")
        scheme, _, cred = got.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(cred.strip().encode("utf-8"), self.token)

    def content_length(self):
        """The declared body length, or None (then the connection is closed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            n = int(raw)
        except ValueError:
            return None
        return n if n >= 0 else None

    def drain(self, n):
        """Read and drop a refused body of n bytes, so that the client reads the answer
        instead of a broken pipe; one too large to bother with closes the connection."""
        if n > DRAIN_LIMIT:
            self.close_connection = True
            return
        while n > 0:
            chunk = self.rfile.read(min(n, 64 * 1024))
            if not chunk:
                break
            n -= len(chunk)

    def do_POST(self):
        n = self.content_length()
        if n is None:
            self.close_connection = True
            self.reply(411, "a POST needs a Content-Length (chunked bodies are not accepted); nothing stored")
            return
        if not self.authorized():
            self.drain(n)
            self.reply(401, "missing or wrong bearer token; nothing stored",
                       [("WWW-Authenticate", 'Bearer realm="stackproof-sandbox"')])
            return
        if n > self.max_body:
            self.drain(n)
            self.reply(413, f"body of {n} bytes is over the {self.max_body}-byte limit; nothing stored")
            return
        raw = self.rfile.read(n)
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        self.store.append({"received_at": rfc3339_now(), "path": self.path, "body": body})
        self.reply(200, "stored")

    def not_a_page(self):
        n = self.content_length()
        if n is None:
            self.close_connection = True
        else:
            self.drain(n)
        if self.command == "OPTIONS":
            self.reply(204, "", [("Allow", "POST, GET, HEAD, OPTIONS")])
        else:
            self.reply(200, "stackproof sandbox webhook receiver: only an authorized POST is stored as a page")

    do_GET = do_HEAD = do_OPTIONS = do_PUT = do_PATCH = do_DELETE = not_a_page


def parse_listen(value):
    host, sep, port = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError("--listen is HOST:PORT")
    try:
        if not ipaddress.ip_address(host.strip("[]")).is_loopback:
            raise argparse.ArgumentTypeError(f"{host} is not a loopback address: the receiver listens on loopback only")
        return host.strip("[]"), int(port)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--listen {value}: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 9798), metavar="HOST:PORT")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--store", required=True, help="JSON lines file the pages are appended to")
    ap.add_argument("--max-body", type=int, default=MIB, help="largest body stored, in bytes (default 1 MiB)")
    ap.add_argument("--max-store", type=int, default=10 * MIB, help="store size that triggers a rotation (default 10 MiB)")
    args = ap.parse_args()

    try:
        with open(args.token_file, "rb") as f:
            token = f.read().strip()
    except OSError as e:
        ap.error(f"cannot read the token: {e}")
    if len(token) < 16:
        ap.error(f"the token in {args.token_file} is shorter than 16 bytes")

    Handler.token = token
    Handler.store = Store(args.store, args.max_store)
    Handler.max_body = args.max_body

    def stop(signum, _frame):
        raise SystemExit(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in args.listen[0] else socket.AF_INET
        daemon_threads = True

    httpd = Server(args.listen, Handler)
    log(f"listening on {args.listen[0]}:{args.listen[1]}, storing pages in {args.store}")
    try:
        httpd.serve_forever(poll_interval=0.5)
    except SystemExit as e:
        log(f"stopping ({e})")
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
