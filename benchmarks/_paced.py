"""A paced HTTP client: `conns` keep-alive connections each POST one body every `period`
seconds (connection i offset by i * period / conns), for `seconds`; a connection whose
answer comes late sends again at its next tick. Prints one JSON line: answers by status.

image_mix.py sends the image body with it at the rate the images were answered, to a
model that refuses it at once (400 after parsing): the same bytes through the same
transport, without the image work (the ceiling for tensor p99 beside that traffic).

    python benchmarks/_paced.py PORT PATH BODY_FILE HEADER_LENGTH SECONDS PERIOD [CONNS]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter


async def _connection(port: int, request: bytes, end: float, period: float, offset: float,
                      statuses: Counter[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while True:
        now = time.monotonic()
        tick = (int((now - offset) / period) + 1) * period + offset
        if tick >= end:
            break
        await asyncio.sleep(tick - now)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
        length = int(next(v for k, v in fields.items() if k.lower() == b"content-length"))
        await reader.readexactly(length)
        statuses[head.split(b" ", 2)[1].decode()] += 1
    writer.close()


async def main(port: int, path: str, body: bytes, header_length: str, seconds: float,
               period: float, conns: int) -> Counter[str]:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: application/octet-stream\r\n"
               f"Inference-Header-Content-Length: {header_length}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    statuses: Counter[str] = Counter()
    end = time.monotonic() + seconds
    await asyncio.gather(*(_connection(port, request, end, period, i * period / conns,
                                       statuses) for i in range(conns)))
    return statuses


if __name__ == "__main__":
    port, path, body_file, header_length, seconds, period = sys.argv[1:7]
    conns = int(sys.argv[7]) if len(sys.argv) > 7 else 16
    with open(body_file, "rb") as f:
        body = f.read()
    answered = asyncio.run(main(int(port), path, body, header_length, float(seconds),
                                float(period), conns))
    print(json.dumps({"statuses": answered, "seconds": float(seconds)}))
