"""What the AGENTSEAT_EVENTHUB_* settings mean, checked once when settings load.

It owns the rules (what is required in `--mode eventhub`, the shapes of the endpoint and
the checkpoint store URL) and the values derived from them: the namespace's host name, the
hub, and the `EventHub:` notificationUrl Graph delivers to. It reads no environment itself
(config.py does) and makes no connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["BlobStore", "blob_store", "check_eventhub_settings", "connection_parts", "eventhub_name",
           "fully_qualified_namespace", "notification_url"]

#: Azure's public cloud suffix for Event Hubs namespaces.
NAMESPACE_SUFFIX = ".servicebus.windows.net"


def connection_parts(conn_str: str) -> dict[str, str]:
    """The `Key=Value;` fields of a SAS connection string, keys lower-cased."""
    parts: dict[str, str] = {}
    for field in conn_str.split(";"):
        key, sep, value = field.strip().partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    return parts


def _from_connection_string(settings: Settings) -> dict[str, str]:
    secret = settings.eventhub_connection_string
    return connection_parts(secret.get_secret_value()) if secret is not None else {}


def fully_qualified_namespace(settings: Settings) -> str:
    """`<name>.servicebus.windows.net`: from the setting (a bare name gets the suffix), else the SAS string."""
    name = settings.eventhub_namespace.strip().lower()
    if not name:
        endpoint = _from_connection_string(settings).get("endpoint", "")
        name = (urlsplit(endpoint).hostname or "").lower()
    if name and "." not in name:
        name += NAMESPACE_SUFFIX
    return name


def eventhub_name(settings: Settings) -> str:
    """The hub: the setting, else the connection string's `EntityPath`."""
    return settings.eventhub_name.strip() or _from_connection_string(settings).get("entitypath", "")


def notification_url(settings: Settings) -> str:
    """The `notificationUrl` (and `lifecycleNotificationUrl`) of Event Hubs delivery.

    Form from "Receive change notifications through Azure Event Hubs" (Azure RBAC variant):
    `EventHub:https://<namespace>.servicebus.windows.net/eventhubname/<hub>?tenantId=<tenant>`,
    where `eventhubname` is a literal segment.
    """
    hub = quote(eventhub_name(settings), safe="")
    return f"EventHub:https://{fully_qualified_namespace(settings)}/eventhubname/{hub}?tenantId={settings.tenant_id}"


@dataclass(frozen=True)
class BlobStore:
    """A Blob container for checkpoints: account URL, container, and whether the URL carries a SAS."""

    account_url: str
    container: str
    sas: str  # the query string, "" without one

    @property
    def container_url(self) -> str:
        return f"{self.account_url}/{self.container}" + (f"?{self.sas}" if self.sas else "")


def blob_store(value: str) -> BlobStore | None:
    """The Blob container of AGENTSEAT_CHECKPOINT_STORE, or None for `local`."""
    if value.strip().lower() == "local":
        return None
    parts = urlsplit(value.strip())
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"AGENTSEAT_CHECKPOINT_STORE is neither `local` nor a URL: {value[:80]!r}",
                          hint="use `local`, or a container URL https://<account>.blob.core.windows.net/<container>")
    # Azurite and other emulators put the account in the path (http://127.0.0.1:10000/devstoreaccount1/c).
    emulator = not parts.hostname.endswith(".blob.core.windows.net") and len(segments) == 2
    if len(segments) != (2 if emulator else 1):
        raise ConfigError("AGENTSEAT_CHECKPOINT_STORE must name one Blob container, not an account or a blob",
                          hint="use https://<account>.blob.core.windows.net/<container>")
    account = f"{parts.scheme}://{parts.netloc}" + (f"/{segments[0]}" if emulator else "")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError("AGENTSEAT_CHECKPOINT_STORE uses plain http to a remote host",
                          hint="use the https:// container URL (plain http is for a local Azurite only)")
    if parts.scheme == "http" and not parts.query:
        # Without a SAS the agent's Entra token authorizes, and the Storage SDK sends tokens over HTTPS only.
        raise ConfigError("AGENTSEAT_CHECKPOINT_STORE is a plain http URL without a SAS",
                          hint="use https:// (the agent's token needs it; for Azurite, start it with --cert, --key "
                          "and --oauth basic), or append a container SAS")
    return BlobStore(account, segments[-1], parts.query)


def _check_endpoint(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("sb", "amqps") or not parts.hostname or parts.path.strip("/"):
        raise ConfigError(f"AGENTSEAT_EVENTHUB_ENDPOINT must be sb://host[:port], not {value[:80]!r}",
                          hint="e.g. sb://my-private-endpoint.example.com:5671; leave it unset for Azure itself")
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"AGENTSEAT_EVENTHUB_ENDPOINT has a bad port: {value[:80]!r}",
                          hint="use sb://host:port with a port between 1 and 65535") from None


def check_eventhub_settings(settings: Settings) -> None:
    """Raise ConfigError, with the fix, for event hub settings that cannot work."""
    if settings.eventhub_endpoint:
        _check_endpoint(settings.eventhub_endpoint)
    blob_store(settings.checkpoint_store)
    conn = _from_connection_string(settings)
    if settings.eventhub_connection_string is not None and not (
            conn.get("endpoint") and conn.get("sharedaccesskeyname") and conn.get("sharedaccesskey")):
        raise ConfigError("AGENTSEAT_EVENTHUB_CONNECTION_STRING is not an Event Hubs SAS connection string",
                          hint="copy it from the namespace's or hub's Shared access policies (Endpoint=sb://...;"
                          "SharedAccessKeyName=...;SharedAccessKey=...), or unset it to use the agent's Entra token")
    if settings.eventhub_ca_bundle is not None and not settings.eventhub_ca_bundle.is_file():
        raise ConfigError(f"AGENTSEAT_EVENTHUB_CA_BUNDLE {settings.eventhub_ca_bundle} is not a file",
                          hint="point it at the PEM file of the CA that signed the endpoint's certificate")
    if settings.eventhub_ownership_seconds <= 2 * settings.eventhub_balance_seconds:
        raise ConfigError("AGENTSEAT_EVENTHUB_OWNERSHIP_SECONDS must be more than twice "
                          "AGENTSEAT_EVENTHUB_BALANCE_SECONDS, or owners lose partitions they still hold",
                          hint="keep the defaults (10 s and 60 s), or raise the ownership expiry")
    if settings.mode != "eventhub":
        return
    missing = [name for name, value in (("AGENTSEAT_EVENTHUB_NAMESPACE", fully_qualified_namespace(settings)),
                                        ("AGENTSEAT_EVENTHUB_NAME", eventhub_name(settings))) if not value]
    if missing:
        raise ConfigError(f"--mode eventhub needs {' and '.join(missing)}",
                          hint="set them to the namespace and hub Graph delivers to (README: Event Hubs), "
                          "or use --mode poll")
    if conn.get("entitypath") and settings.eventhub_name and conn["entitypath"] != settings.eventhub_name:
        raise ConfigError("AGENTSEAT_EVENTHUB_NAME differs from the connection string's EntityPath",
                          hint="use the hub the SAS policy belongs to, or a namespace-level connection string")
