"""What every upstream source and access strategy promises, and the registry that picks strategies.

Why: the products (HYCOM runs, OISST days) differ in what they fetch, but not in how the rest of
sstbc uses them: fetch one item into the raw cache (with a ledger), then open it as an
``xarray.DataArray`` with fixed dims and a ``units`` attribute. The way bytes are obtained (NCSS,
OPeNDAP, Range reads, HTTPS, S3) is an access strategy, registered by the name the config uses, so
adding a mode is one module plus one registration, never another branch in a source.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

import xarray as xr

from bias_correction.errors import ConfigError
from bias_correction.sources.cache import Fetched

K = TypeVar("K", contravariant=True)
S = TypeVar("S")


@runtime_checkable
class Source(Protocol[K]):
    """One upstream product: ``K`` names an item (a run time, a day).

    ``dims`` are the dims of :meth:`open`'s array, which always carries a ``units`` attribute.
    """

    dims: tuple[str, ...]

    def cached(self, item: K) -> Fetched | None:
        """The item in the raw cache, without any network access."""

    def fetch(self, item: K) -> Fetched:
        """The item in the raw cache, acquired through the configured access if absent."""

    def open(self, fetched: Fetched, item: K) -> xr.DataArray:
        """The cached item as an array with dims :attr:`dims` and a ``units`` attribute."""


class Access(Protocol):
    """One way of obtaining a product's bytes; ``name`` is the config value that selects it."""

    name: str


class Registry(Generic[S]):
    """Access strategies by name, in registration order; lookups of unknown names list the known ones."""

    def __init__(self, what: str, strategies: Iterable[S] = ()) -> None:
        self.what = what
        self._by_name: dict[str, S] = {}
        for strategy in strategies:
            self.register(strategy)

    def register(self, strategy: S) -> S:
        name = getattr(strategy, "name")
        if name in self._by_name:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._by_name[name] = strategy
        return strategy

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def unknown(self, name: str) -> ConfigError:
        return ConfigError(f"{self.what} {name!r} is not one of {self.names}")

    def __getitem__(self, name: str) -> S:
        try:
            return self._by_name[name]
        except KeyError:
            raise self.unknown(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def choose(self, names: Sequence[str]) -> tuple[S, ...]:
        """The strategies named in ``names`` (order of preference kept); ConfigError on an unknown name."""
        return tuple(self[n] for n in names)
