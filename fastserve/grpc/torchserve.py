"""TorchServe 0.12's gRPC APIs: ``InferenceAPIsService`` (Ping, Predictions and both
streaming forms) through the same handlers and batching as ``/predictions``, and
``ManagementAPIsService`` (management port), whose ``msg`` is the REST API's JSON.

A request's ``input`` map is what TorchServe hands its handler: the body is the entry
named ``data`` (else ``body``, else the only entry); other entries ride along as
parameters. A handler that does not stream answers StreamPredictions with one message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import orjson
from google.rpc import status_pb2

from ..core.dataplane import DataPlane
from ..core.payloads import Payload
from ..errors import InvalidInputError
from ..frontends._ts_answer import answer_response
from ..types import ReplyStream
from .management import Management
from .protos import inference_pb2 as ts
from .protos import management_pb2 as tsm
from .services import Malformed, check
from .status import CallPolicy, code_of, model_of, unary


def payload_of(request: ts.PredictionsRequest) -> Payload:
    inputs = request.input
    if not inputs:
        raise InvalidInputError("the request has no input: put the body in input['data']")
    for key in ("data", "body"):
        if key in inputs:
            break
    else:
        if len(inputs) > 1:
            raise InvalidInputError(f"which input is the body? name it 'data' (got "
                                    f"{', '.join(sorted(inputs))})")
        key = next(iter(inputs))
    extra = {k: v for k, v in inputs.items() if k != key}
    return Payload(inputs[key], "", key, extra)


class TorchServeInference:
    def __init__(self, dataplane: DataPlane, policy: CallPolicy) -> None:
        self.dataplane = dataplane
        self.policy = policy

    @unary(counted=False, public=True)
    async def Ping(self, request: Any, context: Any) -> ts.TorchServeHealthResponse:
        status = "Healthy" if self.dataplane.ready() else "Unhealthy"
        return ts.TorchServeHealthResponse(
            health=orjson.dumps({"status": status}, option=orjson.OPT_INDENT_2).decode())

    async def predict(self, request: ts.PredictionsRequest) -> bytes:
        check(request)
        answers = await self.dataplane.predict(request.model_name,
                                               request.model_version or None,
                                               [payload_of(request)])
        return bytes(answer_response(answers[0]).body)

    @unary()
    async def Predictions(self, request: Any, context: Any) -> ts.PredictionResponse:
        return ts.PredictionResponse(prediction=await self.predict(request))

    async def StreamPredictions(self, request: Any, context: Any) -> Any:
        """A handler's parts (``send_intermediate_predict_response``) as they come, then
        its answer; a handler that does not stream answers one message."""
        refused = self.policy.authorized(context)
        if refused is not None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
        task = None
        try:
            check(request)
            payload = payload_of(request)
            loop = asyncio.get_running_loop()
            stream = payload.stream = ReplyStream(loop)
            task = loop.create_task(self.dataplane.predict(
                request.model_name, request.model_version or None, [payload]))
            task.add_done_callback(lambda _: stream.first.done() or stream.first.set_result(None))
            part = await stream.first
            while part is not None:
                yield ts.PredictionResponse(prediction=part.body)
                part = await _next_part(stream, task)
            prediction = bytes(answer_response(task.result()[0]).body)
        except Exception as exc:
            code, message, status = code_of(exc)
            self._count(request, status)
            await context.abort(code, message)
        finally:
            if task is not None and not task.done():  # the client left
                task.cancel()
        self._count(request, 200)
        yield ts.PredictionResponse(prediction=prediction)

    async def StreamPredictions2(self, requests: Any, context: Any) -> Any:
        """One answer per request, in order; a failed one carries ``status`` and the
        stream goes on (as TorchServe 0.12)."""
        refused = self.policy.authorized(context)
        if refused is not None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
        async for request in requests:
            answer = ts.PredictionResponse()
            if type(request) is not Malformed and request.HasField("sequenceId"):
                answer.sequenceId = request.sequenceId
            try:
                answer.prediction = await self.predict(request)
                status = 200
            except Exception as exc:  # each request fails alone
                code, message, status = code_of(exc)
                answer.status.CopyFrom(status_pb2.Status(code=code.value[0], message=message))
            self._count(request, status)
            yield answer

    def _count(self, request: Any, status: int) -> None:
        if self.policy.count is not None:
            self.policy.count(*model_of(request), status)


async def _next_part(stream: ReplyStream, task: asyncio.Task[Any]) -> Any:
    """The next streamed part, or None once the handler's answer is there."""
    pending = stream.pending()
    if pending:
        return pending[0] if len(pending) == 1 else _Joined(pending)
    getter = asyncio.ensure_future(stream.next_part())
    await asyncio.wait((task, getter), return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    rest = stream.pending()
    return _Joined(rest) if rest else None


class _Joined:
    """Parts that arrived together, sent as one message."""

    def __init__(self, parts: list[Any]) -> None:
        self.body = b"".join(p.body for p in parts)


def _positive(value: int) -> int | None:
    return value or None  # proto3 ints: 0 is "not given"


class TorchServeManagement:
    def __init__(self, management: Management, policy: CallPolicy) -> None:
        self.management = management
        self.policy = policy

    async def _answer(self, method: str, path: str, query: dict[str, Any] | None = None
                      ) -> tsm.ManagementResponse:
        return tsm.ManagementResponse(msg=await self.management.call_text(method, path, query))

    def _path(self, request: Any) -> str:
        path = "/models/" + self.management.segment(request.model_name)
        if request.model_version:
            path += "/" + self.management.segment(request.model_version, "model_version")
        return path

    @unary(counted=False)
    async def DescribeModel(self, request: Any, context: Any) -> tsm.ManagementResponse:
        return await self._answer("GET", self._path(request),
                                  {"customized": "true" if request.customized else None})

    @unary(counted=False)
    async def ListModels(self, request: Any, context: Any) -> tsm.ManagementResponse:
        return await self._answer("GET", "/models", {
            "limit": _positive(request.limit),
            "next_page_token": _positive(request.next_page_token)})

    @unary(counted=False)
    async def RegisterModel(self, request: Any, context: Any) -> tsm.ManagementResponse:
        return await self._answer("POST", "/models", {
            "url": request.url, "model_name": request.model_name or None,
            "batch_size": _positive(request.batch_size),
            "max_batch_delay": _positive(request.max_batch_delay),
            "initial_workers": _positive(request.initial_workers),
            "synchronous": "true" if request.synchronous else "false"})

    @unary(counted=False)
    async def ScaleWorker(self, request: Any, context: Any) -> tsm.ManagementResponse:
        return await self._answer("PUT", self._path(request), {
            "min_worker": _positive(request.min_worker),
            "max_worker": _positive(request.max_worker),
            "synchronous": "true" if request.synchronous else "false"})

    @unary(counted=False)
    async def SetDefault(self, request: Any, context: Any) -> tsm.ManagementResponse:
        return await self._answer("PUT", self._path(request) + "/set-default")

    @unary(counted=False)
    async def UnregisterModel(self, request: Any, context: Any) -> tsm.ManagementResponse:
        return await self._answer("DELETE", self._path(request))
