"""Who may use the server: API keys and the short-lived tokens issued for browsers. Pure logic:
the edges pass in the presented credential and the clock.

Keys are kept only as SHA-256 digests, so a key file can be shared with operators without
handing out the keys, and a key never needs to be logged: everything downstream (logs, limits,
metrics) sees its ``key_id``, the name given in the file or the first 12 hex digits of its
digest.

Key file format, one key per line (``streamscribe hash-key`` prints such a line)::

    # comments and blank lines are ignored
    sha256:<64 hex digits>  [name]  [fast] [max_sessions=N]

``fast`` exempts the key from the audio-rate limit; ``max_sessions`` overrides the per-key
session limit; ``relay`` marks the key of another StreamScribe whose remote backend relays its
sessions here: only its requests may ask to be queued as partials (``X-StreamScribe-Priority``).

A token (``sst_...``) is an HMAC-signed key id, expiry and, optionally, the session options it
was made for: any server holding the same ``token_secret`` accepts it until it expires. A
token is a browser's credential for the streaming websockets only: it cannot open the REST API,
``/stats`` or ``/metrics``, and it cannot mint another token (only a key can), so it never
outlives its expiry. The options it carries are pinned: the session it opens cannot change
them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.core.errors import InvalidMessage, Unauthorized, UsageError

TOKEN_PREFIX = "sst_"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    fast: bool = False  # may send audio faster than the audio-rate limit
    max_sessions: int | None = None
    relay: bool = False  # another StreamScribe relaying sessions: may queue requests as partials


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_line(key: str, name: str = "") -> str:
    """The key file line for ``key``."""
    return f"sha256:{digest(key)}" + (f"  {name}" if name else "")


class KeyStore:
    """The configured keys. Empty means the server is open to anyone."""

    def __init__(self, entries: dict[str, KeyInfo] | None = None) -> None:
        self._by_digest = dict(entries or {})

    @classmethod
    def build(cls, plain_keys: Iterable[str] = (), key_file: Path | None = None) -> KeyStore:
        entries = {digest(key): KeyInfo(digest(key)[:12]) for key in plain_keys if key}
        if key_file is not None:
            entries.update(parse_key_file(key_file))
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._by_digest)

    def lookup(self, key: str) -> KeyInfo | None:
        presented = digest(key)
        for known, info in self._by_digest.items():
            if hmac.compare_digest(known, presented):
                return info
        return None

    def by_id(self, key_id: str) -> KeyInfo | None:
        return next((info for info in self._by_digest.values() if info.key_id == key_id), None)


def parse_key_file(path: Path) -> dict[str, KeyInfo]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the API key file {path}: {exc.strerror}") from exc
    entries = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        hashed = fields[0].removeprefix("sha256:").lower()
        if len(hashed) != 64 or any(c not in "0123456789abcdef" for c in hashed):
            raise UsageError(f"{path}:{number}: expected 'sha256:<64 hex digits> [name] ...'")
        name, fast, relay, max_sessions = hashed[:12], False, False, None
        for field in fields[1:]:
            if field == "fast":
                fast = True
            elif field == "relay":
                relay = True
            elif field.startswith("max_sessions="):
                value = field.partition("=")[2]
                if not value.isdigit():
                    raise UsageError(f"{path}:{number}: max_sessions must be a number")
                max_sessions = int(value)
            else:
                name = field
        entries[hashed] = KeyInfo(name, fast=fast, max_sessions=max_sessions, relay=relay)
    return entries


@dataclass(frozen=True, slots=True)
class TokenClaims:
    key_id: str
    expires_at: int
    session: dict[str, Any] | None = None  # the session options the token pins


class TokenSigner:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def issue(self, key_id: str, expires_at: int, session: dict[str, Any] | None = None) -> str:
        claims: dict[str, Any] = {"k": key_id, "e": expires_at}
        if session:
            claims["s"] = session
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{TOKEN_PREFIX}{payload}.{_b64(self._sign(payload))}"

    def verify(self, token: str, now: float) -> TokenClaims:
        """The token's claims; ``Unauthorized`` if it is forged, garbled or expired."""
        body = token.removeprefix(TOKEN_PREFIX)
        payload, _, signature = body.partition(".")
        try:
            valid = hmac.compare_digest(_unb64(signature), self._sign(payload))
            claims = json.loads(_unb64(payload)) if valid else None
        except (ValueError, binascii.Error, UnicodeError):
            valid, claims = False, None
        if not valid or not isinstance(claims, dict):
            raise Unauthorized("invalid token")
        if not isinstance(claims.get("e"), int) or claims["e"] <= now:
            raise Unauthorized("token expired; ask for a new one", code="token_expired")
        session = claims.get("s")
        return TokenClaims(
            str(claims.get("k", "")), claims["e"], session if isinstance(session, dict) else None
        )

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a key id (``anonymous`` when no keys are configured)."""

    key_id: str
    fast: bool = False
    max_sessions: int | None = None
    relay: bool = False
    via_token: bool = False
    pinned: dict[str, Any] | None = None  # session options a token fixed

    def check_pinned(self, changes: dict[str, Any]) -> None:
        """``InvalidMessage`` if ``changes`` would change an option the token pins."""
        for key, value in (self.pinned or {}).items():
            if key in changes and changes[key] != value:
                raise InvalidMessage(
                    f"{key} is fixed by the token this session was opened with; ask for a "
                    "token made for the session you want",
                    code="invalid_session",
                )


ANONYMOUS = Principal("anonymous")


class Authenticator:
    def __init__(self, keys: KeyStore, signer: TokenSigner) -> None:
        self.keys = keys
        self.signer = signer

    @property
    def enabled(self) -> bool:
        return self.keys.enabled

    def authenticate(
        self, credential: str | None, now: float, *, accept_tokens: bool = False
    ) -> Principal:
        """A key, or with ``accept_tokens`` (the streaming websockets) a browser token, as
        presented. ``Unauthorized`` says what is wrong with it."""
        if not self.keys.enabled:
            return ANONYMOUS
        if not credential:
            raise Unauthorized(
                "an API key is required: send 'Authorization: Bearer <key>', or ?token= "
                "from POST /v1/realtime/client_secrets",
                code="missing_api_key",
            )
        if credential.startswith(TOKEN_PREFIX):
            return self._from_token(credential, now, accept_tokens=accept_tokens)
        found = self.keys.lookup(credential)
        if found is None:
            raise Unauthorized("incorrect API key provided")
        return Principal(
            found.key_id, fast=found.fast, max_sessions=found.max_sessions, relay=found.relay
        )

    def _from_token(self, token: str, now: float, *, accept_tokens: bool) -> Principal:
        if not accept_tokens:
            raise Unauthorized(
                "a browser token opens the streaming websockets only; this needs an API key",
                code="token_not_allowed",
            )
        claims = self.signer.verify(token, now)
        info = self.keys.by_id(claims.key_id)
        if info is None:
            raise Unauthorized("the key this token was issued for is no longer valid")
        return Principal(
            info.key_id,
            fast=info.fast,
            max_sessions=info.max_sessions,
            via_token=True,
            pinned=claims.session,
        )


def same_secret(expected: str, presented: str) -> bool:
    """Constant-time comparison that any presented string survives (``hmac.compare_digest``
    raises on non-ASCII ``str``; a garbled token is simply wrong)."""
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


def bearer(header: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
