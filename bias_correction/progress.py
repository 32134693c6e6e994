"""Progress bars for long commands (fetch, backfill, verify): tqdm on stderr, so ``--json`` stdout stays
one object; shown on a terminal only (``SSTBC_PROGRESS=1`` forces them, ``0`` hides them)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "date") -> Iterator[T]:
    from tqdm.auto import tqdm

    force = os.environ.get("SSTBC_PROGRESS")
    disable = None if force is None else force == "0"  # None: tqdm shows the bar only on a TTY
    yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, disable=disable, leave=False,
                    dynamic_ncols=True)
