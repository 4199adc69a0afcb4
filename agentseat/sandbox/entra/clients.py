"""Client authentication at the sandbox's token endpoint: who is asking, and is it really them.

Two credentials are accepted, as Entra accepts them for agents:

- a certificate-signed JWT (`private_key_jwt`) for ordinary apps and Blueprints
  (Learn: "certificate credentials"): the key is found by `x5t` or `x5t#S256`
  among the app's registered key credentials;
- a token this sandbox issued for `api://AzureADTokenExchange` (a federated
  identity credential). That is the only way an Agent Identity authenticates:
  it holds no credentials of its own, its Blueprint's hop-1 token (T1) is its
  credential (Learn: "agent user OAuth flow").

It also verifies the `user_federated_identity_credential` (T2) of the user_fic
grant. It does not decide which token to issue; `entra.py` does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web
from cryptography import x509

from . import replication
from ..responses import entra_error
from ..tenant import TOKEN_EXCHANGE_AUDIENCE, App, KeyCredential

if TYPE_CHECKING:
    from ..state import SandboxState

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Entra tolerates five minutes of clock skew on assertion times.
CLOCK_SKEW = 300.0
#: RS256 is the long-documented assertion algorithm; the current Learn page asks
#: for PS256 with `x5t#S256`, which is what msal sends given `public_certificate`.
ASSERTION_ALGORITHMS = ("RS256", "PS256")
_FIC_HINT = ("Please check your federated identity credential Subject, Audience and Issuer against the presented "
             "assertion.")


class OAuthError(Exception):
    """A token-endpoint failure, rendered in Entra's error shape."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status, self.error, self.code, self.description = status, error, code, description

    def response(self) -> web.Response:
        return entra_error(self.status, self.error, self.code, self.description)


def invalid_client(code: int, description: str) -> OAuthError:
    # RFC 6749 §5.2: a failed client authentication is 401 invalid_client.
    return OAuthError(401, "invalid_client", code, description)


def missing(name: str) -> OAuthError:
    return OAuthError(400, "invalid_request", 900144, f"The request body must contain the following parameter: "
                      f"'{name}'.")


@dataclass(frozen=True)
class ClientAuth:
    """A client whose credential checked out."""

    app: App
    method: str  # "certificate" | "federated"
    claims: dict[str, Any]  # of the verified assertion


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%m/%d/%Y %H:%M:%S")


