#!/usr/bin/env python3
"""Runs every panel expression of a Grafana dashboard against a live Prometheus.

Template variables are filled in the way Grafana fills them when nobody has chosen a value:
a variable whose current value is All takes its `allValue`; a `label_values(metric, label)`
query variable takes the first of its values in the variable's sort order (`--var name=value`
overrides that). Each expression then goes to
/api/v1/query; the script exits 1 listing every expression that errors or returns no data
(an empty result, or only NaN, which Grafana shows as "No data" too).

    tests/dashboard_queries.py --prometheus http://127.0.0.1:9090 --dashboard deploy/grafana/dashboards/hotline.json
"""
import argparse
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*$")


def api(base, path, params):
    url = f"{base.rstrip('/')}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # Prometheus answers 400/422 with a JSON error body
        try:
            return json.load(e)
        except ValueError:
            return {"status": "error", "error": f"HTTP {e.code}"}


def panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variable_values(base, dashboard, overrides):
    values = dict(overrides)
    for v in dashboard.get("templating", {}).get("list", []):
        if v["name"] in values:
            continue
        current = v.get("current", {}).get("value")
        if v.get("includeAll") and current in ("$__all", ["$__all"]):
            values[v["name"]] = v.get("allValue", ".*")
            continue
        query = v.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        m = LABEL_VALUES.match(query)
        if v.get("type") != "query" or not m:
            sys.exit(f"variable {v['name']}: only label_values(metric, label) queries are supported; pass --var")
        reply = api(base, "series", {"match[]": m.group(1)})
        found = sorted({s[m.group(2)] for s in reply.get("data", []) if m.group(2) in s})
        if v.get("sort") in (2, 4, 6):  # Grafana's descending sorts
            found.reverse()
        if not found:
            sys.exit(f"variable {v['name']}: {query} has no values in Prometheus")
        values[v["name"]] = found[0]
    return values


def has_data(result):
    kind, data = result["resultType"], result["result"]
    if kind in ("scalar", "string"):
        data = [{"value": data}]
    samples = [float(s["value"][1]) for s in data if "value" in s]
    samples += [float(v[1]) for s in data for v in s.get("values", [])]
    return any(not math.isnan(x) for x in samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()

    with open(args.dashboard, encoding="utf-8") as f:
        dashboard = json.load(f)
    values = variable_values(args.prometheus, dashboard, dict(v.split("=", 1) for v in args.var))

    failures, count = [], 0
    for panel in panels(dashboard):
        for t in panel.get("targets", []):
            expr = VARIABLE.sub(lambda m: values.get(next(g for g in m.groups() if g), m.group(0)), t.get("expr", ""))
            if not expr.strip():
                continue
            count += 1
            reply = api(args.prometheus, "query", {"query": expr})
            if reply.get("status") != "success":
                problem = f"error: {reply.get('errorType', '')} {reply.get('error', '')}".strip()
            elif not has_data(reply["data"]):
                problem = "no data"
            else:
                continue
            failures.append(f"panel {panel.get('title')!r} target {t.get('refId')}: {problem}\n    {expr}")

    for failure in failures:
        print(failure)
    print(f"{count - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures or not count else 0)


if __name__ == "__main__":
    main()
