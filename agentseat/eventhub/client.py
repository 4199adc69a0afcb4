"""Builds the azure-eventhub consumer client and the checkpoint store from settings.

It owns the connection choices the SDK needs spelled out: the custom endpoint address
(the SDK ignores a port in the namespace and dials 5671, or 443 over WebSockets), the
transport (AMQP over TLS, or AMQP over WebSockets where 5671 is blocked), the CA bundle for
a private endpoint, SAS or the agent's credential, and the load-balancing intervals. It
does not read events (consumer.py does).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.eventhub import TransportType
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient

from .checkpoints import SqliteCheckpointStore
from .settings import blob_store, eventhub_name, fully_qualified_namespace

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from ..config import Settings

__all__ = ["checkpoint_store", "client_options", "consumer_client", "ledger_container", "store_kind",
           "transport_port"]

#: AGENTSEAT_EVENTHUB_TRANSPORT: the SDK's transport, and the port Azure serves it on ("AMQP 1.0 in
#: Azure Service Bus and Event Hubs protocol guide": AMQP over TLS on 5671, over WebSockets on 443).
_TRANSPORTS: dict[str, tuple[TransportType, int]] = {
    "amqp": (TransportType.Amqp, 5671),
    "websocket": (TransportType.AmqpOverWebsocket, 443),
}


def store_kind(settings: Settings) -> str:
    """`local` or `blob`, for status."""
    return "local" if blob_store(settings.checkpoint_store) is None else "blob"


def checkpoint_store(settings: Settings, inbox_path: Path, credential: AsyncTokenCredential | None) -> CheckpointStore:
    """The local store on the inbox database, or BlobCheckpointStore for the container URL."""
    blob = blob_store(settings.checkpoint_store)
    if blob is None:
        return SqliteCheckpointStore(inbox_path)
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    # The CA bundle that verifies Entra for the agent's chain (msal's `verify`) verifies Blob too: a
    # corporate proxy's CA, or the sandbox CA for an Azurite on HTTPS. azure-core's `connection_verify`
    # takes a path and then trusts only that file, as msal does; unset, the system's roots.
    options: dict[str, Any] = {"connection_verify": str(settings.ca_bundle)} if settings.ca_bundle else {}
    if blob.sas:
        # An explicit credential would override the URL's SAS (Blob SDK), so none is passed.
        return BlobCheckpointStore(f"{blob.account_url}?{blob.sas}", blob.container, **options)
    # No SAS: the agent's Entra token (`https://storage.azure.com/.default`, the SDK's scope), over HTTPS only.
    return BlobCheckpointStore(blob.account_url, blob.container, credential=credential, **options)


def ledger_container(settings: Settings, credential: AsyncTokenCredential | None) -> Any:
    """A ContainerClient (the one the checkpoint store extension vendors) on the Blob checkpoint container,
    with the store's credential and CA, for the ledger (ledger.py); None for the local store."""
    blob = blob_store(settings.checkpoint_store)
    if blob is None:
        return None
    from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob.aio import ContainerClient

    options: dict[str, Any] = {"connection_verify": str(settings.ca_bundle)} if settings.ca_bundle else {}
    if blob.sas:
        return ContainerClient(f"{blob.account_url}?{blob.sas}", blob.container, **options)
    return ContainerClient(blob.account_url, blob.container, credential=credential, **options)


def transport_port(settings: Settings) -> int:
    """The outbound TCP port the chosen transport needs to Azure: 5671, or 443 over WebSockets."""
    return _TRANSPORTS[settings.eventhub_transport][1]


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments both client constructors take."""
    options: dict[str, Any] = {
        # Always named: with a custom endpoint the SDK's default is WebSocket, without one AMQP over TLS.
        # Over WebSockets the SDK dials wss://<endpoint host>:<its port, else 443>/$servicebus/websocket
        # (azure-eventhub _configuration.py, _pyamqp/aio/_connection_async.py); over TLS, its port, else 5671.
        "transport_type": _TRANSPORTS[settings.eventhub_transport][0],
        "load_balancing_interval": settings.eventhub_balance_seconds,
        "partition_ownership_expiration_interval": settings.eventhub_ownership_seconds,
    }
    if settings.eventhub_endpoint:
        options["custom_endpoint_address"] = settings.eventhub_endpoint
    # The endpoint's CA: its own setting, else the one that already verifies the sandbox (or a
    # corporate proxy) for Entra and Graph, but only for a custom endpoint: Azure itself uses system roots.
    ca = settings.eventhub_ca_bundle or (settings.ca_bundle if settings.eventhub_endpoint else None)
    if ca is not None:
        options["connection_verify"] = str(ca)
    return options


def consumer_client(settings: Settings, credential: AsyncTokenCredential | None,
                    store: CheckpointStore | None) -> EventHubConsumerClient:
    """The consumer for the configured hub and group: SAS when a connection string is set, else the agent."""
    options = client_options(settings)
    if store is not None:
        options["checkpoint_store"] = store
    group, hub = settings.eventhub_consumer_group, eventhub_name(settings)
    if settings.eventhub_connection_string is not None:
        return EventHubConsumerClient.from_connection_string(
            settings.eventhub_connection_string.get_secret_value(), group, eventhub_name=hub, **options)
    assert credential is not None, "the agent's credential is needed without a connection string"
    return EventHubConsumerClient(fully_qualified_namespace(settings), hub, group, credential, **options)
