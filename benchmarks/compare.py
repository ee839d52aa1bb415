"""fastserve vs TorchServe 0.12 and MLServer 1.7.1: the same models and scenarios, one run.

1. Installs each peer into its own virtual environment under --cache (reused when its
   marker file lists the same packages), `torch==2.13.0` first and again on the peer's
   own pip line, so its dependencies cannot swap the local CPU wheel for a CUDA build.
2. Builds three TorchScript models in a temp dir (mlp 64→256→10; conv [1,3,224,224] →
   [1,8]; mlp_heavy 64→2048→2048→10) and serves them from each server with the smallest
   honest handler: a TorchServe .mar per model with benchmarks/peers/ts_handler.py, an
   MLServer custom runtime (benchmarks/peers/mlserver_runtime.py), and a fastserve model
   repository. Only mlp_heavy batches (max 32 requests, 2 ms) on every server.
3. Starts the three servers, each pinned to core 0 (taskset, OMP_NUM_THREADS=1, one
   worker, one torch thread), checks every request below gets the model's answer, then
   loads each case once for `--prime` s (the JVM's JIT needs it), then runs every case
   round-robin (order reversed on odd rounds) with wrk on core 1: `--warmup` s thrown
   away, then `--duration` s; the median of `--repeat` rounds counts. Before each run it
   waits for every server to go idle, and prints the 1-minute load average (a warning
   above 1.5); each run records the server's CPU share and what other people's processes
   took of either core (from /proc/stat), the measure of how much a busy box skewed it.
   Errors (non-2xx, socket errors and timeouts, warm-ups included) are counted, shown,
   and make the script exit 1 after writing everything.
   benchmarks/bare_server.py (a fixed reply) is measured the same way on the same bodies:
   the ceiling this box, wrk and this script allow, so a low figure can be told apart
   from a slow harness; every run records the server's CPU µs per request.
4. Prints a markdown table (each peer as a ratio to fastserve's same-API row), writes
   benchmarks/results/compare-<timestamp>.json and a bar chart (--chart).

Not a test. Run from the repo root: python benchmarks/compare.py [--duration 10 --repeat 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import _harness as h
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
RESULTS = ROOT / "benchmarks" / "results"
TORCH = "torch==2.13.0"  # the local CPU wheel; any other spec pulls a CUDA build from PyPI
PEER_PACKAGES = {
    "torchserve": ["torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml", "numpy"],
    "mlserver": ["mlserver==1.7.1", "uvloop<0.22", "numpy"],
}
BATCH, DELAY_MS = 32, 2
LOAD_WARN = 1.5
# model: (input shape without the batch dimension, output width, max batch size; 0 = none)
MODELS = {"mlp": ((64,), 10, 0), "conv": ((3, 224, 224), 8, 0), "mlp_heavy": ((64,), 10, BATCH)}
JSON = {"Content-Type": "application/json"}
RAW = {"Content-Type": "application/octet-stream"}
# scenario: (title, wrk connections)
SCENARIOS = {
    "health": ("health", 32),
    "small": ("small JSON infer: mlp, [1,64] FP32", 32),
    "tensor_json": ("conv, [1,3,224,224] FP32 as JSON (2.9 MB)", 8),
    "tensor_bin": ("conv, [1,3,224,224] FP32 binary (602 KB)", 8),
    "batching": (f"mlp_heavy, 64 connections, batched (max {BATCH}, {DELAY_MS} ms)", 64),
}


@dataclass(frozen=True)
class Case:
    scenario: str
    server: str
    request: str
    path: str
    body: str | None = None  # a key of bodies(); None: GET
    ref: str | None = None  # the fastserve case with the same API, for the ratio


CASES = {
    "ts_health": Case("health", "torchserve", "GET /ping", "/ping", ref="fs_health"),
    "mls_health": Case("health", "mlserver", "GET /v2/health/ready", "/v2/health/ready",
                       ref="fs_health"),
    "fs_health": Case("health", "fastserve", "GET /v2/health/ready", "/v2/health/ready"),
    "ts_small": Case("small", "torchserve", "/predictions, JSON list", "/predictions/mlp",
                     "mlp.list", "fs_small_pred"),
    "mls_small": Case("small", "mlserver", "v2 JSON", "/v2/models/mlp/infer", "mlp.v2",
                      "fs_small_v2"),
    "fs_small_v2": Case("small", "fastserve", "v2 JSON", "/v2/models/mlp/infer", "mlp.v2"),
    "fs_small_pred": Case("small", "fastserve", "/predictions, JSON list", "/predictions/mlp",
                          "mlp.list"),
    "ts_tjson": Case("tensor_json", "torchserve", "/predictions, JSON list",
                     "/predictions/conv", "conv.list", "fs_tjson_pred"),
    "mls_tjson": Case("tensor_json", "mlserver", "v2 JSON", "/v2/models/conv/infer", "conv.v2",
                      "fs_tjson_v2"),
    "fs_tjson_v2": Case("tensor_json", "fastserve", "v2 JSON", "/v2/models/conv/infer",
                        "conv.v2"),
    "fs_tjson_pred": Case("tensor_json", "fastserve", "/predictions, JSON list",
                          "/predictions/conv", "conv.list"),
    "ts_tbin": Case("tensor_bin", "torchserve", "/predictions, raw body (np.frombuffer)",
                    "/predictions/conv", "conv.raw", "fs_tbin_pred"),
    "fs_tbin_v2": Case("tensor_bin", "fastserve", "v2 binary extension",
                       "/v2/models/conv/infer", "conv.v2bin"),
    "fs_tbin_pred": Case("tensor_bin", "fastserve", "/predictions, raw body",
                         "/predictions/conv", "conv.raw"),
    "ts_batch": Case("batching", "torchserve", "/predictions, JSON list",
                     "/predictions/mlp_heavy", "mlp_heavy.list", "fs_batch_pred"),
    "mls_batch": Case("batching", "mlserver", "v2 JSON (adaptive batching)",
                      "/v2/models/mlp_heavy/infer", "mlp_heavy.v2", "fs_batch_v2"),
    "fs_batch_v2": Case("batching", "fastserve", "v2 JSON", "/v2/models/mlp_heavy/infer",
                        "mlp_heavy.v2"),
    "fs_batch_pred": Case("batching", "fastserve", "/predictions, JSON list",
                          "/predictions/mlp_heavy", "mlp_heavy.list"),
    # The ceiling, measured the same way: benchmarks/bare_server.py (uvloop + httptools, a
    # fixed reply) receiving the same requests. Its "× fastserve" is how far fastserve is
    # from what this box, wrk and this script allow at all.
    "bare_health": Case("health", "bare", "GET / (fixed reply: the ceiling)", "/",
                        ref="fs_health"),
    "bare_small": Case("small", "bare", "same v2 body, fixed reply (the ceiling)", "/",
                       "mlp.v2", "fs_small_v2"),
    "bare_tjson": Case("tensor_json", "bare", "same v2 body, fixed reply (the ceiling)", "/",
                       "conv.v2", "fs_tjson_v2"),
}
# MLServer has no binary extension over REST: sent once to record its answer, not timed.
PROBES = {"mls_tbin": Case("tensor_bin", "mlserver", "v2 binary extension",
                           "/v2/models/conv/infer", "conv.v2bin")}


# --- environments and models ------------------------------------------------------------

def ensure_env(cache: Path, name: str) -> dict:
    """The peer's venv under `cache`, installed unless its marker lists the same packages."""
    env, want = cache / name, [TORCH, *PEER_PACKAGES[name]]
    marker, python = env / "fastserve-bench.json", str(env / "bin" / "python")
    info = json.loads(marker.read_text()) if marker.exists() else {}
    reused = info.get("packages") == want
    if not reused:
        print(f"installing {name} into {env} ...", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
        pip = [python, "-m", "pip", "install", "--progress-bar", "off"]
        with open(cache / f"{name}-install.log", "w") as log:
            for packages in ([TORCH], want):
                if subprocess.run([*pip, *packages], stdout=log, stderr=log).returncode:
                    sys.exit(f"pip install {' '.join(packages)} failed: see {log.name}")
        info = {"packages": want, "install_s": round(time.perf_counter() - t0, 1),
                "installed": time.strftime("%Y-%m-%d %H:%M")}
        marker.write_text(json.dumps(info))
    names = [p.split("=")[0].split("<")[0] for p in want]
    versions = json.loads(subprocess.run(
        [python, "-c", "import importlib.metadata as m, json, sys; "
         "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))", *names],
        capture_output=True, text=True, check=True).stdout)
    print(f"{name}: {'cached' if reused else 'installed'} in {env}, install took "
          f"{info['install_s']:.0f} s; {versions}", flush=True)
    return {**info, "versions": versions, "env": str(env), "reused": reused}


def build_models(root: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    nn = torch.nn
    nets = {
        "mlp": nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)),
        "conv": nn.Sequential(nn.Conv2d(3, 8, 16, stride=16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(8, 8)),
        "mlp_heavy": nn.Sequential(nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 2048),
                                   nn.ReLU(), nn.Linear(2048, 10)),
    }
    files = {}
    for name, net in nets.items():
        files[name] = root / f"{name}.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(net.eval(), torch.zeros(1, *MODELS[name][0])),
                           str(files[name]))
    return files


