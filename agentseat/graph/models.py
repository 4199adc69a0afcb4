"""Pydantic models of Microsoft Graph JSON at agentseat's edge.

Owns the shape of what Graph sends and returns: field names, aliases and types.
It does not own trust (runtime/verify.py), decryption (runtime/crypto.py) or
HTTP (graph/client.py). Models ignore unknown fields so that Graph adding a
property never breaks parsing, and accept both camelCase (wire) and snake_case
(Python) names; they serialise with Graph's camelCase names.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChangeNotification",
    "ChangeNotificationCollection",
    "EncryptedContent",
    "GraphModel",
    "ResourceData",
]


class GraphModel(BaseModel):
    """Base of every Graph model: camelCase aliases on the wire, unknown fields ignored."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, extra="ignore")


# --- change notifications ----------------------------------------------------
# Source: learn.microsoft.com/graph/api/resources/changenotification,
# .../changenotificationcollection and .../changenotificationencryptedcontent.


class EncryptedContent(GraphModel):
    """`encryptedContent` of a rich notification (change-notifications-with-resource-data)."""

    data: str
    data_key: str = Field(alias="dataKey")
    # Required by the resource-data page, yet missing from the Teams example
    # (AMBIGUOUS); optional here so runtime/crypto.py rejects it with a reason.
    data_signature: str | None = Field(default=None, alias="dataSignature")
    encryption_certificate_id: str | None = Field(default=None, alias="encryptionCertificateId")
    encryption_certificate_thumbprint: str | None = Field(default=None, alias="encryptionCertificateThumbprint")


class ResourceData(GraphModel):
    """`resourceData`: identifies the changed resource (not its content)."""

    odata_type: str | None = Field(default=None, alias="@odata.type")
    odata_id: str | None = Field(default=None, alias="@odata.id")
    odata_etag: str | None = Field(default=None, alias="@odata.etag")
    id: str | None = None


class ChangeNotification(GraphModel):
    """One item of a notification POST: a change, or a lifecycle event.

    `change_type` (`created`, `updated`, `deleted`, `unknownFutureValue`) and
    `lifecycle_event` (`missed`, `subscriptionRemoved`, `reauthorizationRequired`)
    are mutually exclusive (changeNotification resource). Both stay plain strings
    so a value Graph adds later parses and is then ignored by the runtime.
    """

    subscription_id: str = Field(alias="subscriptionId")
    subscription_expiration_date_time: datetime = Field(alias="subscriptionExpirationDateTime")
    tenant_id: str = Field(alias="tenantId")
    client_state: str | None = Field(default=None, alias="clientState")
    change_type: str | None = Field(default=None, alias="changeType")
    lifecycle_event: str | None = Field(default=None, alias="lifecycleEvent")
    # Lifecycle notifications carry no resource (change-notifications-lifecycle-events).
    resource: str | None = None
    resource_data: ResourceData | None = Field(default=None, alias="resourceData")
    encrypted_content: EncryptedContent | None = Field(default=None, alias="encryptedContent")
    id: str | None = None

    @property
    def is_lifecycle(self) -> bool:
        return self.lifecycle_event is not None


class ChangeNotificationCollection(GraphModel):
    """The body of a notification POST.

    `validation_tokens` is present only for notifications with resource data;
    null there means Graph could not encrypt (changeNotificationCollection resource).
    """

    value: list[ChangeNotification]
    validation_tokens: list[str] | None = Field(default=None, alias="validationTokens")
