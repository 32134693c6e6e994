"""Training samples read lazily from the archive: an index of which files feed each sample, tiles read per item.

The in-memory path (``pipeline.training.training_samples`` -> ``dataset.build_samples``) stacks every sample
for the whole domain: x [N, T, H, W], aux, y. On a large domain that does not fit (a year of 1000x1000,
7 leads, T = 4 with the latest analysis as an input: ~86 GiB). :func:`index_archive` keeps the same
samples -- the same (run, lead) list (:func:`~bias_correction.training.dataset.plan_samples`), the same
inputs (auxiliary inputs, the latest analysis with its lag, the as-issued preliminary where archived), the
same target (the best OISST of the valid day) and the same masking -- as archive keys only, and
:meth:`LazySamples.read` reads one tile window of one sample from the row-band-chunked files
(:data:`bias_correction.io.archive.CHUNK_ROWS`).

Every archive file is verified against its content digest once, when first opened
(``io.archive.verify_content`` with ``correction.streaming.streamed_content_sha256``, read in slabs of a few
MiB, through ``correction.streaming.open_lazy``). The scan that builds
the index reads each field once more for its presence and statistics (per lead: min/max, float64 sums for
anomaly inputs), from which the normalisation equals the in-memory one (min/max exactly; anomaly mean/std
to float32 rounding). The correction envelope streams the training samples by row bands. At most
:data:`OPEN_FILES` files stay open (LRU, small chunk caches); a file reopened after eviction must still
carry the digest it was verified with.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import xarray as xr

from bias_correction.correction.streaming import field_of, open_lazy, streamed_content_sha256
from bias_correction.errors import ArchiveIntegrityError, ConfigError, InputValidationError
from bias_correction.gate import training_envelope
from bias_correction.grid.grids import RegularGrid
from bias_correction.inputs import AUX_INPUTS as INPUT_REGISTRY
from bias_correction.io import archive
from bias_correction.io.netcdf import NETCDF_LOCK, small_chunk_cache
from bias_correction.training.dataset import SamplePlan, check_sample_args, plan_samples

#: Archive files open at once (least recently used closed first) and the HDF5 chunk cache of each variable:
#: a tile read touches at most two row-band chunks per field, so a small cache loses nothing.
OPEN_FILES = 64
CHUNK_CACHE_BYTES = 1 << 20
#: Rows per band when a statistic streams whole fields (the envelope, targets restricted to a window).
STAT_ROWS = 256

#: (archive key, lead index; None for a 2-D OISST field), or (key, lead index, base lead index): a derived
#: same-run input (``inputs.InputSpec.derive``) = the field at the lead minus the field at the base lead
Ref = tuple


@dataclass(frozen=True)
class FieldStats:
    """Finite ocean values of one field: presence, min/max (degC or the input's units) and float64 sums."""

    ok: bool
    vmin: float
    vmax: float
    s1: float
    s2: float
    n: int


class ArchiveFiles:
    """Archive files opened lazily, at most ``capacity`` at once; each verified once, on its first open."""

    def __init__(self, store: Any, capacity: int = OPEN_FILES) -> None:
        self.store, self.capacity = store, capacity
        self.digests: dict[str, str] = {}  # key -> content digest verified on first open
        self._open: OrderedDict[str, tuple[contextlib.ExitStack, xr.Dataset]] = OrderedDict()

    def dataset(self, key: str) -> xr.Dataset:
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key][1]
        stack = contextlib.ExitStack()
        try:
            with small_chunk_cache(CHUNK_CACHE_BYTES):
                ds = stack.enter_context(self._opened(key))
        except BaseException:
            stack.close()
            raise
        self._open[key] = (stack, ds)
        while len(self._open) > self.capacity:
            self._open.popitem(last=False)[1][0].close()
        return ds

    def _opened(self, key: str) -> contextlib.AbstractContextManager[xr.Dataset]:
        """The file opened lazily; the first time its content is verified (``io.archive.verify_content`` with the
        streamed digest), later its recorded digest must still be the verified one."""

        def check(ds: xr.Dataset) -> None:
            if key not in self.digests:
                archive.verify_content(ds, key, streamed_content_sha256)
                self.digests[key] = str(ds.attrs[archive.CONTENT_ATTR])
            elif ds.attrs.get(archive.CONTENT_ATTR) != self.digests[key]:
                raise ArchiveIntegrityError(f"archive file {key} changed after it was verified (training reads it)")

        return open_lazy(self.store, key, check)

    def read(self, ref: Ref, rows: slice, cols: slice) -> np.ndarray:
        """float32 window ``[rows, cols]`` of the field (at the lead index) of ``ref``, decoded as xarray does;
        a derived ref reads the lead and its base lead and returns the difference."""
        key, lead = ref[0], ref[1]
        var = field_of(self.dataset(key)).variable
        with NETCDF_LOCK:
            out = np.asarray(var[(rows, cols) if lead is None else (lead, rows, cols)].values, dtype=np.float32)
            if len(ref) == 3:
                out = out - np.asarray(var[(ref[2], rows, cols)].values, dtype=np.float32)
        return out

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1][0].close()


