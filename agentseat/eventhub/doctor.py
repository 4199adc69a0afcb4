"""`agentseat doctor` for Event Hubs: the namespace, the agent's receive right, the Azure roles.

What can be checked from the agent's side is checked: the settings, a token for Event Hubs,
a connection that reads the hub's properties (`$management`; it needs the Listen right that
the Data Receiver role grants, so it also tells whether the agent may receive), and the
checkpoint store. What cannot (whether Graph's Change Tracking app may send to the hub) is
said plainly, with the `az` command that grants it: setup cannot grant Azure roles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from ..config import GRAPH_CHANGE_TRACKING_APP_ID, Settings
from ..errors import AgentSeatError
from ..identity.doctor import Check, credential_for
from ..identity.tokens import TokenProvider
from .client import checkpoint_store, consumer_client, store_kind, transport_port
from .credential import EVENTHUBS_SCOPE, STORAGE_SCOPE, AgentCredential
from .settings import BlobStore, blob_store, eventhub_name, fully_qualified_namespace

if TYPE_CHECKING:
    from azure.eventhub.aio import CheckpointStore

__all__ = ["az_commands", "eventhub_checks", "probe_hub"]

#: A connection that does not answer within this long is reported unreachable.
_CONNECT_SECONDS = 30.0
RECEIVER_ROLE, SENDER_ROLE = "Azure Event Hubs Data Receiver", "Azure Event Hubs Data Sender"
BLOB_ROLE = "Storage Blob Data Contributor"


def _principal(settings: Settings) -> tuple[str, str]:
    """(object id, principal type) of who the agent is to Azure."""
    if settings.azure_principal == "agent_identity":
        return settings.agent_object_id or "<agent-identity-object-id>", "ServicePrincipal"
    return settings.agent_user_id or "<agent-user-object-id>", "User"


def az_commands(settings: Settings) -> list[str]:
    """The role assignments Event Hubs delivery needs, as `az` commands to run (placeholders in <>)."""
    namespace = fully_qualified_namespace(settings).split(".")[0] or "<namespace>"
    scope = f'"$(az eventhubs namespace show -g <resource-group> -n {namespace} --query id -o tsv)"'
    who, kind = _principal(settings)
    commands = [
        f'az role assignment create --role "{RECEIVER_ROLE}" --assignee-object-id {who} '
        f"--assignee-principal-type {kind} --scope {scope}",
        # Graph's Change Tracking app sends the notifications (change-notifications-delivery-event-hubs,
        # "Microsoft Graph Change Tracking" in the Data Sender role); its app id is the `azp` of
        # Graph's validation tokens (change-notifications-with-resource-data).
        f'az role assignment create --role "{SENDER_ROLE}" --assignee {GRAPH_CHANGE_TRACKING_APP_ID} --scope {scope}',
    ]
    blob = blob_store(settings.checkpoint_store)
    if blob is not None:
        account = _account_name(blob)
        # The role on the container alone ("Assign an Azure role for access to blob data", scope: container).
        commands.append(f'az role assignment create --role "{BLOB_ROLE}" --assignee-object-id {who} '
                        f"--assignee-principal-type {kind} --scope "
                        f'"$(az storage account show -g <resource-group> -n {account} --query id -o tsv)"'
                        f"/blobServices/default/containers/{blob.container}")
    return commands


def _account_name(blob: BlobStore) -> str:
    """The storage account of an Azure container URL, else a placeholder (an emulator or a custom host)."""
    host = urlsplit(blob.account_url).hostname or ""
    return host.split(".")[0] if host.endswith(".blob.core.windows.net") else "<account>"


def _network_hint(settings: Settings) -> str:
    """Which port to open; over TLS, also the WebSocket transport that needs only 443."""
    if settings.eventhub_transport == "websocket":
        return f"allow outbound TCP {transport_port(settings)} (AMQP over WebSockets) to the namespace"
    return (f"allow outbound TCP {transport_port(settings)} (AMQP over TLS) to the namespace, or set "
            "AGENTSEAT_EVENTHUB_TRANSPORT=websocket (AMQP over WebSockets, port 443)")


def _grant_hint(settings: Settings) -> str:
    return "grant the role, then run doctor again: " + az_commands(settings)[0]


async def eventhub_checks(settings: Settings, tokens: TokenProvider | None = None, *,
                          identity_ok: bool = True) -> list[Check]:
    """The Event Hubs checks, in order; later ones are skipped when what they need failed
    (`identity_ok`: the identity checks before them passed, so the agent can get a token)."""
    namespace, hub = fully_qualified_namespace(settings), eventhub_name(settings)
    via = "SAS connection string" if settings.eventhub_connection_string else f"the agent ({settings.azure_principal})"
    where = f" via {settings.eventhub_endpoint}" if settings.eventhub_endpoint else ""
    where += " over WebSockets" if settings.eventhub_transport == "websocket" else ""
    checks = [Check("event hub settings", "ok" if namespace and hub else "fail",
                    f"{namespace or '?'}/{hub or '?'}, consumer group {settings.eventhub_consumer_group}, "
                    f"as {via}{where}, checkpoints {store_kind(settings)}",
                    "set AGENTSEAT_EVENTHUB_NAMESPACE and AGENTSEAT_EVENTHUB_NAME")]
    if not (namespace and hub):
        return checks
    credential: AgentCredential | None = None
    if settings.eventhub_connection_string is None and not identity_ok:
        checks.append(Check("event hub", "skip", "needs the agent's token: fix the checks above first"))
        return checks
    if settings.eventhub_connection_string is None:
        tokens = tokens or TokenProvider(settings, credential_for(settings))
        credential = AgentCredential(tokens, principal=settings.azure_principal)
        try:
            await credential.get_token(EVENTHUBS_SCOPE)
            checks.append(Check("event hub token", "ok", f"Entra issues the agent a token for {EVENTHUBS_SCOPE}"))
        except (ClientAuthenticationError, AgentSeatError) as exc:
            checks.append(Check("event hub token", "fail", str(getattr(exc, "message", exc))[:300],
                                "run `agentseat doctor` checks above first (hops), then `agentseat setup`"))
            checks.append(Check("event hub", "skip", "needs a token"))
            return checks
    checks.append(await _hub_check(settings, credential))
    checks.append(await _store_check(settings, credential))
    checks.append(Check("graph send role", "warn", f"whether Graph's Change Tracking app ({GRAPH_CHANGE_TRACKING_APP_ID})"
                        f" may send to {hub} cannot be seen from here; without it no notification arrives",
                        "once per namespace: " + az_commands(settings)[1]))
    return checks


async def probe_hub(settings: Settings, tokens: TokenProvider, *, timeout: float = _CONNECT_SECONDS) -> Check:
    """The "event hub" check alone, bounded by `timeout`: what `auto` asks before it prefers the hub
    (runtime/transport_choice.py). As the agent, or with the SAS connection string when one is set."""
    credential = None if settings.eventhub_connection_string is not None else AgentCredential(
        tokens, principal=settings.azure_principal)
    return await _hub_check(settings, credential, timeout=timeout)


async def _hub_check(settings: Settings, credential: AgentCredential | None, *,
                     timeout: float = _CONNECT_SECONDS) -> Check:
    client = consumer_client(settings, credential, None)
    try:
        with anyio.fail_after(timeout):
            async with client:
                props: dict[str, Any] = await client.get_eventhub_properties()
    except TimeoutError:
        return Check("event hub", "fail", f"no answer from {fully_qualified_namespace(settings)} within "
                     f"{timeout:g} s", f"{_network_hint(settings)}; or check AGENTSEAT_EVENTHUB_ENDPOINT and "
                     "AGENTSEAT_EVENTHUB_CA_BUNDLE")
    except Exception as exc:  # the SDK's errors: authentication, connection, not found
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        unreachable = _no_connection(exc)
        refused = not unreachable and any(
            word in text.lower() for word in ("unauthorized", "authentication", "401", "forbidden"))
        if refused:
            return Check("event hub", "fail", f"the namespace refused the agent: {text}", _grant_hint(settings))
        return Check("event hub", "fail", f"cannot {'reach' if unreachable else 'read'} the hub: {text}",
                     "check the namespace and hub names, AGENTSEAT_EVENTHUB_ENDPOINT and the CA; "
                     + _network_hint(settings))
    partitions = list(props.get("partition_ids") or [])
    return Check("event hub", "ok", f"reachable; {len(partitions)} partitions; the hub's properties read as the "
                 f"agent (the Listen right the {RECEIVER_ROLE} role grants)")


def _no_connection(exc: BaseException) -> bool:
    """Whether the SDK's error comes from a connection that was never made (an OSError beneath it).

    Over WebSockets to a custom endpoint the SDK reports a refused TCP connect as an AuthenticationError
    (azure-eventhub _pyamqp/aio/_transport_async.py, WebSocketTransportAsync.connect): not a refusal
    by the namespace, so not a missing role.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


