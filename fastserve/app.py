"""Composition root: repository + data plane + front-ends -> routers -> HTTP servers.

Start-up order matters: ports bind first (liveness answers at once), then models
load on a background thread (which is also where torch is first imported).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import signal
import threading
import time
from typing import Any

import uvloop

from .auth import bearer_guard, read_tokens
from .backends import ts_envelope
from .config import ServerConfig, available_cores
from .core.control import ModelControl
from .core.dataplane import DataPlane
from .core.entries import ModelVersion
from .core.repository import ModelRepository
from .core.shm import SharedMemoryRegistry
from .core.watcher import RepositoryWatcher
from .frontends import kserve_v2, management, metrics, openapi, tfserving, torchserve, triton
from .frontends._triton_settings import TritonSettings
from .frontends.v2_repository import V2RepositoryFrontend
from .http.messages import Request
from .http.router import Router
from .http.server import HttpServer, Limits, ResponseHook
from .logs import AccessLog
from .model_loader import TorchLoader
from .shared_port import SharedPortRouter, shared_guard
from .startup import collect_garbage_after, log_start

log = logging.getLogger("fastserve")

# Set by the --workers parent for each worker: the unix socket it takes management calls on.
WORKER_ENV = "FASTSERVE_CONTROL_SOCKET"


def _hooks(*hooks: ResponseHook | None) -> ResponseHook | None:
    """One on_response hook calling each given one (None when there is none)."""
    chosen = [h for h in hooks if h is not None]
    if len(chosen) <= 1:
        return chosen[0] if chosen else None

    def both(request: Request, status: int, seconds: float) -> None:
        for hook in chosen:
            hook(request, status, seconds)

    return both


class App:
    """One serving process. As a worker of ``--workers N`` it shares the inference port
    (SO_REUSEPORT) and takes management calls from the parent on a unix socket."""

    def __init__(self, config: ServerConfig, control_socket: str | None = None) -> None:
        self.config = config
        self.control_socket = control_socket
        self.started = time.monotonic()
        ts_envelope.configure(config.store.envelope, config.store.max_response_size,
                              config.store.install_py_dep_per_model)
        self.repository = ModelRepository(config.models, loader=None,  # type: ignore[arg-type]
                                          store=config.store)
        self.repository.scan()
        instances = sum(e.config.instances * len(e.versions)
                        for e in self.repository.models.values() if e.config is not None)
        threads = config.torch_threads or max(
            1, available_cores() // (config.workers * max(instances, 1)))
        self.repository.lifecycle.loader = TorchLoader(config.device, threads,
                                                       config.store.max_archive_size)
        self.dataplane = DataPlane(self.repository,
                                   extensions=kserve_v2.EXTENSIONS + triton.EXTENSIONS,
                                   shared_memory=SharedMemoryRegistry(config.allow_shared_memory))
        self.dataplane.service_envelope = config.store.envelope
        self.dataplane.strict_readiness = config.strict_readiness
        self.control = ModelControl(self.repository)
        self.router = Router()
        kserve_v2.KServeV2Frontend(self.dataplane).register(self.router)
        # NOTE: before tfserving: the router takes the first template that matches, and
        # its "/v1/models/{model}" would also match TorchServe's "/v1/models/m:explain".
        torchserve.TorchServeFrontend(self.dataplane).register(self.router)
        tfserving.TFServingFrontend(self.dataplane).register(self.router)
        triton.TritonExtensionsFrontend(self.dataplane, self.control).register(self.router)
        self.management_router = Router()
        # Operations (issue #7): management API, /metrics, hot reload, access log.
        self.management_api = management.ManagementFrontend(self.control)
        self.management_api.register(self.management_router)
        repository_api = V2RepositoryFrontend(self.control)
        repository_api.register(self.management_router)
        repository_api.register_on_inference(self.router, self._management_address)
        # Triton's log and trace settings, shared with gRPC's LogSettings / TraceSetting.
        self.triton_settings = TritonSettings(self.dataplane.model_ready)
        triton.SettingsFrontend(self.triton_settings).register(
            self.router, self.management_router, self._management_address)
        # TorchServe answers OPTIONS / on its management port too: this port's own document.
        openapi.ApiDescription(self.management_router, "fastserve management API",
                               self.dataplane.server_metadata()["version"]).register()
        self.metrics = metrics.MetricsFrontend(self.control)
        self.metrics.register(self.router)
        self.repository.on_change = self._model_changed
        self.repository.lifecycle.drain_timeout = config.drain_timeout
        self.watcher = (RepositoryWatcher(self.repository, config.poll_interval)
                        if config.poll_interval else None)
        access = AccessLog() if config.access_log else None
        limits = Limits(max_body=config.max_request_size)
        inference_guard = management_guard = None
        self.tokens: tuple[bytes, bytes] | None = None
        if config.auth_token_file is not None:
            inference_token, management_token = self.tokens = read_tokens(
                config.auth_token_file)
            inference_guard = bearer_guard(inference_token)
            management_guard = bearer_guard(management_token)
        self.shared_port = control_socket is None and config.shares_port
        inference_router: Any = self.router
        if self.shared_port:
            inference_router = SharedPortRouter(self.management_router, self.router,
                                                self.dataplane.server_metadata()["version"])
            inference_guard = shared_guard(inference_router, management_guard, inference_guard)
        self.inference = HttpServer(inference_router, limits, guard=inference_guard,
                                    on_response=_hooks(self.metrics.response_hook(), access))
        self.management = HttpServer(self.management_router, limits, guard=management_guard,
                                     on_response=_hooks(access))
        # TorchServe's metrics_address: /metrics on a port of its own too.
        self.metrics_server: HttpServer | None = None
        if config.metrics_port is not None:
            metrics_router = Router()
            self.metrics.register(metrics_router)
            self.metrics_server = HttpServer(metrics_router, limits, guard=inference_guard)
        self.port = 0
        self.management_port = 0
        self.grpc: Any = None  # fastserve.grpc.server.GrpcServers, imported only when on

    def _management_address(self) -> str:
        port = self.management_port or self.config.management_port  # a worker: the parent's
        return f"{self.config.management_host}:{port}"

    def _model_changed(self, version: ModelVersion) -> None:
        self.metrics.on_model_change(self.control.change(version))
        if version.ready:
            # What is loaded by now (torch, the models: ~300k objects) lives as long as the
            # process: keep it out of the cyclic GC's full passes, each of which otherwise
            # stalls every request for ~0.2 s (measured: p99 20 -> 220 ms).
            gc.freeze()
            gc.enable()  # off since cli.main; on once a model serves (startup.py)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.port = await self.inference.listen(self.config.host, self.config.port,
                                                reuse_port=self.control_socket is not None)
        if self.control_socket is not None:
            await self.management.listen_unix(self.control_socket)
            log.info("worker %d serving http://%s:%d", os.getpid(), self.config.host, self.port)
        elif self.shared_port:
            self.management_port = self.port
        else:
            self.management_port = await self.management.listen(self.config.management_host,
                                                                 self.config.management_port)
        if self.metrics_server is not None and self.config.metrics_port is not None:
            port = await self.metrics_server.listen(self.config.metrics_host,
                                                    self.config.metrics_port,
                                                    reuse_port=self.control_socket is not None)
            log.info("metrics on http://%s:%d/metrics", self.config.metrics_host, port)
        grpc = "off"
        if self.config.grpc_port or self.config.grpc_management_port:
            grpc = await self._start_grpc()
        if self.control_socket is None:  # a --workers parent says it for its workers
            log_start(self.config, self.port, self.management_port, grpc, self._models_found())
        collect_garbage_after(self.repository.start_loading(loop), loop)
        self.metrics.start()
        if self.watcher is not None:
            self.watcher.start()

    async def _start_grpc(self) -> str:
        # grpcio and the generated messages take 0.1-0.3 s to import: off the loop, so
        # the HTTP port (bound already) answers liveness meanwhile.
        server_module = await asyncio.to_thread(importlib.import_module, "fastserve.grpc.server")
        GrpcServers = server_module.GrpcServers  # noqa: N806

        def count(model: str, version: str | None, status: int) -> None:
            params = {"model": model} if version is None else {"model": model,
                                                              "version": version}
            self.metrics.count(params, "grpc", status)

        config = self.config
        self.grpc = GrpcServers(self.dataplane, self.management_api.apply,
                                config.max_request_size, self.tokens, count, self.control,
                                self.triton_settings)
        host = config.grpc_host or config.host
        management_host = config.grpc_management_host or config.management_host
        management_port = 0 if self.control_socket else config.grpc_management_port
        await self.grpc.start(host, config.grpc_port, management_host, management_port,
                              reuse_port=self.control_socket is not None)
        return f"{host}:{self.grpc.port}" + (
            f" (management {management_host}:{self.grpc.management_port})"
            if self.grpc.management_port else "")

    def _models_found(self) -> list[str]:
        """Models with at least one version folder (the others are FAILED, and logged)."""
        return [name for name, entry in self.repository.models.items() if entry.versions]

    async def shutdown(self) -> None:
        """Drain: not ready at once, no new connections, finish in-flight work, then close."""
        timeout = self.config.drain_timeout
        log.info("shutting down: draining for up to %g s", timeout)
        if self.watcher is not None:
            await self.watcher.stop()
        self.metrics.stop()
        self.dataplane.start_draining()
        self.inference.stop_accepting()
        self.management.stop_accepting()
        if self.metrics_server is not None:
            self.metrics_server.stop_accepting()
        # gRPC: no new calls from now on; those in flight finish with the drain.
        grpc_stopped = (asyncio.ensure_future(self.grpc.stop(timeout + 1.0))
                        if self.grpc is not None else None)
        try:
            await asyncio.wait_for(self.dataplane.drain(), timeout)
        except TimeoutError:
            log.warning("drain timeout: failing requests still queued with 503")
            self.dataplane.fail_pending()
        if grpc_stopped is not None:
            # What is left are streams (health Watch, idle ModelStreamInfer): the answers
            # just finished get a moment to be written, then every call is ended.
            await self.grpc.stop(GRPC_LAST_WRITES)
            await grpc_stopped
            self.grpc.release()
        await self.inference.close(timeout=1.0)
        await self.management.close(timeout=0.1)
        if self.metrics_server is not None:
            await self.metrics_server.close(timeout=0.1)
        self.dataplane.close()


async def serve(config: ServerConfig, control_socket: str | None = None) -> None:
    app = App(config, control_socket)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app.shutdown()


def run(config: ServerConfig) -> int:
    control_socket = os.environ.get(WORKER_ENV)
    if config.workers > 1 and control_socket is None:
        from .workers import Supervisor

        return Supervisor(config).run()
    try:
        uvloop.run(serve(config, control_socket))
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    _join_threads(THREAD_EXIT_TIMEOUT)
    return 0


THREAD_EXIT_TIMEOUT = 5.0
GRPC_LAST_WRITES = 0.5  # seconds


def _join_threads(timeout: float) -> None:
    """Wait for the model and explanation threads, told to stop by close(), to end.

    A daemon thread that ran TorchScript or autograd and is still ending when the
    interpreter finalizes aborts the process ("terminate called without an active
    exception", exit -6) instead of the 0 that SIGTERM promises.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
