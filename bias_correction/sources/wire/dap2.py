"""DAP2 ``.dods`` data responses: decode the XDR arrays after the DDS, with exact length checks.

Why not netCDF-C for values: it returns garbage without an error when a DATADDS body is cut short;
here every response's length is checked against its DDS exactly. Bytes only, no product knowledge.
"""

from __future__ import annotations

import re

import numpy as np

from bias_correction.errors import TransientFetchError, TruncatedDownloadError

_XDR = {"Byte": (">u1", 1), "Int16": (">i4", 4), "UInt16": (">u4", 4), "Int32": (">i4", 4), "UInt32": (">u4", 4),
        "Float32": (">f4", 4), "Float64": (">f8", 8)}
_RE_DECL = re.compile(r"\b(Byte|Int16|UInt16|Int32|UInt32|Float32|Float64)\s+([^\s\[;]+)((?:\s*\[[^\]]*\])*)\s*;")
_RE_DIM = re.compile(r"\[\s*(?:[^=\]]*=\s*)?(\d+)\s*\]")


def decode_dods(body: bytes, label: str) -> list[tuple[str, np.ndarray]]:
    """(name, array) of every array in a DAP2 ``.dods`` body, in order; the length must match exactly."""
    head, sep, data = body.partition(b"\nData:\n")
    if not sep or not head.lstrip().startswith(b"Dataset"):
        text = head[:200].decode("latin-1", "replace").strip().replace("\n", " ")
        raise TransientFetchError(f"{label}: not a DAP2 data response (an error or HTML page?): {text!r}")
    out, pos = [], 0
    for typ, name, dims in _RE_DECL.findall(head.decode("latin-1")):
        shape = tuple(int(n) for n in _RE_DIM.findall(dims))
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        dtype, size = _XDR[typ]
        if shape:
            if pos + 8 > len(data):
                raise TruncatedDownloadError(f"{label}: DAP2 response cut short in {name}")
            n1, n2 = np.frombuffer(data[pos:pos + 8], dtype=">u4")
            if n1 != n or n2 != n:
                raise TransientFetchError(f"{label}: DAP2 response for {name} announces {n1}/{n2} values, DDS says {n}")
            pos += 8
        nbytes = n * size + ((-n) % 4 if typ == "Byte" else 0)
        if pos + nbytes > len(data):
            raise TruncatedDownloadError(f"{label}: DAP2 response cut short in {name}: "
                                         f"{len(data) - pos} of {nbytes} bytes")
        values = np.frombuffer(data[pos:pos + n * size], dtype=dtype)
        pos += nbytes
        out.append((name, values.reshape(shape) if shape else values))
    if pos != len(data):
        raise TransientFetchError(f"{label}: DAP2 response has {len(data) - pos} bytes more than its DDS describes")
    return out


def projected(arrays: list[tuple[str, np.ndarray]], constraint: str, label: str) -> list[np.ndarray]:
    """The arrays a constraint projects, in its order (the maps that follow a Grid's array are dropped)."""
    names = [p.split("[", 1)[0].split(".")[-1] for p in constraint.split(",")]
    picked = []
    for want in names:  # the projected array itself; maps of a Grid follow it in the response
        for k, (name, values) in enumerate(arrays):
            if name == want:
                picked.append(values)
                arrays = arrays[k + 1:]
                break
        else:
            raise TransientFetchError(f"{label}: DAP response lacks {want}")
    return picked


def slab(ix: slice) -> str:
    """``[start:stride:last]`` of a slice whose ``stop - 1`` is its last index (reachable with its step)."""
    return f"[{ix.start}:{ix.step or 1}:{ix.stop - 1}]"
