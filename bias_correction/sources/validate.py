"""Checks that a downloaded file is complete NetCDF before anything reads values from it.

HTTP clients accept HTML error pages with status 200 and silently return short bodies when the
server sends no Content-Length; the netCDF-C library then opens a truncated NetCDF-3 file and
returns zero-filled values without any error. So every file is sniffed (magic bytes) and checked
for completeness (HDF5 end-of-file address, or the NetCDF-3 header's implied length) first.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.errors import (
    CorruptInputError,
    InputValidationError,
    TruncatedDownloadError,
)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NC3_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")

_NC_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}


def sniff_format(path: Path, what: str) -> str:
    """Return ``"netcdf4"`` (HDF5) or ``"netcdf3"``; raise CorruptInputError for anything else."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise TruncatedDownloadError(f"{what}: empty body (0 bytes)")
    if head.startswith(HDF5_MAGIC):
        return "netcdf4"
    if head[:4] in NC3_MAGICS:
        return "netcdf3"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        raise CorruptInputError(f"{what}: got an HTML/XML page, not NetCDF (a server error page?)")
    raise CorruptInputError(f"{what}: not NetCDF (first bytes {head[:8]!r})")


def check_complete(path: Path, what: str) -> str:
    """Sniff the format and verify the file is not cut short. Returns the format name."""
    fmt = sniff_format(path, what)
    size = path.stat().st_size
    if fmt == "netcdf3":
        expected = netcdf3_expected_size(path, what)
        if size < expected:
            raise TruncatedDownloadError(
                f"{what}: truncated: {size} bytes, its NetCDF-3 header implies {expected}"
            )
    else:
        expected = _hdf5_eof_address(path, what)
        if expected is not None and size < expected:
            raise TruncatedDownloadError(
                f"{what}: truncated: {size} bytes, its HDF5 superblock says {expected}"
            )
    return fmt


def _hdf5_eof_address(path: Path, what: str) -> int | None:
    """End-of-file address from the HDF5 superblock (versions 0-3), or None if unknown."""
    with open(path, "rb") as f:
        sb = f.read(64)
    version = sb[8]
    try:
        if version in (0, 1):
            size_of_offsets = sb[13]
            # v0: 8 sig + 8 version bytes + 4 (leaf/internal K) + 4 flags = 24; v1 adds 4 bytes
            base = 24 if version == 0 else 28
            fmt = {4: "<I", 8: "<Q"}[size_of_offsets]
            # base address, free-space address, end-of-file address, driver address
            return int(struct.unpack_from(fmt, sb, base + 2 * size_of_offsets)[0])
        if version in (2, 3):
            size_of_offsets = sb[9]
            fmt = {4: "<I", 8: "<Q"}[size_of_offsets]
            # sig 8, version 1, offsets 1, lengths 1, flags 1 -> base, sb-ext, eof, root
            return int(struct.unpack_from(fmt, sb, 12 + 2 * size_of_offsets)[0])
    except (KeyError, struct.error):
        raise CorruptInputError(f"{what}: unreadable HDF5 superblock") from None
    return None


class _Reader:
    def __init__(self, data: bytes, version: int, what: str) -> None:
        self.data, self.pos, self.version, self.what = data, 0, version, what

    def need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise TruncatedDownloadError(f"{self.what}: NetCDF-3 header is cut short")

    def u32(self) -> int:
        self.need(4)
        (v,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(v)

    def u64(self) -> int:
        self.need(8)
        (v,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return int(v)

    def count(self) -> int:
        return self.u64() if self.version == 5 else self.u32()

    def skip_padded(self, n: int) -> None:
        self.need(n)
        self.pos += (n + 3) // 4 * 4

    def name(self) -> None:
        self.skip_padded(self.count())

    def attrs(self) -> None:
        tag, n = self.u32(), self.count()
        if tag == 0:
            return
        for _ in range(n):
            self.name()
            nc_type = self.u32()
            self.skip_padded(self.count() * _NC_TYPE_SIZE.get(nc_type, 1))


def netcdf3_expected_size(path: Path, what: str) -> int:
    """Byte length a NetCDF-3 (classic, 64-bit offset or CDF-5) file must have, from its header."""
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    version = data[3]
    r = _Reader(data, version, what)
    r.pos = 4
    numrecs = r.count()
    dims: list[int] = []
    tag, n = r.u32(), r.count()
    for _ in range(n if tag else 0):
        r.name()
        dims.append(r.count())
    r.attrs()
    tag, n = r.u32(), r.count()
    end, rec_begin, rec_vars = 0, None, []
    for _ in range(n if tag else 0):
        r.name()
        dimids = [r.count() for _ in range(r.count())]
        r.attrs()
        nc_type = r.u32()
        vsize = r.count()
        begin = r.u32() if version == 1 else r.u64()
        is_record = bool(dimids) and dims[dimids[0]] == 0
        if is_record:
            rec_begin = begin if rec_begin is None else min(rec_begin, begin)
            per_record = _NC_TYPE_SIZE.get(nc_type, 1)
            for d in dimids[1:]:
                per_record *= dims[d]
            rec_vars.append((vsize, per_record))
        else:
            end = max(end, begin + vsize)
    if rec_vars and rec_begin is not None and numrecs != 0xFFFFFFFF:
        # A lone record variable is stored unpadded; otherwise each record holds every padded vsize.
        recsize = rec_vars[0][1] if len(rec_vars) == 1 else sum(v for v, _ in rec_vars)
        end = max(end, rec_begin + numrecs * recsize)
    return end


def check_physical_values(values: np.ndarray, what: str, name: str, valid_range: tuple[float, float],
                          units: str = "°C") -> None:
    """The decoded field has values, all within ``valid_range`` (in ``units``), and is not all zeros
    (DAP reads have been seen to return all-zero fields)."""
    finite = np.isfinite(values)
    if not finite.any():
        raise InputValidationError(f"{what}: {name} has no valid value (all land or fill)")
    vals = values[finite]
    lo, hi = float(vals.min()), float(vals.max())
    if lo < valid_range[0] or hi > valid_range[1]:
        raise InputValidationError(f"{what}: {name} range {lo:.2f}..{hi:.2f} {units} outside {valid_range}")
    if float(np.abs(vals).max()) == 0.0:
        raise InputValidationError(f"{what}: {name} is zero everywhere")


def open_for_validation(path: Path, what: str, **kwargs: object) -> Any:
    """The loaded dataset of a downloaded file; InputValidationError naming ``what`` if it does not open."""
    from bias_correction.io.netcdf import read_dataset

    try:
        return read_dataset(path, engine="netcdf4", mask_and_scale=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputValidationError(f"{what} does not open as NetCDF: {exc}") from None
