"""Errors raised by the VAD layer.

    VadError
    ├── AudioFormatError      the peer sent audio we cannot read (odd byte count, bad rate)
    └── DetectorUnavailable   the caller asked for a detector whose dependency is missing

The server maps these onto its own tree (``server.core.errors``) at its boundary.
"""


class VadError(Exception):
    """Root of the VAD layer's errors."""


class AudioFormatError(VadError, ValueError):
    """Audio bytes that are not what the stream declared."""


class DetectorUnavailable(VadError, RuntimeError):
    """A detector kind whose optional dependency is not installed."""
