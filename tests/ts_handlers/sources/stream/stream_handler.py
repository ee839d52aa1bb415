"""A streaming handler: each part goes out as it is produced."""

import os
import time

from ts.handler_utils.utils import send_intermediate_predict_response


class StreamHandler:
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        body = data[0].get("data") or data[0].get("body")
        if isinstance(body, (bytes, bytearray)):
            body = body.decode()
        count = int(body.get("parts", 3)) if isinstance(body, dict) else 3
        gate = body.get("gate") if isinstance(body, dict) else None
        for i in range(count):
            send_intermediate_predict_response(
                [f"part {i};"], context.request_ids, "Intermediate Prediction success", 200,
                context)
            if gate and i == 0:  # hold the rest until the client has seen the first part
                deadline = time.monotonic() + 30
                while not os.path.exists(gate) and time.monotonic() < deadline:
                    time.sleep(0.01)
        return ["done"]
