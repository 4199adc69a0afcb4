"""The `$cbs` node: claims-based security `put-token` for Entra bearer tokens and SAS tokens.

"AMQP 1.0 in Azure Service Bus and Event Hubs protocol guide", section
"Claims-based authorization" (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide) and OASIS "AMQP Claims-based Security
Version 1.0" (https://docs.oasis-open.org/amqp/amqp-cbs/v1.0/amqp-cbs-v1.0.html): the client sends a request message to `$cbs`
with application properties `operation=put-token`, `type` (`jwt` or
`servicebus.windows.net:sastoken`), `name` (the audience: the entity URI) and
`expiration`, and the token as an AMQP value body. The reply carries
`status-code` (202 accepted, 401 for a bad token) and `status-description`,
with `correlation-id` set to the request's `message-id`. A granted token
authorizes the connection for that entity until the token expires.

Entra tokens must be issued by the sandbox's Entra for the Event Hubs audience
(`https://eventhubs.azure.net`, "Authenticate an application with Microsoft
Entra ID to access Event Hubs resources",
https://learn.microsoft.com/azure/event-hubs/authenticate-application). SAS tokens are checked
against the namespace's key ("Authenticate access to Event Hubs resources using shared
access signatures", https://learn.microsoft.com/azure/event-hubs/authenticate-shared-access-signature): `sig` is base64(HMAC-SHA256(key, url_encode(sr) + "\n" + se)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote_plus, urlencode, urlparse

import jwt

if TYPE_CHECKING:
    from .namespace import Namespace
    from ..state import SandboxState

EVENTHUBS_AUDIENCES = ("https://eventhubs.azure.net", "https://eventhubs.azure.net/")
JWT_TYPES = ("jwt",)
SAS_TYPE = "servicebus.windows.net:sastoken"


class Refused(Exception):
    """What the service refuses, with the status it answers (a put-token's 401, a link's 404...)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass(frozen=True)
class Grant:
    entity: str  # "" for the whole namespace, else the hub name
    expires: float


def entity_of(audience: str) -> str:
    """The hub an audience names: `sb://host/hub` or `amqps://host/hub/...` -> `hub`, the namespace -> ""."""
    path = urlparse(audience).path.strip("/")
    return path.split("/", 1)[0] if path else ""


def put_token(sb: SandboxState, ns: Namespace, token_type: str, audience: str, token: str) -> Grant:
    """Check one put-token request; the grant it earns, or `Refused`."""
    if not audience:
        raise Refused(400, "The put-token request has no 'name' (audience).")
    host = (urlparse(audience).hostname or "").lower()
    if host != ns.fqdn.lower():
        # A token names the namespace it is for (the SDK uses the namespace, not the custom endpoint).
        raise Refused(401, f"InvalidAudience: The token audience '{audience}' is not for namespace "
                      f"'{ns.fqdn}'.")
    if token_type in JWT_TYPES:
        return Grant(entity_of(audience), _check_jwt(sb, token))
    if token_type == SAS_TYPE:
        return _sas_grant(sb, ns, token)
    raise Refused(400, f"The token type '{token_type}' is not supported.")


def _check_jwt(sb: SandboxState, token: str) -> float:
    try:
        claims = sb.pki.decode(token, audience=list(EVENTHUBS_AUDIENCES), now=sb.clock.now())
    except jwt.ExpiredSignatureError:
        raise Refused(401, "ExpiredToken: The token is expired.") from None
    except jwt.InvalidAudienceError:
        raise Refused(401, f"InvalidAudience: The token audience is not {EVENTHUBS_AUDIENCES[0]}; ask "
                      f"for {EVENTHUBS_AUDIENCES[0]}/.default.") from None
    except jwt.InvalidTokenError as exc:
        raise Refused(401, f"InvalidIssuer: Token issuer is invalid or the token is malformed ({exc}).") from None
    if claims.get("tid") != sb.tenant.tenant_id:
        raise Refused(401, "InvalidIssuer: Token issuer is invalid. The token is for another tenant.")
    return float(claims["exp"])


def _sas_grant(sb: SandboxState, ns: Namespace, token: str) -> Grant:
    resource, expires = _check_sas(sb, ns, token)
    return Grant(entity_of(resource), expires)


def _check_sas(sb: SandboxState, ns: Namespace, token: str) -> tuple[str, float]:
    prefix = "SharedAccessSignature "
    if not token.startswith(prefix):
        raise Refused(401, "InvalidSignature: The token has an invalid signature.")
    fields = {k: v[0] for k, v in parse_qs(token[len(prefix):], keep_blank_values=True).items()}
    try:
        resource, sig, se = fields["sr"], fields["sig"], fields["se"]
        expiry = float(se)
    except (KeyError, ValueError):
        raise Refused(401, "InvalidSignature: The token has an invalid signature.") from None
    if fields.get("skn") != ns.key_name:
        raise Refused(401, f"InvalidSignature: The authorization rule '{fields.get('skn')}' was not found.")
    expected = _signature(ns.key, resource, se)
    if not hmac.compare_digest(expected, sig):
        raise Refused(401, "InvalidSignature: The token has an invalid signature.")
    # The client mints SAS tokens from its own (wall) clock, unlike Entra tokens, which the sandbox
    # issues on its clock; so `se` is judged on wall time, and the grant lasts as long in sandbox time.
    left = expiry - time.time()
    if left <= 0:
        raise Refused(401, "ExpiredToken: The token is expired.")
    return resource, sb.clock.now() + left * sb.clock.speed


def _signature(key: str, resource: str, se: str) -> str:
    to_sign = f"{quote_plus(resource)}\n{se}".encode()
    return base64.b64encode(hmac.new(key.encode(), to_sign, hashlib.sha256).digest()).decode()


def sas_token(key_name: str, key: str, resource: str, expiry: float | None = None) -> str:
    """A SAS token, for tests and the bridge (the same formula the SDKs use)."""
    se = str(int(expiry if expiry is not None else time.time() + 3600))
    return "SharedAccessSignature " + urlencode({"sr": resource, "sig": _signature(key, resource, se), "se": se,
                                                  "skn": key_name})
