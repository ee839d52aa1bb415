"""Fixtures for the HTTP transport tests: the asyncio/uvloop matrix and loud async failures.

Every ``async def`` test here runs on the loop of the ``loop`` fixture, once per loop kind
(``event_loop_kind``: asyncio, uvloop). Anything the loop's exception handler records
(a task exception nobody retrieved, an error in a callback) fails the test (asyncpg
``_testbase``, uvloop ``tearDown``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvloop

from fastserve import _testbase as testbase_module
from fastserve import errors
from fastserve._testbase import get_connected_protocol
from fastserve.http import protocol as protocol_module
from fastserve.http import server as server_module
from fastserve.http.messages import Response
from fastserve.http.router import Router

# Per-test limit for the coroutine itself; pytest-timeout still guards the whole test.
ASYNC_TEST_TIMEOUT = 20.0


@pytest.fixture(autouse=True, params=["c", "py"])
def protocol_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every transport test runs on the compiled protocol and on its pure-Python twin."""
    if request.param == "c":
        if protocol_module.IMPLEMENTATION != "c":
            pytest.skip("the compiled protocol is not loaded (not built, or "
                        "FASTSERVE_NO_EXTENSIONS is set)")
        return "c"
    for module in (testbase_module, server_module):
        monkeypatch.setattr(module, "HttpProtocol", protocol_module.PyHttpProtocol)
    return "py"


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def loop_errors() -> list[dict[str, Any]]:
    """What the loop's exception handler recorded during the test."""
    return []


@pytest.fixture
def loop(event_loop_kind: str, loop_errors: list[dict[str, Any]]
         ) -> Iterator[asyncio.AbstractEventLoop]:
    new_loop = uvloop.new_event_loop() if event_loop_kind == "uvloop" else asyncio.new_event_loop()
    new_loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    tasks: list[asyncio.Task[Any]] = []

    def task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        tasks.append(task)
        return task

    new_loop.set_task_factory(task_factory)
    asyncio.set_event_loop(new_loop)
    try:
        yield new_loop
    finally:
        try:
            _cancel_pending(new_loop)
            new_loop.run_until_complete(new_loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            new_loop.close()
    # A task that failed and that nobody awaited would only be reported when collected;
    # look now instead of paying for gc.collect() after every test.
    for task in tasks:
        if task.done() and not task.cancelled() and getattr(task, "_log_traceback", False):
            loop_errors.append({"message": "Task exception was never retrieved",
                                "exception": task.exception(), "task": task})
    if loop_errors:
        lines = [f"{c.get('message')}: {c.get('exception')!r}" for c in loop_errors]
        pytest.fail("the event loop recorded errors:\n" + "\n".join(lines), pytrace=False)


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests to completion on the ``loop`` fixture."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    loop = pyfuncitem.funcargs.get("loop")
    if loop is None:
        pytest.fail("async tests in tests/http need the `loop` fixture "
                    "(pytestmark = pytest.mark.usefixtures('loop'))", pytrace=False)
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    loop.run_until_complete(asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT))
    return True


# --- An echo application: the transport's test double for a front-end (uvicorn tests/response.py)