def bodies(root: Path, xs: dict[str, np.ndarray]) -> dict[str, tuple[Path, dict[str, str]]]:
    """Request bodies as files for wrk. `.list`: /predictions JSON, without the batch
    dimension for batched models (as both servers' batching handlers take one instance)."""
    dumps = lambda doc: json.dumps(doc, separators=(",", ":")).encode()  # noqa: E731
    raw = {}
    for name, x in xs.items():
        raw[f"{name}.list"] = dumps((x[0] if MODELS[name][2] else x).tolist()), JSON
        raw[f"{name}.v2"] = dumps({"inputs": [{"name": "input__0", "shape": list(x.shape),
                                               "datatype": "FP32",
                                               "data": x.ravel().tolist()}]}), JSON
    x = xs["conv"]
    header = dumps({"inputs": [{"name": "input__0", "shape": list(x.shape), "datatype": "FP32",
                                "parameters": {"binary_data_size": x.nbytes}}]})
    raw["conv.raw"] = x.tobytes(), RAW
    raw["conv.v2bin"] = header + x.tobytes(), {**RAW, "Inference-Header-Content-Length":
                                               str(len(header))}
    out = {}
    for key, (data, headers) in raw.items():
        (root / key).write_bytes(data)
        out[key] = root / key, headers
    return out


