"""The transport and the v2 decoder in one process, for counting copies under valgrind.

Serves POST /v2/models/conv/infer (decodes the body into the input array, as the real
front-end does, and answers a small JSON) until GET /exit. No torch: the model input
is a view the backend would hand to torch.from_numpy without a copy.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import uvloop

from fastserve.frontends.kserve_v2 import KServeV2Frontend
from fastserve.http.messages import Response
from fastserve.http.router import Router
from fastserve.http.server import HttpServer
from fastserve.types import DataType, TensorSpec

SPECS = (TensorSpec("input__0", DataType.FP32, (-1, 3, 224, 224)),)


async def main(port: int) -> None:
    stop = asyncio.Event()
    frontend = KServeV2Frontend(None)  # type: ignore[arg-type]

    def infer(request):  # type: ignore[no-untyped-def]
        decoded, _ = frontend.decode(request, SPECS)
        x = decoded.inputs["input__0"]
        return Response(orjson.dumps({"first": float(x.flat[0]), "n": int(x.size)}))

    def exit_(request):  # type: ignore[no-untyped-def]
        stop.set()
        return Response(b"{}")

    router = Router()
    router.add("POST", "/v2/models/conv/infer", infer)
    router.add("GET", "/exit", exit_)
    server = HttpServer(router)
    await server.listen("127.0.0.1", port)
    print("ready", flush=True)
    await stop.wait()
    await server.close(1.0)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
