"""One error hierarchy: retryable (try again later) versus permanent (fix the input or config).

Orchestration retries only :class:`RetryableError`; everything else fails the run at once.
Messages always name the file, URL, variable or date involved and what was expected.
"""

from __future__ import annotations


class SstbcError(Exception):
    """Base class of every error raised on purpose by sstbc."""


class RetryableError(SstbcError):
    """A failure that may go away by itself: network trouble or data not yet published."""


class TransientFetchError(RetryableError):
    """Network failure, timeout, 5xx, or a body cut short in transit."""


class TruncatedDownloadError(TransientFetchError):
    """The body ended early (short of Content-Length, or a NetCDF file shorter than its header says)."""


class MaintenancePageError(TransientFetchError):
    """HTTP 200 with an HTML page instead of data (a maintenance or "come back later" page).

    Transient on its own: retried with the same bounded backoff as a 5xx; a file that is still
    HTML once those retries are spent becomes a :class:`CorruptInputError` for that file.
    """


class IndexConflictError(RetryableError):
    """A conditional write of the per-day product index kept losing to other publishers (bounded retries)."""


class NotYetPublishedError(RetryableError):
    """The upstream file for this date/run does not exist (yet): HTTP 404 or equivalent."""


class PermanentError(SstbcError):
    """A failure retrying cannot fix."""


class CorruptInputError(PermanentError):
    """A downloaded or cached file is not the NetCDF it should be (truncated, HTML, wrong content)."""


class InputValidationError(CorruptInputError):
    """The file opens but its variables, dimensions, times or values are not what was expected."""


class ArchiveIntegrityError(CorruptInputError):
    """A regridded archive file does not open or does not match its recorded content checksum.

    The fill steps treat it as absent and re-derive it from the raw file; readers get this error.
    """


class UpstreamRejectedError(PermanentError):
    """The upstream service refused the request itself (HTTP 400/401/403): fix the request or config."""


class DateUnavailableError(PermanentError):
    """The date lies outside what the upstream serves at all (e.g. a HYCOM run before GOFS 3.1)."""


class ConfigError(PermanentError):
    """The configuration or a command-line value is invalid."""


class ModelContractError(PermanentError):
    """A model package does not match the run (grid, mask, T, inputs) or fails its integrity check."""


class ProviderUnavailableError(PermanentError):
    """A requested ONNX Runtime execution provider (e.g. CUDA) is not active."""


class ProductError(PermanentError):
    """A product failed validation before publication."""


__all__ = [
    "SstbcError",
    "RetryableError",
    "TransientFetchError",
    "TruncatedDownloadError",
    "MaintenancePageError",
    "NotYetPublishedError",
    "IndexConflictError",
    "UpstreamRejectedError",
    "PermanentError",
    "CorruptInputError",
    "InputValidationError",
    "ArchiveIntegrityError",
    "DateUnavailableError",
    "ConfigError",
    "ModelContractError",
    "ProviderUnavailableError",
    "ProductError",
]