def fill(template: str, **values: object) -> str:
    return string.Template((PEERS / template).read_text()).substitute(values)


# --- servers ----------------------------------------------------------------------------

class Group(h.Server):
    """A pinned server stopped as a process group: TorchServe's CLI leaves java and its
    workers behind when only it is signalled. The group is this script's own session."""

    def stop(self, keep_log: bool = False) -> int | None:
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            deadline = time.monotonic() + wait
            try:
                os.killpg(self.proc.pid, sig)
                while time.monotonic() < deadline:
                    self.proc.poll()
                    os.killpg(self.proc.pid, 0)
                    time.sleep(0.1)
            except ProcessLookupError:
                break
        return super().stop(keep_log)


def start_torchserve(tmp: Path, env: Path, models: dict[str, Path]) -> Group:
    root, store = tmp / "torchserve", tmp / "torchserve" / "store"
    store.mkdir(parents=True)
    (root / "tmp").mkdir()
    for name, file in models.items():
        extra = root / name
        extra.mkdir()
        (extra / "shape.json").write_text(json.dumps(MODELS[name][0]))
        mb = MODELS[name][2]
        (extra / "model-config.yaml").write_text(fill(
            "ts_model_config.yaml", batch_size=max(mb, 1), max_batch_delay=DELAY_MS if mb else 0))
        subprocess.run([str(env / "bin" / "torch-model-archiver"), "--model-name", name,
                        "--version", "1.0", "--serialized-file", str(file),
                        "--handler", str(PEERS / "ts_handler.py"),
                        "--extra-files", str(extra / "shape.json"),
                        "--config-file", str(extra / "model-config.yaml"),
                        "--export-path", str(store)], check=True)
    port = h.free_port()
    (root / "config.properties").write_text(fill(
        "ts_config.properties", port=port, management_port=h.free_port(),
        metrics_port=h.free_port(), model_store=store, log4j=PEERS / "ts_log4j2.xml"))
    # TMPDIR: TorchServe keeps a pid file there and refuses to start if another one runs.
    argv = ["env", f"PATH={env / 'bin'}:{os.environ['PATH']}", f"TMPDIR={root / 'tmp'}",
            str(env / "bin" / "torchserve"), "--start", "--foreground", "--ncs",
            "--disable-token-auth", "--ts-config", str(root / "config.properties"),
            "--model-store", str(store)]
    return Group("torchserve", argv, port, root)


