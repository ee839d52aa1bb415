"""The gRPC ceiling: grpc.aio on uvloop (as fastserve's gRPC front-end) answering
GRPCInferenceService's ServerLive, ServerMetadata, ServerReady, ModelReady, ModelMetadata,
ModelConfig, ModelStatistics and ModelInfer with fixed pre-serialized answers, nothing
parsed, no model run. Whatever a real server does costs more than this;
benchmarks/bare_server.py is HTTP's counterpart.
perf_analyzer -i grpc and _grpc_load.py can drive it (model `mlp`: [1,64] FP32 -> [1,10]).

python benchmarks/_grpc_echo.py --port 8001
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
import uvloop
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


def answers() -> dict[str, bytes]:
    tensor = {"datatype": "FP32"}
    config = mc.ModelConfig(name="mlp", platform="pytorch_libtorch", max_batch_size=0)
    config.input.add(name="input__0", data_type=mc.TYPE_FP32, dims=[-1, 64])
    config.output.add(name="output__0", data_type=mc.TYPE_FP32, dims=[-1, 10])
    infer = pb.ModelInferResponse(model_name="mlp", model_version="1")
    infer.outputs.add(name="output__0", shape=[1, 10], **tensor)
    infer.raw_output_contents.append(bytes(40))
    return {
        "ServerLive": pb.ServerLiveResponse(live=True).SerializeToString(),
        "ServerMetadata": pb.ServerMetadataResponse(name="echo", version="0").SerializeToString(),
        "ModelStatistics": pb.ModelStatisticsResponse(model_stats=[pb.ModelStatistics(
            name="mlp", version="1")]).SerializeToString(),
        "ServerReady": pb.ServerReadyResponse(ready=True).SerializeToString(),
        "ModelReady": pb.ModelReadyResponse(ready=True).SerializeToString(),
        "ModelMetadata": pb.ModelMetadataResponse(
            name="mlp", versions=["1"], platform="pytorch_libtorch",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name="input__0", shape=[-1, 64],
                                                            **tensor)],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name="output__0",
                                                             shape=[-1, 10], **tensor)],
        ).SerializeToString(),
        "ModelConfig": pb.ModelConfigResponse(config=config).SerializeToString(),
        "ModelInfer": infer.SerializeToString(),
    }


def handler(answer: bytes) -> grpc.RpcMethodHandler:
    async def reply(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return answer

    return grpc.unary_unary_rpc_method_handler(reply)  # no (de)serializers: bytes


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {name: handler(data) for name, data in answers().items()}),))
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    args = p.parse_args()
    try:
        uvloop.run(serve(args.host, args.port))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass


if __name__ == "__main__":
    main()
