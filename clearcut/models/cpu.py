"""Which family of int8 matrix kernels ONNX Runtime (MLAS) runs on this CPU.

An int8 variant's accuracy belongs to the file *and* to these kernels. On x86 CPUs without VNNI (AVX2,
or AVX-512 before VNNI) MLAS multiplies uint8 activations by int8 weights with ``vpmaddubsw``, which
adds each pair of products into a saturating 16-bit lane, so large activations times large weights are
clipped; VNNI and AMX accumulate in 32 bits, as ARM's dot-product kernels do. Measured on eval/dev (100
images, plain output, int8 minus float) with the same u2netp-int8 file: +0.0009 mIoU / -0.0013 boundary
F on a Zen 4 with AVX-512 VNNI, -0.0106 / -0.0189 on an AVX2-only EPYC (docs/int8.md). So a quality
check only counts on CPUs of the kernel family it was measured on (``check_applies``).
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # /proc/cpuinfo spellings
X86 = {"x86_64", "amd64", "i386", "i686"}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def int8_kernels(flags: frozenset[str] | set[str] | None = None, machine: str | None = None) -> str:
    """``vnni`` (32-bit accumulation), ``u8s8-saturating`` (AVX2 / AVX-512BW without VNNI), ``x86-sse``,
    or the machine name on other architectures (e.g. ``aarch64``)."""
    machine = (machine or platform.machine()).lower()
    if machine not in X86:
        return machine
    flags = cpu_flags() if flags is None else flags
    if flags & VNNI_FLAGS:
        return "vnni"
    if "avx2" in flags or "avx512bw" in flags:
        return "u8s8-saturating"
    return "x86-sse"


def check_applies(check: dict, kernels: str | None = None) -> bool:
    """Whether a variant's quality check lets ``auto`` use it here: it passed, and it was measured on a
    CPU whose int8 kernels are this one's (a check without that record, from an older build, does not
    count: rebuild or re-measure)."""
    return bool(check.get("passed")) and check.get("int8_kernels") == (kernels or int8_kernels())