def _stats(v: np.ndarray, ocean: np.ndarray) -> FieldStats:
    vals = v[ocean]
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return FieldStats(False, np.nan, np.nan, 0.0, 0.0, 0)
    d = vals.astype(np.float64)
    return FieldStats(True, float(vals.min()), float(vals.max()), float(d.sum()), float((d * d).sum()), int(vals.size))


def _check_grid(da: xr.DataArray, grid: RegularGrid, key: str, dims: tuple[str, ...]) -> None:
    if tuple(da.dims) != dims:
        raise InputValidationError(f"archive file {key}: field dims {list(da.dims)}, expected {list(dims)}")
    for c, ref in (("lat", grid.lat), ("lon", grid.lon)):
        if da.sizes[c] != ref.size or not np.allclose(da[c].values, ref, atol=1e-6):
            raise InputValidationError(f"archive file {key}: {c} ({da.sizes[c]} cells) differs from grid {grid.grid_id}")


@dataclass(frozen=True, eq=False)
class LazySamples:
    """Samples as archive keys (the :class:`~bias_correction.training.dataset.SampleSet` interface the training
    split and loop need: ``len``, ``lead``, ``run``, ``valid``, ``mask``, ``subset``, ``targets_inside``), read by tile."""

    files: ArchiveFiles
    mask: np.ndarray  # [H, W] bool, True = ocean
    plan: SamplePlan
    run_keys: dict[str, list[str]]  # archive variable -> key per run index (sst and same-run inputs)
    input_keys: list[str]  # analysis input day index -> key (as issued where archived)
    target_keys: list[str]  # target day index -> key (best OISST)
    stats: dict[Ref, FieldStats]
    aux_names: tuple[str, ...] = ()
    keep: tuple[slice, slice] | None = None  # targets only inside these cells (``targets_inside``)

    def __len__(self) -> int:
        return len(self.plan)

    @property
    def lead(self) -> np.ndarray:
        return self.plan.lead

    @property
    def run(self) -> np.ndarray:
        return self.plan.run

    @property
    def valid(self) -> np.ndarray:
        return self.plan.valid

    @property
    def seq_len(self) -> int:
        return int(self.plan.window.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    def subset(self, index: np.ndarray) -> LazySamples:
        return replace(self, plan=SamplePlan(*(getattr(self.plan, f.name)[index] for f in fields(SamplePlan))))

    def targets_inside(self, rows: slice, cols: slice) -> LazySamples:
        """Targets only on ``[rows, cols]`` (NaN elsewhere), as ``SampleSet.targets_inside``."""
        return replace(self, keep=(rows, cols))

    def period(self) -> tuple[str, str] | None:
        return None if len(self) == 0 else (str(self.valid.min()), str(self.valid.max()))

    def close(self) -> None:
        self.files.close()

    def refs(self, i: int) -> tuple[list[Ref], list[list[Ref]], Ref]:
        """(HYCOM SST refs [T], per auxiliary input its refs [T], target ref) of sample ``i``."""
        p = self.plan
        lead = int(p.lead_index[i])
        x: list[Ref] = [(self.run_keys["sst"][w], lead) for w in p.window[i]]
        aux: list[list[Ref]] = []
        for name in self.aux_names:
            spec = INPUT_REGISTRY[name]
            base = () if spec.archived else (0,)  # derived: minus lead day 1 (the first lead of the file)
            aux.append([(self.run_keys[spec.variable][w], lead, *base) for w in p.window[i]] if spec.per_lead
                       else [(self.input_keys[d], None) for d in p.latest[i]])
        return x, aux, (self.target_keys[int(p.target[i])], None)

    def _keep(self, rows: slice, cols: slice) -> np.ndarray:
        """[rows, cols] of the target window (all True without one), built from two 1-D masks."""
        axes = [np.ones(n, dtype=bool) for n in self.shape]
        if self.keep is not None:
            for ax, sl in zip(axes, self.keep, strict=True):
                ax[:] = False
                ax[sl] = True
        return np.outer(axes[0][rows], axes[1][cols])

    def read(self, i: int, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x [T, h, w] degC, aux [T, A, h, w], y [h, w] degC) of sample ``i`` on ``[rows, cols]``, float32 with
        NaN off the ocean (y also outside ``keep``): exactly the crop of the in-memory sample."""
        ocean = self.mask[rows, cols]

        def get(ref: Ref) -> np.ndarray:
            return np.where(ocean, self.files.read(ref, rows, cols), np.float32(np.nan)).astype(np.float32)

        xr_, aux_r, y_r = self.refs(i)
        x = np.stack([get(r) for r in xr_])
        aux = (np.stack([np.stack([get(r) for r in chan]) for chan in aux_r], axis=1) if aux_r
               else np.zeros((x.shape[0], 0, *x.shape[1:]), np.float32))
        y = np.where(self._keep(rows, cols), get(y_r), np.float32(np.nan)).astype(np.float32)
        return x, aux, y

    # -- statistics of the training samples, streamed (equal to dataset.normalisation / gate.training_envelope)

    def _bands(self) -> Iterator[slice]:
        for r0 in range(0, self.shape[0], STAT_ROWS):
            yield slice(r0, min(r0 + STAT_ROWS, self.shape[0]))

    def normalisation(self) -> tuple[float, float]:
        """``dataset.normalisation``: Min-Max (degC) over the ocean values of every x and y of the samples."""
        if len(self) == 0:
            raise ConfigError("cannot compute the normalisation of an empty sample set")
        found = [self.stats[r] for i in range(len(self)) for r in self.refs(i)[0]]
        for key in sorted({self.target_keys[int(t)] for t in self.plan.target}):
            if self.keep is None:
                found.append(self.stats[(key, None)])
                continue
            for rows in self._bands():
                inside = self.mask[rows] & self._keep(rows, slice(None))
                found.append(_stats(self.files.read((key, None), rows, slice(None)), inside))
        found = [s for s in found if s.ok]
        if not found:
            raise ConfigError("no finite ocean values in the training samples")
        vmin, vmax = min(s.vmin for s in found), max(s.vmax for s in found)
        if not vmax > vmin:
            raise ConfigError(f"degenerate normalisation: vmin = vmax = {vmin} degC")
        return vmin, vmax

    def envelope(self) -> float | None:
        """``gate.training_envelope(y, x[:, -1])`` of the samples, by row bands of each sample."""
        best: float | None = None
        for i in range(len(self)):
            x, _, y = self.refs(i)
            for rows in self._bands():
                ocean = self.mask[rows]
                yb = np.where(ocean & self._keep(rows, slice(None)), self.files.read(y, rows, slice(None)), np.nan)
                xb = np.where(ocean, self.files.read(x[-1], rows, slice(None)), np.nan)
                e = training_envelope(yb.astype(np.float32), xb.astype(np.float32))
                best = e if best is None or (e is not None and e > best) else best
        return best

    def aux_normalisation(self, vmin: float, vmax: float) -> list[tuple[float, float]]:
        """``sources.aux_normalisation`` from the per-field sums: each field counted once per sample step using it."""
        out: list[tuple[float, float]] = []
        for a, name in enumerate(self.aux_names):
            if INPUT_REGISTRY[name].normalisation == "sst_minmax":
                out.append((vmin, vmax - vmin))
                continue
            s1 = s2 = 0.0
            n = 0
            for i in range(len(self)):
                for r in self.refs(i)[1][a]:
                    st = self.stats[r]
                    s1, s2, n = s1 + st.s1, s2 + st.s2, n + st.n
            if n == 0:
                raise ConfigError(f"auxiliary input {name} has no finite ocean value in the training samples")
            mean = s1 / n
            sd = float(np.sqrt(max(s2 / n - mean * mean, 0.0)))
            out.append((float(mean), 4.0 * sd if sd > 0 else 1.0))
        return out

    def fingerprint_doc(self, h: Any) -> dict[str, Any]:
        """What identifies these samples (the index and its files' verified digests); arrays go into ``h``."""
        for f in fields(SamplePlan):
            h.update(memoryview(np.ascontiguousarray(getattr(self.plan, f.name)).view(np.uint8)).cast("B"))
        keys = sorted({k for ks in self.run_keys.values() for k in ks} | set(self.input_keys) | set(self.target_keys))
        h.update(json.dumps({k: self.files.digests.get(k) for k in keys}, sort_keys=True).encode())
        keep = None if self.keep is None else [[s.start, s.stop] for s in self.keep]
        return {"n": len(self), "aux": list(self.aux_names), "shape": list(self.shape), "seq_len": self.seq_len,
                "valid": self.period(), "keep": keep, "lazy": True}


def index_archive(store: Any, grid: RegularGrid, ocean: np.ndarray, runs: Sequence[dt.datetime],
                  oisst_days: Sequence[dt.date], seq_len: int, *, aux_inputs: Sequence[str] = (),
                  oisst_lag_days: int = 1) -> tuple[LazySamples, dict[str, Any]]:
    """The samples ``build_samples`` makes from the archived ``runs`` and ``oisst_days`` (as
    ``pipeline.training.training_samples`` loads them), as an index, plus the same version counts."""
    aux_names = check_sample_args(seq_len, aux_inputs, oisst_lag_days)
    specs = [INPUT_REGISTRY[n] for n in aux_names]
    ocean = np.asarray(ocean, dtype=bool)
    if ocean.shape != grid.shape:
        raise InputValidationError(f"mask is {ocean.shape}, grid {grid.grid_id} is {grid.shape}")
    files = ArchiveFiles(store)
    stats: dict[Ref, FieldStats] = {}
    derived = [s for s in specs if not s.archived]
    if any(s.variable != "sst" for s in derived):  # pragma: no cover  (every derived input comes from HYCOM SST)
        raise ConfigError(f"lazy tiles derive inputs from HYCOM SST only: {[s.name for s in derived]}")
    variables = list(dict.fromkeys(["sst", *(s.variable for s in specs if s.per_lead)]))
    present = {v: {r for r in runs if store.exists(archive.hycom_key(grid, r, v))} for v in variables}
    for v in variables:
        if not present[v]:
            what = "HYCOM run" if v == "sst" else f"HYCOM {v} run"
            raise FileNotFoundError(f"no archived {what} among {runs[0]:%Y-%m-%d}..{runs[-1]:%Y-%m-%d} "
                                    f"for grid {grid.grid_id}")
    kept = [r for r in runs if all(r in present[v] for v in variables)]  # the runs every same-run field has
    run_keys = {v: [archive.hycom_key(grid, r, v) for r in kept] for v in variables}
    leads: list[int] | None = None
    for v, keys in run_keys.items():
        for key in keys:
            da = field_of(files.dataset(key))
            _check_grid(da, grid, key, ("lead", "lat", "lon"))
            these = [int(k) for k in np.asarray(da["lead"].values)]
            if leads is None:
                leads = these
            elif these != leads:
                raise InputValidationError(f"archive file {key}: leads {these} differ from the other runs' {leads}")
            for li in range(len(these)):
                stats[(key, li)] = _stats(files.read((key, li), slice(None), slice(None)), ocean)
                if v == "sst" and derived:  # the derived inputs' own statistics (their anomaly normalisation)
                    stats[(key, li, 0)] = _stats(files.read((key, li, 0), slice(None), slice(None)), ocean)
    leads = leads or []
    if derived and leads[:1] != [1]:
        raise InputValidationError(f"{[s.name for s in derived]} derive from lead day 1; the archive's leads are {leads}")

    def scan_days(keys: list[str]) -> list[bool]:
        for key in keys:
            _check_grid(field_of(files.dataset(key)), grid, key, ("lat", "lon"))
            stats[(key, None)] = _stats(files.read((key, None), slice(None), slice(None)), ocean)
        return [stats[(k, None)].ok for k in keys]

    days = [d for d in oisst_days if store.exists(archive.oisst_key(grid, d))]
    if not days:
        raise FileNotFoundError(f"no archived OISST day among {oisst_days[0]}..{oisst_days[-1]} for grid {grid.grid_id}")
    target_keys = [archive.oisst_key(grid, d) for d in days]
    oi_index = {d: i for i, (d, ok) in enumerate(zip(days, scan_days(target_keys), strict=True)) if ok}
    kinds = [str(files.dataset(k).attrs.get("source_version", "final")) for k in target_keys]
    versions: dict[str, Any] = {"final": kinds.count("final"), "preliminary": kinds.count("preliminary"),
                                "preliminary_days": [d.isoformat() for d, v in zip(days, kinds, strict=True)
                                                     if v == "preliminary"]}
    input_keys, in_index = target_keys, oi_index
    if any(s.as_issued and not s.per_lead for s in specs):  # analysis inputs as issued (the kept preliminary)
        entries = [(d, archive.as_issued_oisst(store, grid, d)) for d in oisst_days]
        entries = [(d, e) for d, e in entries if e is not None]
        if not entries:
            raise FileNotFoundError(f"no archived OISST day among {oisst_days[0]}..{oisst_days[-1]} for grid {grid.grid_id}")
        input_keys = [e.key for _, e in entries]
        in_index = {d: i for i, ((d, _), ok) in enumerate(zip(entries, scan_days(input_keys), strict=True)) if ok}
        pre = sum(e.source.get("version") == "preliminary" for _, e in entries)
        versions["as_issued_inputs"] = {"preliminary": pre, "final_only": len(entries) - pre}

    ok = {v: np.array([[stats[(k, li)].ok for li in range(len(leads))] for k in keys], dtype=bool)
          .reshape(len(keys), len(leads)) for v, keys in run_keys.items()}
    plan = plan_samples([r.date() for r in kept], leads, ok["sst"], [ok[s.variable] for s in specs if s.per_lead],
                        oi_index, in_index, seq_len, int(oisst_lag_days), any(not s.per_lead for s in specs))
    return LazySamples(files, ocean, plan, run_keys, input_keys, target_keys, stats, aux_names), versions
