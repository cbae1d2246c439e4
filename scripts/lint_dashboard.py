#!/usr/bin/env python3
"""Checks a Grafana dashboard offline and writes its PromQL for promtool.

Every panel other than a row must name a datasource that Grafana's provisioning defines and
have at least one target with an expression; template variables used must be defined.
Every expression is written to --rules-out as a recording rule (variables replaced by a
placeholder), so that `promtool check rules` parses it with Prometheus's own parser.
Exits 1 listing every problem.
"""
import argparse
import json
import re
import sys
from pathlib import Path

import yaml

VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


def panels(dashboard):
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dashboard", type=Path)
    ap.add_argument("--datasources", type=Path, required=True, help="Grafana provisioning/datasources folder")
    ap.add_argument("--rules-out", type=Path, required=True)
    args = ap.parse_args()

    uids = set()
    for f in sorted(args.datasources.glob("*.y*ml")):
        uids |= {d.get("uid") for d in (yaml.safe_load(f.read_text()) or {}).get("datasources", [])}

    errors = []
    try:
        dashboard = json.loads(args.dashboard.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"{args.dashboard}: not readable JSON: {e}")
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    rules, ids = [], set()
    for panel in panels(dashboard):
        name = f"panel {panel.get('id')} ({panel.get('title')!r})"
        if panel.get("id") in ids:
            errors.append(f"{name}: duplicate id")
        ids.add(panel.get("id"))
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not any(t.get("expr", "").strip() for t in targets):
            errors.append(f"{name}: no target with an expression")
        for t in targets:
            ds = t.get("datasource") or panel.get("datasource") or {}
            if ds.get("uid") not in uids:
                errors.append(f"{name} target {t.get('refId')}: datasource {ds} is not provisioned (uids {sorted(uids)})")
            expr = t.get("expr", "")
            for m in VARIABLE.finditer(expr):
                if next(g for g in m.groups() if g) not in variables:
                    errors.append(f"{name} target {t.get('refId')}: undefined variable {m.group(0)}")
            # Any value will do for parsing; "0000-00" looks like a month.
            rules.append({"record": f"dashboard:panel{panel.get('id')}:{t.get('refId')}",
                          "expr": VARIABLE.sub("0000-00", expr)})
    if not rules:
        errors.append("the dashboard has no expressions at all")
    args.rules_out.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    for e in errors:
        print(f"{args.dashboard}: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
