"""The sandbox tenant: its directory, chats, mailboxes and subscriptions.

Plain dataclasses held in memory and saved as one JSON file in the state dir,
so `agentseat sandbox` keeps its tenant across restarts (`--reset` starts
afresh). Route modules mutate it and call `mark_dirty()`; a flusher writes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TENANT_FILE = "tenant.json"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCE = "https://graph.microsoft.com"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"

#: Delegated scopes the agent runtime needs, including what subscriptions need
#: (Chat.Read for getAllMessages, Mail.Read for inbox subscriptions).
AGENT_SCOPES = (
    "User.Read",
    "User.ReadBasic.All",
    "Chat.Create",
    "Chat.ReadWrite",
    "ChatMessage.Send",
    "ChatMember.ReadWrite",
    "Mail.Read",
    "Mail.Send",
    # Team channels: user-list-joinedteams, channel-list, channel-list-messages (and the
    # channel-message subscription), channel-post-messages / chatmessage-post-replies.
    "Team.ReadBasic.All",
    "Channel.ReadBasic.All",
    "ChannelMessage.Read.All",
    "ChannelMessage.Send",
    "Files.ReadWrite",  # the agent's OneDrive: files it sends in chats (upload, invite, shares)
    # Files and documents: files others share (drive-sharedwithme: "can't access shared items ... without
    # one of the *.All permissions"), Microsoft Search over driveItems (search-query: Files.Read.All or
    # Sites.Read.All), and SharePoint sites and their libraries (site-get: Sites.Read.All or Sites.ReadWrite.All).
    "Files.ReadWrite.All",
    "Sites.ReadWrite.All",
)

#: App roles of the provisioner (entrabot-anchor §7.1).
PROVISIONER_ROLES = (
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "LicenseAssignment.ReadWrite.All",
    "Organization.Read.All",
    "User.ReadWrite.All",
    "AgentIdentityBlueprint.ReadWrite.All",
    "AgentIdentityBlueprintPrincipal.ReadWrite.All",  # agentidentityblueprintprincipal-post
    "AgentIdentity.ReadWrite.All",
    "AgentIdUser.ReadWrite.All",
)


AGENT_DISPLAY_NAME = "agentseat agent"
#: Microsoft 365 E3's SKU id: Teams-capable, with a mailbox.
TEAMS_SKU_ID = "05e9a617-0261-4cee-bb44-138d3ef5d965"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class KeyCredential:
    key_id: str
    sha1: str  # uppercase hex
    cert_der_b64: str
    start: float
    end: float
    display_name: str = ""


@dataclass
class App:
    """An application registration with its service principal folded in."""

    app_id: str
    object_id: str
    sp_object_id: str
    display_name: str
    kind: str  # "blueprint" | "agentIdentity" | "provisioner" | "application"
    key_credentials: list[KeyCredential] = field(default_factory=list)
    blueprint_app_id: str = ""  # for an agent identity: its parent blueprint
    sponsors: list[str] = field(default_factory=list)  # user object ids
    roles: list[str] = field(default_factory=list)  # application permissions granted
    has_principal: bool = True


@dataclass
class User:
    id: str
    upn: str
    display_name: str
    mail: str
    kind: str = "user"  # "user" | "agentUser"
    identity_parent_id: str = ""  # agent user: the Agent Identity's app id
    licenses: list[str] = field(default_factory=list)
    usage_location: str = ""
    account_enabled: bool = True


@dataclass
class Grant:
    """A delegated permission grant (oauth2PermissionGrant, consentType Principal)."""

    id: str
    client_app_id: str
    principal_id: str
    scope: str
    resource: str = GRAPH_APP_ID


@dataclass
class Chat:
    id: str
    chat_type: str  # "oneOnOne" | "group"
    member_ids: list[str]
    created: float
    topic: str | None = None
    last_updated: float = 0.0


@dataclass
class Reaction:
    """One person's reaction on a chat message (chatMessageReaction)."""

    reaction_type: str  # a legacy name (like, heart, ...) or unicode, as it was set
    user_id: str
    created: float


