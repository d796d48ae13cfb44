"""The one exception tree of StreamScribe's server.

    StreamScribeError
    ├── UsageError               the caller misused an API or gave a bad setting
    │   ├── ModelNotFound        a model name or path that resolves to nothing installed
    │   └── InvalidTransition    an event a state machine's table does not allow (a bug)
    ├── PeerError                the peer sent something we cannot accept (has a wire ``code``)
    │   ├── InvalidMessage       malformed JSON, unknown message type, bad fields
    │   ├── InvalidAudio         audio bytes that do not match the declared format
    │   ├── SessionClosing       input after the client asked to close
    │   ├── Unauthorized         a missing, wrong or expired API key or token
    │   ├── LimitExceeded        a configured limit was reached (the code names it)
    │   └── ApiError             a REST request refused, with its HTTP status (OpenAI's shape)
    └── BackendError             the speech model failed on a request (mapped at the backend)
        ├── RemoteError          a remote API call failed (``retryable`` says if trying again
        │                        may help; ``trips`` that the remote is unusable as configured);
        │                        also a Ray Serve replica that died or did not answer
        └── PartialShed          a backend with its own queue dropped a stale partial (not a
                                 failure: the session just gets no answer to that request)

``vad.errors`` are mapped onto ``InvalidAudio`` at the session boundary.
"""

from __future__ import annotations


class StreamScribeError(Exception):
    """Root of every error StreamScribe raises on purpose."""


class UsageError(StreamScribeError):
    """The caller (operator, programmer) asked for something that cannot work."""


class ModelNotFound(UsageError):
    """A model that is neither bundled, nor a directory, nor reachable on a hub."""


class InvalidTransition(UsageError):
    """A state machine was told of an event its transition table has no row for."""


class PeerError(StreamScribeError):
    """The remote peer sent something invalid. ``code`` is what the wire ``error`` carries."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.param = param  # the field at fault, where the wire names it (OpenAI's ``param``)

    @property
    def message(self) -> str:
        return str(self)


class InvalidMessage(PeerError):
    code = "invalid_message"


class InvalidAudio(PeerError):
    code = "invalid_audio"


class SessionClosing(PeerError):
    code = "session_closing"


class Unauthorized(PeerError):
    code = "invalid_api_key"


class LimitExceeded(PeerError):
    """A configured limit was reached. ``limit`` is the setting's name, for the message."""

    code = "limit_exceeded"

    def __init__(self, message: str, *, code: str, limit: str) -> None:
        super().__init__(message, code=code)
        self.limit = limit


class BackendError(StreamScribeError):
    """The speech model could not transcribe a request."""


class PartialShed(BackendError):
    """A model service with its own queue (a Ray Serve replica) dropped a partial that a newer
    one superseded, or that its queue had no room for: dropped as our own queue drops one."""


class RemoteError(BackendError):
    """A call to a remote OpenAI-compatible API failed. Messages never contain the API key."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        trips: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.trips = trips
        self.retry_after_s = retry_after_s


class ApiError(PeerError):
    """A REST request refused in the shape of OpenAI's errors:
    ``{"error": {"message", "type", "param", "code"}}`` with ``status_code``."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message, code=code or error_type)
        self.status_code = status_code
        self.param = param
        self.error_type = error_type
        self.api_code = code

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.api_code,
            }
        }