class EchoApp:
    """Routes that echo, sleep, wait, raise: enough to drive every transport path.

    ``started``/``release`` let a test hold an async handler mid-flight; ``cancelled``
    records handlers that observed CancelledError; ``seen`` keeps every Request.
    """

    def __init__(self) -> None:
        self.router = Router()
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled: list[str] = []
        self.seen: list[Any] = []
        self.order: list[str] = []
        self.healthy = True
        add = self.router.add
        self.router.add_probe("/health", self.health)
        add("GET", "/hello", self.hello)
        add("POST", "/echo", self.echo)
        add("PUT", "/echo", self.echo)
        add("POST", "/aecho", self.aecho)
        add("GET", "/fast/{tag}", self.fast)
        add("GET", "/slow/{tag}", self.slow)
        add("GET", "/wait", self.wait)
        add("POST", "/wait", self.wait)
        add("GET", "/raise/{kind}", self.raise_sync)
        add("GET", "/araise/{kind}", self.raise_async)
        add("GET", "/buffers", self.buffers)
        add("GET", "/items/{item}", self.item)
        add("GET", "/v1/models/{model}:predict", self.item)
        add("GET", "/ts/hello", self.hello)
        add("POST", "/ts/echo", self.echo)

    def health(self, request: Any) -> Any:
        if self.healthy == "raise":
            raise errors.ModelNotReadyError("health check broke")
        return Response(b'{"ok":true}' if self.healthy else b'{"ok":false}',
                        200 if self.healthy else 503)

    def hello(self, request: Any) -> Any:
        self.seen.append(request)
        return Response(b'{"hello":"world"}')

    def echo(self, request: Any) -> Any:
        self.seen.append(request)
        headers = [(b"x-body-type", type(request.body).__name__.encode()),
                   (b"x-query", request.query.encode())]
        ctype = request.headers.get(b"content-type", b"application/octet-stream")
        return Response(bytes(request.body), content_type=ctype, headers=headers)

    async def aecho(self, request: Any) -> Any:
        await asyncio.sleep(0)
        return self.echo(request)

    def fast(self, request: Any) -> Any:
        self.order.append("fast " + request.params["tag"])
        return Response(request.params["tag"].encode(), content_type=b"text/plain")

    async def slow(self, request: Any) -> Any:
        self.order.append("slow start " + request.params["tag"])
        await asyncio.sleep(0.02)
        self.order.append("slow end " + request.params["tag"])
        return Response(request.params["tag"].encode(), content_type=b"text/plain")

    async def wait(self, request: Any) -> Any:
        self.seen.append(request)
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(request.path)
            raise
        return Response(b'{"waited":true}')

    def raise_sync(self, request: Any) -> Any:
        raise _ERRORS[request.params["kind"]]("it went wrong")

    async def raise_async(self, request: Any) -> Any:
        await asyncio.sleep(0)
        raise _ERRORS[request.params["kind"]]("it went wrong")

    def buffers(self, request: Any) -> Any:
        return Response(b"head-", content_type=b"application/octet-stream",
                        buffers=[b"one-", bytearray(b"two-"), memoryview(b"three")])

    def item(self, request: Any) -> Any:
        return Response(orjson.dumps(request.params))


_ERRORS: dict[str, type[Exception]] = {
    "invalid": errors.InvalidInputError,
    "codec": errors.CodecError,
    "unauthorized": errors.UnauthorizedError,
    "forbidden": errors.ForbiddenError,
    "model": errors.ModelNotFoundError,
    "version": errors.VersionNotFoundError,
    "exists": errors.AlreadyExistsError,
    "toolarge": errors.RequestTooLargeError,
    "backend": errors.BackendError,
    "unsupported": errors.UnsupportedError,
    "notready": errors.ModelNotReadyError,
    "queuefull": errors.QueueFullError,
    "deadline": errors.DeadlineExceededError,
    "plain": ValueError,
    "key": KeyError,
}



def torchserve_formatter(status: int, message: str, exc: BaseException | None) -> Any:
    """TorchServe's error shape, as the /ts prefix's formatter (CONTRACT §3 Errors)."""
    kind = {404: "ModelNotFoundException", 405: "MethodNotAllowedException",
            413: "RequestTooLargeException", 400: "BadRequestException"}
    body = {"code": status, "type": kind.get(status, "InternalServerException"),
            "message": message}
    return Response(orjson.dumps(body), status)


@pytest.fixture
def echo_app() -> EchoApp:
    app = EchoApp()
    app.router.set_error_formatter("/ts", torchserve_formatter)
    return app


@pytest.fixture
def connect(echo_app: EchoApp, loop: asyncio.AbstractEventLoop) -> Any:
    """``connect(limits=None, router=None, guard=None)``: a protocol on a MockTransport."""
    def make(limits: Any = None, router: Router | None = None, guard: Any = None) -> Any:
        return get_connected_protocol(router or echo_app.router, limits, loop=loop, guard=guard)

    return make