@dataclass
class ChatMessage:
    id: str
    chat_id: str
    from_id: str
    content: str
    content_type: str  # "text" | "html"
    created: float
    last_modified: float
    edited: float | None = None  # lastEditedDateTime
    deleted: float | None = None  # deletedDateTime (soft delete; the content is kept for undoSoftDelete)
    reactions: list[Reaction] = field(default_factory=list)
    mentions: list[dict[str, Any]] = field(default_factory=list)  # chatMessageMention JSON, as Graph returns it
    attachments: list[dict[str, Any]] = field(default_factory=list)  # chatMessageAttachment JSON
    #: chatMessageHostedContent: {"id", "contentType", "size", "blob"}; the bytes live in the blob store.
    hosted_contents: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Loaded from tenant.json, reactions arrive as dicts.
        self.reactions = [r if isinstance(r, Reaction) else Reaction(**r) for r in self.reactions]


# --- team channels -----------------------------------------------------------------------------------
@dataclass
class ChannelMessage(ChatMessage):
    """A post or a reply in a team channel; `chat_id` holds the channel id, as one thread store."""

    team_id: str = ""
    reply_to_id: str | None = None  # the root post's id for a reply; None for a root post


@dataclass
class Channel:
    id: str  # "19:{hex}@thread.tacv2"
    display_name: str
    created: float
    description: str | None = None
    membership_type: str = "standard"


@dataclass
class Team:
    id: str  # the team's group id (a GUID)
    display_name: str
    member_ids: list[str]
    created: float
    description: str | None = None
    channels: list[Channel] = field(default_factory=list)  # the General channel first

    def __post_init__(self) -> None:
        self.channels = [c if isinstance(c, Channel) else Channel(**c) for c in self.channels]

    def channel(self, channel_id: str) -> Channel | None:
        return next((c for c in self.channels if c.id == channel_id), None)


@dataclass
class MailMessage:
    id: str
    owner_id: str  # mailbox owner
    folder: str  # "inbox" | "sentitems"
    subject: str
    body: str
    body_type: str  # "text" | "html"
    from_address: str
    from_name: str
    to: list[str]
    received: float
    conversation_id: str
    internet_message_id: str
    is_read: bool = False
    deleted: bool = False
    change_seq: int = 0  # position in the mailbox's change log (for delta)


@dataclass
class Subscription:
    id: str
    app_id: str
    creator_id: str
    resource: str
    change_type: str
    notification_url: str
    expiration: float
    client_state: str | None = None
    lifecycle_url: str | None = None
    include_resource_data: bool = False
    encryption_certificate: str | None = None
    encryption_certificate_id: str | None = None
    latest_supported_tls_version: str = "v1_2"
    notification_url_app_id: str | None = None
    token_expires: float = 0.0  # the access token behind it; delivery pauses after this
    created: float = 0.0
    last_reauthorize: float = 0.0
    last_patch: float = 0.0


@dataclass
class DriveItem:
    """A file or folder in a user's OneDrive (driveItem); a file's bytes live in the blob store."""

    id: str
    drive_id: str
    owner_id: str
    name: str
    parent_id: str | None  # None for the drive's root
    path: str  # "/Microsoft Teams Chat Files/report.pdf"; "" for the root
    is_folder: bool
    created: float
    modified: float
    created_by: str
    modified_by: str
    etag_guid: str  # eTag is "{GUID},version" (the GUID is a reference attachment's id)
    version: int = 1
    size: int = 0
    mime_type: str = ""
    blob: str = ""
    #: Granted through invite: {"id", "user_id", "roles": ["read"|"write"], "email"}; sharing links:
    #: {"id", "kind": "link", "type", "scope", "roles", "url", "granted_ids", ...} (graph/drive/links.py).
    permissions: list[dict[str, Any]] = field(default_factory=list)
    #: Replies posted through Graph to a workbook's comments (graph/drive/workbook.py):
    #: {"id", "comment_id", "content", "contentType", "author"}; the comments themselves live in the file.
    comment_replies: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class UploadSession:
    """A resumable upload in progress (driveItem: createUploadSession); bytes so far in a part file."""

    id: str
    drive_id: str
    owner_id: str
    parent_path: str
    name: str
    conflict: str  # "replace" | "fail" | "rename"
    expiration: float
    received: int = 0
    total: int | None = None
    defer_commit: bool = False  # the last byte waits for a POST to the upload URL
    actor: str = ""  # who made the session: the file's createdBy / lastModifiedBy


