"""NetCDF-3 header parser (classic, 64-bit offset, CDF-5): every variable's shape, type, attributes, offset.

Why: whole HYCOM forecast files are read by byte ranges, so the offsets must come from each file's
own header (header lengths differ between files); this module only decodes bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from bias_correction.errors import CorruptInputError

_NC_TYPES: dict[int, tuple[str, int]] = {1: (">i1", 1), 2: ("S1", 1), 3: (">i2", 2), 4: (">i4", 4), 5: (">f4", 4),
                                         6: (">f8", 8), 7: (">u1", 1), 8: (">u2", 2), 9: (">u4", 4),
                                         10: (">i8", 8), 11: (">u8", 8)}


class HeaderIncomplete(Exception):
    """The bytes given end inside the header; read more."""


@dataclass(frozen=True)
class Nc3Variable:
    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]  # full shape; the record dimension has length numrecs
    dtype: str  # numpy dtype (big-endian)
    attrs: dict[str, Any]
    vsize: int
    begin: int
    is_record: bool

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Nc3Header:
    version: int  # 1 classic, 2 64-bit offset, 5 CDF-5
    numrecs: int
    dims: dict[str, int]  # record dimension: its current length (numrecs)
    record_dim: str | None
    attrs: dict[str, Any]
    variables: dict[str, Nc3Variable]
    header_size: int
    recsize: int

    @property
    def expected_size(self) -> int:
        """Byte length the whole file must have."""
        end = max([v.begin + v.vsize for v in self.variables.values() if not v.is_record] + [self.header_size])
        rec = [v for v in self.variables.values() if v.is_record]
        if rec:
            end = max(end, min(v.begin for v in rec) + self.numrecs * self.recsize)
        return end


class _Cursor:
    def __init__(self, data: bytes, version: int) -> None:
        self.data, self.pos, self.version = data, 4, version

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise HeaderIncomplete(self.pos + n)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def count(self) -> int:
        return self.u64() if self.version == 5 else self.u32()

    def padded(self, n: int) -> bytes:
        raw = self.take(n + (-n % 4))
        return raw[:n]

    def name(self) -> str:
        return self.padded(self.count()).decode("utf-8", "replace")

    def attrs(self) -> dict[str, Any]:
        tag, n = self.u32(), self.count()
        out: dict[str, Any] = {}
        if tag == 0:
            return out
        if tag != 0x0C:
            raise CorruptInputError(f"NetCDF-3 header: bad attribute list tag {tag:#x}")
        for _ in range(n):
            key = self.name()
            nc_type, nelems = self.u32(), self.count()
            if nc_type not in _NC_TYPES:
                raise CorruptInputError(f"NetCDF-3 header: attribute {key!r} has unknown type {nc_type}")
            dtype, size = _NC_TYPES[nc_type]
            raw = self.padded(nelems * size)
            if nc_type == 2:
                out[key] = raw.rstrip(b"\0").decode("utf-8", "replace")
            else:
                arr = np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))
                out[key] = arr[0] if arr.size == 1 else arr
        return out


def parse_nc3_header(data: bytes) -> Nc3Header:
    """Parse a NetCDF-3 (classic, 64-bit offset or CDF-5) header from the first bytes of a file.

    Raises :class:`HeaderIncomplete` when ``data`` ends inside the header, CorruptInputError when
    it is not NetCDF-3.
    """
    if len(data) < 8:
        raise HeaderIncomplete(8)
    if data[:3] != b"CDF" or data[3] not in (1, 2, 5):
        raise CorruptInputError(f"not a NetCDF-3 file (first bytes {data[:8]!r})")
    version = data[3]
    c = _Cursor(data, version)
    numrecs = c.count()
    tag, n = c.u32(), c.count()
    dims: list[tuple[str, int]] = []
    if tag not in (0, 0x0A):
        raise CorruptInputError(f"NetCDF-3 header: bad dimension list tag {tag:#x}")
    for _ in range(n if tag else 0):
        dims.append((c.name(), c.count()))
    record_dim = next((name for name, size in dims if size == 0), None)
    gattrs = c.attrs()
    tag, n = c.u32(), c.count()
    if tag not in (0, 0x0B):
        raise CorruptInputError(f"NetCDF-3 header: bad variable list tag {tag:#x}")
    variables: dict[str, Nc3Variable] = {}
    for _ in range(n if tag else 0):
        name = c.name()
        dimids = [c.count() for _ in range(c.count())]
        vattrs = c.attrs()
        nc_type = c.u32()
        vsize = c.count()
        begin = c.u32() if version == 1 else c.u64()
        if nc_type not in _NC_TYPES or any(d >= len(dims) for d in dimids):
            raise CorruptInputError(f"NetCDF-3 header: variable {name!r} has a bad type or dimension id")
        vdims = tuple(dims[d][0] for d in dimids)
        is_record = bool(vdims) and vdims[0] == record_dim
        shape = tuple(numrecs if dn == record_dim else size for dn, size in (dims[d] for d in dimids))
        variables[name] = Nc3Variable(name, vdims, shape, _NC_TYPES[nc_type][0], vattrs, vsize, begin, is_record)
    rec_vars = [v for v in variables.values() if v.is_record]
    if len(rec_vars) == 1:  # a lone record variable is stored unpadded
        v = rec_vars[0]
        recsize = int(np.prod(v.shape[1:], dtype=np.int64)) * v.itemsize
    else:
        recsize = sum(v.vsize for v in rec_vars)
    return Nc3Header(version, numrecs, {name: (numrecs if size == 0 else size) for name, size in dims}, record_dim,
                     gattrs, variables, c.pos, recsize)
