"""Codec micro-benchmark: C vs pure-Python on fixed payloads, as ratios to memcpy.

Run: python benchmarks/micro_codec.py [--repeat N]. Not a test. Fixed-size tensors
should cost O(1) (views, no copy) and so come out far below one memcpy of the
body; BYTES decode has to create one bytes object per element.
"""

from __future__ import annotations

import argparse
import platform
import random
import timeit

import numpy as np

from fastserve import _codec_py

try:
    from fastserve import _codec
except ImportError:  # pragma: no cover
    _codec = None

IMPLS = {"py": _codec_py, **({"c": _codec} if _codec is not None else {})}


def best(fn, repeat: int) -> float:
    """Best seconds per call over `repeat` runs of enough calls to take ~0.2 s."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fixed_tensor(label: str, shape: tuple[int, ...], repeat: int) -> None:
    body = np.random.default_rng(0).random(shape, dtype=np.float32).tobytes()
    sizes = [("input0", len(body))]
    memcpy = best(lambda: bytearray(body), repeat)
    print(f"\n{label}: FP32 {list(shape)}, {len(body):,} bytes; memcpy {memcpy * 1e6:,.1f} us")
    for name, impl in IMPLS.items():
        split = best(lambda impl=impl: impl.split_binary_inputs(body, sizes), repeat)

        def decode(impl=impl):
            (view,) = impl.split_binary_inputs(body, sizes)
            return np.frombuffer(view, dtype="<f4").reshape(shape)

        full = best(decode, repeat)
        print(
            f"  {name:>2}  split {split * 1e6:7.2f} us ({split / memcpy:.2g} x memcpy)"
            f"   split+frombuffer {full * 1e6:7.2f} us ({full / memcpy:.2g} x memcpy)"
        )


def bytes_tensor(count: int, repeat: int) -> None:
    rnd = random.Random(0)
    items = [rnd.randbytes(rnd.randint(0, 32)) for _ in range(count)]
    body = _codec_py.encode_bytes_tensor(items)
    memcpy = best(lambda: bytearray(body), repeat)
    print(
        f"\nBYTES: {count:,} elements of 0-32 bytes, {len(body):,} bytes; "
        f"memcpy {memcpy * 1e6:,.1f} us"
    )
    times = {}
    for name, impl in IMPLS.items():
        dec = best(lambda impl=impl: impl.decode_bytes_tensor(body, "x", count), repeat)
        enc = best(lambda impl=impl: impl.encode_bytes_tensor(items), repeat)
        times[name] = dec, enc
        print(
            f"  {name:>2}  decode {dec * 1e6:8.1f} us ({dec / memcpy:6.1f} x memcpy)"
            f"   encode {enc * 1e6:8.1f} us ({enc / memcpy:6.1f} x memcpy)"
        )
    if "c" in times:
        (pd, pe), (cd, ce) = times["py"], times["c"]
        print(f"  C speed-up over Py: decode {pd / cd:.1f}x, encode {pe / ce:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; Python {platform.python_version()}; impls: {', '.join(IMPLS)}")
    fixed_tensor("image", (1, 3, 224, 224), args.repeat)
    fixed_tensor("64 MB", (16, 1024, 1024), args.repeat)
    bytes_tensor(10_000, args.repeat)


if __name__ == "__main__":
    main()
