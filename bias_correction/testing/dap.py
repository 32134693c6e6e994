"""A minimal DAP2 (OPeNDAP 2.0) server side: DDS, DAS and DODS responses of *virtual* datasets.

Why: the HYCOM FMRC run datasets are global (61-65 steps x 40 levels x 4251 x 4500 int16, ~95 GB)
and must never be materialised; only the hyperslab a client asks for is generated (from the twin).
This module knows nothing about HTTP or the twin: a :class:`DapDataset` holds dimensions,
attributes and, per variable, a ``read(index_arrays) -> ndarray`` callback. The stand-in server
routes ``/thredds/dodsC/<path>.{dds,das,dods}`` here.

Wire format (DAP 2.0 spec, as THREDDS and the netCDF-C client speak it):

* ``.dds``: ``Dataset { ... } name;`` with ``Grid { ARRAY: ... MAPS: ... } var;`` for data variables
  whose dimensions all have coordinate variables, plain arrays otherwise.
* ``.das``: ``Attributes { var { Type name value; } NC_GLOBAL { ... } }``.
* ``.dods``: the DDS of the constrained dataset, ``"\\nData:\\n"``, then XDR (big-endian) values:
  each array is prefixed by its length twice (4 bytes each); Int16/UInt16 travel as 32-bit; Byte
  arrays are packed and padded to 4 bytes; scalars have no prefix.
* Constraint expressions: comma-separated projections ``name[start:stride:stop]...`` (also
  ``[start:stop]`` and ``[i]``), with ``grid.array[...]`` / ``grid.map[...]`` member paths. A whole
  Grid gets its maps cut by the same hyperslab; a projected Grid *member* comes back inside a
  Structure of the Grid's name, as THREDDS does. Selections (``&...``) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import numpy as np

#: DAP2 type names of the numpy dtypes served.
DAP_TYPES: dict[str, str] = {
    "u1": "Byte", "i1": "Byte", "i2": "Int16", "u2": "UInt16", "i4": "Int32", "u4": "UInt32",
    "f4": "Float32", "f8": "Float64",
}
_XDR_DTYPE = {"Byte": ">u1", "Int16": ">i4", "UInt16": ">u4", "Int32": ">i4", "UInt32": ">u4",
              "Float32": ">f4", "Float64": ">f8"}

Reader = Callable[[tuple[np.ndarray, ...]], np.ndarray]


class DapError(Exception):
    """A request the dataset cannot answer; ``status`` is the HTTP status to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class DapVariable:
    """One variable: dimension names, numpy dtype, attributes (ordered) and a hyperslab reader.

    ``read`` receives one integer index array per dimension and returns an array of shape
    ``tuple(len(ix) for ix in indices)`` in ``dtype`` (raw, packed values: the client unpacks).
    """

    name: str
    dtype: str
    dims: tuple[str, ...]
    attrs: list[tuple[str, Any]]
    read: Reader


@dataclass
class DapDataset:
    name: str
    dims: dict[str, int]
    variables: dict[str, DapVariable] = field(default_factory=dict)
    global_attrs: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, var: DapVariable) -> None:
        for d in var.dims:
            if d not in self.dims:
                raise ValueError(f"{var.name}: unknown dimension {d!r}")
        self.variables[var.name] = var

    def is_grid(self, var: DapVariable) -> bool:
        """Multi-dimensional variables whose every dimension has a coordinate variable are DAP Grids.

        (THREDDS also wraps 1-D auxiliary variables such as ``tau(time)`` in Grids; the netCDF-C client's
        prefetch of small variables then mis-reads the member answer from this server, so they stay
        plain arrays here. Clients see the same netCDF variables either way.)
        """
        return len(var.dims) > 1 and var.name not in var.dims and all(d in self.variables for d in var.dims)

    def shape(self, var: DapVariable) -> tuple[int, ...]:
        return tuple(self.dims[d] for d in var.dims)