def start_mlserver(tmp: Path, env: Path, models: dict[str, Path]) -> Group:
    root = tmp / "mlserver"
    root.mkdir()
    shutil.copy(PEERS / "mlserver_runtime.py", root)
    port = h.free_port()
    (root / "settings.json").write_text(fill(
        "mlserver_settings.json", http_port=port, grpc_port=h.free_port(),
        metrics_port=h.free_port()))
    for name, file in models.items():
        (root / name).mkdir()
        shutil.copy(file, root / name / "model.pt")
        mb = MODELS[name][2]
        (root / name / "model-settings.json").write_text(fill(
            "mlserver_model_settings.json", name=name, max_batch_size=mb,
            max_batch_time=DELAY_MS / 1000 if mb else 0))
    return Group("mlserver", [str(env / "bin" / "mlserver"), "start", str(root)], port, root)


def start_fastserve(tmp: Path, models: dict[str, Path]) -> Group:
    repo = tmp / "fastserve"
    for name, file in models.items():
        shape, width, mb = MODELS[name]
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(file, repo / name / "1" / "model.pt")
        (repo / name / "config.toml").write_text(
            f"max_batch_size = {mb}\nbatch_delay_ms = {DELAY_MS}\n"
            f'[[inputs]]\nname = "input__0"\ndatatype = "FP32"\nshape = {[-1, *shape]}\n'
            f'[[outputs]]\nname = "output__0"\ndatatype = "FP32"\nshape = [-1, {width}]\n')
    port = h.free_port()
    argv = [sys.executable, "-m", "fastserve", "--models", str(repo), "--port", str(port),
            "--management-port", str(h.free_port()), "--torch-threads", "1", "--workers", "1",
            "--grpc-port", "0"]  # gRPC off: its default port would clash between servers
    return Group("fastserve", argv, port, ROOT)


def start_bare() -> Group:
    port = h.free_port()
    return Group("bare", [sys.executable, str(ROOT / "benchmarks" / "bare_server.py"), "--port",
                          str(port)], port, ROOT)


def post(port: int, path: str, file: Path, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, file.read_bytes(), headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_answers(servers: dict[str, Group], files: dict, want: dict[str, np.ndarray]) -> None:
    """Every infer case must give the model's own answer before anything is timed."""
    for key, case in CASES.items():
        if case.body is None or case.server not in servers or case.server == "bare":
            continue
        status, reply = post(servers[case.server].port, case.path, *files[case.body])
        if status != 200:
            raise RuntimeError(f"{key}: HTTP {status}: {reply[:300]!r}")
        doc = json.loads(reply)
        got = np.asarray(doc["outputs"][0]["data"] if isinstance(doc, dict) else doc).ravel()
        ref = want[case.body.split(".")[0]].ravel()
        if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-3, atol=1e-4):
            raise RuntimeError(f"{key}: wrong answer {got[:4]}..., want {ref[:4]}...")


# --- load -------------------------------------------------------------------------------

