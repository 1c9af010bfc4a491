#!/usr/bin/env python3
"""Every `runbook_url` of alerts/alerts.yml from one base address.

The base is one line at the top of alerts.yml:

    # runbook_url base: https://example.com/docs/runbook.md

and each alert's runbook_url is BASE#NAME-IN-LOWER-CASE, the anchor of its
section in docs/runbook.md.

  tools/runbook_urls.py                 rewrite the runbook_urls from the base
  tools/runbook_urls.py --base URL      set the base, then rewrite
  tools/runbook_urls.py --check         fail if a runbook_url is not what the
                                        base gives
"""
import argparse
import re
import sys
from pathlib import Path

ALERTS = Path(__file__).resolve().parent.parent / "alerts" / "alerts.yml"
BASE_LINE = re.compile(r"^# runbook_url base: (\S+)\s*$", re.M)


def rewrite(text, base=None):
    if base is not None:
        text, n = BASE_LINE.subn(f"# runbook_url base: {base}", text)
        if n != 1:
            sys.exit(f"{ALERTS}: no single '# runbook_url base:' line")
    m = BASE_LINE.search(text)
    if not m:
        sys.exit(f"{ALERTS}: no '# runbook_url base:' line")
    base = m.group(1)
    out = []
    alert = None
    for line in text.splitlines(keepends=True):
        a = re.match(r"^\s*- alert: (\S+)", line)
        if a:
            alert = a.group(1)
        u = re.match(r"^(\s*runbook_url: )\S+", line)
        if u:
            if alert is None:
                sys.exit(f"{ALERTS}: a runbook_url before any alert")
            line = f"{u.group(1)}{base}#{alert.lower()}\n"
        out.append(line)
    return "".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base")
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    text = ALERTS.read_text()
    new = rewrite(text, args.base)
    if args.check:
        if new != text:
            sys.exit(f"{ALERTS}: runbook_urls differ from the base; run tools/runbook_urls.py")
        return
    ALERTS.write_text(new)


if __name__ == "__main__":
    main()