@dataclass
class Site:
    """A SharePoint team site with its default document library (site resource; graph/drive/sites.py)."""

    guid: str  # the site collection id; the library's items carry it as their owner_id
    web_guid: str
    name: str  # the URL segment: /sites/{name}
    display_name: str
    member_ids: list[str]  # members read and write the library
    created: float
    description: str = ""
    everyone: bool = False  # the tenant's root site: every user of the tenant is in it


@dataclass
class Tenant:
    tenant_id: str
    domain: str
    users: dict[str, User] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)  # by app_id
    grants: dict[str, Grant] = field(default_factory=dict)
    chats: dict[str, Chat] = field(default_factory=dict)
    messages: dict[str, list[ChatMessage]] = field(default_factory=dict)  # chat id -> oldest first
    mail: dict[str, list[MailMessage]] = field(default_factory=dict)  # owner id -> oldest first
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    channel_messages: dict[str, list[ChannelMessage]] = field(default_factory=dict)  # channel id -> oldest first
    mail_seq: int = 0
    tokens_not_before: float = 0.0  # tokens issued before this instant are rejected
    roles: dict[str, str] = field(default_factory=dict)  # well-known names -> ids (agent, sponsor, ...)
    drive_items: dict[str, DriveItem] = field(default_factory=dict)  # OneDrive items of every user, by id
    upload_sessions: dict[str, UploadSession] = field(default_factory=dict)
    sites: dict[str, Site] = field(default_factory=dict)  # SharePoint sites, by site collection guid

    # --- lookups -----------------------------------------------------------------
    def user(self, ref: str) -> User | None:
        """Find a user by object id, UPN or mail (case-insensitive)."""
        if ref in self.users:
            return self.users[ref]
        low = ref.lower()
        for user in self.users.values():
            if user.upn.lower() == low or user.mail.lower() == low or user.id.lower() == low:
                return user
        return None

    def app(self, app_id: str) -> App | None:
        return self.apps.get(app_id)

    def app_by_object_id(self, object_id: str) -> App | None:
        for app in self.apps.values():
            if object_id in (app.object_id, app.sp_object_id):
                return app
        return None

    def one_on_one(self, a: str, b: str) -> Chat | None:
        pair = {a, b}
        for chat in self.chats.values():
            if chat.chat_type == "oneOnOne" and set(chat.member_ids) == pair:
                return chat
        return None

    def granted_scopes(self, client_app_id: str, principal_id: str) -> set[str]:
        scopes: set[str] = set()
        for grant in self.grants.values():
            if grant.client_app_id == client_app_id and grant.principal_id == principal_id:
                scopes.update(grant.scope.split())
        return scopes

    # --- persistence -------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tenant:
        apps = {
            k: App(**{**v, "key_credentials": [KeyCredential(**kc) for kc in v["key_credentials"]]})
            for k, v in data["apps"].items()
        }
        return cls(
            tenant_id=data["tenant_id"],
            domain=data["domain"],
            users={k: User(**v) for k, v in data["users"].items()},
            apps=apps,
            grants={k: Grant(**v) for k, v in data["grants"].items()},
            chats={k: Chat(**v) for k, v in data["chats"].items()},
            messages={k: [ChatMessage(**m) for m in v] for k, v in data["messages"].items()},
            mail={k: [MailMessage(**m) for m in v] for k, v in data["mail"].items()},
            subscriptions={k: Subscription(**v) for k, v in data["subscriptions"].items()},
            # Team channels came later: a tenant.json written before them has neither key.
            teams={k: Team(**v) for k, v in data.get("teams", {}).items()},
            channel_messages={k: [ChannelMessage(**m) for m in v] for k, v in data.get("channel_messages", {}).items()},
            mail_seq=data.get("mail_seq", 0),
            tokens_not_before=data.get("tokens_not_before", 0.0),
            roles=data.get("roles", {}),
            drive_items={k: DriveItem(**v) for k, v in data.get("drive_items", {}).items()},
            upload_sessions={k: UploadSession(**v) for k, v in data.get("upload_sessions", {}).items()},
            sites={k: Site(**v) for k, v in data.get("sites", {}).items()},
        )


