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


class NotYetPublishedError(RetryableError):
    """The upstream file for this date/run does not exist (yet): HTTP 404 or equivalent."""


class PermanentError(SstbcError):
    """A failure retrying cannot fix."""


class CorruptInputError(PermanentError):
    """A downloaded or cached file is not the NetCDF it should be (truncated, HTML, wrong content)."""


class InputValidationError(CorruptInputError):
    """The file opens but its variables, dimensions, times or values are not what was expected."""


class UpstreamRejectedError(PermanentError):
    """The upstream service refused the request itself (HTTP 400/401/403): fix the request or config."""


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
    "NotYetPublishedError",
    "UpstreamRejectedError",
    "PermanentError",
    "CorruptInputError",
    "InputValidationError",
    "ConfigError",
    "ModelContractError",
    "ProviderUnavailableError",
    "ProductError",
]
