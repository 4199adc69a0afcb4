"""Application objects in the sandbox's Graph: agent identity blueprints, lookups,
and certificate credentials (PATCH keyCredentials, addKey, removeKey).

Agent identities and Microsoft Graph have no application object in the tenant
(they are service principals only), so they never appear here; see
`service_principals` for service principals.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import TYPE_CHECKING, Any

import jwt
import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ..auth import graph_route
from ...entra import replication
from ...state import SANDBOX_KEY
from ...clock import iso, parse_iso
from .common import (
    agent_id_blocked,
    agent_id_body,
    bad_request,
    collection,
    context,
    entity,
    filtered,
    find_app,
    invalid_property,
    nonblank,
    not_found,
    read_json,
    resolve_sponsors,
)
from .grants import drop_client_grants
from ...pki import sha1_thumbprint_hex
from ...tenant import GRAPH_APP_ID, App, KeyCredential, new_id

if TYPE_CHECKING:
    from ...state import SandboxState

log = structlog.get_logger(__name__)

APP_READ = ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
            "AgentIdentityBlueprint.Read.All", "AgentIdentityBlueprint.ReadWrite.All")
APP_WRITE_SCOPES = ("Application.ReadWrite.All", "AgentIdentityBlueprint.ReadWrite.All",
                    "AgentIdentityBlueprint.AddRemoveCreds.All")
APP_WRITE_ROLES = (*APP_WRITE_SCOPES, "Application.ReadWrite.OwnedBy")
BLUEPRINT_CREATE = ("AgentIdentityBlueprint.Create", "AgentIdentityBlueprint.ReadWrite.All")
#: agentidentityblueprint-addkey / -removekey / -update (credentials): the typed Blueprint routes.
BLUEPRINT_CREDS = ("AgentIdentityBlueprint.AddRemoveCreds.All", "AgentIdentityBlueprint.ReadWrite.All")
BLUEPRINT_UPDATE = (*BLUEPRINT_CREDS, "AgentIdentityBlueprint.UpdateBranding.All")
APP_DELETE = ("Application.ReadWrite.All", "AgentIdentityBlueprint.ReadWrite.All",
              "AgentIdentityBlueprint.DeleteRestore.All")
# application-rollkey-prooftoken: older revisions name 00000002-... (AAD Graph), newer ones
# Microsoft Graph's app id; Entra accepts either, so the sandbox does too.
PROOF_AUDIENCES = ("00000002-0000-0000-c000-000000000000", GRAPH_APP_ID)
PROOF_MAX_LIFETIME = 600  # "Expiration time should be nbf + 10 mins"
SKEW = 300.0


# --- JSON ---------------------------------------------------------------------------------
def key_credential_json(kc: KeyCredential) -> dict[str, Any]:
    """Graph never returns `key` on reads; customKeyIdentifier carries the SHA-1 thumbprint."""
    return {
        "customKeyIdentifier": kc.sha1,
        "displayName": kc.display_name or None,
        "endDateTime": iso(kc.end),
        "key": None,
        "keyId": kc.key_id,
        "startDateTime": iso(kc.start),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    }


def application_json(sb: SandboxState, app: App, description: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": app.object_id,
        "appId": app.app_id,
        "displayName": app.display_name,
        "description": description,
        "identifierUris": [],
        "publisherDomain": sb.tenant.domain,
        "signInAudience": "AzureADMyOrg",
        "requiredResourceAccess": [],
        "passwordCredentials": [],
        "keyCredentials": [key_credential_json(kc) for kc in app.key_credentials],
        "tags": [],
    }
    if app.kind == "blueprint":
        body = {"@odata.type": "#microsoft.graph.agentIdentityBlueprint", **body}
    return body


def _has_application_object(app: App) -> bool:
    return app.kind != "agentIdentity" and app.app_id != GRAPH_APP_ID


def _lookup(request: web.Request, kind: str | None = None) -> App | web.Response:
    """The application the URL names (object id or appId), or Graph's 404."""
    return find_app(request, "object_id", lambda a: a.object_id, _has_application_object, kind)


# --- certificates -------------------------------------------------------------------------
def _load_cert(key: object) -> x509.Certificate | None:
    """`key` is the base64 of a certificate's raw data (DER, or a PEM file's bytes)."""
    if not isinstance(key, str):
        return None
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return None
    for loader in (x509.load_der_x509_certificate, x509.load_pem_x509_certificate):
        try:
            return loader(raw)
        except ValueError:
            continue
    return None