_LUA = """
wrk.method = "%(method)s"
%(setup)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(port: int, case: Case, seconds: int, files: dict) -> dict:
    """As _harness.wrk, with each body's own headers and a 30 s timeout (a 2.9 MB JSON
    body can take longer than wrk's default 2 s to answer at 8 connections)."""
    setup = ""
    if case.body:
        file, headers = files[case.body]
        setup = f"wrk.body = io.open({json.dumps(str(file))}, 'rb'):read('*a')\n" + "\n".join(
            f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    conns = SCENARIOS[case.scenario][1]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(_LUA % {"method": "POST" if case.body else "GET", "setup": setup})
        lua.flush()
        run = subprocess.run(["taskset", "-c", h.WRK_CORE, "wrk", "-t1", f"-c{conns}",
                              f"-d{seconds}s", "--timeout", "30s", "--latency", "-s", lua.name,
                              f"http://127.0.0.1:{port}{case.path}"],
                             capture_output=True, text=True, timeout=seconds + 90)
    line = next((s for s in run.stdout.splitlines() if s.startswith("WRK_JSON ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr}{run.stdout}")
    r = json.loads(line.removeprefix("WRK_JSON "))
    r["secs"] = r["duration_us"] / 1e6
    r["non_2xx"] = r["status"]  # wrk counts status >= 400; 3xx would pass (none expected)
    r["socket_errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    r["rps"] = (r["requests"] - r["status"]) / r["secs"] if r["secs"] else 0.0
    r["p50_ms"], r["p99_ms"] = r["p50_us"] / 1e3, r["p99_us"] / 1e3
    return r


def measure(args: argparse.Namespace, servers: dict[str, Group], files: dict, runs: dict,
            problems: dict[str, str]) -> dict[str, int]:
    """Primes every case once (TorchServe's JIT needs ~15 s of load to reach its pace),
    then the rounds; returns the errors seen while priming, per case."""
    order = [k for k, c in CASES.items() if c.server in servers and k in runs]
    primed = {}
    for key in order if args.prime > 0 else []:
        case = CASES[key]
        settle(servers)
        r = wrk(servers[case.server].port, case, args.prime, files)
        primed[key] = r["non_2xx"] + r["socket_errors"]
        print(f"primed {key:14} {args.prime} s: {r['rps']:,.0f} req/s, errors {primed[key]}",
              flush=True)
        if primed[key]:
            problems[key] = explain(key, servers[case.server], files, r)
    for rep in range(args.repeat):
        for key in order if rep % 2 == 0 else order[::-1]:
            case, srv = CASES[key], servers[CASES[key].server]
            if not srv.alive():
                problems.setdefault(case.server, f"{case.server} {srv.state()}\n"
                                                 f"{srv.log_tail()}")
                continue
            settle(servers)
            load = os.getloadavg()[0]
            warn = f"  WARNING load > {LOAD_WARN}: numbers are noisy" if load > LOAD_WARN else ""
            print(f"  load {load:.2f}{warn}", flush=True)
            warm = wrk(srv.port, case, args.warmup, files) if args.warmup > 0 else None
            others = [s for n, s in servers.items() if n != case.server]
            before = srv.cpu_seconds(), sum(s.cpu_seconds() for s in others), *core_seconds()
            r = wrk(srv.port, case, args.duration, files)
            after = srv.cpu_seconds(), sum(s.cpu_seconds() for s in others), *core_seconds()
            d = [(b - a) / r["secs"] for a, b in zip(before, after, strict=True)]
            r["server_cpu"], r["idle_servers_cpu"] = d[0], d[1]
            # What other people's processes took of each core: the core's busy time less
            # ours (the servers on core 0; wrk and this script on core 1).
            r["foreign_core0"], r["foreign_core1"] = max(d[2] - d[0] - d[1], 0), max(d[3] - d[4], 0)
            r["rss_mb"], r["load1"] = srv.rss_mb(), load
            ok = r["requests"] - r["non_2xx"]  # CPU per request moves less with the box's mood
            r["cpu_us_per_req"] = d[0] * r["secs"] / ok * 1e6 if ok else 0.0
            r["errors"] = r["non_2xx"] + r["socket_errors"] + (
                warm["non_2xx"] + warm["socket_errors"] if warm else 0)
            runs[key].append(r)
            print(f"[{rep + 1}/{args.repeat}] {key:14} {r['rps']:>9,.0f} req/s  "
                  f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                  f"CPU {r['server_cpu']:4.0%} (idle servers {r['idle_servers_cpu']:.0%}; "
                  f"others {r['foreign_core0']:.0%} on core 0, {r['foreign_core1']:.0%} on 1)  "
                  f"RSS {r['rss_mb']:5.0f} MB  errors {r['errors']} "
                  f"(non-2xx {r['non_2xx']}, socket {r['socket_errors']})", flush=True)
            if r["errors"] or not r["requests"]:
                problems[key] = explain(key, srv, files, r)
    return primed


def settle(servers: dict[str, Group], limit: float = 20.0) -> None:
    """Wait (at most `limit` s) until all servers idle: one may still be working through
    the backlog of requests its last wrk run left behind, on the next one's core."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        cpu = sum(s.cpu_seconds() for s in servers.values())
        time.sleep(0.5)
        if sum(s.cpu_seconds() for s in servers.values()) - cpu < 0.05:
            return


def core_seconds() -> tuple[float, float, float]:
    """Busy seconds so far of the server's core and of wrk's (all processes, /proc/stat),
    and the CPU seconds of this script and its reaped children (wrk)."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name in (f"cpu{h.SERVER_CORE}", f"cpu{h.WRK_CORE}"):
            t = [int(v) for v in ticks[:8]]
            busy[name] = (sum(t) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
    own = sum(getattr(resource.getrusage(who), f)
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return busy[f"cpu{h.SERVER_CORE}"], busy[f"cpu{h.WRK_CORE}"], own


def explain(key: str, srv: Group, files: dict, r: dict) -> str:
    case = CASES[key]
    try:
        status, reply = (post(srv.port, case.path, *files[case.body]) if case.body
                         else h.request(srv.port, "GET", case.path, timeout=30))
        probe = f"a fresh request now gives HTTP {status}: {reply[:300]!r}"
    except OSError as exc:
        probe = f"a fresh request now fails: {exc!r}"
    return (f"{key}: {r['errors']} errors (non-2xx {r['non_2xx']}, connect {r['connect']}, "
            f"read {r['read']}, write {r['write']}, timeouts {r['timeout']}) of "
            f"{r['requests']} requests; {probe}\n{srv.state()}\n{srv.log_tail()}")


# --- report -----------------------------------------------------------------------------

def summarise(runs: dict, primed: dict[str, int]) -> dict:
    med = {}
    for key, rs in runs.items():
        if rs:
            med[key] = {k: statistics.median(r[k] for r in rs)
                        for k in ("rps", "p50_ms", "p99_ms", "server_cpu", "idle_servers_cpu",
                                  "foreign_core0", "foreign_core1", "cpu_us_per_req")}
            med[key].update(errors=sum(r["errors"] for r in rs) + primed.get(key, 0),
                            rss_mb=max(r["rss_mb"] for r in rs), runs=len(rs))
    for key, m in med.items():
        ref = med.get(CASES[key].ref or "")
        if ref and ref["rps"]:
            m["rps_ratio"], m["p99_ratio"] = m["rps"] / ref["rps"], m["p99_ms"] / ref["p99_ms"]
    return med


def table(med: dict, probes: dict) -> str:
    lines = ["| scenario | server | request | req/s | × fastserve | p50 ms | p99 ms "
             "| p99 × fastserve | errors | server CPU | others' CPU, core 0 / 1 | RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    refs = {c.ref for c in CASES.values()}
    for scenario, (title, conns) in SCENARIOS.items():
        for key, case in {**CASES, **PROBES}.items():
            if case.scenario != scenario:
                continue
            head = f"| {title}, -c{conns} | {case.server} | {case.request} "
            if key in probes:
                lines.append(head + f"| not supported: {probes[key]} | | | | | | | | |")
            elif key in med:
                m = med[key]
                ratio = (f"**{m['rps_ratio']:.2f}**" if "rps_ratio" in m
                         else "1 (ref)" if key in refs else "–")
                p99 = f"{m['p99_ratio']:.2f}" if "p99_ratio" in m else "–"
                lines.append(head + f"| {m['rps']:,.0f} | {ratio} | {m['p50_ms']:.2f} "
                             f"| {m['p99_ms']:.2f} | {p99} | {m['errors']} "
                             f"| {m['server_cpu']:.0%} | {m['foreign_core0']:.0%} / "
                             f"{m['foreign_core1']:.0%} | {m['rss_mb']:,.0f} |")
    return "\n".join(lines)


def chart(med: dict, probes: dict, path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"fastserve": "#2a7ab0", "torchserve": "#e07b39", "mlserver": "#5aa05a",
               "bare": "#9a9a9a"}
    every = {**CASES, **PROBES}
    shown = {s: v for s, v in SCENARIOS.items() if any(every[k].scenario == s for k in med)}
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, max(2.6 * len(shown), 2.6)), squeeze=False)
    for ax, (scenario, (title, conns)) in zip(axes[:, 0], shown.items(), strict=True):
        keys = [k for k, c in every.items() if c.scenario == scenario and (k in med or k in probes)]
        values = [med[k]["rps"] if k in med else 0 for k in keys]
        ax.barh([f"{every[k].server}: {every[k].request}" for k in keys], values,
                color=[colours[every[k].server] for k in keys])
        ax.invert_yaxis()
        ax.set_title(f"{title} (wrk -c{conns})", fontsize=10, loc="left")
        for i, k in enumerate(keys):
            if k in probes:
                note = f"  not supported: {probes[k].split(':')[0]}"
            else:
                note = f"  {values[i]:,.0f}"
                if "rps_ratio" in med[k]:
                    note += f"  ({med[k]['rps_ratio']:.2f}× fastserve)"
                if med[k]["errors"]:
                    note += f"  {med[k]['errors']} errors"
                if med[k]["server_cpu"] < 0.9:
                    note += f"  [server CPU {med[k]['server_cpu']:.0%}: wrk-bound]"
            ax.text(values[i], i, note, va="center", fontsize=8)
        ax.set_xlim(0, max(values, default=1) * 1.8)
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("requests/s (higher is better)")
    fig.suptitle(f"fastserve vs TorchServe 0.12 and MLServer 1.7.1, 1 server core\n{subtitle}",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=2, help="wrk warm-up seconds before each run")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the median counts")
    p.add_argument("--prime", type=int, default=10,
                   help="seconds of load per case once, before the rounds (0: none)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fastserve-bench",
                   help="where the peers' virtual environments live")
    p.add_argument("--servers", default="torchserve,mlserver,fastserve,bare",
                   help="comma-separated subset, for debugging")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    p.add_argument("--chart", type=Path, default=ROOT / "docs" / "benchmarks.png")
    p.add_argument("--from-json", type=Path, metavar="RESULTS",
                   help="measure nothing: print the table and redraw the chart of a results file")
    args = p.parse_args()
    if args.from_json:
        report(json.loads(args.from_json.read_text()), args.chart)
        return 0
    if (os.cpu_count() or 1) < 2 or shutil.which("wrk") is None:
        sys.exit("needs 2 cores, taskset and wrk (apt-get install -y wrk)")
    wanted = args.servers.split(",")
    args.cache.mkdir(parents=True, exist_ok=True)
    envs = {name: ensure_env(args.cache, name) for name in PEER_PACKAGES if name in wanted}
    res: dict = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": h.cpu_model(),
                 "cores": os.cpu_count(), "command": " ".join(["python", *sys.argv]),
                 "args": {k: str(v) for k, v in vars(args).items()}, "git": h.git_state(ROOT),
                 "versions": {"fastserve side": h.versions(),
                              **{n: e.get("versions") for n, e in envs.items()}},
                 "install": envs, "loadavg_before": os.getloadavg(), "start": {},
                 "probes": {}}
    scenarios = args.scenarios.split(",")
    if unknown := set(scenarios) - set(SCENARIOS):
        sys.exit(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from "
                 f"{', '.join(SCENARIOS)}")
    runs: dict = {k: [] for k, c in CASES.items() if c.server in wanted and c.scenario in scenarios}
    problems: dict[str, str] = {}
    servers: dict[str, Group] = {}
    with tempfile.TemporaryDirectory(prefix="fastserve-compare-") as tmp_name:
        tmp = Path(tmp_name)
        models = build_models(tmp)
        xs = {"mlp": np.random.default_rng(0).standard_normal((1, 64), dtype=np.float32),
              "conv": np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32),
              "mlp_heavy": np.random.default_rng(2).standard_normal((1, 64), dtype=np.float32)}
        want = {n: torch.jit.load(str(models[n]))(torch.from_numpy(x)).detach().numpy()
                for n, x in xs.items()}
        files = bodies(tmp, xs)
        starters = {"torchserve": lambda: start_torchserve(tmp, args.cache / "torchserve",
                                                           models),
                    "mlserver": lambda: start_mlserver(tmp, args.cache / "mlserver", models),
                    "fastserve": lambda: start_fastserve(tmp, models),
                    "bare": start_bare}
        try:
            for name in wanted:  # one at a time, before any load
                srv = servers[name] = starters[name]()
                health = "/ping" if name == "torchserve" else "/v2/health/ready"
                start = {"ready_s": srv.wait_until("GET", health, timeout=180)}
                for case in CASES.values():  # then the first answer of every model
                    model = case.body and case.body.split(".")[0]
                    if case.server == name and model and model not in start and (
                            files[case.body][1] is JSON):
                        start[model] = srv.wait_until(
                            "POST", case.path, files[case.body][0].read_bytes(), timeout=180)
                start["first_answers_s"] = max(start.values())
                start["rss_at_ready_mb"] = srv.rss_mb()
                res["start"][name] = start
                print(f"{name}: ready {start['ready_s']:.1f} s, all models answer "
                      f"{start['first_answers_s']:.1f} s, RSS {start['rss_at_ready_mb']:.0f} MB",
                      flush=True)
            check_answers(servers, files, want)
            for key, case in PROBES.items():
                if case.server in servers:
                    status, reply = post(servers[case.server].port, case.path, *files[case.body])
                    res["probes"][key] = f"HTTP {status}: {reply[:200].decode(errors='replace')}"
                    res["probes_log"] = servers[case.server].log_tail(12)
                    print(f"{key} (not timed): {res['probes'][key]}\n{res['probes_log']}",
                          flush=True)
            res["primed_errors"] = measure(args, servers, files, runs, problems)
            if "fastserve" in servers:
                stats = json.loads(h.request(servers["fastserve"].port, "GET",
                                             "/v2/models/mlp_heavy/stats")[1])
                hist = {b["batch_size"]: b["compute_infer"]["count"]
                        for s in stats["model_stats"] for b in s["batch_stats"]}
                res["fastserve_mlp_heavy_batches"] = hist
                res["fastserve_mlp_heavy_mean_batch"] = (
                    sum(k * v for k, v in hist.items()) / max(sum(hist.values()), 1))
            for name, srv in servers.items():
                res["start"][name]["rss_after_mb"] = srv.rss_mb()
        except (RuntimeError, OSError) as exc:
            problems["run"] = str(exc)
        finally:
            for name, srv in servers.items():
                if not srv.alive():
                    problems.setdefault(name, f"{name} {srv.state()}\n{srv.log_tail()}")
                res["start"].setdefault(name, {})["exit_code"] = srv.stop(keep_log=bool(problems))
    res["loadavg_after"] = os.getloadavg()
    res["runs"], res["problems"] = runs, problems
    res["median"] = summarise(runs, res.get("primed_errors", {}))
    loads = [r["load1"] for rs in runs.values() for r in rs]
    res["load1_during"] = {"min": min(loads, default=0), "median": statistics.median(loads or [0]),
                           "max": max(loads, default=0)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2, default=str))
    report(res, args.chart)
    print(f"results: {out.relative_to(ROOT)}")
    if problems:
        print("\n!!! errors (counted in the table) !!!\n" + "\n\n".join(problems.values()),
              file=sys.stderr)
        return 1
    return 0


def report(res: dict, chart_path: Path) -> None:
    """The table, start-up figures and chart of one results file."""
    ld, a = res["load1_during"], res["args"]
    subtitle = (f"{res['cpu']}; median of {a['repeat']} × {a['duration']} s; 1-min load "
                f"{ld['min']:.1f}–{ld['max']:.1f} (median {ld['median']:.1f})")
    print(f"\n{subtitle}\n\n" + table(res["median"], res["probes"]) + "\n")
    for name, s in res["start"].items():
        inst = res["install"].get(name, {})
        print(f"{name}: start → all models answer {s.get('first_answers_s', 0):.1f} s, RSS at "
              f"ready {s.get('rss_at_ready_mb', 0):.0f} MB, after {s.get('rss_after_mb', 0):.0f}"
              f" MB" + (f"; install {inst['install_s']:.0f} s"
                        + (" (cached)" if inst["reused"] else "") if inst else ""))
    if "fastserve_mlp_heavy_mean_batch" in res:
        print(f"fastserve mlp_heavy mean batch size {res['fastserve_mlp_heavy_mean_batch']:.1f}")
    if res["median"]:
        chart(res["median"], res["probes"], chart_path, subtitle)
        print(f"chart: {chart_path}")


if __name__ == "__main__":
    sys.exit(main())