def unknown_client(sb: SandboxState, client_id: str) -> OAuthError:
    return OAuthError(400, "unauthorized_client", 700016,
                      f"Application with identifier '{client_id}' was not found in the directory "
                      f"'{sb.tenant.domain}'. This can happen if the application has not been installed by the "
                      "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                      "your authentication request to the wrong tenant.")


def find_client(sb: SandboxState, client_id: str) -> App:
    app = sb.tenant.app(client_id)
    if app is None or replication.app_unseen(sb, app):
        raise unknown_client(sb, client_id)
    if not app.has_principal or replication.principal_unseen(sb, app):
        # An agent's chain needs an explicitly created BlueprintPrincipal (entrabot-anchor §7).
        raise invalid_client(7000229, f"The client application {client_id} is missing service principal in the "
                             f"tenant {sb.tenant.tenant_id}.")
    return app


def authenticate(sb: SandboxState, form: dict[str, str], audiences: set[str]) -> ClientAuth:
    """Check the client's credential; `audiences` are the token endpoint URLs an assertion may name."""
    client_id = form.get("client_id") or ""
    if not client_id:
        raise missing("client_id")
    app = find_client(sb, client_id)
    if form.get("client_secret"):
        # No app in the sandbox has a password credential.
        raise invalid_client(7000215, "Invalid client secret provided. Ensure the secret being sent in the request "
                             f"is the client secret value, not the client secret ID, for a secret added to app "
                             f"'{client_id}'.")
    assertion = form.get("client_assertion") or ""
    if not assertion:
        raise invalid_client(7000218, "The request body must contain the following parameter: 'client_assertion' "
                             "or 'client_secret'.")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError(400, "invalid_request", 50027, "Invalid client_assertion_type: expected "
                         f"'{ASSERTION_TYPE}'.")
    if app.kind == "agentIdentity":
        return ClientAuth(app, "federated", verify_federated_assertion(sb, app, assertion))
    return ClientAuth(app, "certificate", verify_certificate_assertion(sb, app, assertion, audiences))


# --- certificate assertions --------------------------------------------------------------
def _der(kc: KeyCredential) -> bytes:
    return base64.b64decode(kc.cert_der_b64)


def _key_for(keys: list[KeyCredential], header: dict[str, Any]) -> KeyCredential | None:
    s256, sha1 = _digest(header.get("x5t#S256")), _digest(header.get("x5t"))
    for kc in keys:
        if s256 is not None and hashlib.sha256(_der(kc)).digest() == s256:
            return kc
        if sha1 is not None and sha1.hex().upper() == kc.sha1.upper():
            return kc
    return None


def _digest(thumbprint: object) -> bytes | None:
    """The hash bytes of an `x5t`/`x5t#S256` header (RFC 7515 §4.1.7-8).

    msal pads its base64url thumbprints with "=" and Entra accepts them, so
    padding is tolerated here too.
    """
    if not isinstance(thumbprint, str) or not thumbprint:
        return None
    text = thumbprint.rstrip("=")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def verify_certificate_assertion(sb: SandboxState, app: App, assertion: str, audiences: set[str]) -> dict[str, Any]:
    """Verify a `private_key_jwt` assertion against the app's registered certificates."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.DecodeError as exc:
        raise invalid_client(50027, "JWT token is invalid or malformed.") from exc
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS:
        # `none` and HMAC would let anyone sign; only certificate signatures authenticate a client.
        raise invalid_client(700027, f"Client assertion failed signature validation. [Reason - The algorithm "
                             f"'{alg}' is not supported for client assertions.]")
    kc = _key_for(replication.visible_keys(sb, app), header)  # a new key is not known yet
    sha1 = _digest(header.get("x5t"))
    used = sha1.hex().upper() if sha1 is not None else header.get("x5t#S256", "")
    if kc is None:
        raise invalid_client(700027, "Client assertion contains an invalid signature. [Reason - The key was not "
                             f"found., Thumbprint of key used by client: '{used}', Please visit the Azure Portal, "
                             "Graph Explorer or directly use MS Graph to see configured keys for app Id "
                             f"'{app.app_id}'.]")
    now = sb.clock.now()
    if not kc.start <= now <= kc.end:
        reason = "The key used is expired." if now > kc.end else "The key used is not yet valid."
        raise invalid_client(700027, f"Client assertion contains an invalid signature. [Reason - {reason}, "
                             f"Thumbprint of key used by client: '{kc.sha1}', Found key 'Start={_iso(kc.start)}, "
                             f"End={_iso(kc.end)}']")
    public = x509.load_der_x509_certificate(_der(kc)).public_key()
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion, public, algorithms=[str(alg)],  # type: ignore[arg-type]
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise invalid_client(700027, "Client assertion contains an invalid signature. [Reason - The provided "
                             "signature value did not match the expected signature value., Thumbprint of key used "
                             f"by client: '{kc.sha1}']") from exc
    except jwt.InvalidTokenError as exc:
        raise invalid_client(50027, "JWT token is invalid or malformed.") from exc
    if claims.get("iss") != app.app_id or claims.get("sub") != app.app_id:
        # Learn (certificate credentials): iss and sub are both the client's app id.
        raise invalid_client(700021, "Client assertion application identifier doesn't match 'client_id' parameter. "
                             "Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/"
                             "develop/active-directory-certificate-credentials .")
    if not isinstance(claims.get("aud"), str) or claims["aud"].rstrip("/") not in audiences:
        # Learn (certificate credentials): aud is the token endpoint,
        # https://login.microsoftonline.com/{tenantId}/oauth2/v2.0/token.
        raise invalid_client(700023, "Client assertion audience claim does not match Realm issuer. Review the "
                             "documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/"
                             "active-directory-certificate-credentials .")
    _check_window(claims, now)
    return claims


def _check_window(claims: dict[str, Any], now: float) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, int | float) or exp + CLOCK_SKEW < now or (
        isinstance(nbf, int | float) and nbf - CLOCK_SKEW > now
    ):
        expiry = _iso(exp) if isinstance(exp, int | float) else "missing"
        raise invalid_client(700024, f"Client assertion is not within its valid time range. Current time: "
                             f"{_iso(now)}, expiry time of assertion {expiry}.")


# --- tokens this sandbox issued (federated credentials) ----------------------------------------
def _sandbox_claims(sb: SandboxState, token: str) -> dict[str, Any]:
    """Signature-checked claims of a token this sandbox issued, or `{}` if it did not issue it."""
    try:
        return sb.pki.decode(token, audience=None, verify_exp=False)
    except jwt.InvalidTokenError:
        return {}


def verify_federated_assertion(sb: SandboxState, app: App, assertion: str) -> dict[str, Any]:
    """T1 as an Agent Identity's client assertion.

    Entra "returns T2 to the agent identity after validating that T1 (aud) ==
    Agent identity parent app == Agent identity blueprint" (agent user OAuth
    flow): T1 must come from this identity's own Blueprint and name this
    identity as its `fmi_path` subject.
    """
    from .tokens import issuer

    claims = _sandbox_claims(sb, assertion)
    if not claims or claims.get("iss") != issuer(sb):
        unverified_iss = _unverified(assertion).get("iss", "")
        raise invalid_client(700211, f"No matching federated identity record found for presented assertion issuer "
                             f"'{unverified_iss}'. {_FIC_HINT}")
    if claims.get("aud") != TOKEN_EXCHANGE_AUDIENCE:
        raise invalid_client(700212, f"No matching federated identity record found for presented assertion audience "
                             f"'{claims.get('aud')}'. {_FIC_HINT}")
    if claims.get("azp") != app.blueprint_app_id or claims.get("sub") != app.app_id:
        # entrabot's learning #12 records AADSTS700211 for a T1 minted without
        # (or with another) fmi_path: the federation record does not match.
        raise invalid_client(700211, f"No matching federated identity record found for presented assertion issuer "
                             f"'{claims.get('iss')}'. {_FIC_HINT} (sandbox: the assertion was issued to "
                             f"'{claims.get('azp')}' for subject '{claims.get('sub')}', not by this agent identity's "
                             "blueprint for this agent identity.)")
    now = sb.clock.now()
    # A token Entra issued gets no skew: its own exp is the limit.
    if claims.get("exp", 0) < now or claims.get("iat", 0) < sb.tenant.tokens_not_before:
        raise invalid_client(700024, f"Client assertion is not within its valid time range. Current time: "
                             f"{_iso(now)}, expiry time of assertion {_iso(claims.get('exp', 0))}.")
    return claims


def verify_user_credential(sb: SandboxState, app: App, token: str) -> dict[str, Any]:
    """T2 as the `user_federated_identity_credential` of the user_fic grant.

    Entra "validates that T2 (aud) == agent identity", and "the same client ID
    must be used for both phases" (agent user OAuth flow): T2 must be this
    identity's own exchange token from hop 2.
    """
    from .tokens import issuer

    claims = _sandbox_claims(sb, token)
    if not claims or claims.get("iss") != issuer(sb):
        raise OAuthError(400, "invalid_grant", 50013, "Assertion failed signature validation. [Reason - The key "
                         "was not found.]")
    if (claims.get("aud") != TOKEN_EXCHANGE_AUDIENCE or claims.get("azp") != app.app_id
            or claims.get("sub") != app.app_id):
        raise OAuthError(400, "invalid_grant", 500131, "Assertion audience does not match the Client app presenting "
                         f"the assertion. The assertion was issued to '{claims.get('azp')}' for subject "
                         f"'{claims.get('sub')}' and the client presenting it is '{app.app_id}'.")
    now = sb.clock.now()
    if claims.get("exp", 0) < now or claims.get("iat", 0) < sb.tenant.tokens_not_before:
        raise OAuthError(400, "invalid_grant", 500133, "Assertion is not within its valid time range. Ensure that "
                         "the access token is not expired before using it for user assertion, or request a new "
                         f"token. Current time: {_iso(now)}, expiry time of assertion {_iso(claims.get('exp', 0))}.")
    return claims


def _unverified(token: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]
    except jwt.InvalidTokenError:
        return {}

