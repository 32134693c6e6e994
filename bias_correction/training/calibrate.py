"""The calibration block of a training run: carved, predicted, and turned into the package's uncertainty.

Why a block of its own: the validation period chose the epoch (early stopping), so residuals there are
optimistic (issue 12 measured the old per-lead figure 1.7x too small). The block is the last
``calibration_fraction`` of the samples by valid day, with ``span = T - 1 + max lead + lag`` empty days
before it (the hindcast's gap rule, ``training.hindcast.split_window``: the longest reach of one
sample), so none of its inputs or targets was seen by training or early stopping. What is computed
from its predictions is in :mod:`bias_correction.correction.uncertainty`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.correction import uncertainty as unc
from bias_correction.inputs import OISST_LATEST
from bias_correction.training.dataset import SampleSet, split_by_valid_date

LOG = logging.getLogger(__name__)

#: Sidecar of a gridded checkpoint (written by training, read by ``training.export``).
SIDECAR = "calibration.json"
SIDECAR_ARRAYS = "calibration.npz"
#: At most this many training samples per lead are predicted for the flag thresholds.
FLAG_SAMPLES_PER_LEAD = 64
#: Fewest calibration run days worth calibrating on (else the package keeps validation residuals, said so).
MIN_CALIBRATION_RUNS = 4


def calibration_gap(seq_len: int, max_lead: int, lag_days: int) -> int:
    """Empty days between the validation period and the calibration block: T - 1 + max lead + lag."""
    return int(seq_len) - 1 + int(max_lead) + int(lag_days)


def split_calibration(samples: SampleSet, fraction: float, gap_days: int, *,
                      min_fit: int = 8) -> tuple[SampleSet, SampleSet | None]:
    """(samples for training + validation, calibration block or None) split by valid day.

    None (with a log line) when ``fraction`` is 0 or the data are too short for a block of at least
    :data:`MIN_CALIBRATION_RUNS` run days that leaves half of the samples (and ``min_fit``) before the gap.
    """
    if fraction <= 0 or len(samples) == 0:
        return samples, None
    n = len(samples)
    n_cal = max(1, math.ceil(fraction * n))
    boundary = np.sort(samples.valid)[n - n_cal]
    fit, cal = split_by_valid_date(samples, [boundary], gap_days=gap_days)
    if len(np.unique(cal.run)) < MIN_CALIBRATION_RUNS or len(fit) < max(min_fit, n // 2):
        LOG.warning("too little data for a calibration block (%d samples, fraction %.2f, gap %d days): the "
                    "uncertainty falls back to validation residuals (not independent of early stopping)",
                    n, fraction, gap_days)
        return samples, None
    return fit, cal


def persistence_of(samples: SampleSet) -> np.ndarray | None:
    """Persistence of each sample: the latest analysis at run time (its last ``oisst_latest`` step), if carried."""
    if OISST_LATEST.name not in samples.aux_names:
        return None
    return samples.aux_field(OISST_LATEST.name)[:, -1]


def flag_subset(samples: SampleSet, per_lead: int = FLAG_SAMPLES_PER_LEAD, seed: int = 0) -> SampleSet:
    """A seeded subset of at most ``per_lead`` training samples per lead (bounds the prediction cost)."""
    rng = np.random.default_rng(seed)
    keep = []
    for k in np.unique(samples.lead):
        idx = np.flatnonzero(samples.lead == k)
        keep.append(np.sort(rng.choice(idx, size=min(per_lead, idx.size), replace=False)))
    return samples.subset(np.sort(np.concatenate(keep)) if keep else np.zeros(0, int))


def compute(predict: Callable[[SampleSet], np.ndarray], cal: SampleSet | None, train: SampleSet,
            gap_days: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any],
                                    dict[str, np.ndarray] | None]:
    """(uncertainty, calibration, flags, arrays) sections: ``predict(samples) -> [N, H, W] degC``."""
    sub = flag_subset(train)
    flags = unc.correction_thresholds(predict(sub) - sub.x[:, -1], sub.lead, n_samples=len(sub))
    if cal is None:
        return None, None, flags, None
    u, c, arrays = unc.calibrate(predict(cal), cal.y, cal.x[:, -1], cal.lead, cal.run, cal.valid,
                                 persistence=persistence_of(cal), gap_days=gap_days)
    LOG.info("calibration on %s..%s (%d samples): 68 %% half-width %s K", *c["period"], c["samples"],
             ", ".join(f"{k}: {v:.3f}" for k, v in u["per_lead_sigma_degC"].items()))
    return u, c, flags, arrays


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_sidecar(checkpoint: Path, sections: tuple[Any, Any, Any, Any]) -> Path:
    """Store the sections beside a gridded checkpoint, bound to it by its sha256."""
    u, c, f, arrays = sections
    folder = Path(checkpoint).parent
    if arrays is not None:
        np.savez_compressed(folder / SIDECAR_ARRAYS, **arrays)
    doc = {"checkpoint_sha256": _sha(checkpoint), "uncertainty": u, "calibration": c, "flags": f,
           "arrays": SIDECAR_ARRAYS if arrays is not None else None}
    tmp = folder / (SIDECAR + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(folder / SIDECAR)
    return folder / SIDECAR


def clear_sidecar(folder: Path) -> None:
    for name in (SIDECAR, SIDECAR_ARRAYS):
        (Path(folder) / name).unlink(missing_ok=True)


def attach_sidecar(checkpoint: Path, package_dir: Path) -> bool:
    """Attach the checkpoint's sidecar (when present and bound to this checkpoint) to a package folder not yet
    visible; True when attached."""
    side = Path(checkpoint).parent / SIDECAR
    if not side.is_file():
        return False
    doc = json.loads(side.read_text())
    if doc.get("checkpoint_sha256") != _sha(checkpoint):
        LOG.warning("%s belongs to another checkpoint; the package keeps validation residuals", side)
        return False
    arrays = None
    if doc.get("arrays"):
        with np.load(side.parent / doc["arrays"]) as z:
            arrays = {k: z[k] for k in z.files}
    if doc.get("uncertainty") is None:  # no calibration block: flags only, uncertainty stays as exported
        from bias_correction.correction.manifest import read_manifest_json

        _, _, raw = read_manifest_json(package_dir)
        unc.attach_calibration(package_dir, raw["uncertainty"], None, doc.get("flags"), None)
        return True
    unc.attach_calibration(package_dir, doc["uncertainty"], doc.get("calibration"), doc.get("flags"), arrays)
    return True
