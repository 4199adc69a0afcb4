"""Settings: the only place defaults live.

Every value comes from an `AGENTSEAT_*` environment variable, a `.env` file in the
working directory, or the config file written by `agentseat setup`
(`AGENTSEAT_CONFIG_FILE`, default `<state_dir>/agentseat.env`). Every Microsoft
endpoint is a setting so the sandbox, national clouds and production share one
code path.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import ConfigError

#: The Microsoft Graph Change Tracking app: the only legitimate caller of our
#: webhook (change-notifications-with-resource-data, "How to validate").
GRAPH_CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"

#: The credential `agentseat bot --install-service` passes the key passphrase in. systemd
#: (LoadCredential=, v247+) copies it to $CREDENTIALS_DIRECTORY, readable by the service alone.
KEY_PASSPHRASE_CREDENTIAL = "agentseat-key-passphrase"

Mode = Literal["auto", "webhook", "poll", "eventhub"]
AzurePrincipal = Literal["agent_user", "agent_identity"]
InboundPolicy = Literal["sponsors", "allowlist", "pairing", "tenant"]
TunnelKind = Literal["ngrok", "static", "loopback", "none"]
EventHubTransport = Literal["amqp", "websocket"]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "agentseat"


def _env_files() -> tuple[str, ...]:
    # The setup-written config file comes first so a local `.env` can override it.
    config_file = os.environ.get("AGENTSEAT_CONFIG_FILE")
    if config_file is None:
        state = os.environ.get("AGENTSEAT_STATE_DIR")
        config_file = str(Path(state) / "agentseat.env") if state else str(default_state_dir() / "agentseat.env")
    return (config_file, ".env")


class Settings(BaseSettings):
    """All of agentseat's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTSEAT_",
        env_file=_env_files(),
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- where things live ---------------------------------------------------
    state_dir: Path = Field(default_factory=default_state_dir, description="Inbox, keys, locks and subscription state.")
    config_file: Path | None = Field(default=None, description="Where `agentseat setup` writes settings.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    # --- Microsoft endpoints (sandbox and national clouds use the same path) ---
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    graph_resource: str = Field(
        default="https://graph.microsoft.com", description="Token audience for Graph (national clouds differ)."
    )
    jwks_url: str = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
    ca_bundle: Path | None = Field(default=None, description="Extra CA bundle (PEM) trusted for Entra and Graph.")

    # --- identity --------------------------------------------------------------
    tenant_id: str = ""
    blueprint_app_id: str = ""
    blueprint_object_id: str = ""
    agent_id: str = Field(default="", description="The Agent Identity's client (app) id.")
    agent_object_id: str = ""
    agent_user_id: str = Field(default="", description="The Agent User's object id.")
    agent_user_upn: str = ""
    cert_thumbprint: str = Field(default="", description="SHA-1 thumbprint (hex) of the active certificate.")
    key_passphrase: SecretStr | None = Field(
        default=None, description="Passphrase of the encrypted key file when no keyring backend exists."
    )
    key_passphrase_file: Path | None = Field(
        default=None, description="A file holding that passphrase (used when KEY_PASSPHRASE is unset).")
    keyring_service: str = "agentseat"
    sponsors: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Sponsor UPNs or object ids (comma-separated).")
    persona_file: Path | None = None

    # --- who may reach the agent (agentseat/access) -------------------------------
    inbound_policy: InboundPolicy = Field(
        default="pairing", description="sponsors | allowlist (sponsors + ALLOW) | pairing | tenant (everyone in it).")
    allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="People who may reach the agent besides sponsors: UPNs or object ids.")
    allow_external: bool = Field(default=False, description="Let senders from other tenants pair.")
    group_policy: Literal["mention", "all"] = Field(
        default="mention", description="Group chats: push only messages that @mention the agent or come from a "
        "sponsor (mention), or every message (all). Everything is stored either way.")

    # --- provisioning (agentseat setup) ----------------------------------------
    provisioner_app_id: str = ""
    provisioner_cert_path: Path | None = None
    provisioner_key_path: Path | None = None
    provisioner_key_passphrase: SecretStr | None = None
    agent_display_name: str = "agentseat agent"
    license_sku_id: str = ""
    setup_wait_seconds: float = Field(
        default=180.0, ge=0, description="How long setup waits for Entra to replicate what it made (issue 11).")

    # --- runtime ---------------------------------------------------------------
    mode: Mode = "auto"
    tunnel: TunnelKind = "ngrok"
    public_url: str | None = Field(default=None, description="Public https URL for `--tunnel static`.")
    ngrok_path: Path | None = None
    ngrok_authtoken: SecretStr | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port.")
    webhook_max_body: int = Field(default=1_048_576, ge=1024)
    intake_processes: int = Field(
        default=1, ge=1, le=16, description="Processes that take Graph's POSTs, the runtime included: above 1, "
        "intake processes accept on the webhook's socket and verify, decrypt and store with their own GIL "
        "(agentseat/intake_workers). Pays at high rates of small POSTs on a machine with cores to spare; "
        "each costs its own memory."
    )
    notification_audience: str = Field(
        default="", description="Expected `aud` of validation tokens; defaults to agent_id. The docs do not say "
        "which one Graph uses: tokens for the Blueprint or none at all make the runtime read the message from "
        "Graph instead (runtime/token_fallback.py), and `status` shows what was seen (fact validation_tokens)."
    )
    change_tracking_app_id: str = GRAPH_CHANGE_TRACKING_APP_ID

    # Subscription lifetimes (subscription resource, "Subscription lifetime").
    chat_subscription_minutes: int = Field(default=4320, ge=45)
    mail_subscription_minutes: int = Field(default=10080, ge=45)  # basic mail: 7 days (subscriptions/specs.py)
    renew_fraction: float = Field(default=0.5, gt=0, lt=1, description="Renew when this much lifetime is left.")

    # Event Hubs delivery (agentseat/eventhub; change-notifications-delivery-event-hubs): Graph sends
    # notifications to a hub the runtime reads outward over AMQP (TLS or WebSockets), with no public endpoint.
    eventhub_namespace: str = Field(
        default="", description="Event Hubs namespace: `<name>.servicebus.windows.net` (or just `<name>`).")
    eventhub_name: str = Field(default="", description="The event hub Graph delivers to.")
    eventhub_consumer_group: str = Field(default="$Default", description="Consumer group the runtime reads with.")
    eventhub_connection_string: SecretStr | None = Field(
        default=None, description="SAS connection string (Listen) instead of the agent's Entra token.")
    eventhub_endpoint: str = Field(
        default="", description="Custom endpoint `sb://host:port` (private endpoints, the sandbox's emulator).")
    eventhub_ca_bundle: Path | None = Field(default=None, description="CA bundle (PEM) for that endpoint's TLS.")
    # Event Hubs takes AMQP over TLS on 5671 and AMQP over WebSockets on 443 ("AMQP 1.0 in Azure Service
    # Bus and Event Hubs protocol guide"); firewalls that let only HTTPS out block the first.
    eventhub_transport: EventHubTransport = Field(
        default="amqp", description="`amqp` (AMQP over TLS, outbound TCP 5671) or `websocket` (AMQP over "
        "WebSockets, outbound TCP 443, for networks that block 5671). A custom endpoint's own port is used either way.")
    checkpoint_store: str = Field(
        default="local", description="`local` (checkpoints in the inbox database, one machine) or a Blob "
        "container URL `https://<account>.blob.core.windows.net/<container>[?SAS]` (several machines).")
    azure_principal: AzurePrincipal = Field(
        default="agent_user", description="Who the agent is to Azure (Event Hubs, Blob): the Agent User "
        "(delegated, three hops) or the Agent Identity (app-only, two hops). Azure roles go to that principal.")
    # Load balancing (EventHubConsumerClient): the SDK's 30 s / 180 s let a dead machine's partitions
    # wait ~3.5 min; 10 s / 60 s bound the takeover to about 70 s at 1 Blob read per 10 s per process.
    eventhub_balance_seconds: float = Field(default=10.0, ge=1.0, description="Load-balancing interval.")
    eventhub_ownership_seconds: float = Field(
        default=60.0, ge=3.0, description="Ownership expiry: a silent owner's partitions are free after this.")
    # `auto` with a hub configured (runtime/transport_choice.py): while the hub does not answer, the
    # webhook or poll fallback runs and the hub is probed again this often (one connection each); on the
    # hub, the same probes decide when polling runs beside it (a hub that stopped answering).
    eventhub_probe_seconds: float = Field(
        default=300.0, ge=1.0, description="auto: how often the event hub is probed (again while it does not "
        "answer; while auto reads it, a probe that finds it down starts polling until one finds it back).")

    # Polling. Teams asks apps to poll for changes rarely (teams-api-overview,
    # "Polling requirements"); the poll mode reads one chat list per interval plus the chats
    # it names as changed, inside the 1 request/s per user limit on GET /me/chats, and never
    # faster than the 5 s floor. Behind a firewall it is the answer until Event Hubs lands.
    chat_poll_seconds: float = Field(default=10.0, ge=1.0, description="Below 5 s, 5 s is used (runtime/poll_policy.py).")
    mail_poll_seconds: float = Field(default=30.0, ge=1.0)
    reconcile_seconds: float = Field(default=86_400.0, ge=60.0, description="Reconciliation behind webhooks.")

    # Team channels (agentseat/channels, subscriptions/channels.py). Teams subscriptions share one
    # quota of 10,000 per organisation across every app (change-notifications-overview), so the
    # agent keeps at most this many channel subscriptions and polls the rest.
    channel_subscriptions_max: int = Field(default=100, ge=0, description="Channel subscriptions kept at most.")
    channel_list_seconds: float = Field(
        default=300.0, ge=1.0, description="How often joined teams and channels are listed again.")

    # Graph client.
    graph_deadline_seconds: float = Field(default=60.0, gt=0)
    graph_timeout_seconds: float = Field(default=30.0, gt=0)
    token_refresh_margin_seconds: float = Field(default=300.0, ge=0)
    # New grants, keys and objects take 30 s to minutes to replicate: for this long after the
    # runtime starts, a refusal on a call that has not yet worked is retried (graph/replication.py).
    replication_grace_seconds: float = Field(
        default=300.0, ge=0, description="Seconds after start in which 403s and fresh-object AADSTS/404s are retried.")

    # Claude Code's permission prompts, asked of the sponsors in their Teams DMs (issue 9, point 7).
    permission_relay: bool = Field(default=True, description="Relay Claude Code permission prompts to sponsors.")

    # Files and documents (agentseat/files, tools/files.py).
    simple_upload_max_mb: float = Field(
        default=4.0, gt=0, le=250, description="Files up to this size go up in one PUT; larger ones in a resumable "
        "upload session (driveitem-put-content allows 250 MB, but larger files are safer resumable).")
    file_deny_sites: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="SharePoint sites the agent never reads or writes: site URLs or site ids "
        "(comma-separated).")
    file_read_max_mb: float = Field(default=50.0, gt=0, le=1024, description="Largest file read_file downloads.")

    # Bot.
    bot_timeout_seconds: float = Field(default=60.0, gt=0)

    # The agent's memory and clock (issue 15: agentseat/record, audit, promises, clock).
    record_retention_days: float = Field(default=30.0, gt=0, description="Days the interaction record keeps.")
    timezone: str = Field(default="UTC", description="The sponsor's IANA time zone: promise due phrases and "
                          "the daily summary hour are read in it.")
    daily_summary_at: str = Field(default="", description="HH:MM local time of the daily summary; empty: off.")
    daily_summary_mail: bool = Field(default=False, description="Also mail the daily summary to the primary sponsor.")

    @field_validator("daily_summary_at")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        import re

        if value.strip() and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", value.strip()):
            raise ValueError(f"{value!r} is not a time of day as HH:MM (for example 17:30)")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (for example Europe/Berlin)") from None
        return value

    @field_validator("eventhub_transport", mode="before")
    @classmethod
    def _known_transport(cls, value: object) -> object:
        # A ConfigError, as the other event hub settings raise (eventhub/settings.py), so a typo reads as one
        # line with its fix rather than pydantic's literal_error.
        name = value.strip().lower() if isinstance(value, str) else value
        if name not in get_args(EventHubTransport):
            raise ConfigError(f"AGENTSEAT_EVENTHUB_TRANSPORT must be `amqp` or `websocket`, not {str(value)[:40]!r}",
                              hint="use `amqp` (AMQP over TLS, port 5671, the default) or `websocket` (AMQP over "
                              "WebSockets, port 443) where a firewall blocks 5671")
        return name

    @field_validator("sponsors", "allow", "file_deny_sites", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                return value  # JSON list; pydantic parses it
            return [item.strip() for item in stripped.split(",") if item.strip()]
        return value

    @field_validator("authority_host", "graph_url", "jwks_url")
    @classmethod
    def _must_be_https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"{value!r} is not an absolute URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.config_file is None:
            self.config_file = self.state_dir / "agentseat.env"
        if self.key_passphrase is None:
            self.key_passphrase = _passphrase_from_file(self.key_passphrase_file)
        return self

    @model_validator(mode="after")
    def _eventhub_settings(self) -> Settings:
        # Imported here: the eventhub package imports settings, not the other way round.
        from .eventhub.settings import check_eventhub_settings
        check_eventhub_settings(self)
        return self

    @cached_property
    def graph_host(self) -> str:
        """The only host that ever receives the agent's bearer token."""
        return urlsplit(self.graph_url).netloc.lower()

    @property
    def audience(self) -> str:
        return self.notification_audience or self.agent_id

    def missing_identity(self) -> list[str]:
        """Names of identity settings a runtime needs but does not have."""
        required = ("tenant_id", "blueprint_app_id", "agent_id", "agent_user_id", "cert_thumbprint")
        return [f"AGENTSEAT_{name.upper()}" for name in required if not getattr(self, name)]


def _passphrase_from_file(path: Path | None) -> SecretStr | None:
    """The key passphrase from `path`, else from the systemd credential when running under one."""
    if path is None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        path = Path(directory) / KEY_PASSPHRASE_CREDENTIAL if directory else None
        if path is None or not path.is_file():
            return None
    try:
        secret = path.read_text("utf-8").rstrip("\r\n")  # the newline an editor or `echo` adds
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the key passphrase file {path}: {getattr(exc, 'strerror', None) or exc}",
                          hint="fix AGENTSEAT_KEY_PASSPHRASE_FILE or the file's permissions") from None
    if not secret:
        raise ConfigError(f"the key passphrase file {path} is empty", hint="write the key's passphrase into it")
    return SecretStr(secret)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and env files, with explicit overrides."""
    return Settings(**overrides)  # type: ignore[arg-type]
