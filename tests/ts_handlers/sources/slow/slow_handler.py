"""Answers once the file the request names exists (the test's gate), or after 30 s."""

import os
import time


def handle(data, context):
    if data is None:
        return None
    gate = (data[0].get("body") or {}).get("gate", "")
    deadline = time.monotonic() + 30
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return ["late" for _ in data]
