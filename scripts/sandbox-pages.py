#!/usr/bin/python3
"""Read the pages that arrived at the sandbox's receivers (scripts/sandbox pages).

  sandbox-pages.py --pages-dir DIR [N]      the last N pages, oldest first (default 5)
  sandbox-pages.py --pages-dir DIR --count  "<mails> <webhook pages>"

DIR holds mail/ (the Maildir the SMTP receiver delivers into) and webhook.jsonl (plus
webhook.jsonl.1 after a rotation), written by scripts/sandbox-webhook.py. Each page is
printed as what a person on call reads: when it arrived, at which receiver, the alert,
firing or resolved, and its summary. Stdlib only.
"""

import argparse
import datetime
import email
import email.policy
import html.parser
import json
import mailbox
import os
import re
import sys


def rfc3339(ts):
    t = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_rfc3339(s):
    try:
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return 0.0


def one_line(s, width=160):
    s = " ".join(str(s).split())
    return s if len(s) <= width else s[: width - 1] + "…"


class Page:
    def __init__(self, when, where):
        self.when = when  # seconds since the epoch
        self.where = where  # "webhook /critical", "mail to oncall@..."
        self.lines = []  # (label, text)

    def add(self, label, text):
        if text not in (None, ""):
            self.lines.append((label, one_line(text)))

    def render(self):
        out = [f"{rfc3339(self.when)}  {self.where}"]
        out += [f"  {label + ':':<10}{text}" for label, text in self.lines]
        return "\n".join(out)


# --- webhook pages -----------------------------------------------------------


def webhook_files(pages_dir):
    base = os.path.join(pages_dir, "webhook.jsonl")
    return [p for p in (base + ".1", base) if os.path.exists(p)]


def webhook_records(pages_dir):
    for path in webhook_files(pages_dir):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line being written right now
                if isinstance(rec, dict):
                    yield rec


def alertmanager_page(page, body):
    """Fill PAGE from an Alertmanager webhook payload (version 4)."""
    alerts = [a for a in body.get("alerts") or [] if isinstance(a, dict)]
    first = alerts[0] if alerts else {}
    labels = {**(first.get("labels") or {}), **(body.get("commonLabels") or {})}
    notes = {**(first.get("annotations") or {}), **(body.get("commonAnnotations") or {})}
    name = (body.get("groupLabels") or {}).get("alertname") or labels.get("alertname", "?")
    n = len(alerts)
    extra = f", {n} alerts" if n != 1 else ""
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    if n > 1 and 0 < firing < n:
        extra += f" ({firing} firing)"
    page.add("alert", f"{name}  [{body.get('status', '?')}{extra}]")
    sev = labels.get("severity")
    page.add("severity", sev)
    page.add("summary", notes.get("summary") or notes.get("description") or "(no summary annotation)")
    if body.get("receiver"):
        page.add("receiver", body["receiver"])


def webhook_pages(pages_dir):
    for rec in webhook_records(pages_dir):
        page = Page(parse_rfc3339(rec.get("received_at", "")), f"webhook {rec.get('path', '?')}")
        body = rec.get("body")
        if isinstance(body, dict) and isinstance(body.get("alerts"), list):
            alertmanager_page(page, body)
        else:
            page.add("body", json.dumps(body, ensure_ascii=False) if not isinstance(body, str) else body)
        yield page


# --- mail pages --------------------------------------------------------------


class _Text(html.parser.HTMLParser):
    """The visible text of an HTML mail, one line per block."""

    SKIP = {"style", "script", "head", "title"}
    BREAK = {"br", "p", "div", "tr", "li", "table", "h1", "h2", "h3", "td"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BREAK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        elif tag in self.BREAK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def mail_text(msg):
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, ValueError):
        text = part.get_payload(decode=True).decode("utf-8", errors="replace")
    if part.get_content_subtype() == "html":
        p = _Text()
        p.feed(text)
        text = "".join(p.parts)
    return text


SUBJECT_STATUS = re.compile(r"^\s*\[(FIRING|RESOLVED)(?::(\d+))?\]\s*(.*)$", re.I)


def mail_pages(pages_dir):
    path = os.path.join(pages_dir, "mail")
    if not os.path.isdir(path):
        return
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in box.keys():
        try:
            raw = box.get_bytes(key)
            when = box.get_message(key).get_date()  # when it was delivered
        except (KeyError, FileNotFoundError):
            continue
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        to = msg.get("To") or msg.get("X-RcptTo") or "?"
        page = Page(when, f"mail to {to}")
        subject = str(msg.get("Subject", ""))
        page.add("subject", subject)
        text = mail_text(msg)
        m = SUBJECT_STATUS.match(subject)
        name = None
        found = re.search(r"^\s*alertname\s*=\s*(\S.*?)\s*$", text, re.M)
        if found:
            name = found.group(1)
        elif m:
            name = m.group(3).split(" ")[0] or None
        if m:
            status = m.group(1).lower() + (f", {m.group(2)} firing" if m.group(2) and m.group(2) != "1" else "")
        else:
            status = "?"
        page.add("alert", f"{name or '?'}  [{status}]")
        found = re.search(r"^\s*severity\s*=\s*(\S.*?)\s*$", text, re.M)
        page.add("severity", found.group(1) if found else None)
        found = re.search(r"^\s*summary\s*=\s*(\S.*?)\s*$", text, re.M)
        if found:
            page.add("summary", found.group(1))
        elif not m:
            page.add("body", text)  # not from Alertmanager: show what it says
        else:
            page.add("summary", "(no summary annotation)")
        yield page


def count_mail(pages_dir):
    path = os.path.join(pages_dir, "mail")
    if not os.path.isdir(path):
        return 0
    return len(mailbox.Maildir(path, factory=None, create=False))


def count_webhook(pages_dir):
    n = 0
    for path in webhook_files(pages_dir):
        with open(path, "rb") as f:
            n += sum(1 for line in f if line.endswith(b"\n"))
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages-dir", required=True)
    ap.add_argument("--count", action="store_true", help='print "<mails> <webhook pages>"')
    ap.add_argument("--smtp", default="127.0.0.1:2525", help="where mail is received (for the empty message)")
    ap.add_argument("--webhook", default="http://127.0.0.1:9798", help="where webhooks are received (idem)")
    ap.add_argument("n", nargs="?", type=int, default=5)
    args = ap.parse_args()
    d = args.pages_dir
    try:
        if args.count:
            print(count_mail(d), count_webhook(d))
            return 0
        pages = sorted([*mail_pages(d), *webhook_pages(d)], key=lambda p: p.when)
    except PermissionError as e:
        print(f"error: cannot read the pages ({e}): run as root (the sandbox state is root's)", file=sys.stderr)
        return 2
    if not pages:
        print("no page has arrived yet")
        print(f"  mail:     smtp {args.smtp} delivers into {os.path.join(d, 'mail')}/ (Maildir)")
        print(f"  webhooks: {args.webhook}/<receiver> stores into {os.path.join(d, 'webhook.jsonl')}")
        return 0
    shown = pages[-args.n:] if args.n > 0 else []
    print(f"{len(shown)} of {len(pages)} page(s), oldest first:")
    for p in shown:
        print()
        print(p.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
