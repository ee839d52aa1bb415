"""GRPCInferenceService's repository RPCs (Triton's layout: model_name is field 2),
replayed on the management API; on the inference port load and unload are refused."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb

from ..errors import ForbiddenError, InvalidInputError
from .status import unary


class RepositoryRpcs:
    """Mixed into InferenceService: needs ``policy``, ``mutable`` and ``management``."""

    mutable: bool
    management: Any

    @unary(counted=False)
    async def RepositoryIndex(self, request: Any, context: Any) -> pb.RepositoryIndexResponse:
        rows = await self.management.call("POST", "/v2/repository/index",
                                          {"ready": request.ready})
        return json_format.ParseDict({"models": rows}, pb.RepositoryIndexResponse(),
                                     ignore_unknown_fields=True)

    @unary(counted=False)
    async def RepositoryModelLoad(self, request: Any, context: Any
                                  ) -> pb.RepositoryModelLoadResponse:
        self._check_mutable("RepositoryModelLoad")
        if request.parameters:
            raise InvalidInputError("load parameters (config or file overrides) are not "
                                    "supported: change the model's folder, then load it")
        name = self.management.segment(request.model_name)
        await self.management.call("POST", f"/v2/repository/models/{name}/load")
        return pb.RepositoryModelLoadResponse()

    @unary(counted=False)
    async def RepositoryModelUnload(self, request: Any, context: Any
                                    ) -> pb.RepositoryModelUnloadResponse:
        self._check_mutable("RepositoryModelUnload")
        name = self.management.segment(request.model_name)
        await self.management.call("POST", f"/v2/repository/models/{name}/unload")
        return pb.RepositoryModelUnloadResponse()

    def _check_mutable(self, what: str) -> None:
        if not self.mutable:
            raise ForbiddenError(f"{what} changes the server: call it on the gRPC management "
                                 f"port ({self.management.where()}), not the inference port")
