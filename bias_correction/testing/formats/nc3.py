"""NetCDF-3 64-bit offset headers encoded by hand, so that multi-GB files can be served without materialising them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_NC3_TYPE = {"i1": 1, "S1": 2, "i2": 3, "i4": 4, "f4": 5, "f8": 6}


@dataclass(frozen=True)
class Nc3Var:
    """One variable of a NetCDF-3 layout: where its bytes are and what they are."""

    name: str
    dims: tuple[str, ...]
    dtype: str  # big-endian numpy dtype, e.g. ">i2"
    shape: tuple[int, ...]  # record vars: shape of ONE record (without the record dim)
    is_record: bool
    vsize: int
    begin: int


@dataclass(frozen=True)
class Nc3Layout:
    """A NetCDF-3 64-bit offset file described without its data: the header bytes and each variable's place."""

    header: bytes
    variables: dict[str, Nc3Var]
    numrecs: int
    recsize: int
    size: int


def _nc3_pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _nc3_name(name: str) -> bytes:
    raw = name.encode()
    return struct.pack(">I", len(raw)) + _nc3_pad(raw)


def _nc3_attrs(attrs: list[tuple[str, object]]) -> bytes:
    if not attrs:
        return struct.pack(">II", 0, 0)
    out = struct.pack(">II", 0x0C, len(attrs))
    for key, value in attrs:
        out += _nc3_name(key)
        if isinstance(value, str):
            raw = value.encode()
            out += struct.pack(">II", 2, len(raw)) + _nc3_pad(raw)
        else:
            arr = np.atleast_1d(np.asarray(value))
            code = _NC3_TYPE[f"{arr.dtype.kind}{arr.dtype.itemsize}"]
            out += struct.pack(">II", code, arr.size) + _nc3_pad(arr.astype(arr.dtype.newbyteorder(">")).tobytes())
    return out


def nc3_layout(dims: list[tuple[str, int | None]], global_attrs: list[tuple[str, object]],
               variables: list[tuple[str, tuple[str, ...], str, list[tuple[str, object]]]],
               numrecs: int = 1) -> Nc3Layout:
    """Encode the header of a NetCDF-3 64-bit offset (``CDF\\x02``) file and place every variable.

    ``dims``: (name, size) with size None for the record (UNLIMITED) dimension; ``variables``:
    (name, dims, numpy dtype, attrs) in file order. Non-record data follow the header in variable
    order, then ``numrecs`` records each holding every record variable (padded to 4 bytes), as the
    netCDF-C library lays them out.
    """
    dim_ids = {name: k for k, (name, _) in enumerate(dims)}
    sizes = {name: size for name, size in dims}
    specs = []
    for name, vdims, dtype, attrs in variables:
        dt_ = np.dtype(dtype).newbyteorder(">")
        is_rec = bool(vdims) and sizes[vdims[0]] is None
        shape = tuple(int(sizes[d]) for d in (vdims[1:] if is_rec else vdims))  # type: ignore[arg-type]
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt_.itemsize
        specs.append((name, vdims, dt_, attrs, is_rec, shape, nbytes + (-nbytes % 4)))

    def encode(begins: list[int]) -> bytes:
        out = b"CDF\x02" + struct.pack(">I", numrecs)
        out += struct.pack(">II", 0x0A, len(dims))
        for name, size in dims:
            out += _nc3_name(name) + struct.pack(">I", 0 if size is None else size)
        out += _nc3_attrs(global_attrs)
        out += struct.pack(">II", 0x0B, len(specs))
        for (name, vdims, dt_, attrs, _rec, _shape, vsize), begin in zip(specs, begins):
            out += _nc3_name(name) + struct.pack(">I", len(vdims))
            out += b"".join(struct.pack(">I", dim_ids[d]) for d in vdims)
            out += _nc3_attrs(attrs)
            out += struct.pack(">II", _NC3_TYPE[f"{dt_.kind}{dt_.itemsize}"], min(vsize, 0xFFFFFFFF))
            out += struct.pack(">Q", begin)
        return out

    header_len = len(encode([0] * len(specs)))
    pos, begins = header_len, []
    for spec in specs:
        if not spec[4]:
            begins.append(pos)
            pos += spec[6]
        else:
            begins.append(-1)
    rec_start, recsize = pos, 0
    for k, spec in enumerate(specs):
        if spec[4]:
            begins[k] = rec_start + recsize
            recsize += spec[6]
    header = encode(begins)
    assert len(header) == header_len
    out_vars = {name: Nc3Var(name, vdims, dt_.str, shape, rec, vsize, b)
                for (name, vdims, dt_, _a, rec, shape, vsize), b in zip(specs, begins)}
    return Nc3Layout(header, out_vars, numrecs, recsize, rec_start + numrecs * recsize)
