#!/usr/bin/env python3
"""bench-steps.py LABEL FILE: one line with the median of each deploy step's duration
(the `durations` object of `stackproof deploy --format json`, one JSON object a line)."""
import json
import statistics
import sys

label, path = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(path) if line.strip()]
keys = ["plan_ms", "preflight_ms", "sync_ms", "containers_ms", "exporter_ms", "checks_ms", "drill_ms", "total_ms"]
parts = []
for k in keys:
    values = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
    if values:
        parts.append("%s %.2f" % (k[:-3], statistics.median(values) / 1000))
print("  %s, median per step (s): %s" % (label, ", ".join(parts)))