def dap_type(dtype: str | np.dtype) -> str:
    dt = np.dtype(dtype)
    key = f"{dt.kind}{dt.itemsize}"
    try:
        return DAP_TYPES[key]
    except KeyError:
        raise ValueError(f"dtype {dt} has no DAP2 type") from None


# ------------------------------------------------------------------------------------ DDS / DAS
def dap_name(name: str) -> str:
    """A DDS identifier: characters outside the DAP2 word set are %-escaped (``:`` -> ``%3a``, as TDS does)."""
    return "".join(c if (c.isalnum() or c in "_-+.!~*'") else f"%{ord(c):02x}" for c in name)


def _decl(var: DapVariable, sizes: Sequence[int], indent: str) -> str:
    dims = "".join(f"[{d} = {n}]" for d, n in zip(var.dims, sizes))
    return f"{indent}{dap_type(var.dtype)} {var.name}{dims};\n"


def _grid_text(ds: DapDataset, var: DapVariable, sizes: Sequence[int], indent: str) -> str:
    out = f"{indent}Grid {{\n{indent}  ARRAY:\n" + _decl(var, sizes, indent + "    ")
    out += f"{indent}  MAPS:\n"
    for d, n in zip(var.dims, sizes):
        out += _decl(ds.variables[d], [n], indent + "    ")
    return out + f"{indent}}} {var.name};\n"


def dds_text(ds: DapDataset) -> str:
    """DDS of the whole (unconstrained) dataset."""
    body = ""
    for var in ds.variables.values():
        sizes = ds.shape(var)
        body += _grid_text(ds, var, sizes, "    ") if ds.is_grid(var) else _decl(var, sizes, "    ")
    return f"Dataset {{\n{body}}} {dap_name(ds.name)};\n"


def _fmt_attr(value: Any) -> tuple[str, str]:
    if isinstance(value, str):
        esc = value.replace("\\", "\\\\").replace('"', '\\"')
        return "String", f'"{esc}"'
    arr = np.atleast_1d(np.asarray(value))
    typ = dap_type(arr.dtype)
    if arr.dtype.kind == "f":
        vals = [np.format_float_positional(v, trim="-") if np.isfinite(v) else ("NaN" if np.isnan(v) else
                ("Infinity" if v > 0 else "-Infinity")) for v in arr]
        vals = [np.format_float_scientific(v, trim="-") if abs(float(v)) >= 1e16 else s
                for v, s in zip(arr, vals)]
    else:
        vals = [str(int(v)) for v in arr]
    return typ, ", ".join(vals)


def das_text(ds: DapDataset) -> str:
    def block(name: str, attrs: list[tuple[str, Any]]) -> str:
        lines = ""
        for key, val in attrs:
            typ, text = _fmt_attr(val)
            lines += f"        {typ} {key} {text};\n"
        return f"    {name} {{\n{lines}    }}\n"

    out = "Attributes {\n"
    for var in ds.variables.values():
        out += block(var.name, var.attrs)
    out += block("NC_GLOBAL", ds.global_attrs)
    return out + "}\n"


# ------------------------------------------------------------------------------------ constraints
@dataclass
class Projection:
    var: DapVariable
    member: str | None  # None: the whole variable; else the Grid member (array or a map)
    index: list[np.ndarray]  # one index array per dimension of the projected array


_RE_HYPER = re.compile(r"\[([^\]]*)\]")


def _parse_slab(text: str, size: int, what: str) -> np.ndarray:
    parts = [p.strip() for p in text.split(":")]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise DapError(400, f"invalid hyperslab [{text}] of {what}") from None
    if len(nums) == 1:
        start, stride, stop = nums[0], 1, nums[0]
    elif len(nums) == 2:
        start, stride, stop = nums[0], 1, nums[1]
    elif len(nums) == 3:
        start, stride, stop = nums
    else:
        raise DapError(400, f"invalid hyperslab [{text}] of {what}")
    if stride < 1 or start < 0 or stop < start or stop >= size:
        raise DapError(400, f"hyperslab [{text}] of {what} is outside 0..{size - 1} (or stride < 1)")
    return np.arange(start, stop + 1, stride, dtype=np.int64)


