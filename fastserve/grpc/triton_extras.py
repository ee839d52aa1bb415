"""Triton's LogSettings, TraceSetting and CudaSharedMemory* RPCs of GRPCInferenceService.

Log and trace settings are frontends/triton_settings.py's (the same state as HTTP's
/v2/logging and /v2/trace/setting); an update on the inference port is PERMISSION_DENIED,
naming the management port, as RepositoryModelLoad. CUDA shared memory is not offered:
the answers are Triton's when it is built without GPU support (register: INVALID_ARGUMENT
"..., GPUs not supported"; status lists nothing; unregister has nothing to remove).
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import service_pb2 as pb

from ..errors import ErrorCode, FastServeError, ForbiddenError, InvalidInputError
from ..frontends._triton_settings import TritonSettings
from .status import unary

LOG_CHOICE = {bool: "bool_param", int: "uint32_param", str: "string_param"}


class RegionNotFoundError(FastServeError, LookupError):
    code = ErrorCode.NOT_FOUND


class TritonExtras:
    """Mixed into InferenceService: needs ``policy``, ``mutable``, ``management`` and
    ``settings`` (the process's TritonSettings)."""

    settings: TritonSettings
    mutable: bool
    management: Any

    def _check_update(self, what: str, request: Any) -> bool:
        if not request.settings:
            return False
        if not self.mutable:
            raise ForbiddenError(f"{what} with settings changes the server: call it on the "
                                 f"gRPC management port ({self.management.where()}), not the "
                                 "inference port")
        return True

    async def log_settings(self, changes: dict[str, Any] | None) -> dict[str, Any]:
        """The settings after ``changes`` (None: only read them)."""
        logs = self.settings.logs
        return logs.get() if changes is None else logs.update(changes)

    async def trace_settings(self, model: str | None, changes: dict[str, list[str]] | None
                             ) -> dict[str, list[str]]:
        traces = self.settings.traces
        return traces.get(model) if changes is None else traces.update(model, changes)

    @unary(counted=False)
    async def LogSettings(self, request: Any, context: Any) -> pb.LogSettingsResponse:
        changes = None
        if self._check_update("LogSettings", request):
            changes = {key: None if value.WhichOneof("parameter_choice") is None
                       else getattr(value, value.WhichOneof("parameter_choice"))
                       for key, value in request.settings.items()}
        current = await self.log_settings(changes)
        answer = pb.LogSettingsResponse()
        for key, value in current.items():
            setattr(answer.settings[key], LOG_CHOICE[type(value)], value)
        return answer

    @unary(counted=False)
    async def TraceSetting(self, request: Any, context: Any) -> pb.TraceSettingResponse:
        changes = None
        if self._check_update("TraceSetting", request):
            changes = {key: list(value.value) for key, value in request.settings.items()}
        current = await self.trace_settings(request.model_name or None, changes)
        answer = pb.TraceSettingResponse()
        for key, values in current.items():
            answer.settings[key].value.extend(values)
        return answer

    @unary(counted=False)
    async def CudaSharedMemoryRegister(self, request: Any, context: Any
                                       ) -> pb.CudaSharedMemoryRegisterResponse:
        raise InvalidInputError(f"failed to register CUDA shared memory region: "
                                f"'{request.name}', GPUs not supported")

    @unary(counted=False)
    async def CudaSharedMemoryStatus(self, request: Any, context: Any
                                     ) -> pb.CudaSharedMemoryStatusResponse:
        if request.name:
            raise RegionNotFoundError(
                f"Unable to find cuda shared memory region: '{request.name}'")
        return pb.CudaSharedMemoryStatusResponse()

    @unary(counted=False)
    async def CudaSharedMemoryUnregister(self, request: Any, context: Any
                                         ) -> pb.CudaSharedMemoryUnregisterResponse:
        return pb.CudaSharedMemoryUnregisterResponse()  # nothing was registered
