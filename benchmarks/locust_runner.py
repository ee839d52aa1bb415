"""Run locust scenarios against a pinned fastserve: latency percentiles, CSVs and plots.

Starts fastserve on `--models` pinned to core 0 (OMP_NUM_THREADS=1, via _harness), then
runs each scenario (benchmarks/scenarios/*.toml) as one headless locust process pinned to
core 1, sampling that process's CPU from /proc/<pid>/stat: over ~90% its figures measure
locust, not the server (one locust process tops out far below fastserve's throughput;
wrk is the tool for req/s, STYLE.md §9). Writes, per scenario, locust's CSVs
(`<name>_stats.csv`, `_stats_history.csv`, `_failures.csv`, `_exceptions.csv`), its log
and `<name>.png` (latency by percentile, 50 to 99.9, and over time) to
benchmarks/results/locust-<timestamp>/, with summary.json and summary.txt. Not a test.

Run from the repo root:
    python benchmarks/locust_runner.py                          # every scenario
    python benchmarks/locust_runner.py digits_v2_json mix --duration 10s --users 16
Exit status 1 when a scenario had a failure, locust failed, or the server died.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import _harness as h

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
SCENARIOS = ROOT / "benchmarks" / "scenarios"
LOCUSTFILE = ROOT / "benchmarks" / "locustfile.py"
RESULTS = ROOT / "benchmarks" / "results"

# Scenario keys passed to the locustfile as --key-with-dashes, and the run's own keys.
LOCUST_KEYS = ("api", "model", "input_name", "shape", "datatype", "image_size",
               "output_name", "output_shape", "batched", "seed", "accept_encoding")
RUN_KEYS = ("description", "users", "spawn_rate", "duration")
PERCENTILES = ("50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%")
TICKS = ("50%", "75%", "90%", "95%", "99%", "99.9%")  # the others crowd on this axis
CPU_WARN = 0.90
SAMPLE_S = 0.5


def seconds(text: str | int) -> int:
    """'90', '90s', '1m30s', '1h' -> seconds."""
    if isinstance(text, int) or str(text).isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(text).strip())
    if not parts or not any(parts.groups()):
        raise ValueError(f"duration {text!r}: use seconds or e.g. 30s, 1m30s")
    hrs, mins, secs = (int(g or 0) for g in parts.groups())
    return hrs * 3600 + mins * 60 + secs


def load_scenario(path: Path, args: argparse.Namespace) -> dict:
    with path.open("rb") as f:
        sc = tomllib.load(f)
    unknown = set(sc) - set(LOCUST_KEYS) - set(RUN_KEYS)
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}; "
                         f"known: {', '.join(RUN_KEYS + LOCUST_KEYS)}")
    sc["name"] = path.stem
    sc["users"] = args.users or int(sc.get("users", 16))
    sc["spawn_rate"] = args.spawn_rate or float(sc.get("spawn_rate", sc["users"]))
    sc["duration_s"] = seconds(args.duration or sc.get("duration", "30s"))
    return sc


def locust_options(sc: dict) -> list[str]:
    out = []
    for key in LOCUST_KEYS:
        if key in sc:
            value = sc[key]
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def scenario_paths(names: list[str]) -> list[Path]:
    if not names:
        return sorted(SCENARIOS.glob("*.toml"))
    paths = []
    for name in names:
        p = Path(name)
        p = p if p.suffix == ".toml" else SCENARIOS / f"{name}.toml"
        if not p.is_file():
            raise SystemExit(f"no scenario file {p}")
        paths.append(p)
    return paths


# One scenario

def run_locust(sc: dict, host: str, out: Path, server: h.Server | None) -> dict:
    """Run one scenario's locust, pinned to h.WRK_CORE, sampling its CPU (and the
    server's) every SAMPLE_S; returns the figures read back from its CSVs."""
    prefix = out / sc["name"]
    cmd = ["taskset", "-c", h.WRK_CORE, sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
           "--headless", "-u", str(sc["users"]), "-r", f"{sc['spawn_rate']:g}",
           "-t", f"{sc['duration_s']}s", "--csv", str(prefix), "--host", host,
           "--only-summary", *locust_options(sc)]
    log_path = prefix.with_suffix(".log")
    samples: list[tuple[float, int, int]] = []  # (time, locust ticks, server ticks)
    with log_path.open("w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + sc["duration_s"] + 120
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    break
                ticks = sum(h._cpu_ticks(p) for p in h._tree(proc.pid))
                srv = (sum(h._cpu_ticks(p) for p in h._tree(server.proc.pid))
                       if server else 0)
                samples.append((time.monotonic(), ticks, srv))
                time.sleep(SAMPLE_S)
        finally:
            if proc.poll() is None:
                proc.kill()
            rc = proc.wait()
    res = {"scenario": sc["name"], "locust_rc": rc, "command": cmd,
           **cpu_figures(samples, sc["duration_s"], sc["users"] / sc["spawn_rate"],
                         server_sampled=server is not None)}
    res.update(read_stats(prefix))
    text = log_path.read_text(errors="replace")
    res["locust_cpu_warning"] = "CPU usage above 90%" in text  # locust's own check
    if rc not in (0, 1):  # 1: some requests failed, reported below; else locust broke
        res["locust_log_tail"] = "\n".join(text.splitlines()[-20:])
    return res


def cpu_figures(samples: list[tuple[float, int, int]], duration: int, ramp: float,
                server_sampled: bool = True) -> dict:
    """Locust's and the server's CPU over the load window: the last `duration` s before
    locust exited, less the ramp-up and the final second (start-up imports and writing
    the CSVs are not load). A server not started here (--host) is not sampled: its CPU
    is None (printed n/a), never 0."""
    if len(samples) < 2:
        return {"locust_cpu": None, "locust_cpu_max": None, "server_cpu": None}
    end = samples[-1][0]
    window = [s for s in samples if end - duration + ramp <= s[0] <= end - 1.0]
    if len(window) < 2:
        window = samples
    clk = os.sysconf("SC_CLK_TCK")
    wall = window[-1][0] - window[0][0]
    per_interval = [(b[1] - a[1]) / clk / (b[0] - a[0])
                    for a, b in zip(window, window[1:], strict=False) if b[0] > a[0]]
    return {"locust_cpu": (window[-1][1] - window[0][1]) / clk / wall,
            "locust_cpu_max": max(per_interval),
            "server_cpu": (window[-1][2] - window[0][2]) / clk / wall if server_sampled
            else None,
            "cpu_window_s": wall}


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


def read_stats(prefix: Path) -> dict:
    stats_csv = Path(f"{prefix}_stats.csv")
    if not stats_csv.is_file():
        return {"rows": [], "failures": []}
    with stats_csv.open() as f:
        rows = [{"name": r["Name"], "requests": int(r["Request Count"]),
                 "failures": int(r["Failure Count"]), "rps": _num(r["Requests/s"]),
                 "avg_ms": _num(r["Average Response Time"]),
                 **{p: _num(r.get(p)) for p in PERCENTILES}} for r in csv.DictReader(f)]
    failures = []
    fail_csv = Path(f"{prefix}_failures.csv")
    if fail_csv.is_file():
        with fail_csv.open() as f:
            failures = [{"name": r["Name"], "error": r["Error"],
                         "occurrences": int(r["Occurrences"])} for r in csv.DictReader(f)]
    agg = next((r for r in rows if r["name"] == "Aggregated"), None)
    return {"rows": rows, "failures": failures, "aggregated": agg}


def plot(prefix: Path, sc: dict, res: dict, cpu: str) -> Path | None:
    """Latency by percentile (50..99.9, on a 'nines' axis) per request name, and the
    aggregated p50/p95/p99 and req/s over time from the stats history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in res["rows"] if r["requests"]]
    if not rows:
        return None
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(13, 4.8))
    xs = [-math.log10(1 - float(p[:-1]) / 100) for p in PERCENTILES]
    for r in rows:
        points = [(x, r[p]) for x, p in zip(xs, PERCENTILES, strict=True) if r[p] is not None]
        style = {"color": "black", "linewidth": 2.2} if r["name"] == "Aggregated" else {}
        ax.plot(*zip(*points, strict=True), marker="o", label=r["name"], **style)
    ticks = [(x, p) for x, p in zip(xs, PERCENTILES, strict=True) if p in TICKS]
    ax.set_xticks(*zip(*ticks, strict=True))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("latency by percentile (whole run)")

    history = Path(f"{prefix}_stats_history.csv")
    if history.is_file():
        with history.open() as f:
            agg = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
        if agg:
            t0 = int(agg[0]["Timestamp"])
            ts = [int(r["Timestamp"]) - t0 for r in agg]
            for p in ("50%", "95%", "99%"):
                ax_t.plot(ts, [_num(r[p]) or math.nan for r in agg], label=f"p{p[:-1]}")
            ax_t.set_xlabel("time (s)")
            ax_t.set_ylabel("latency (ms)")
            ax_t.set_ylim(bottom=0)
            ax_t.grid(alpha=0.3)
            rps = ax_t.twinx()
            rps.plot(ts, [_num(r["Requests/s"]) or 0 for r in agg], "k--", alpha=0.5,
                     label="req/s")
            rps.set_ylabel("req/s")
            rps.set_ylim(bottom=0)
            lines = ax_t.get_legend_handles_labels()
            more = rps.get_legend_handles_labels()
            ax_t.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small")
            ax_t.set_title("over time (locust's rolling window)")
    api = sc.get("api", "v2_json")
    fig.suptitle(f"{sc['name']}: {api if isinstance(api, str) else ','.join(api)} on "
                 f"{sc.get('model', 'digits')}, shape {sc.get('shape', [1, 64])}, "
                 f"{sc['users']} users; locust CPU {_pct(res.get('locust_cpu'))}\n{cpu}; "
                 "locust rounds latencies under 100 ms to whole ms", fontsize="medium")
    fig.tight_layout()
    path = prefix.with_suffix(".png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:g}"


def summary_line(res: dict) -> str:
    agg = res.get("aggregated") or {}
    line = (f"{res['scenario']:24} {agg.get('rps') or 0:>9,.1f} req/s  failures "
            f"{agg.get('failures', 0)}/{agg.get('requests', 0)}  p50/p95/p99 "
            f"{_ms(agg.get('50%'))}/{_ms(agg.get('95%'))}/{_ms(agg.get('99%'))} ms  "
            f"locust CPU {_pct(res.get('locust_cpu'))} (max {_pct(res.get('locust_cpu_max'))})"
            f"  server CPU {_pct(res.get('server_cpu'))}")
    names = [r for r in res.get("rows", []) if r["name"] != "Aggregated"]
    if len(names) > 1:
        line += "".join(f"\n    {r['name']:22} {r['rps'] or 0:>9,.1f} req/s  failures "
                        f"{r['failures']}/{r['requests']}  p50/p95/p99 {_ms(r['50%'])}/"
                        f"{_ms(r['95%'])}/{_ms(r['99%'])} ms" for r in names)
    return line


def problems_of(res: dict) -> list[str]:
    out = []
    cpu = res.get("locust_cpu")
    if (cpu is not None and cpu > CPU_WARN) or res.get("locust_cpu_warning"):
        out.append(f"WARNING {res['scenario']}: locust used {_pct(cpu)} of its core (max "
                   f"{_pct(res.get('locust_cpu_max'))}): its figures measure locust, not "
                   "the server; use fewer users or wrk")
    for f in res.get("failures", []):
        out.append(f"FAILURE {res['scenario']}: {f['occurrences']} x {f['name']}: "
                   f"{f['error']}")
    if res["locust_rc"] not in (0, 1) or not res.get("aggregated"):
        out.append(f"ERROR {res['scenario']}: locust exited {res['locust_rc']}\n"
                   + res.get("locust_log_tail", ""))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("scenarios", nargs="*",
                   help="scenario names or .toml paths (default: benchmarks/scenarios/*)")
    p.add_argument("--models", type=Path, default=MODELS, help="fastserve --models DIR")
    p.add_argument("--host", default="",
                   help="use this running server (e.g. http://127.0.0.1:8080) instead "
                        "of starting fastserve; its CPU is then not sampled")
    p.add_argument("--duration", default="", help="override every scenario's duration")
    p.add_argument("--users", type=int, default=0, help="override every scenario's users")
    p.add_argument("--spawn-rate", type=float, default=0, help="override the spawn rate")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default benchmarks/results/locust-<timestamp>)")
    args = p.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 cores: server on core 0, locust on core 1")
    scenarios = [load_scenario(path, args) for path in scenario_paths(args.scenarios)]
    if not scenarios:
        sys.exit(f"no scenarios in {SCENARIOS}")
    out = args.out or RESULTS / f"locust-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    ver = h.versions()
    ver["locust"] = metadata.version("locust")
    cpu = h.cpu_model()
    meta = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu,
            "cores": os.cpu_count(), "versions": ver, "git": h.git_state(ROOT),
            "loadavg_before": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()},
            "pinning": {"server": h.SERVER_CORE, "locust": h.WRK_CORE, "OMP_NUM_THREADS": 1}}
    print(f"{cpu} ({os.cpu_count()} cores), load average {meta['loadavg_before'][0]:.1f}; "
          f"git {meta['git']}; locust {ver['locust']}; results in {out}", flush=True)

    server = None
    results, problems = [], []
    try:
        if args.host:
            host = args.host
        else:
            port, mport = h.free_port(), h.free_port()
            argv = [sys.executable, "-m", "fastserve", "--models", str(args.models),
                    "--port", str(port), "--management-port", str(mport)]
            server = h.Server("fastserve", argv, port, ROOT)
            meta["server_argv"] = argv
            meta["server_ready_s"] = server.wait_until("GET", "/v2/health/ready", timeout=120)
            host = f"http://127.0.0.1:{port}"
            print(f"fastserve ready on core {h.SERVER_CORE} in {meta['server_ready_s']:.1f} s "
                  f"({host}); locust on core {h.WRK_CORE}", flush=True)
        for sc in scenarios:
            print(f"-- {sc['name']}: {sc.get('description', '')} ({sc['users']} users, "
                  f"{sc['duration_s']} s)", flush=True)
            res = run_locust(sc, host, out, server)
            res["scenario_config"] = {k: v for k, v in sc.items() if k != "name"}
            res["plot"] = str(plot(out / sc["name"], sc, res, cpu))
            results.append(res)
            print(summary_line(res), flush=True)
            for line in problems_of(res):
                print("  " + line, flush=True)
                problems.append(line)
            if server and not server.alive():
                problems.append(f"ERROR fastserve {server.state()} during {sc['name']}\n"
                                f"{server.log_tail()}")
                print(problems[-1], flush=True)
                break
    finally:
        meta["loadavg_after"] = os.getloadavg()
        if server:
            failed = any(p.startswith(("ERROR", "FAILURE")) for p in problems)
            if failed:
                print(f"fastserve log tail:\n{server.log_tail()}")
            meta["server_rc"] = server.stop(keep_log=failed)
        meta["results"] = results
        meta["problems"] = problems
        (out / "summary.json").write_text(json.dumps(meta, indent=2, default=str))
        (out / "summary.txt").write_text(
            f"{cpu} ({os.cpu_count()} cores); git {meta['git']}; load average "
            f"{meta['loadavg_before'][0]:.1f} before, {meta['loadavg_after'][0]:.1f} after\n"
            + "\n".join(summary_line(r) for r in results) + "\n"
            + "".join(f"{line}\n" for line in problems))
    print(f"wrote {out}")
    return 1 if any(p.startswith(("ERROR", "FAILURE")) for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main())
