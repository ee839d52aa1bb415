"""Shared helpers for the wrk benchmarks: ports, pinned servers, RSS, pinned wrk runs.

The server under test runs on core 0 (`taskset -c 0`, OMP_NUM_THREADS=1) and wrk on
core 1 (`-t1 -c32`), as PEERS.md measured the peers. Not a test; run from the repo root.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path

SERVER_CORE = "0"
WRK_CORE = "1"
REALTIME = ["chrt", "-f", "50"]  # a load generator that only the kernel may delay


def can_realtime() -> bool:
    """Whether this user may run a command at SCHED_FIFO (REALTIME)."""
    return shutil.which("chrt") is not None and subprocess.run(
        [*REALTIME, "true"], capture_output=True).returncode == 0

# wrk's `done` hook prints one JSON line; latencies in µs, duration in µs.
# wrk's own `errors.status` counts responses with status > 399 (3xx would pass).
_LUA = """
wrk.method = "%(method)s"
%(body)s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("uvloop", "httptools", "torch", "orjson", "fastserve"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    out["wrk"] = (wrk.stdout + wrk.stderr).split("\n", 1)[0].strip()
    return out


def git_state(repo: Path) -> str:
    run = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    return run.stdout.strip() or "unknown"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            timeout: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP request on a fresh connection; (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = {"Content-Type": "application/json"} if body is not None else {}
        sent.update(headers or {})
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Server:
    """A server process pinned to SERVER_CORE; its log goes to a temp file."""

    def __init__(self, name: str, argv: list[str], port: int, cwd: Path,
                 cores: str = SERVER_CORE):
        self.name, self.port = name, port
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log",
                                               delete=False)
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(["taskset", "-c", cores, *argv], cwd=cwd, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def state(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return "alive"
        if rc < 0:  # stop() has not run yet, so the signal came from elsewhere
            return f"killed by {signal.Signals(-rc).name}, not sent by this script"
        return f"exited with {rc}"

    def wait_until(self, method: str, path: str, body: bytes | None = None,
                   timeout: float = 60.0, interval: float = 0.010,
                   headers: dict[str, str] | None = None) -> float:
        """Poll every `interval` s until a 2xx answer; seconds since process start."""
        deadline = self.t0 + timeout
        while time.perf_counter() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} {self.state()} before "
                                   f"{method} {path} answered\n{self.log_tail()}")
            try:
                left = max(deadline - time.perf_counter(), 0.1)
                status, _ = request(self.port, method, path, body, timeout=left,
                                    headers=headers)
                if 200 <= status < 300:
                    return time.perf_counter() - self.t0
            except OSError:
                pass
            time.sleep(interval)
        raise RuntimeError(f"{self.name}: {method} {path} not 2xx after {timeout} s\n"
                           f"{self.log_tail()}")

    def rss_mb(self) -> float:
        """VmRSS of the server and all its descendants, in MB (10^6 bytes)."""
        return sum(_vmrss_kb(pid) for pid in _tree(self.proc.pid)) * 1024 / 1e6

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its descendants so far."""
        return self.cpu_of(self.proc.pid)

    @staticmethod
    def cpu_of(pid: int) -> float:
        """User + system CPU time of ``pid`` and its descendants so far."""
        return sum(_cpu_ticks(p) for p in _tree(pid)) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join([f"  ({self.log.name}, last {lines} lines)"]
                         + [f"  | {line}" for line in text[-lines:]])

    def stop(self, keep_log: bool = False) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; the exit code. The log is deleted unless kept.
        Descendants left running are ended too (TorchServe's JVM and its workers outlive
        the torchserve script, and would load the machine for the next measurement)."""
        children = _tree(self.proc.pid)[1:]
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _end(children)
        self.log.close()
        if not keep_log:
            Path(self.log.name).unlink(missing_ok=True)
        return self.proc.returncode


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (the taskset wrapper execs, so pid is the server)."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*"):
            try:
                pids += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        i += 1
    return pids


def _end(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM to each pid still running, SIGKILL to those left after ``grace`` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
            time.sleep(0.05)
        pids = alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError):
        return 0


def _vmrss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def wrk(port: int, path: str, seconds: int, body_file: Path | None = None,
        conns: int = 32, headers: dict[str, str] | None = None, realtime: bool = False
        ) -> dict:
    """One wrk run pinned to WRK_CORE (GET, or POST of `body_file`); rps counts only
    responses below 400, as wrk's status errors are those of 400 and above. `realtime`:
    wrk runs at SCHED_FIFO (REALTIME), so that nothing else on its core delays it (needs
    root or CAP_SYS_NICE)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    body = f'wrk.body = io.open({json.dumps(str(body_file))}, "rb"):read("*a")'
    script = _LUA % {"method": "POST" if body_file else "GET",
                     "body": body if body_file else ""}
    for name, value in (headers or {}).items():
        script += f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        cmd = [*(REALTIME if realtime else []), "taskset", "-c", WRK_CORE, "wrk", "-t1",
               f"-c{conns}", f"-d{seconds}s", "--latency", "-s", lua.name,
               f"http://127.0.0.1:{port}{path}"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((s for s in run.stdout.splitlines() if s.startswith("WRK_JSON ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr}{run.stdout}")
    r = json.loads(line.removeprefix("WRK_JSON "))
    secs = r["duration_us"] / 1e6
    r["non_2xx"] = r["status"]
    r["socket_errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    r["rps"] = (r["requests"] - r["status"]) / secs if secs else 0.0
    r["p50_ms"], r["p99_ms"] = r["p50_us"] / 1e3, r["p99_us"] / 1e3
    return r


def round_robin(srv: Server, port: int, cases: dict[str, tuple], duration: int, repeat: int,
                conns: int) -> dict[str, list[dict]]:
    """wrk over every case `repeat` times, the order reversed every other round (drifting
    load from others on the box then hits every case alike); each run also records the
    server's CPU µs per successful request. Any failed request stops the benchmark.

    `cases`: name -> (path, body file) or (path, body file, headers)."""
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    order = list(cases)
    for i in range(repeat):
        for name in (order if i % 2 == 0 else order[::-1]):
            path, file, *rest = cases[name]
            cpu0 = srv.cpu_seconds()
            r = wrk(port, path, duration, file, conns=conns, headers=rest[0] if rest else None)
            ok = r["requests"] - r["non_2xx"]
            r["cpu_us_per_req"] = (srv.cpu_seconds() - cpu0) / ok * 1e6 if ok else 0.0
            runs[name].append(r)
    bad = {n: sum(r["non_2xx"] + r["socket_errors"] for r in rs) for n, rs in runs.items()}
    if any(bad.values()):
        raise SystemExit(f"failed requests {bad}\n{srv.log_tail()}")
    return runs
