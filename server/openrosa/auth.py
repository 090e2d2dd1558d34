"""Who is calling an OpenRosa route: a device token in the path, or a user by Digest or Basic.

OpenRosa's authentication page asks for Digest (RFC 2617: MD5, qop=auth) or Basic with a proper
``401`` + ``WWW-Authenticate`` challenge; ODK Collect always answers Digest and answers Basic only
over HTTPS (docs/reference/peers.md §4). Nonces are ``<timestamp>.<HMAC(SECRET_KEY, timestamp)>``:
any worker on any host can check them without shared state.

Digest hardening (issue 15):
- ``qop=auth`` is required (RFC 2069's Digest, with no nonce count or client nonce, is refused);
- each ``(nonce, nc)`` is accepted once (``digest_nonce_uses``, in the database so it holds across
  workers and hosts): a captured header replayed, with or without a new body, is challenged again;
- Digest needs the stored HA1 = md5(username:realm:password), which logs in by itself. So Digest never
  logs in an **admin** (an admin uses Basic over HTTPS or a device key on OpenRosa routes), and
  ``DIGEST_AUTH = False`` (``FIELDSYNC_DIGEST_AUTH=0``) turns Digest off: only Basic is offered then;
- wrong Digest responses are throttled and audited like wrong passwords (``server.services.logins``).
A token in the path (``/v1/key/<token>/...``) needs no challenge, like ODK Central.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, g, request

from server.auth import (
    Principal,
    device_principal,
    note_use,
    permission_denied,
    principal_from_password,
    principal_from_token,
    relay_principal,
    token_is_live,
)
from server.db.queries import accounts as q
from server.db.queries.forms import DeviceTokenRow as TokenRow
from server.db.queries.forms import get_token_row
from server.errors import ApiError
from server.openrosa.responses import add_challenges
from server.passwords import DIGEST_REALM, token_hash
from server.services.logins import LoginAttempt, check_not_paused, first_use_of_digest_nonce, record_failure
from server.store import db_session

# Collect caches the challenge and re-uses the nonce with a growing nc; when it expires we answer
# stale=true and Collect retries without asking the person again.
NONCE_LIFETIME_SECONDS = 15 * 60
# What a phone needs on every OpenRosa route: listing and downloading forms serve submitting them.
COLLECT_PERMISSION = "submission.create"
_DIGEST_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _sign(value: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"openrosa-digest:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def make_nonce(now: float | None = None) -> str:
    """Return a fresh, signed, timestamped Digest nonce."""
    stamp = str(int(now if now is not None else time.time()))
    return f"{stamp}.{_sign(stamp)}"


def nonce_state(nonce: str, now: float | None = None) -> str:
    """Tell whether a nonce is ``valid``, ``stale`` (ours but expired) or ``invalid``."""
    stamp, _, signature = nonce.partition(".")
    if not stamp.isdigit() or not hmac.compare_digest(signature, _sign(stamp)):
        return "invalid"
    age = (now if now is not None else time.time()) - int(stamp)
    if age < -60 or age > NONCE_LIFETIME_SECONDS:  # a minute of clock skew between hosts
        return "stale"
    return "valid"


def digest_challenge(project_id: int, stale: bool = False) -> str:
    """Return the ``WWW-Authenticate`` value of a Digest challenge (RFC 2617, MD5, qop=auth)."""
    opaque = _sign("opaque")
    challenge = (
        f'Digest realm="{DIGEST_REALM}", domain="/v1/projects/{project_id}/", qop="auth", '
        f'algorithm=MD5, nonce="{make_nonce()}", opaque="{opaque}"'
    )
    return challenge + (", stale=true" if stale else "")


def basic_challenge() -> str:
    """Return the ``WWW-Authenticate`` value of a Basic challenge."""
    return f'Basic realm="{DIGEST_REALM}", charset="UTF-8"'


def digest_enabled() -> bool:
    """Whether this server offers and accepts Digest (``DIGEST_AUTH``, on by default)."""
    return bool(current_app.config.get("DIGEST_AUTH", True))


def _challenge(project_id: int, message: str, stale: bool = False) -> ApiError:
    challenges = [digest_challenge(project_id, stale)] if digest_enabled() else []
    challenges.append(basic_challenge())
    add_challenges(*challenges)
    return ApiError(
        401,
        "unauthenticated",
        message,
        headers={"WWW-Authenticate": challenges[0]},
        message_fr="Identifiez-vous avec votre nom d'utilisateur et votre mot de passe.",
    )


def parse_digest_header(value: str) -> dict[str, str]:
    """Parse the parameters of an ``Authorization: Digest ...`` header value."""
    params: dict[str, str] = {}
    for match in _DIGEST_PARAM.finditer(value):
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    return params


_NC = re.compile(r"[0-9a-fA-F]{8}")
# An unknown username is checked against this HA1, so its answer takes the same path as a known one's.
_DUMMY_HA1 = "0" * 32


def _digest_principal(project_id: int, value: str) -> Principal:
    if not digest_enabled():
        raise _challenge(project_id, "Digest is turned off on this server: sign in with Basic over HTTPS")
    params = parse_digest_header(value)
    required = ("username", "realm", "nonce", "uri", "response")
    if any(not params.get(key) for key in required):
        raise _challenge(project_id, "Malformed Digest credentials")
    if params["realm"] != DIGEST_REALM or params.get("algorithm", "MD5").upper() != "MD5":
        raise _challenge(project_id, "Unsupported Digest realm or algorithm")
    qop, nc, cnonce = params.get("qop"), params.get("nc") or "", params.get("cnonce")
    # RFC 2069 Digest (no qop) has no nonce count: nothing would tell a replay from a new request.
    if qop != "auth" or not _NC.fullmatch(nc) or not cnonce:
        raise _challenge(project_id, "Digest needs qop=auth with nc and cnonce (RFC 2617)")
    state = nonce_state(params["nonce"])
    if state == "invalid":
        raise _challenge(project_id, "Unknown Digest nonce")
    # The digested URI must be this request's, or a response captured for one URL would open another.
    if urlsplit(params["uri"]).path != request.path:
        raise _challenge(project_id, "The Digest URI does not match the request")
    session = db_session()
    attempt = LoginAttempt(params["username"], request.remote_addr or "-", "digest")
    check_not_paused(session, attempt)
    user = q.get_user_by_username(session, params["username"])
    known = user is not None and not user.disabled
    ha1 = user.digest_ha1 if user is not None and known else _DUMMY_HA1
    ha2 = _md5(f"{request.method}:{params['uri']}")
    expected = _md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:{qop}:{ha2}")
    if not hmac.compare_digest(expected, params["response"].lower()) or user is None or not known:
        reason = "unknown_user" if user is None else "disabled" if user.disabled else "wrong_password"
        record_failure(session, attempt, reason, user)
        raise _challenge(project_id, "Wrong username or password")
    if state == "stale":
        # Right password, old nonce: RFC 2617's stale=true lets the client retry silently.
        raise _challenge(project_id, "The Digest nonce has expired", stale=True)
    if user.is_admin:
        # The stored HA1 alone would answer this: it must never be enough to act as an admin.
        record_failure(session, attempt, "digest_refused_for_admin", user, count=False)
        raise _challenge(project_id, "Admin accounts cannot use Digest: sign in with Basic over HTTPS or a device key")
    if not first_use_of_digest_nonce(session, params["nonce"], nc, timedelta(seconds=NONCE_LIFETIME_SECONDS)):
        record_failure(session, attempt, "digest_replay", user, count=False)
        raise _challenge(project_id, "This Digest response was already used: sign in again")
    return Principal("user", user.id, user.username, is_admin=user.is_admin)


def _token_principal(token: str) -> Principal:
    # One look-up serves both answers: unknown (401) and revoked or expired (403, Collect shows why).
    row = get_token_row(db_session(), token_hash(token))
    relay = relay_principal(token) if row is None else None
    if relay is not None:
        return relay  # an office relay fetching form media to serve its own phones
    if row is None:
        raise ApiError(
            401,
            "unauthenticated",
            "This server address holds an unknown key: ask your manager for a new QR code",
            message_fr="Cette adresse contient une clé inconnue : demandez un nouveau code QR à votre responsable.",
        )
    if not token_is_live(row):
        raise ApiError(
            403,
            "token_revoked",
            "This device's key has been revoked or has expired: ask your manager for a new QR code",
            message_fr="La clé de cet appareil a été révoquée ou a expiré : demandez un nouveau code QR.",
        )
    if row.kind == "device":
        note_use(row.id, row.last_used_at)
        return device_principal(row)
    principal = principal_from_token(token)  # a person's API session token: their user and roles
    if principal is None:
        raise ApiError(403, "token_revoked", "This key belongs to a disabled account")
    return principal


def live_device(row: TokenRow, project_id: int) -> Principal | None:
    """The principal of a live device key allowed on the project's OpenRosa routes; else ``None`` (no side effect)."""
    if row.kind != "device" or not token_is_live(row):
        return None
    principal = device_principal(row)
    return principal if principal.can(COLLECT_PERMISSION, project_id) else None


