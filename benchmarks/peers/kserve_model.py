"""KServe 0.21 model server for one TorchScript file: v2 inputs as numpy, one FP32 output,
raw (binary) output contents over gRPC. Run with KServe's own flags:
python kserve_model.py --model_name mlp --model_file mlp.pt --http_port 8080 --grpc_port 8081
"""

import argparse
import logging

import kserve
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.model_server import parser as kserve_parser


class TorchScriptModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        torch.set_num_threads(1)
        self.model = torch.jit.load(self.path).eval()
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        x = torch.from_numpy(payload.inputs[0].as_numpy().copy())
        with torch.inference_mode():
            y = self.model(x).numpy()
        out = InferOutput(name="output__0", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=True)
        return InferResponse(response_id=payload.id or "", model_name=self.name,
                             infer_outputs=[out], use_binary_outputs=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve_parser])
    parser.add_argument("--model_file", required=True)
    args, _ = parser.parse_known_args()
    kserve.logging.configure_logging(args.log_config_file)
    # Its best case: no INFO line per call (the gRPC interceptor logs every method).
    logging.getLogger("kserve").setLevel(logging.WARNING)
    ModelServer(workers=1).start([TorchScriptModel(args.model_name, args.model_file)])
