#!/usr/bin/python3
"""Draws the Grafana dashboard's time-series panels from a Prometheus, one PNG per row.

Grafana is not needed: the panels' own queries (deployments/grafana/gpu-device-plugin-dashboard.json)
run against Prometheus' query_range API over the last --minutes, with the dashboard's variables
($node, $namespace) matching everything and rate windows shortened to --rate-window so that a
few minutes of data show. Each row of the dashboard ("Per node", "Per pod", "Device plugin")
becomes DIR/dashboard-<row>.png, its panels in a grid, one line per series.

Usage: hack/plot-dashboard.py --prometheus http://127.0.0.1:19090 --out docs/img [--minutes 10]
(`hack/demo.sh --no-wait --plots DIR` runs it against the demo's Prometheus.) Needs Debian's
python3-matplotlib.
"""

import argparse
import datetime
import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deployments", "grafana",
                         "gpu-device-plugin-dashboard.json")


def query_range(base, expr, start, end, step):
    """The matrix result of one range query; exits with the reason when Prometheus refuses it."""
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=30) as r:
            body = json.load(r)
    except Exception as e:  # noqa: BLE001 - any failure ends the run with its reason
        sys.exit(f"plot-dashboard: query_range {expr!r} against {base} failed: {e}")
    if body.get("status") != "success":
        sys.exit(f"plot-dashboard: Prometheus refused {expr!r}: {body.get('error')}")
    return body["data"]["result"]


def legend(metric, fmt):
    """The series' name: the panel's legendFormat filled in, else its labels."""
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)
    return ",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__") or "value"


def rows(dashboard):
    """[(row title, [panel])] for the time-series panels, in the dashboard's order."""
    out = []
    for p in dashboard["panels"]:
        if p.get("type") == "row":
            out.append((p.get("title", "panels"), []))
        elif p.get("type") == "timeseries":
            if not out:
                out.append(("panels", []))
            out[-1][1].append(p)
    return [(t, ps) for t, ps in out if ps]


def expand(expr, rate_window):
    expr = expr.replace('"$node"', '".*"').replace('"$namespace"', '".*"')
    return re.sub(r"\[(5m|10m)\]", f"[{rate_window}]", expr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True, help="Prometheus' base URL")
    ap.add_argument("--out", required=True, help="the directory for the PNGs")
    ap.add_argument("--minutes", type=float, default=10, help="how far back to draw (default 10)")
    ap.add_argument("--rate-window", default="1m", help="the window of rate() (default 1m)")
    ap.add_argument("--dashboard", default=DASHBOARD, help="the Grafana dashboard JSON")
    a = ap.parse_args()

    with open(a.dashboard) as f:
        dashboard = json.load(f)
    end = time.time()
    start = end - a.minutes * 60
    step = max(2, int(a.minutes * 60 / 300))
    os.makedirs(a.out, exist_ok=True)
    drawn = 0
    for title, panels in rows(dashboard):
        cols = 2
        nrows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(12, 3.2 * nrows), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, p in zip(axes.flat, panels):
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            for t in p.get("targets", []):
                for s in query_range(a.prometheus, expand(t["expr"], a.rate_window), start, end, step):
                    xs = [datetime.datetime.fromtimestamp(float(v[0]), datetime.timezone.utc) for v in s["values"]]
                    ys = [float(v[1]) for v in s["values"]]
                    if unit == "bytes":
                        ys = [y / 2**30 for y in ys]
                    ax.plot(xs, ys, label=legend(s["metric"], t.get("legendFormat", "")), linewidth=1.2)
                    drawn += 1
            ax.set_title(p.get("title", ""), fontsize=10)
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
            ax.tick_params(labelsize=8)
            if unit == "bytes":
                ax.set_ylabel("GiB", fontsize=8)
            elif unit == "percentunit":
                ax.set_ylim(-0.02, 1.02)
            elif unit not in ("", "short", "none"):
                ax.set_ylabel(unit, fontsize=8)
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                ax.legend(fontsize=6, ncol=2, loc="upper left")
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, fontsize=9)
        fig.suptitle(f"gpu-device-plugin dashboard: {title}", fontsize=12)
        fig.tight_layout()
        name = "dashboard-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") + ".png"
        fig.savefig(os.path.join(a.out, name), dpi=90)
        plt.close(fig)
        print(os.path.join(a.out, name))
    if drawn == 0:
        sys.exit(f"plot-dashboard: no series in {a.prometheus} over the last {a.minutes} minutes")


if __name__ == "__main__":
    main()