def adopt_device(row: TokenRow, project_id: int) -> Principal | None:
    """Make a live device key allowed on the project's OpenRosa routes this request's caller; else ``None``.

    ``None`` for a person's key, a revoked or expired one, or another project's: the caller then
    authenticates the usual way (``require_openrosa``), which gives the right answer for each.
    """
    principal = live_device(row, project_id)
    if principal is None:
        return None
    note_use(row.id, row.last_used_at)
    g.openrosa_device_id = request.args.get("deviceID")
    g.principal = principal
    return principal


def openrosa_principal(project_id: int, token: str | None) -> Principal:
    """Authenticate an OpenRosa request: path token, else Digest, Basic or bearer; ``401`` with challenges."""
    # Collect adds ?deviceID= to every request; keep it for the request log and the submission area.
    g.openrosa_device_id = request.args.get("deviceID")
    if token is not None:
        principal = _token_principal(token)
    else:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "digest" and value:
            principal = _digest_principal(project_id, value)
        elif scheme == "basic" and value:
            try:
                username, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise _challenge(project_id, "Malformed Basic credentials") from None
            found = principal_from_password(username, password)
            if found is None:
                raise _challenge(project_id, "Wrong username or password")
            principal = found
        elif scheme == "bearer" and value:
            principal = _token_principal(value.strip())
        else:
            raise _challenge(project_id, "Authentication required")
    g.principal = principal  # server.auth.current_principal() returns it for the rest of the request
    return principal


def require_openrosa(permission: str, project_id: int, token: str | None) -> Principal:
    """Authenticate (see ``openrosa_principal``) and check ``permission`` in the project (``403``)."""
    principal = openrosa_principal(project_id, token)
    if not principal.can(permission, project_id):
        # ODK Collect lists only the forms a caller may fill in: say so, rather than a bare permission name.
        raise permission_denied(principal, permission, project_id, "Listing, downloading and sending forms")
    return principal
