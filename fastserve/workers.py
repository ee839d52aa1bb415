"""``--workers N``: a parent that starts N serving processes and keeps them running.

The workers share the inference port with SO_REUSEPORT (the kernel spreads
connections) and each loads its own models; they are started as fresh
interpreters, so torch is never imported before the split. The parent imports no
torch: it serves the management port itself and applies every call to all
workers over their private unix sockets (a change reaches every worker or is
refused), restarts a worker that dies, and forwards SIGTERM for a graceful drain.
Metrics aggregate through prometheus_client's multi-process directory.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import quote

import uvloop

from .auth import bearer_guard, read_tokens
from .config import ServerConfig
from .errors import BackendError, ModelNotReadyError
from .http.messages import Request, Response
from .http.router import Router
from .http.server import HttpServer, Limits
from .startup import log_start, models_on_disk

log = logging.getLogger("fastserve.workers")

RESTART_BACKOFF = 1.0
POLL_INTERVAL = 0.2
WORKER_ENV = "FASTSERVE_CONTROL_SOCKET"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def config_to_argv(config: ServerConfig) -> list[str]:
    """The command line that makes a worker serve exactly this configuration."""
    # TorchServe's start line is given again as it was (--model-store, --ts-config, ...).
    argv = list(config.ts_argv) if config.ts_argv else ["--models", str(config.models)]
    argv += ["--host", config.host, "--port", str(config.port),
            "--management-host", config.management_host,
            "--management-port", str(config.management_port),
            "--workers", str(config.workers), "--device", config.device,
            "--log-level", config.log_level, "--log-format", config.log_format,
            "--max-request-size", str(config.max_request_size),
            "--drain-timeout", str(config.drain_timeout),
            # Every worker serves gRPC on the shared port; gRPC management is the
            # parent's (one worker cannot apply a change to all of them).
            "--grpc-port", str(config.grpc_port), "--grpc-management-port", "0"]
    if config.torch_threads:
        argv += ["--torch-threads", str(config.torch_threads)]
    if config.access_log:
        argv.append("--access-log")
    if config.poll_interval is not None:
        argv += ["--poll-interval", str(config.poll_interval)]
    if config.allow_shared_memory:
        argv.append("--allow-shared-memory")
    if config.auth_token_file is not None:
        argv += ["--auth-token-file", str(config.auth_token_file)]
    if config.strict_readiness:
        argv.append("--strict-readiness")
    return argv


class Worker:
    def __init__(self, index: int, socket_path: str) -> None:
        self.index = index
        self.socket_path = socket_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def call_worker(worker: Worker, request: Request) -> tuple[int, bytes, bytes]:
    """Replay one management request on a worker's unix socket: (status, type, body)."""
    reader, writer = await asyncio.open_unix_connection(worker.socket_path)
    try:
        target = quote(request.path, safe="/:@!$&'()*+,;=-._~")
        if request.query:
            target += "?" + request.query
        body = bytes(request.body)
        head = [f"{request.method} {target} HTTP/1.1", "host: worker", "connection: close",
                f"content-length: {len(body)}"]
        for name in (b"content-type", b"authorization"):
            value = request.headers.get(name)
            if value is not None:
                head.append(f"{name.decode()}: {value.decode('latin-1')}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        raw = await reader.read()
    finally:
        writer.close()
    header, _, payload = raw.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    status = int(lines[0].split()[1])
    content_type = b"application/json"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            content_type = value.strip()
    return status, content_type, payload


class Supervisor:
    """The ``--workers N`` parent process."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.dir = tempfile.mkdtemp(prefix="fastserve-workers-")
        self.workers = [Worker(i, os.path.join(self.dir, f"worker-{i}.sock"))
                        for i in range(config.workers)]
        self.stopping = False
        self.grpc_management: Any = None  # fastserve.grpc.parent, imported only when on
        router = Router()
        router.fallback = self.forward
        guard = None
        if config.auth_token_file is not None:
            guard = bearer_guard(read_tokens(config.auth_token_file)[1])
        self.management = HttpServer(router, Limits(max_body=config.max_request_size),
                                     guard=guard)

    def run(self) -> int:
        if self.config.port == 0:
            from .http.server import free_port

            self.config.port = free_port(self.config.host)
        os.environ.setdefault(MULTIPROC_ENV, tempfile.mkdtemp(prefix="fastserve-metrics-"))
        try:
            uvloop.run(self._main())
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        return 0

    async def _main(self) -> None:
        for worker in self.workers:
            self._spawn(worker)
        port = await self.management.listen(self.config.management_host,
                                            self.config.management_port)
        grpc = f"{self.config.grpc_host or self.config.host}:{self.config.grpc_port}" \
            if self.config.grpc_port else "off"
        if self.config.grpc_management_port:
            grpc += f" (management {await self._start_grpc_management()})"
        log_start(self.config, self.config.port, port, grpc,
                  await asyncio.to_thread(models_on_disk, self.config.models))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            self._supervise()
            try:
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
            except TimeoutError:
                pass
        await self._shutdown()

    async def _start_grpc_management(self) -> str:
        """The gRPC management port, served here: changes reach every worker through
        ``forward``, the other calls are relayed to the workers' gRPC port."""
        parent = await asyncio.to_thread(importlib.import_module, "fastserve.grpc.parent")
        config = self.config
        host = config.grpc_management_host or config.management_host
        tokens = read_tokens(config.auth_token_file) if config.auth_token_file else None
        workers = None
        if config.grpc_port:
            workers = _loopback(config.grpc_host or config.host) + f":{config.grpc_port}"

        async def apply(method: str, path: str, query: str, body: bytes) -> Response:
            headers = {b"content-type": b"application/json"}
            if tokens is not None:
                headers[b"authorization"] = b"Bearer " + tokens[1]
            return await self.forward(Request(method, path, query, headers, body))

        self.grpc_management = parent.ParentManagementServer(
            apply, config.max_request_size, tokens, workers)
        return f"{host}:{await self.grpc_management.start(host, config.grpc_management_port)}"

    def _spawn(self, worker: Worker) -> None:
        if os.path.exists(worker.socket_path):
            os.unlink(worker.socket_path)
        env = dict(os.environ, **{WORKER_ENV: worker.socket_path})
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "fastserve", *config_to_argv(self.config)], env=env)
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    def _supervise(self) -> None:
        for worker in self.workers:
            if worker.proc is None or worker.alive or self.stopping:
                continue
            code = worker.proc.returncode
            pid = worker.proc.pid
            if time.monotonic() - worker.started < RESTART_BACKOFF:
                continue  # crash-looping: wait a little before the next try
            log.error("worker %d (pid %d) exited with %s; restarting", worker.index, pid, code)
            self._mark_dead(pid)
            self._spawn(worker)

    @staticmethod
    def _mark_dead(pid: int) -> None:
        try:
            from prometheus_client import multiprocess
        except ImportError:  # pragma: no cover - metrics extra not installed
            return
        multiprocess.mark_process_dead(pid)

    async def _shutdown(self) -> None:
        self.stopping = True
        log.info("shutting down %d workers", len(self.workers))
        self.management.stop_accepting()
        for worker in self.workers:
            if worker.alive:
                worker.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.config.drain_timeout + 10
        while any(w.alive for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for worker in self.workers:
            if worker.alive:
                worker.proc.kill()  # type: ignore[union-attr]
        if self.grpc_management is not None:
            await self.grpc_management.stop(0.5)
        await self.management.close(timeout=0.5)

    # Management: every call reaches all workers, or none

    async def forward(self, request: Request) -> Response:
        """Replay a management call on the workers; errors go to the transport's mapping
        (503 + Retry-After while a worker is down, 500 when only some took a change)."""
        if request.method in ("GET", "HEAD", "OPTIONS"):
            for worker in self.workers:
                if worker.alive:
                    try:
                        status, ctype, body = await call_worker(worker, request)
                    except OSError:
                        continue
                    return Response(body, status, ctype)
            raise ModelNotReadyError("no worker is running; retry shortly")
        down = [w.index for w in self.workers if not w.alive]
        if down:
            raise ModelNotReadyError(f"worker(s) {down} are restarting; the change was not "
                                     "applied to any worker; retry shortly")
        results = await asyncio.gather(*(call_worker(w, request) for w in self.workers),
                                       return_exceptions=True)
        failed = [(w.index, r) for w, r in zip(self.workers, results, strict=True)
                  if isinstance(r, BaseException) or r[0] >= 300]
        first = results[0]
        if not failed:
            status, ctype, body = first  # type: ignore[misc]
            return Response(body, status, ctype)
        if len(failed) == len(self.workers) and not isinstance(first, BaseException):
            status, ctype, body = first  # every worker refused it alike: pass the answer on
            return Response(body, status, ctype)
        detail = "; ".join(f"worker {i}: {r if isinstance(r, BaseException) else r[2][:200]!r}"
                           for i, r in failed)
        raise BackendError(f"the change reached only some workers ({detail}); the workers now "
                           "differ: repeat the call or restart the server")


def _loopback(host: str) -> str:
    """Where this machine reaches a server listening on ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