def _split_projections(ce: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in ce:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return [p.strip() for p in out if p.strip()]


def parse_constraint(ds: DapDataset, ce: str) -> list[Projection]:
    """Projections of a constraint expression; the empty expression projects every variable."""
    ce = unquote(ce or "")
    if "&" in ce:
        proj_part, _, sel = ce.partition("&")
        if sel.strip():
            raise DapError(400, f"selections are not supported: &{sel}")
        ce = proj_part
    if not ce.strip():
        return [Projection(v, None, [np.arange(n) for n in ds.shape(v)]) for v in ds.variables.values()]
    projections = []
    for item in _split_projections(ce):
        m = re.match(r"^([A-Za-z_][\w.\-]*)((?:\[[^\]]*\])*)$", item)
        if not m:
            raise DapError(400, f"malformed constraint expression {item!r}")
        path, slabs = m.group(1), _RE_HYPER.findall(m.group(2))
        head, _, member = path.partition(".")
        var = ds.variables.get(head)
        if var is None:
            raise DapError(404, f"no such variable: {head}")
        if member and not (ds.is_grid(var) and (member == var.name or member in var.dims)):
            raise DapError(404, f"no such variable: {path}")
        target = ds.variables[member] if member and member != var.name else var
        shape = ds.shape(target)
        if slabs and len(slabs) != len(shape):
            raise DapError(400, f"{path}: {len(slabs)} hyperslab(s) given, the variable has {len(shape)} dimension(s)")
        index = [_parse_slab(s, n, path) for s, n in zip(slabs, shape)] if slabs else [np.arange(n) for n in shape]
        projections.append(Projection(var, member or None, index))
    return projections


# ------------------------------------------------------------------------------------ DODS
def _xdr_array(values: np.ndarray, dtype: str) -> bytes:
    typ = dap_type(dtype)
    flat = np.ascontiguousarray(values).reshape(-1)
    n = flat.size
    prefix = np.array([n, n], dtype=">u4").tobytes()
    if typ == "Byte":
        raw = flat.astype(">u1" if np.dtype(dtype).kind == "u" else ">i1").tobytes()
        return prefix + raw + b"\0" * (-len(raw) % 4)
    return prefix + flat.astype(_XDR_DTYPE[typ]).tobytes()


def _read(var: DapVariable, index: list[np.ndarray]) -> np.ndarray:
    data = np.asarray(var.read(tuple(index)))
    want = tuple(len(ix) for ix in index)
    if data.shape != want:
        raise RuntimeError(f"reader of {var.name} returned shape {data.shape}, expected {want}")
    return data.astype(var.dtype, copy=False)


def dods_response(ds: DapDataset, ce: str) -> bytes:
    """The ``.dods`` body for a constraint expression: constrained DDS, ``Data:``, XDR values."""
    projections = parse_constraint(ds, ce)
    dds, data = "", []
    for p in projections:
        sizes = [len(ix) for ix in p.index]
        if p.member is None and ds.is_grid(p.var):
            dds += _grid_text(ds, p.var, sizes, "    ")
            data.append(_xdr_array(_read(p.var, p.index), p.var.dtype))
            for d, ix in zip(p.var.dims, p.index):
                mvar = ds.variables[d]
                data.append(_xdr_array(_read(mvar, [ix]), mvar.dtype))
        elif p.member is None:
            dds += _decl(p.var, sizes, "    ")
            data.append(_xdr_array(_read(p.var, p.index), p.var.dtype))
        else:
            target = p.var if p.member == p.var.name else ds.variables[p.member]
            dds += f"    Structure {{\n{_decl(target, sizes, '        ')}    }} {p.var.name};\n"
            data.append(_xdr_array(_read(target, p.index), target.dtype))
    text = f"Dataset {{\n{dds}}} {dap_name(ds.name)};\n"
    return text.encode() + b"\nData:\n" + b"".join(data)


def dap_error_body(status: int, message: str) -> bytes:
    esc = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'Error {{\n    code = {status};\n    message = "{esc}";\n}};\n'.encode()


def ascii_response(ds: DapDataset, ce: str) -> bytes:
    """A small ``.ascii`` rendering (for people poking at the stand-in with a browser or curl)."""
    lines = []
    for p in parse_constraint(ds, ce):
        target = p.var if p.member in (None, p.var.name) else ds.variables[p.member]
        values = _read(target, p.index)
        lines.append(f"{target.name}, {list(values.shape)}")
        lines.extend(", ".join(str(v) for v in row) for row in values.reshape(-1, values.shape[-1] if values.ndim else 1))
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------------------------ stand-in datasets
#: Largest hyperslab (values) one .dods answer may hold, like THREDDS' 500 MB DAP response cap.
MAX_DODS_VALUES = 40_000_000


def _check_size(index: tuple[np.ndarray, ...], name: str) -> None:
    n = int(np.prod([len(ix) for ix in index], dtype=np.int64))
    if n > MAX_DODS_VALUES:
        raise DapError(403, f"Request too big: {name} would return {n} values (limit {MAX_DODS_VALUES}); subset it")


def hycom_run_dataset(twin: Any, run: Any, taus: np.ndarray, name: str, calendar: str = "gregorian",
                      variables: Sequence[str] = ("water_temp",)) -> DapDataset:
    """The VIRTUAL global FMRC run dataset of one HYCOM run: full-size axes, values made on demand.

    Dimensions time (len(taus)), lat 4251, lon 4500 (0..360, as the native grid) and, with ``water_temp``,
    depth 40; variables time, tau, lat, lon (Float64), depth, and the data ``variables``: ``water_temp``
    (Int16 Grid (time, depth, lat, lon), NAVO packing and attributes of data_formats.md 2.4) and/or
    ``surf_el`` (Int16 Grid (time, lat, lon), metres, scale 0.001, offset 0). GOFS 3.1's FMRC run holds
    both; ESPC-D-V02 has one FMRC per variable (``t3z``: water_temp, ``ssh``: surf_el, hourly). Only the
    requested hyperslab is generated, from the twin.
    """
    from bias_correction.testing.formats import (
        GLBY_NLAT,
        GLBY_NLON,
        HYCOM_DEPTHS,
        HYCOM_GLOBAL_ATTRS,
        HYCOM_SSH_GLOBAL_ATTRS,
        SURF_EL_ATTRS,
        WATER_TEMP_ATTRS,
        glby_lat,
        glby_lon,
        hycom_coord_attrs,
        hycom_hours,
        pack_hycom,
        pack_surf_el,
    )

    unknown = sorted(set(variables) - {"water_temp", "surf_el"})
    if unknown or not variables:
        raise ValueError(f"unsupported HYCOM variables {unknown or list(variables)}")
    taus = np.asarray(taus, dtype=np.float64)
    coords = hycom_coord_attrs(run, calendar)
    dims = {"time": len(taus), "lat": GLBY_NLAT, "lon": GLBY_NLON}
    if "water_temp" in variables:
        dims = {"time": len(taus), "depth": len(HYCOM_DEPTHS), "lat": GLBY_NLAT, "lon": GLBY_NLON}
    gattrs = HYCOM_GLOBAL_ATTRS if "water_temp" in variables else HYCOM_SSH_GLOBAL_ATTRS
    ds = DapDataset(name, dims, global_attrs=list(gattrs))
    hours0 = hycom_hours(run)
    ds.add(DapVariable("time", "f8", ("time",), coords["time"], lambda ix: hours0 + taus[ix[0]]))
    ds.add(DapVariable("tau", "f8", ("time",), coords["tau"], lambda ix: taus[ix[0]]))
    if "depth" in dims:
        ds.add(DapVariable("depth", "f8", ("depth",), coords["depth"], lambda ix: HYCOM_DEPTHS[ix[0]]))
    ds.add(DapVariable("lat", "f8", ("lat",), coords["lat"], lambda ix: glby_lat(ix[0])))
    ds.add(DapVariable("lon", "f8", ("lon",), coords["lon"], lambda ix: glby_lon(ix[0])))

    def surf_el(ix: tuple[np.ndarray, ...]) -> np.ndarray:
        _check_size(ix, "surf_el")
        t, j, i = ix
        if min(len(t), len(j), len(i)) == 0:
            return np.zeros((len(t), len(j), len(i)), dtype=np.int16)
        return pack_surf_el(twin.hycom_surf_el(run, taus[t], glby_lat(j), glby_lon(i)))

    def water_temp(ix: tuple[np.ndarray, ...]) -> np.ndarray:
        _check_size(ix, "water_temp")
        t, d, j, i = ix
        if min(len(t), len(d), len(j), len(i)) == 0:
            return np.zeros((len(t), len(d), len(j), len(i)), dtype=np.int16)
        values = twin.hycom(run, taus[t], glby_lat(j), glby_lon(i), HYCOM_DEPTHS[d])
        return pack_hycom(values)

    if "water_temp" in variables:
        ds.add(DapVariable("water_temp", "i2", ("time", "depth", "lat", "lon"), list(WATER_TEMP_ATTRS), water_temp))
    if "surf_el" in variables:
        ds.add(DapVariable("surf_el", "i2", ("time", "lat", "lon"), list(SURF_EL_ATTRS), surf_el))
    return ds


def oisst_dataset(twin: Any, day: Any, preliminary: bool, name: str) -> DapDataset:
    """The NCEI THREDDS OPeNDAP view of one OISST v2.1 file (data_formats.md 1.2/1.4), values on demand."""
    from bias_correction.testing.formats import (
        OISST_COORD_ATTRS,
        OISST_LAT,
        OISST_LON,
        OISST_VAR_ATTRS,
        oisst_time_value,
        pack_oisst,
    )

    ds = DapDataset(name, {"time": 1, "zlev": 1, "lat": len(OISST_LAT), "lon": len(OISST_LON)})
    tval = np.float32(oisst_time_value(day))
    ds.add(DapVariable("time", "f4", ("time",), OISST_COORD_ATTRS["time"], lambda ix: np.full(len(ix[0]), tval)))
    ds.add(DapVariable("zlev", "f4", ("zlev",), OISST_COORD_ATTRS["zlev"], lambda ix: np.zeros(len(ix[0]))))
    ds.add(DapVariable("lat", "f4", ("lat",), OISST_COORD_ATTRS["lat"], lambda ix: OISST_LAT[ix[0]]))
    ds.add(DapVariable("lon", "f4", ("lon",), OISST_COORD_ATTRS["lon"], lambda ix: OISST_LON[ix[0]]))

    def field(var: str) -> Reader:
        def read(ix: tuple[np.ndarray, ...]) -> np.ndarray:
            _check_size(ix, var)
            t, z, j, i = ix
            shape = (len(t), len(z), len(j), len(i))
            if 0 in shape:
                return np.zeros(shape, dtype=np.int16)
            values = twin.oisst(day, OISST_LAT[j].astype(np.float64), OISST_LON[i].astype(np.float64),
                                preliminary=preliminary)[var]
            return np.broadcast_to(pack_oisst(values, var), shape)
        return read

    for var, attrs in OISST_VAR_ATTRS.items():
        ds.add(DapVariable(var, "i2", ("time", "zlev", "lat", "lon"), list(attrs), field(var)))
    ds.global_attrs = [("Conventions", "CF-1.6, ACDD-1.3"), ("id", name), ("cdm_data_type", "Grid"),
                       ("product_version", "Version v02r01"),
                       ("institution", "NOAA/National Centers for Environmental Information")]
    return ds
