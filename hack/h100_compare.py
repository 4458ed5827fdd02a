#!/usr/bin/env python3
"""Compares two nvml-probe documents: GPU 0 of a real machine with GPU 0 of a
simulator profile, field by field, and prints a markdown table
(field | real | simulated | same?).

Usage: h100_compare.py REAL.json SIM.json [--output FILE]
                       [--fail-on-difference] [--expect-difference F1,F2,...]

Per GPU, not as a whole: a one-GPU machine compares its GPU 0 with the
profile's GPU 0; the GPU count and the topology row are shown but, depending
on the machine's size, not counted as differences. Telemetry values that move
by themselves (utilisation, temperature, power, energy, current clocks, free
and used memory, event wait time) are compared by return code and presence
only; their values are shown.

Exit status: 0, or 1 when --fail-on-difference is given and a counted field
differs, or when a field named by --expect-difference does not differ (or is
missing from the table), or 2 when a document cannot be read or has no GPU.
Standard library only.
"""

import argparse
import json
import sys

# Fields whose values change on their own; only presence (and the call's
# return code, a separate field) is compared.
VOLATILE = {
    "nvml.utilization.gpu_percent",
    "nvml.utilization.memory_percent",
    "nvml.temperature_gpu.celsius",
    "nvml.power_usage.milliwatts",
    "nvml.total_energy.millijoules",
    "nvml.clock_sm.mhz",
    "nvml.clock_mem.mhz",
    "nvml.memory_v2.free",
    "nvml.memory_v2.used",
    "nvml.bar1.free",
    "nvml.bar1.used",
    "events.waited_ms",
    "events.event_data",
}
# Shown, never counted: they depend on how many GPUs the machine has.
PER_MACHINE = {"gpu_count", "topology.gpu0_to_others", "library", "driver_root"}


def flatten(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out[f"{prefix}.count"] = len(value)
        for i, v in enumerate(value):
            flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(value, list):
        out[prefix] = summarize_list(value)
    else:
        out[prefix] = value


def summarize_list(values):
    """["active", "active", "NVML_ERROR_NOT_SUPPORTED"] -> "active x2, NVML_ERROR_NOT_SUPPORTED x1"."""
    if not values:
        return "(none)"
    counts = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in counts.items())


def gpu0_fields(doc, name):
    if doc.get("error"):
        raise ValueError(f"{name}: nvml-probe failed: {doc['error']}")
    gpus = doc.get("gpus") or []
    if not gpus:
        raise ValueError(f"{name}: no GPU in the document")
    fields = {}
    for key in ("driver_version", "nvml_version", "cuda_driver_version_string",
                "minimum_versions", "gpu_count", "missing_symbols"):
        if key in doc:
            flatten(key, doc[key], fields)
    flatten("inventory", gpus[0].get("inventory", {}), fields)
    flatten("nvml", gpus[0].get("nvml", {}), fields)
    flatten("events", doc.get("events", {}), fields)
    links = doc.get("links") or []
    if links:
        others = [l["path"] + (f"({l['nvlinks']})" if l.get("nvlinks") else "")
                  for j, l in enumerate(links[0]) if j != 0]
        fields["topology.gpu0_to_others"] = summarize_list(others)
    return fields


def cell(v):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).replace("|", "\\|")


def compare(real, sim):
    """Rows of (field, real, simulated, verdict, counted_difference)."""
    rows = []
    order = list(real.keys()) + [k for k in sim.keys() if k not in real]
    for f in order:
        r, s = real.get(f), sim.get(f)
        if f in PER_MACHINE:
            verdict, counted = ("yes" if r == s else "n/a (machine size)"), False
        elif f in VOLATILE:
            same = (r is None) == (s is None)
            verdict, counted = ("yes (value varies)" if same else "no"), not same
        else:
            verdict, counted = ("yes" if r == s else "no"), r != s
        rows.append((f, r, s, verdict, counted))
    return rows


def render(rows, real_name, sim_name):
    diffs = [r[0] for r in rows if r[4]]
    lines = [f"Comparing GPU 0 of `{real_name}` (real) with GPU 0 of `{sim_name}` (simulated).", "",
             "| field | real | simulated | same? |", "|---|---|---|---|"]
    for f, r, s, verdict, _ in rows:
        lines.append(f"| {f} | {cell(r)} | {cell(s)} | {verdict} |")
    lines += ["", f"differences: {len(diffs)}" + (f" ({', '.join(diffs)})" if diffs else "")]
    return "\n".join(lines) + "\n", diffs


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("real")
    ap.add_argument("sim")
    ap.add_argument("--output", help="also write the table here")
    ap.add_argument("--fail-on-difference", action="store_true")
    ap.add_argument("--expect-difference", default="",
                    help="comma-separated fields that must differ")
    args = ap.parse_args(argv)
    try:
        with open(args.real) as f:
            real = gpu0_fields(json.load(f), args.real)
        with open(args.sim) as f:
            sim = gpu0_fields(json.load(f), args.sim)
    except (OSError, ValueError) as e:
        print(f"h100_compare: {e}", file=sys.stderr)
        return 2
    rows = compare(real, sim)
    text, diffs = render(rows, args.real, args.sim)
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    status = 0
    if args.fail_on_difference and diffs:
        print(f"h100_compare: {len(diffs)} field(s) differ: {', '.join(diffs)}", file=sys.stderr)
        status = 1
    for want in filter(None, args.expect_difference.split(",")):
        if want not in diffs:
            print(f"h100_compare: expected {want} to differ, but it does not"
                  f" (or is not a field)", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