def new_credential(entry: dict[str, Any]) -> KeyCredential | str:
    """A KeyCredential from a Graph `keyCredential` carrying `key`, or the reason it is refused."""
    if entry.get("type") != "AsymmetricX509Cert":
        return "Only keyCredentials of type 'AsymmetricX509Cert' are supported by this tenant."
    if entry.get("usage") != "Verify":
        # keyCredential resource: an AsymmetricX509Cert's usage must be Verify.
        return "Invalid value specified for property 'usage' of resource 'KeyCredential'."
    cert = _load_cert(entry.get("key"))
    if cert is None:
        return "Invalid certificate: Key value is invalid certificate"
    not_before = cert.not_valid_before_utc.timestamp()
    not_after = cert.not_valid_after_utc.timestamp()
    try:
        start = parse_iso(entry["startDateTime"]) if entry.get("startDateTime") else not_before
        end = parse_iso(entry["endDateTime"]) if entry.get("endDateTime") else not_after
    except (TypeError, ValueError):
        return "Invalid value specified for property 'endDateTime' of resource 'KeyCredential'."
    # A credential cannot outlive, or predate, the certificate it carries.
    if end > not_after + 1 or end <= start:
        return "Key credential end date is invalid."
    if start < not_before - 1:
        return "Key credential start date is invalid."
    key_id = entry.get("keyId") or new_id()
    try:
        key_id = str(uuid.UUID(str(key_id)))
    except ValueError:
        return "Invalid value specified for property 'keyId' of resource 'KeyCredential'."
    der = cert.public_bytes(serialization.Encoding.DER)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    default_name = f"CN={names[0].value}" if names else cert.subject.rfc4514_string()
    return KeyCredential(key_id=key_id, sha1=sha1_thumbprint_hex(der), cert_der_b64=base64.b64encode(der).decode(),
                         start=start, end=end, display_name=str(entry.get("displayName") or default_name))


def replace_credentials(app: App, entries: object) -> list[KeyCredential] | str:
    """PATCH semantics: the list sent becomes the whole list (update-application).

    Graph never returns `key` on reads, and the docs' guidance for appending is to
    resend the existing keyCredentials with the new one; the sandbox therefore keeps
    an existing credential when an entry names its `keyId` with `key` null or absent.
    An entry without `key` that names no existing credential is refused.
    """
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return "Invalid value specified for property 'keyCredentials' of resource 'Application'."
    existing = {kc.key_id.lower(): kc for kc in app.key_credentials}
    result: list[KeyCredential] = []
    for entry in entries:
        if entry.get("key") is None:
            kept = existing.get(str(entry.get("keyId", "")).lower())
            if kept is None:
                return ("A keyCredential without 'key' must name an existing credential by 'keyId'; "
                        "send the certificate's base64 DER in 'key' to add one.")
            result.append(kept)
            continue
        made = new_credential(entry)
        if isinstance(made, str):
            return made
        result.append(made)
    if len({kc.key_id for kc in result}) != len(result) or len({kc.sha1 for kc in result}) != len(result):
        return "keyCredentials contains the same certificate or keyId more than once."
    return result


def verify_proof(sb: SandboxState, app: App, proof: object) -> str | None:
    """Check an addKey/removeKey proof of possession (application-rollkey-prooftoken):
    signed by one of the app's currently valid certificates, aud, iss = the app's
    object id, nbf and exp at most 10 minutes apart. Returns why it fails, or None."""
    now = sb.clock.now()
    valid = [kc for kc in app.key_credentials if kc.start - SKEW <= now <= kc.end]
    if not valid:
        # "Applications that don't have any existing valid certificates ... won't be able to use this service action."
        return "The application has no valid certificate to prove possession of; use Update application instead."
    if not isinstance(proof, str) or not proof:
        return "Invalid value specified for property 'proof'."
    claims: dict[str, Any] | None = None
    for kc in valid:
        cert = x509.load_der_x509_certificate(base64.b64decode(kc.cert_der_b64))
        try:
            claims = jwt.decode(proof, cert.public_key(),  # type: ignore[arg-type]
                                algorithms=["RS256", "RS384", "RS512", "PS256"], audience=list(PROOF_AUDIENCES),
                                options={"verify_exp": False, "verify_nbf": False,
                                         "require": ["aud", "iss", "nbf", "exp"]})
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as exc:
            return f"Invalid proof of possession token: {exc}."
    if claims is None:
        return "Invalid proof of possession token: it is not signed by any valid certificate of this application."
    if claims.get("iss") != app.object_id:
        return "Invalid proof of possession token: 'iss' must be the application's object id."
    nbf, exp = float(claims["nbf"]), float(claims["exp"])
    if exp - nbf > PROOF_MAX_LIFETIME:
        return "Invalid proof of possession token: its lifetime exceeds 10 minutes."
    if not (nbf - SKEW <= now <= exp + SKEW):
        return "Invalid proof of possession token: it is expired or not yet valid."
    return None


