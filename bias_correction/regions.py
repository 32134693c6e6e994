"""Many regions, one service: which regions a command covers and how a fan-out over them reports.

The policy: each region runs on its own settings (:meth:`Settings.for_region`: own grid, mask, archive,
products, model), one region's failure never stops the others, and the outcome lists every region with
what happened; the whole is a failure (non-zero exit, a failed flow run) when any region failed, with one
line per failed region. The CLI and the Prefect flows only wire this; neither decides it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from bias_correction.config import Settings
from bias_correction.errors import ConfigError, PermanentError

LOG = logging.getLogger(__name__)

#: The ``--region`` value that selects every configured region.
ALL = "all"


class RegionsFailed(PermanentError):
    """Some regions of a fan-out failed (each named with its reason); the others completed."""


@dataclass(frozen=True)
class RegionOutcome:
    """What one region of a fan-out did: its result, or the error that stopped it (and only it)."""

    region: str
    ok: bool
    result: Any = None
    error: str | None = None
    message: str | None = None

    def line(self) -> str:
        """The one line that names a failed region and why."""
        return f"region {self.region}: {self.error}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select(settings: Settings, choice: str | None) -> list[str]:
    """Region names a command covers: ``all`` (or no choice) = every configured region, else the one named."""
    names = settings.region_names
    if choice is None or choice == ALL:
        return names
    if choice not in names:
        raise ConfigError(f"--region {choice!r}: no such region in the configuration (configured: "
                          f"{', '.join(names)}; or 'all')")
    return [choice]


def split(settings: Settings, choice: str | None) -> list[Settings]:
    """The per-region settings of :func:`select` (paths separated when several regions are configured)."""
    return [settings.for_region(name) for name in select(settings, choice)]


def outcome(region: str, *, result: Any = None, exc: BaseException | None = None) -> RegionOutcome:
    """A region's outcome from its result or from the exception that ended it."""
    if exc is None:
        return RegionOutcome(region, True, result)
    message = " ".join(str(exc).split()) or type(exc).__name__
    return RegionOutcome(region, False, None, type(exc).__name__, message)


def run_each(regions: Iterable[Settings], fn: Callable[[Settings], Any]) -> list[RegionOutcome]:
    """``fn`` for each region in turn; an exception ends that region only (KeyboardInterrupt ends all)."""
    out = []
    for s in regions:
        try:
            out.append(outcome(s.region.name, result=fn(s)))
        except Exception as exc:  # noqa: BLE001 - isolation: any failure of one region is that region's outcome
            LOG.warning("region %s failed: %s: %s", s.region.name, type(exc).__name__, exc)
            out.append(outcome(s.region.name, exc=exc))
    return out


def failed(outcomes: Iterable[RegionOutcome]) -> list[RegionOutcome]:
    return [o for o in outcomes if not o.ok]


def summary(outcomes: list[RegionOutcome]) -> dict[str, Any]:
    """Plain data of a fan-out: every region's result and the failed regions with their reasons."""
    return {"regions": {o.region: o.result for o in outcomes if o.ok},
            "failed_regions": [{"region": o.region, "error": o.error, "message": o.message} for o in failed(outcomes)]}


def raise_if_failed(outcomes: list[RegionOutcome], what: str) -> None:
    """Fail the whole after every region ran: one message naming each failed region and its reason."""
    bad = failed(outcomes)
    if bad:
        ok = [o.region for o in outcomes if o.ok]
        raise RegionsFailed(f"{what}: {len(bad)} of {len(outcomes)} region(s) failed ("
                            + "; ".join(o.line() for o in bad) + f"); completed: {', '.join(ok) or 'none'}")


def exit_code(codes: dict[str, int]) -> int:
    """The exit code of a fan-out from each region's: 0 when all are 0; 1 (finished, some failed) when at
    least one region succeeded; else the worst region's code."""
    if all(c == 0 for c in codes.values()):
        return 0
    if any(c == 0 for c in codes.values()):
        return 1
    return max(codes.values())
