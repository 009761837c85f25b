"""Gathers the figures bench/run left in its work directory into one JSON file and prints the
table: messages per second for each contender, the ratios, reply latency, peak memory, and which
of SPEC §8's targets are met."""

import datetime
import json
import os

import benchkit as bk

TARGETS = {
    "vs_baseline_at_least": 3.0,
    "vs_floor_at_least": 1.0,
    "latency_p50_seconds_at_most": 0.5,
    "latency_p99_seconds_at_most": 2.0,
    "peak_rss_mb_at_most": 50.0,
}


def opt(path):
    try:
        return bk.read_json(path)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def rss_mb(path):
    try:
        text = open(path).read().strip()
        return round(int(text) / 1024, 1) if text else None
    except (FileNotFoundError, ValueError):
        return None


def ratio(a, b):
    if a and b and a.get("complete") and b.get("complete"):
        return round(a["per_second"] / b["per_second"], 2)
    return None


def main(work, out):
    meta = opt(os.path.join(work, "meta.json")) or {}
    d = opt(os.path.join(work, "daemon.json"))
    b = opt(os.path.join(work, "baseline.json"))
    f = opt(os.path.join(work, "floor.json"))
    ds = opt(os.path.join(work, "daemon-split.json"))
    bs = opt(os.path.join(work, "baseline-split.json"))
    fs = opt(os.path.join(work, "floor-split.json"))
    lat = opt(os.path.join(work, "latency.json"))
    once_rss = rss_mb(os.path.join(work, "daemon.rss_kb"))
    idle_rss = rss_mb(os.path.join(work, "idle.rss_kb"))
    if d is not None:
        d["peak_rss_mb"] = once_rss
    if lat is not None:
        lat["daemon_peak_rss_mb"] = idle_rss
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run": meta,
        "load": opt(os.path.join(work, "load.json")),
        "iapt_intake_once": d,
        "baseline": b,
        "floor": f,
        "iapt_intake_idle_latency": lat,
        "ratios": {"iapt_intake_vs_baseline": ratio(d, b), "iapt_intake_vs_floor": ratio(d, f)},
        # The same burst with the mail stack on cores of its own and the contender on the rest
        # (bench/README.md, "placement"); the targets are judged on the shared figures above.
        "split": {
            "stack_cpus": meta.get("stack_cpus"),
            "client_cpus": meta.get("client_cpus"),
            "iapt_intake_once": ds,
            "baseline": bs,
            "floor": fs,
            "ratios": {
                "iapt_intake_vs_baseline": ratio(ds, bs),
                "iapt_intake_vs_floor": ratio(ds, fs),
            },
        },
        "targets": TARGETS,
    }
    met = {}
    r = result["ratios"]
    if r["iapt_intake_vs_baseline"] is not None:
        met["vs_baseline"] = r["iapt_intake_vs_baseline"] >= TARGETS["vs_baseline_at_least"]
    if r["iapt_intake_vs_floor"] is not None:
        met["vs_floor"] = r["iapt_intake_vs_floor"] >= TARGETS["vs_floor_at_least"]
    if lat and lat.get("p50_seconds") is not None:
        met["latency_p50"] = lat["p50_seconds"] <= TARGETS["latency_p50_seconds_at_most"]
        met["latency_p99"] = lat["p99_seconds"] <= TARGETS["latency_p99_seconds_at_most"]
    peaks = [x for x in (once_rss, idle_rss) if x is not None]
    if peaks:
        met["memory"] = max(peaks) <= TARGETS["peak_rss_mb_at_most"]
    result["met"] = met
    bk.write_json(out, result)
    print_table(result)
    print(f"\nfigures written to {out}")


def row(name, fig):
    if not fig:
        return f"  {name:<26} not measured"
    if not fig.get("complete"):
        return f"  {name:<26} INCOMPLETE: {fig.get('replies')} of {fig.get('messages')} replies"
    trials = fig.get("trials_per_second")
    each = f"; trials {', '.join(f'{x:.1f}' for x in trials)}" if trials and len(trials) > 1 else ""
    cpu = f", its own CPU {fig['cpu_seconds']:.2f} s" if fig.get("cpu_seconds") is not None else ""
    return (
        f"  {name:<26} {fig['per_second']:>8.1f} messages/s"
        f"   ({fig['messages']} in {fig['seconds']:.2f} s to the last reply delivered{cpu}{each})"
    )


def print_table(r):
    m = r["run"]
    print(
        f"N = {m.get('messages')} submissions, TLS {m.get('tls')}, iapt-intake source "
        f"{m.get('source')}, commit {m.get('commit')}, {m.get('machine_cores')} cores"
    )
    if r["load"]:
        ld = r["load"]
        print(f"  loading through Postfix:   {ld['smtp_per_second']} messages/s accepted")
    print(row("iapt-intake run --once", r["iapt_intake_once"]))
    print(row("baseline script", r["baseline"]))
    print(row("floor (no parsing)", r["floor"]))
    ra = r["ratios"]
    print(f"  iapt-intake / baseline:    {ra['iapt_intake_vs_baseline']}   (target >= 3)")
    print(f"  iapt-intake / floor:       {ra['iapt_intake_vs_floor']}   (target >= 1)")
    sp = r.get("split") or {}
    if sp.get("iapt_intake_once") or sp.get("floor"):
        print(
            f"  with the mail stack on CPU {sp.get('stack_cpus')} and the contender on CPU "
            f"{sp.get('client_cpus')} (the mail servers as other machines):"
        )
        print(row("  iapt-intake run --once", sp.get("iapt_intake_once")))
        print(row("  baseline script", sp.get("baseline")))
        print(row("  floor (no parsing)", sp.get("floor")))
        sr = sp.get("ratios") or {}
        print(f"    iapt-intake / baseline:  {sr.get('iapt_intake_vs_baseline')}")
        print(f"    iapt-intake / floor:     {sr.get('iapt_intake_vs_floor')}")
    lat = r["iapt_intake_idle_latency"]
    if lat and lat.get("p50_seconds") is not None:
        print(
            f"  reply latency (IDLE):      p50 {lat['p50_seconds']} s, p99 {lat['p99_seconds']} s,"
            f" max {lat['max_seconds']} s over {lat['replies']} replies at "
            f"{lat['rate_per_second']}/s ({lat['missing']} missing)   (targets 0.5 s / 2 s)"
        )
    else:
        print("  reply latency (IDLE):      not measured")
    d = r["iapt_intake_once"] or {}
    print(
        f"  peak RSS:                  run --once {d.get('peak_rss_mb')} MB, daemon "
        f"{(lat or {}).get('daemon_peak_rss_mb')} MB   (target <= 50 MB)"
    )
    missed = [k for k, ok in r["met"].items() if not ok]
    print(
        f"  targets missed (judged on the shared cores): {', '.join(missed) if missed else 'none'}"
    )