async def _store_check(settings: Settings, credential: AgentCredential | None) -> Check:
    if store_kind(settings) == "local":
        return Check("checkpoint store", "ok", f"local: {settings.state_dir / 'inbox.db'} (one machine)")
    blob = blob_store(settings.checkpoint_store)
    assert blob is not None
    as_agent = not blob.sas
    if as_agent:
        if credential is None:  # a SAS connection string for the hub, a plain URL for Blob: the token is needed
            credential = AgentCredential(TokenProvider(settings, credential_for(settings)),
                                         principal=settings.azure_principal)
        try:
            await credential.get_token(STORAGE_SCOPE)
        except (ClientAuthenticationError, AgentSeatError) as exc:
            return Check("checkpoint store", "fail", f"no token for {STORAGE_SCOPE}: "
                         f"{str(getattr(exc, 'message', exc))[:300]}",
                         "run the identity checks above first (hops), then `agentseat setup`")
    store: CheckpointStore = checkpoint_store(settings, settings.state_dir / "inbox.db", credential)
    grant = f"grant the agent: {az_commands(settings)[-1]}" if as_agent else \
        "make a new SAS for the container with read, write, list and delete, unexpired"
    try:
        with anyio.fail_after(_CONNECT_SECONDS):
            await store.list_ownership(fully_qualified_namespace(settings), eventhub_name(settings),
                                       settings.eventhub_consumer_group)
            await store.list_checkpoints(fully_qualified_namespace(settings), eventhub_name(settings),
                                         settings.eventhub_consumer_group)
    except ResourceNotFoundError:
        return Check("checkpoint store", "fail", f"the Blob container {blob.container} does not exist",
                     f"create it: az storage container create --auth-mode login -n {blob.container} "
                     f"--account-name {_account_name(blob)}")
    except (ClientAuthenticationError, HttpResponseError) as exc:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            # Storage answers 403 (AuthorizationPermissionMismatch) to a valid token without a data role.
            code = getattr(exc, "error_code", None) or status or type(exc).__name__
            code = getattr(code, "value", code)  # the Storage SDK's StorageErrorCode enum: Storage's own code
            who = f"the agent ({settings.azure_principal})" if as_agent else "the SAS"
            return Check("checkpoint store", "fail", f"the Blob container refused {who}: {code}", grant)
        return Check("checkpoint store", "fail", f"the Blob container is not readable: {type(exc).__name__} "
                     f"{status or ''}".rstrip(), f"check the container URL; {grant}")
    except (TimeoutError, AzureError, AgentSeatError) as exc:
        return Check("checkpoint store", "fail", f"the Blob container is not readable: {type(exc).__name__}",
                     f"check the container URL, the network path and AGENTSEAT_CA_BUNDLE; {grant}")
    finally:
        await store.close()  # type: ignore[attr-defined]
    via = f"as the agent ({settings.azure_principal}, Entra token)" if as_agent else "with the URL's SAS"
    return Check("checkpoint store", "ok", f"the Blob container lists ownership and checkpoints {via}")
