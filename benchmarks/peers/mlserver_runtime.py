"""MLServer custom runtime: one TorchScript file, v2 inputs decoded with MLServer's codecs.

The model folder's model-settings.json names this class and the file (parameters.uri).
"""

import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class TorchScriptRuntime(MLModel):
    async def load(self) -> bool:
        torch.set_num_threads(1)
        self._model = torch.jit.load(await get_model_uri(self.settings)).eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = torch.from_numpy(NumpyCodec.decode_input(payload.inputs[0]))
        with torch.inference_mode():
            y = self._model(x).numpy()
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("output__0", y)])
