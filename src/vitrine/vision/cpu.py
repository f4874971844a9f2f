"""What this CPU offers the CNN: its instruction-set flags, and whether int8 pays here.

int8 convolutions are fast (and exact, with 8-bit weights) where the CPU multiplies
u8 x s8 with 32-bit accumulation in one instruction: AVX-512 VNNI, AVX-VNNI or AMX.
Without it (plain AVX2) onnxruntime's int8 kernels gain little over fp32, so the
``auto`` precision stays fp32 there (``docs/configuration.md``).
"""

from __future__ import annotations

import functools
from pathlib import Path

#: Flags reported beside benchmark figures.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
#: Any one of these makes int8 the automatic precision.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags of the first processor in ``/proc/cpuinfo`` (empty when unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def reported_flags() -> list[str]:
    """The benchmark-relevant flags this CPU has, in ``REPORTED_FLAGS`` order."""
    flags = cpu_flags()
    return [f for f in REPORTED_FLAGS if f in flags]


def has_fast_int8(flags: frozenset[str] | None = None) -> bool:
    """True where int8 inference runs on VNNI / AMX (see the module docstring)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in INT8_FLAGS)