# --- handlers -----------------------------------------------------------------------------
@graph_route(scopes=BLUEPRINT_CREATE, roles=BLUEPRINT_CREATE)
async def create_blueprint(request: web.Request) -> web.Response:
    """agentidentityblueprint-post: displayName and sponsors are required."""
    sb = request.app[SANDBOX_KEY]
    body = await agent_id_body(request, "Application")
    if isinstance(body, web.Response):
        return body
    name = body["displayName"]
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        return invalid_property(request, "description", "Application")
    sponsors = resolve_sponsors(sb.tenant, body.get("sponsors@odata.bind"))
    if isinstance(sponsors, str):
        return bad_request(request, sponsors)
    app = App(app_id=new_id(), object_id=new_id(), sp_object_id=new_id(), display_name=name, kind="blueprint",
              sponsors=sponsors, has_principal=False)
    sb.tenant.apps[app.app_id] = app
    replication.app_created(sb, app)
    if sb.tenant.roles.get("blueprint") not in sb.tenant.apps:
        sb.tenant.roles["blueprint"] = app.app_id  # setup re-created the demo's blueprint
    sb.mark_dirty()
    log.info("directory_blueprint_created", app_id=app.app_id)
    body_json = {"@odata.context": context(request, "applications/microsoft.graph.agentIdentityBlueprint/$entity"),
                 **application_json(sb, app, description)}
    return web.json_response(body_json, status=201)


def _listing(request: web.Request, *, blueprints_only: bool) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    apps = [a for a in sb.tenant.apps.values()
            if _has_application_object(a) and (a.kind == "blueprint" or not blueprints_only)]
    found = filtered(request, apps, {"displayName": lambda a: a.display_name, "appId": lambda a: a.app_id,
                                     "id": lambda a: a.object_id}, "Application")
    if isinstance(found, web.Response):
        return found
    entity_set = "applications/microsoft.graph.agentIdentityBlueprint" if blueprints_only else "applications"
    return collection(request, entity_set, [application_json(sb, a) for a in found])


@graph_route(scopes=APP_READ, roles=APP_READ)
async def list_applications(request: web.Request) -> web.Response:
    return _listing(request, blueprints_only=False)


@graph_route(scopes=APP_READ, roles=APP_READ)
async def list_blueprints(request: web.Request) -> web.Response:
    return _listing(request, blueprints_only=True)


@graph_route(scopes=APP_READ, roles=APP_READ)
async def get_application(request: web.Request) -> web.Response:
    app = _lookup(request, "blueprint" if request.path.endswith("/microsoft.graph.agentIdentityBlueprint") else None)
    if isinstance(app, web.Response):
        return app
    return entity(request, "applications", application_json(request.app[SANDBOX_KEY], app))


@graph_route(scopes=APP_WRITE_SCOPES, roles=APP_WRITE_ROLES)
async def update_application(request: web.Request) -> web.Response:
    return await _update(request, None)


@graph_route(scopes=BLUEPRINT_UPDATE, roles=BLUEPRINT_UPDATE)
async def update_blueprint(request: web.Request) -> web.Response:
    """agentidentityblueprint-update: PATCH /applications/{id}/microsoft.graph.agentIdentityBlueprint."""
    return await _update(request, "blueprint")


async def _update(request: web.Request, kind: str | None) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    app = _lookup(request, kind)
    if isinstance(app, web.Response):
        return app
    if app.kind == "blueprint" and (blocked := agent_id_blocked(request)) is not None:
        return blocked
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    for prop in body:
        if prop not in ("displayName", "keyCredentials"):
            return bad_request(request, f"Invalid property '{prop}'.")
    if "displayName" in body and not nonblank(body["displayName"]):
        return invalid_property(request, "displayName", "Application")
    credentials = None
    if "keyCredentials" in body:
        credentials = replace_credentials(app, body["keyCredentials"])
        if isinstance(credentials, str):
            return bad_request(request, credentials)
    # Validate everything first: a refused PATCH changes nothing.
    if "displayName" in body:
        app.display_name = body["displayName"]
    if credentials is not None:
        known = {kc.sha1 for kc in app.key_credentials}
        replication.keys_added(sb, [kc for kc in credentials if kc.sha1 not in known])
        app.key_credentials = credentials
        log.info("directory_key_credentials_replaced", app_id=app.app_id, count=len(credentials))
    sb.mark_dirty()
    return web.Response(status=204)


