"""Upstream regimes: which HYCOM forecast system produced the inputs of a day, a product or a package.

Why a regime matters: a correction learned on one upstream model (GOFS 3.1) corrects that model's
errors; after the switch to ESPC-D-V02 (first run 2024-09-05) its errors differ, so the skill guard
treats the model as unverified on the new regime and retraining is due once enough live days exist.
The switch date is read from the product table (``sources.hycom.products``), never repeated here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from bias_correction.sources.hycom.products import ESPC_D_V02, GOFS31, PRODUCTS, HycomProduct

GOFS31_REGIME = "gofs3.1"
ESPC_D_V02_REGIME = "espc-d-v02"
#: Regime name of every HYCOM product, oldest first (the order regimes follow in time).
REGIME_OF_PRODUCT: dict[str, str] = {GOFS31.name: GOFS31_REGIME, ESPC_D_V02.name: ESPC_D_V02_REGIME}
REGIMES: tuple[str, ...] = tuple(REGIME_OF_PRODUCT[p.name] for p in PRODUCTS)
#: Manifest field listing the regimes of a package's training period (written at export).
MANIFEST_FIELD = "regimes"


def _product_of_day(day: dt.date) -> HycomProduct | None:
    for product in PRODUCTS:
        if product.covers(day):
            return product
    return None


def regime_of_day(day: dt.date) -> str:
    """The upstream HYCOM system of the run of ``day``: "gofs3.1" up to 2024-09-04, "espc-d-v02" after.

    Days before GOFS 3.1's first run (synthetic twins use any dates) count as GOFS 3.1, the oldest regime.
    """
    if isinstance(day, dt.datetime):
        day = day.date()
    product = _product_of_day(day)
    return REGIME_OF_PRODUCT[product.name] if product is not None else REGIMES[0]


def _markers(product: HycomProduct) -> tuple[str, ...]:
    """Strings that name ``product`` in a source URL or archive attribute (its cache folder, its name)."""
    return tuple(m for m in (product.cache_dir, product.name, product.cache_dir.split("/")[-1]) if m)


def regime_of_url(url: str) -> str | None:
    """The regime a HYCOM source URL names (its product folder, e.g. ``ESPC-D-V02``, ``expt_93.0``), else None."""
    for product in reversed(PRODUCTS):  # the newest first: its markers are the more specific
        if any(m in url for m in _markers(product)):
            return REGIME_OF_PRODUCT[product.name]
    return None


def regime_of_inputs(records: list[dict[str, Any]]) -> str | None:
    """The regime of a product's inputs from its provenance input records (``io.provenance.input_record``).

    The HYCOM records name their product in the source URL (``.../GLBy0.08/expt_93.0/...``,
    ``.../ESPC-D-V02/...``) or in an explicit ``product``/``experiment`` field; the newest run decides
    (its forecast is the one corrected). None when no record says which system it came from.
    """
    from bias_correction.inputs import HYCOM_SST

    def when(r: Mapping[str, Any]) -> str:
        return str(r.get("run") or r.get("day") or "")

    hycom = [r for r in records if r.get("input") in (None, HYCOM_SST.name)]
    for rec in sorted(hycom, key=when, reverse=True):
        for field in ("regime", "product", "experiment", "url"):
            value = rec.get(field)
            if not value:
                continue
            if field == "regime" and value in REGIMES:
                return str(value)
            found = REGIME_OF_PRODUCT.get(str(value)) or regime_of_url(str(value))
            if found is not None:
                return found
    return None


def regimes_of_period(start: dt.date, end: dt.date) -> set[str]:
    """Every regime with at least one run day in ``start..end`` (inclusive)."""
    if end < start:
        start, end = end, start
    found = {regime_of_day(start), regime_of_day(end)}
    for product in PRODUCTS:  # a system that began strictly inside the period
        if start <= product.first_run <= end:
            found.add(REGIME_OF_PRODUCT[product.name])
    return found


def _date(value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _training_dates(manifest: Any) -> list[dt.date]:
    """The run days of a package's training data (``training.data.runs``, what the regime follows), else
    every date it records for its training and validation periods (valid days: a close bound)."""
    training = _get(manifest, "training")
    validation = _get(manifest, "validation")
    runs = _get(_get(training, "data"), "runs")
    if isinstance(runs, (list, tuple)):
        dates = [d for d in (_date(v) for v in runs) if d is not None]
        if dates:
            return dates
    values: list[Any] = [_get(training, "period_start"), _get(training, "period_end")]
    vp = _get(training, "validation_period")
    values += list(vp) if isinstance(vp, (list, tuple)) else list(vp.values()) if isinstance(vp, Mapping) else [vp]
    data = _get(training, "data")
    if isinstance(data, Mapping):
        for key in ("start", "end", "period_start", "period_end"):
            values.append(data.get(key))
    vperiod = _get(validation, "period")
    if isinstance(vperiod, (list, tuple)):
        values += list(vperiod)
    return [d for d in (_date(v) for v in values) if d is not None]


def training_regimes(manifest: Any) -> set[str]:
    """The regimes of a package's training period.

    The manifest's ``regimes`` field (written at export) when present; else derived from the dates
    it records for its training and validation periods. Empty when the manifest records no dates.
    ``manifest``: a :class:`correction.manifest.Manifest` or its JSON data.
    """
    recorded = _get(manifest, MANIFEST_FIELD)
    if recorded is None and not isinstance(manifest, Mapping):
        recorded = (getattr(manifest, "model_extra", None) or {}).get(MANIFEST_FIELD)
    if recorded:
        return {str(r) for r in recorded}
    dates = _training_dates(manifest)
    return regimes_of_period(min(dates), max(dates)) if dates else set()


def newest_regime(regimes: Iterable[str]) -> str | None:
    """The newest of ``regimes`` in upstream order (unknown names count as newer than every known one)."""
    order = {r: i for i, r in enumerate(REGIMES)}
    named = list(regimes)
    return max(named, key=lambda r: order.get(r, len(order))) if named else None


def retraining_due(manifest: Any, live_days_by_regime: dict[str, int], min_days: int) -> bool:
    """True when the newest live regime is not among the package's training regimes and at least
    ``min_days`` live days of it exist (then a retraining on the new regime has enough data)."""
    live = [r for r, n in live_days_by_regime.items() if n > 0]
    newest = newest_regime(live)
    if newest is None:
        return False
    return newest not in training_regimes(manifest) and live_days_by_regime[newest] >= min_days


def live_days_by_regime(days: Iterable[dt.date]) -> dict[str, int]:
    """How many of ``days`` (e.g. the run days of the archive or of the verification table) fall in each regime."""
    counts: dict[str, int] = {}
    for day in days:
        r = regime_of_day(day)
        counts[r] = counts.get(r, 0) + 1
    return counts


def manifest_regimes(period_start: Any, period_end: Any, data: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The ``regimes`` manifest field of a package being exported (``{}`` when its period is unknown): the
    exporters splice it into the manifest so that :func:`training_regimes` need not re-derive it."""
    found = training_regimes({"training": {"period_start": period_start, "period_end": period_end, "data": data}})
    order = {r: i for i, r in enumerate(REGIMES)}
    return {MANIFEST_FIELD: sorted(found, key=lambda r: order.get(r, len(order)))} if found else {}


def first_day(regime_name: str) -> dt.date | None:
    """The first run day of a regime (its product's first run), None for an unknown name."""
    for product in PRODUCTS:
        if REGIME_OF_PRODUCT[product.name] == regime_name:
            return product.first_run
    return None
