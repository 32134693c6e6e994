"""Calibrated per-pixel uncertainty and large-correction thresholds of a model package.

Why split-conformal residual calibration (and not a variance head or quantile outputs): it works the
same for every model of the zoo (networks, trees, baselines) without retraining or changing any ONNX
graph, and it gives intervals whose coverage is *measured* on data the model never saw. The recipe:

1. A calibration block is carved from the end of the training side (``training.calibrate``): after
   the validation period, separated from it by the hindcast's gap (T - 1 + max lead + lag days), so it
   was used neither for fitting nor for early stopping.
2. On that block, per lead k and pixel p, the mean squared residual (corrected - OISST) is shrunk
   towards the lead's mean, ``s2 = (n ms_p + n0 ms_k) / (n + n0)`` (few days per pixel: the shrinkage
   keeps a noisy pixel near its lead's value), giving a shape ``b[k, p] = sqrt(s2)``.
3. Normalised scores ``|r| / b`` are cross-fitted (``b`` from one half of the block's run days, scores
   on the other half, and back) and their empirical 68 % and 95 % quantiles ``q68[k]``, ``q95[k]``
   make the intervals cover by construction on the block: ``sst_uncertainty = q68 * b`` (the 68 %
   half-width: a one-sigma figure) and the 95 % half-width is ``factor_95 * sst_uncertainty`` with
   ``factor_95 = q95 / q68`` (1.96 if the errors were Gaussian).

The same block records per (run day, lead) squared-error sums of the model, raw HYCOM and persistence
(``Calibration.daily``): the skill guard's evidence until enough live verification exists. The flag
thresholds are the 99th percentile of |correction| per lead on the training samples.

Everything here is numpy on arrays a caller predicted (this module never imports ``training``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bias_correction.correction.manifest import (
    CARD_FILE,
    Manifest,
    artifact_entry,
    read_manifest_json,
    write_manifest_json,
)

LOG = logging.getLogger(__name__)

METHOD = "split-conformal residual calibration per lead and pixel (shrunk to the lead), calibration period " \
         "disjoint from training and early stopping"
LEGACY_METHOD = "calibrated validation residual statistics"
NOMINAL = (0.68, 0.95)
#: Prior weight (in samples) of the lead's mean squared residual in a pixel's estimate.
SHRINKAGE_SAMPLES = 20.0
#: Package artifact of the per-pixel 68 % half-widths.
SIGMA_FILE = "uncertainty.npz"
#: Percentile of |correction| on the training samples beyond which a cell is flagged large_correction.
FLAG_PERCENTILE = 99.0
#: Gaussian 95 % factor, used where a package records none.
GAUSS_95 = 1.959964


def _per_lead_ms(r2: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(per-pixel mean sq. residual, lead mean, per-pixel count) of one lead's samples [n, H, W]."""
    cnt = ok.sum(axis=0).astype(np.float64)
    s = np.where(ok, r2, 0.0).sum(axis=0)
    lead_ms = float(s.sum() / max(cnt.sum(), 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        pix = np.where(cnt > 0, s / np.maximum(cnt, 1.0), lead_ms)
    return pix, lead_ms, cnt


def shape_sigma(r2: np.ndarray, ok: np.ndarray, n0: float = SHRINKAGE_SAMPLES) -> np.ndarray:
    """Shrunk per-pixel RMS residual ``sqrt((n ms_p + n0 ms_lead) / (n + n0))`` of one lead [H, W]."""
    pix, lead_ms, cnt = _per_lead_ms(r2, ok)
    return np.sqrt((cnt * pix + n0 * lead_ms) / (cnt + n0))


def _halves(run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the first and second halves of the distinct run days (contiguous blocks)."""
    days = np.unique(run)
    cut = days[len(days) // 2] if len(days) > 1 else days[-1] + np.timedelta64(1, "D")
    return run < cut, run >= cut


def _quantile(z: np.ndarray, q: float) -> float:
    """Finite-sample conformal quantile: the ceil((n + 1) q)-th smallest score."""
    z = np.sort(z[np.isfinite(z)])
    if z.size == 0:
        return float("nan")
    k = min(int(np.ceil((z.size + 1) * q)) - 1, z.size - 1)
    return float(z[max(k, 0)])


def _abs_quantiles(err: np.ndarray) -> dict[str, float]:
    a = np.abs(err[np.isfinite(err)])
    if a.size == 0:
        return {}
    return {"q68": _quantile(a, NOMINAL[0]), "q95": _quantile(a, NOMINAL[1]), "rmse": float(np.sqrt(np.mean(a * a)))}


def daily_errors(pred: np.ndarray, y: np.ndarray, ok: np.ndarray, run: np.ndarray, lead: np.ndarray,
                 runs: list[str], leads: list[int]) -> tuple[list[list[float]], list[list[int]]]:
    """Per (run day, lead): sum of squared errors and cell count over ``ok`` cells (JSON lists)."""
    sse = np.zeros((len(runs), len(leads)))
    n = np.zeros((len(runs), len(leads)), dtype=np.int64)
    rpos, lpos = {r: i for i, r in enumerate(runs)}, {k: j for j, k in enumerate(leads)}
    d2 = np.where(ok, (np.asarray(pred, np.float64) - y) ** 2, 0.0).reshape(len(pred), -1).sum(axis=1)
    c = ok.reshape(len(pred), -1).sum(axis=1)
    for i, (r, k) in enumerate(zip(run.astype("datetime64[D]").astype(str).tolist(), lead.tolist())):
        sse[rpos[r], lpos[int(k)]] += d2[i]
        n[rpos[r], lpos[int(k)]] += int(c[i])
    return sse.tolist(), n.tolist()


def calibrate(pred: np.ndarray, y: np.ndarray, raw: np.ndarray, lead: np.ndarray, run: np.ndarray,
              valid: np.ndarray, *, persistence: np.ndarray | None = None, gap_days: int,
              n0: float = SHRINKAGE_SAMPLES) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """(uncertainty section, calibration section, per-pixel arrays) from calibration-block predictions.

    ``pred``, ``y``, ``raw`` (and ``persistence``) [N, H, W] degC, NaN off the ocean; ``lead`` [N];
    ``run``/``valid`` [N] datetime64[D].
    """
    pred, y, raw = (np.asarray(a, np.float64) for a in (pred, y, raw))
    pers = None if persistence is None else np.asarray(persistence, np.float64)
    ok = np.isfinite(pred) & np.isfinite(y) & np.isfinite(raw)
    if pers is not None:
        ok &= np.isfinite(pers)
    r = np.where(ok, pred - y, np.nan)
    r2 = np.where(ok, r * r, 0.0)
    leads = sorted(int(k) for k in np.unique(lead))
    run = np.asarray(run).astype("datetime64[D]")
    sig = np.full((len(leads), *pred.shape[1:]), np.nan, np.float32)
    unc: dict[str, Any] = {"method": METHOD, "per_lead_rmse_degC": {}, "per_lead_sigma_degC": {},
                           "per_lead_factor_95": {}, "nominal_coverages": list(NOMINAL),
                           "per_pixel_file": SIGMA_FILE, "shrinkage_samples": float(n0),
                           "references": {"persistence": {}, "raw": {}} if pers is not None else {"raw": {}},
                           "calibration_coverage": {}}
    land = ~ok.any(axis=0)
    for j, k in enumerate(leads):
        sel = lead == k
        rk, r2k, okk, runk = r[sel], r2[sel], ok[sel], run[sel]
        a, b = _halves(runk)
        z = []
        for fit, score in ((a, b), (b, a)):  # cross-fitted normalised scores
            if not fit.any() or not score.any():
                continue
            shape = shape_sigma(r2k[fit], okk[fit], n0)
            z.append((np.abs(rk[score]) / shape[None])[okk[score]])
        if not z:  # one run day only: in-sample
            z.append((np.abs(rk) / shape_sigma(r2k, okk, n0)[None])[okk])
        zz = np.concatenate(z)
        q68, q95 = _quantile(zz, NOMINAL[0]), _quantile(zz, NOMINAL[1])
        shape = shape_sigma(r2k, okk, n0)
        s68 = q68 * shape
        sig[j] = np.where(land, np.nan, s68).astype(np.float32)
        ms = float(r2k.sum() / max(okk.sum(), 1))
        unc["per_lead_rmse_degC"][str(k)] = float(np.sqrt(ms))
        unc["per_lead_sigma_degC"][str(k)] = float(q68 * np.sqrt(ms))
        unc["per_lead_factor_95"][str(k)] = float(q95 / q68) if q68 > 0 else GAUSS_95
        unc["calibration_coverage"][str(k)] = {"68": float(np.mean(zz <= q68)), "95": float(np.mean(zz <= q95)),
                                               "n": int(zz.size)}
        unc["references"]["raw"][str(k)] = _abs_quantiles((raw - y)[sel][okk])
        if pers is not None:
            unc["references"]["persistence"][str(k)] = _abs_quantiles((pers - y)[sel][okk])
    runs = sorted(set(run.astype(str).tolist()))
    daily: dict[str, Any] = {"runs": runs, "leads": leads, "sse": {}, "n": None}
    for name, field in (("model", pred), ("raw", raw), ("persistence", pers)):
        if field is None:
            continue
        sse, n = daily_errors(field, y, ok, run, lead, runs, leads)
        daily["sse"][name], daily["n"] = sse, n
    vd = np.asarray(valid).astype("datetime64[D]")
    cal = {"period": [str(vd.min()), str(vd.max())], "samples": int(len(pred)), "gap_days": int(gap_days),
           "daily": daily}
    return unc, cal, {"sigma68": sig, "leads": np.asarray(leads, np.int32)}


def correction_thresholds(correction: np.ndarray, lead: np.ndarray, *, n_samples: int | None = None,
                          percentile: float = FLAG_PERCENTILE) -> dict[str, Any]:
    """The ``flags`` section: per lead the ``percentile`` of |correction| (K) over ocean cells of the training samples."""
    correction = np.asarray(correction, np.float64)
    out = {}
    for k in sorted(int(v) for v in np.unique(lead)):
        a = np.abs(correction[lead == k])
        a = a[np.isfinite(a)]
        if a.size:
            out[str(k)] = float(np.percentile(a, percentile))
    return {"large_correction_percentile": float(percentile), "large_correction_degC": out,
            "source": f"|model correction| on {n_samples or len(correction)} training samples"}


def attach_calibration(package_dir: Path, uncertainty: dict[str, Any], calibration: dict[str, Any] | None,
                       flags: dict[str, Any] | None, arrays: dict[str, np.ndarray] | None) -> None:
    """Write the calibration into a package folder that is not yet visible (an export's temporary folder or
    a staged tabular package): the per-pixel artifact, the manifest sections (re-sealed) and a card section."""
    mpath, pkg, raw = read_manifest_json(Path(package_dir))
    if arrays is not None:
        tmp = pkg / (SIGMA_FILE + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        shutil.move(tmp, pkg / SIGMA_FILE)
        raw["artifacts"][SIGMA_FILE] = artifact_entry(pkg / SIGMA_FILE)
    else:
        uncertainty = {**uncertainty, "per_pixel_file": None}
    raw["uncertainty"] = json.loads(json.dumps(uncertainty))
    if calibration is not None:
        raw["calibration"] = json.loads(json.dumps(calibration))
    if flags is not None:
        raw["flags"] = json.loads(json.dumps(flags))
    write_manifest_json(pkg, raw)
    card = pkg / CARD_FILE
    if card.is_file():
        card.write_text(card.read_text().rstrip("\n") + "\n\n" + card_section(raw) + "\n")


def card_section(raw: dict[str, Any]) -> str:
    """Model-card lines of the calibration (period, per-lead 68 % half-width, 95 % factor, flag thresholds)."""
    unc, cal, fl = raw.get("uncertainty") or {}, raw.get("calibration") or {}, raw.get("flags") or {}
    lines = ["## Uncertainty calibration", f"- Method: {unc.get('method')}."]
    if cal:
        lines.append(f"- Calibration period (valid days) {cal['period'][0]} to {cal['period'][1]}, {cal['samples']} "
                     f"samples, {cal['gap_days']} empty days after the validation period.")
    for k, v in (unc.get("per_lead_sigma_degC") or {}).items():
        lines.append(f"- Lead {k}: 68 % half-width {v:.3f} K, 95 % = {unc['per_lead_factor_95'][k]:.2f} x; "
                     f"RMSE {unc['per_lead_rmse_degC'][k]:.3f} K"
                     + (f"; large_correction beyond {fl['large_correction_degC'][k]:.3f} K"
                        if k in (fl.get("large_correction_degC") or {}) else ""))
    return "\n".join(lines)


def product_uncertainty(manifest: Manifest, leads: list[int], shape: tuple[int, int], crop: Any = None
                        ) -> tuple[np.ndarray | None, np.ndarray, dict[str, str]]:
    """(sigma68 [lead, lat, lon] or None, factor_95 [lead], attributes) for a product's ``sst_uncertainty``.

    Per-lead values come as a read-only broadcast view (zero strides over lat/lon): copy before writing.

    Calibrated packages give the per-pixel field (or the per-lead value when the artifact is absent or on
    another grid); older packages give their per-lead validation residual (said so); None = no statistics.
    """
    unc = manifest.uncertainty
    attrs: dict[str, str] = {}
    factor = np.full(len(leads), GAUSS_95)
    if unc is not None and unc.per_lead_sigma_degC and all(str(k) in unc.per_lead_sigma_degC for k in leads):
        per = np.array([unc.per_lead_sigma_degC[str(k)] for k in leads])
        factor = np.array([(unc.per_lead_factor_95 or {}).get(str(k), GAUSS_95) for k in leads])
        sig = np.broadcast_to(per[:, None, None], (len(leads), *shape))  # a read-only view: no domain-sized copy
        where = "per lead"
        if unc.per_pixel_file and (manifest.package_dir / unc.per_pixel_file).is_file():
            with np.load(manifest.package_dir / unc.per_pixel_file) as z:
                pix, pl = z["sigma68"], [int(v) for v in z["leads"]]
            pix = pix if crop is None else crop(pix)  # a package on the model grid: its region (grid.halo)
            if pix.shape[1:] == tuple(shape) and all(k in pl for k in leads):
                sig = np.stack([pix[pl.index(k)] for k in leads]).astype(np.float32)
                sig = np.where(np.isfinite(sig), sig, per[:, None, None].astype(np.float32))
                where = "per lead and pixel"
            else:
                LOG.warning("%s: per-pixel uncertainty is %s, the product grid %s; using the per-lead values",
                            manifest.model_id, pix.shape[1:], shape)
        cal = manifest.calibration
        attrs = {"uncertainty_method": f"{unc.method} ({where})",
                 "uncertainty_calibration_period": "/".join(cal.period) if cal is not None else "",
                 "uncertainty_nominal_coverage": "0.68",
                 "uncertainty_interval_95_factor": json.dumps({str(k): round(float(f), 4) for k, f in zip(leads, factor)})}
        return sig, factor, attrs
    per_lead = manifest.residual_rmse_per_lead
    if all(k in per_lead for k in leads):
        return (np.broadcast_to(np.array([per_lead[k] for k in leads])[:, None, None], (len(leads), *shape)),
                factor, {"uncertainty_method": LEGACY_METHOD + " (per lead; not calibrated on an independent period)"})
    return None, factor, {}


def reference_sigma(manifest: Manifest, carried: str, lead: int) -> tuple[float, float] | None:
    """(68 %, 95 %) half-widths, K, of a reference field (``persistence``/``raw``) at ``lead`` on the calibration block."""
    unc = manifest.uncertainty
    ref = ((unc.references or {}).get(carried) or {}).get(str(lead)) if unc is not None else None
    if not ref or "q68" not in ref:
        return None
    return float(ref["q68"]), float(ref["q95"])


def large_correction_thresholds(manifest: Manifest, leads: list[int]) -> np.ndarray | None:
    """Per-lead |correction| thresholds (K) of ``quality_flag`` large_correction, None when the package has none."""
    fl = manifest.flags
    if fl is None or not all(str(k) in fl.large_correction_degC for k in leads):
        return None
    return np.array([fl.large_correction_degC[str(k)] for k in leads], np.float64)
