#!/usr/bin/env python3
"""The promtool tests of alerts/ from series recorded in real scenarios.

  record_alert_series.py record --prometheus http://HOST:PORT --start T \\
        --end T --step S --out alerts/tests/recorded/NAME.series.yml \\
        --note "what ran"
      Asks a Prometheus that watched a real scenario (the pipeline test's,
      tools/record_alert_scenario.sh's) for every series of every metric
      alerts/alerts.yml reads, between START and END (Unix seconds) every
      STEP seconds, and writes them as promtool input_series: one value a
      step, `_` where the series had no sample, `stale` where it ended
      (Prometheus marks a series that went stale; promtool would otherwise
      carry its last value on for 5 minutes).

  record_alert_series.py compose [--check]
      Writes alerts/tests/NAME.test.yml from each alerts/tests/NAME.spec.yml:
      the spec as it is, with each test's `series: RECORDING` (and optional
      `only: REGEX`, which keeps the series whose text matches) replaced by
      the recorded `input_series` and their `interval`. A spec with
      `from: OTHER.spec.yml` takes the other's tests with its own
      `rule_files` (alerts.yml alone, or another thresholds file). --check
      fails when a written file differs from what is checked in.

The expectations (alert_rule_test) are written by hand in the specs, at
times read off the recording; promtool checks them against what the rules
compute from the recorded series.
"""
import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "alerts" / "tests"
RECORDED = TESTS / "recorded"


def metrics_read_by_alerts(rules_path):
    """Metric names in the alert expressions: badgateway_* and `up`."""
    doc = yaml.safe_load(rules_path.read_text())
    names = set()
    for g in doc["groups"]:
        for r in g["rules"]:
            if "alert" not in r:
                continue
            expr = r["expr"]
            names.update(re.findall(r"\bbadgateway_[a-z0-9_]+\b", expr))
            if re.search(r"\bup\s*\{", expr):
                names.add("up")
    return sorted(names)


def query_range(prom, query, start, end, step):
    q = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
    )
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{q}", timeout=60) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"query {query}: {body}")
    return body["data"]["result"]


def series_text(metric):
    name = metric.pop("__name__")
    first = [k for k in ("job", "instance") if k in metric]
    rest = sorted(k for k in metric if k not in first)
    labels = ",".join(f'{k}="{metric[k]}"' for k in first + rest)
    return f"{name}{{{labels}}}"


def values_text(points, start, step, n):
    """promtool's expanding notation: `VxN` for N+1 equal values in a row,
    `_` for a step without a sample, `stale` for the first step after the
    series ended."""
    at = {}
    for t, v in points:
        at[round((float(t) - start) / step)] = v
    tokens = []
    seen = False
    for i in range(n):
        if i in at:
            tokens.append(at[i])
            seen = True
        elif seen and tokens and tokens[-1] not in ("_", "stale"):
            tokens.append("stale")
        else:
            tokens.append("_")
    out = []
    i = 0
    while i < len(tokens):
        j = i
        while j + 1 < len(tokens) and tokens[j + 1] == tokens[i]:
            j += 1
        if tokens[i] in ("_", "stale") or j == i:
            out.extend(tokens[i : j + 1])
        else:
            out.append(f"{tokens[i]}x{j - i}")
        i = j + 1
    return " ".join(out)


def record(args):
    names = metrics_read_by_alerts(ROOT / "alerts" / "alerts.yml")
    n = int(round((args.end - args.start) / args.step)) + 1
    series = []
    for name in names:
        for r in query_range(args.prometheus, f'{{__name__="{name}"}}', args.start, args.end, args.step):
            series.append(
                {
                    "series": series_text(dict(r["metric"])),
                    "values": values_text(r["values"], args.start, args.step, n),
                }
            )
    series.sort(key=lambda s: s["series"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "note": args.note,
        "step": f"{args.step}s",
        "samples": n,
        "metrics": names,
        "input_series": series,
    }
    out.write_text(
        "# Recorded by tools/record_alert_series.py record; do not edit.\n"
        + yaml.safe_dump(doc, sort_keys=False, width=100000)
    )
    print(f"{out}: {len(series)} series of {len(names)} metrics, {n} samples each")


def compose_one(spec_path):
    spec = yaml.safe_load(spec_path.read_text())
    if "from" in spec:
        # The tests of another spec, with this one's rule files.
        base = yaml.safe_load((spec_path.parent / spec.pop("from")).read_text())
        spec["tests"] = base["tests"]
        spec.setdefault("evaluation_interval", base.get("evaluation_interval"))
    for t in spec["tests"]:
        name = t.pop("series")
        only = t.pop("only", None)
        rec = yaml.safe_load((RECORDED / f"{name}.series.yml").read_text())
        series = rec["input_series"]
        if only is not None:
            series = [s for s in series if re.search(only, s["series"])]
        rest = dict(t)
        t.clear()
        t["name"] = rest.pop("name")
        t["interval"] = rec["step"]
        t["input_series"] = series
        t.update(rest)
    head = (
        f"# Written by tools/record_alert_series.py compose from {spec_path.name}\n"
        "# and the series in recorded/: edit those, then run it again.\n"
    )
    return head + yaml.safe_dump(spec, sort_keys=False, width=100000)


def compose(args):
    stale = []
    for spec_path in sorted(TESTS.glob("*.spec.yml")):
        out = TESTS / spec_path.name.replace(".spec.yml", ".test.yml")
        text = compose_one(spec_path)
        if args.check:
            if not out.exists() or out.read_text() != text:
                stale.append(str(out.relative_to(ROOT)))
        else:
            out.write_text(text)
    if stale:
        sys.exit(
            "not what tools/record_alert_series.py compose writes: "
            + ", ".join(stale)
        )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--prometheus", required=True)
    r.add_argument("--start", type=float, required=True)
    r.add_argument("--end", type=float, required=True)
    r.add_argument("--step", type=int, default=15)
    r.add_argument("--out", required=True)
    r.add_argument("--note", required=True)
    c = sub.add_parser("compose")
    c.add_argument("--check", action="store_true")
    args = p.parse_args()
    {"record": record, "compose": compose}[args.cmd](args)


if __name__ == "__main__":
    main()
