"""The sans-I/O streaming session and its parts (see ``session.session``)."""

from server.core.session.outcomes import MAX_RETAINED_FAILURES
from server.core.session.session import DetectorFactory, Session, default_detector
from server.core.session.utterance import UtteranceState

__all__ = [
    "MAX_RETAINED_FAILURES",
    "DetectorFactory",
    "Session",
    "UtteranceState",
    "default_detector",
]