@graph_route(scopes=APP_DELETE, roles=APP_DELETE)
async def delete_application(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    app = _lookup(request)
    if isinstance(app, web.Response):
        return app
    if app.kind == "blueprint" and (blocked := agent_id_blocked(request)) is not None:
        return blocked
    # Deleting an application also deletes its service principal in the home tenant,
    # and with it the delegated grants the principal held.
    del sb.tenant.apps[app.app_id]
    drop_client_grants(sb.tenant, app.app_id)
    sb.mark_dirty()
    log.info("directory_application_deleted", app_id=app.app_id, kind=app.kind)
    return web.Response(status=204)


def _generic_refused(request: web.Request, app: App) -> web.Response | None:
    """Behaviour `blueprint_key_route` = `blueprint_only`: the generic addKey/removeKey do not
    know Blueprints, as third parties report (404), and only the typed routes serve them."""
    if app.kind == "blueprint" and request.app[SANDBOX_KEY].behaviour.blueprint_key_route == "blueprint_only":
        return not_found(request, request.match_info.get("object_id") or request.match_info.get("app_id", ""))
    return None


@graph_route(scopes=APP_WRITE_SCOPES, roles=APP_WRITE_ROLES)
async def add_key(request: web.Request) -> web.Response:
    """application-addkey: append one certificate, proving possession of an existing one."""
    return await _add_key(request, None)


@graph_route(scopes=BLUEPRINT_CREDS, roles=BLUEPRINT_CREDS)
async def blueprint_add_key(request: web.Request) -> web.Response:
    """agentidentityblueprint-addkey: the same action on the typed Blueprint route."""
    return await _add_key(request, "blueprint")


async def _add_key(request: web.Request, kind: str | None) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    app = _lookup(request, kind)
    if isinstance(app, web.Response):
        return app
    if kind is None and (refused := _generic_refused(request, app)) is not None:
        return refused
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    entry = body.get("keyCredential")
    if not isinstance(entry, dict):
        return invalid_property(request, "keyCredential", "addKey")
    if body.get("passwordCredential") is not None:
        return bad_request(request, "passwordCredential is only used with X509CertAndPassword keys; set it to null.")
    if (problem := verify_proof(sb, app, body.get("proof"))) is not None:
        return bad_request(request, problem)
    made = new_credential({**entry, "keyId": None})  # "keyId value should be null": Entra assigns it
    if isinstance(made, str):
        return bad_request(request, made)
    if any(kc.sha1 == made.sha1 for kc in app.key_credentials):
        return bad_request(request, "keyCredentials contains the same certificate or keyId more than once.")
    app.key_credentials.append(made)
    replication.keys_added(sb, [made])
    sb.mark_dirty()
    log.info("directory_key_added", app_id=app.app_id, key_id=made.key_id)
    return web.json_response({"@odata.context": context(request, "microsoft.graph.keyCredential"),
                              **key_credential_json(made)})


@graph_route(scopes=APP_WRITE_SCOPES, roles=APP_WRITE_ROLES)
async def remove_key(request: web.Request) -> web.Response:
    """application-removekey: drop one credential, proving possession of one."""
    return await _remove_key(request, None)


@graph_route(scopes=BLUEPRINT_CREDS, roles=BLUEPRINT_CREDS)
async def blueprint_remove_key(request: web.Request) -> web.Response:
    """agentidentityblueprint-removekey: the same action on the typed Blueprint route."""
    return await _remove_key(request, "blueprint")


async def _remove_key(request: web.Request, kind: str | None) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    app = _lookup(request, kind)
    if isinstance(app, web.Response):
        return app
    if kind is None and (refused := _generic_refused(request, app)) is not None:
        return refused
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    key_id = str(body.get("keyId", "")).lower()
    if (problem := verify_proof(sb, app, body.get("proof"))) is not None:
        return bad_request(request, problem)
    remaining = [kc for kc in app.key_credentials if kc.key_id.lower() != key_id]
    if len(remaining) == len(app.key_credentials):
        return not_found(request, key_id)
    app.key_credentials = remaining
    sb.mark_dirty()
    log.info("directory_key_removed", app_id=app.app_id, key_id=key_id)
    return web.Response(status=204)


def route_table() -> list[tuple[str, str, Any]]:
    by_object, by_app_id = "/applications/{object_id}", "/applications(appId='{app_id}')"
    table: list[tuple[str, str, Any]] = [
        ("GET", "/applications", list_applications),
        ("GET", "/applications/microsoft.graph.agentIdentityBlueprint", list_blueprints),
        ("POST", "/applications/microsoft.graph.agentIdentityBlueprint", create_blueprint),
        ("GET", by_object + "/microsoft.graph.agentIdentityBlueprint", get_application),
    ]
    for base in (by_object, by_app_id):  # both the object id and the appId alternate key address an app
        typed = base + "/microsoft.graph.agentIdentityBlueprint"
        table += [("GET", base, get_application), ("PATCH", base, update_application),
                  ("DELETE", base, delete_application), ("POST", base + "/addKey", add_key),
                  ("POST", base + "/removeKey", remove_key), ("PATCH", typed, update_blueprint),
                  ("POST", typed + "/addKey", blueprint_add_key), ("POST", typed + "/removeKey", blueprint_remove_key)]
    return table