def save_tenant(tenant: Tenant, directory: Path) -> None:
    """Write atomically so a crash never leaves half a tenant."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tenant-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(tenant.to_json(), fh)
        os.replace(tmp, directory / TENANT_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tenant(directory: Path) -> Tenant | None:
    path = directory / TENANT_FILE
    if not path.exists():
        return None
    return Tenant.from_json(json.loads(path.read_text()))


def demo_tenant() -> Tenant:
    """The demo organization: an agent (Blueprint, Agent Identity, Agent User), a
    sponsor, two colleagues, and a provisioner app for `agentseat setup`.

    The agent's identity objects exist but have no certificate and no consent
    yet: `agentseat setup` adds those, as it would in a real tenant where an
    administrator pre-created nothing.
    """
    tenant = Tenant(tenant_id=new_id(), domain="contoso.test")
    d = tenant.domain

    def add_user(key: str, upn: str, name: str, kind: str = "user") -> User:
        user = User(id=new_id(), upn=f"{upn}@{d}", display_name=name, mail=f"{upn}@{d}", kind=kind)
        tenant.users[user.id] = user
        tenant.roles[key] = user.id
        return user

    sponsor = add_user("sponsor", "ada", "Ada Lovelace")
    add_user("colleague1", "grace", "Grace Hopper")
    add_user("colleague2", "alan", "Alan Turing")

    provisioner = App(
        app_id=new_id(), object_id=new_id(), sp_object_id=new_id(), display_name="agentseat provisioner",
        kind="provisioner", roles=list(PROVISIONER_ROLES),
    )
    tenant.apps[provisioner.app_id] = provisioner
    tenant.roles["provisioner"] = provisioner.app_id
    graph = App(app_id=GRAPH_APP_ID, object_id=new_id(), sp_object_id=new_id(), display_name="Microsoft Graph",
                kind="application")
    tenant.apps[graph.app_id] = graph
    blueprint = App(
        app_id=new_id(), object_id=new_id(), sp_object_id=new_id(), display_name=AGENT_DISPLAY_NAME,
        kind="blueprint", sponsors=[sponsor.id],
    )
    identity = App(
        app_id=new_id(), object_id=new_id(), sp_object_id=new_id(), display_name=AGENT_DISPLAY_NAME,
        kind="agentIdentity", blueprint_app_id=blueprint.app_id, sponsors=[sponsor.id],
    )
    for app in (blueprint, identity):
        tenant.apps[app.app_id] = app
    tenant.roles["blueprint"] = blueprint.app_id
    tenant.roles["agent_identity"] = identity.app_id
    agent = add_user("agent_user", "agent", AGENT_DISPLAY_NAME, kind="agentUser")
    agent.identity_parent_id = identity.app_id
    agent.licenses = [TEAMS_SKU_ID]
    tenant.roles["secret_seed"] = secrets.token_hex(8)
    # A SharePoint team site whose library the sponsor and the agent share (graph/drive/sites.py).
    engineering = Site(guid=new_id(), web_guid=new_id(), name="Engineering", display_name="Engineering",
                       member_ids=[sponsor.id, agent.id], created=time.time())
    tenant.sites[engineering.guid] = engineering
    # The tenant's root site (`/sites/root`, at the SharePoint host's root URL), open to everyone.
    root = Site(guid=new_id(), web_guid=new_id(), name="", display_name="Communication site", member_ids=[],
                created=time.time(), everyone=True)
    tenant.sites[root.guid] = root
    return tenant
