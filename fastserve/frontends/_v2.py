"""What the two KServe v2 front-ends (HTTP: kserve_v2, gRPC: fastserve/grpc) share."""

from __future__ import annotations

import numpy as np

from ..core.tensors import bf16_to_float, bytes_array

MAX_CLASSIFICATION = 1_000_000


def classify(arr: np.ndarray, k: int, labels: dict[str, str], batched: bool) -> np.ndarray:
    """Triton's classification extension: top-k as BYTES "score:index[:label]".

    Shape [batch, k] for batching models, else [k]; scores printed as C's "%f".
    """
    values = bf16_to_float(arr) if arr.dtype == np.uint16 else arr
    rows = values.reshape(values.shape[0], -1) if batched and values.ndim else values.reshape(1, -1)
    k = min(k, rows.shape[1])
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    items = []
    for row, indices in zip(rows, order, strict=True):
        for i in indices:
            label = labels.get(str(int(i)))
            text = f"{float(row[i]):f}:{int(i)}" + (f":{label}" if label is not None else "")
            items.append(text.encode("utf-8"))
    return bytes_array(items, (rows.shape[0], k) if batched else (k,))
