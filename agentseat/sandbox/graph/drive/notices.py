"""Sharing notices: the mail a person gets when a file is shared with them and an invitation is sent.

driveitem-invite: "A sharing invitation provides permissions to the recipients and optionally sends
them an email with a sharing link" (`sendInvitation: true`), carrying the sharer's `message`
("a plain text formatted message that is included in the sharing invitation"). The sandbox
delivers it as mail from the sharer to each recipient's inbox (not into the sharer's sent items:
the service sent it, not them), through the same path as any mail, so mail subscribers are
notified. The link is the item's webUrl, which opens for the recipients (`/shares/{u!...}`).
The control API sends one too when asked (`POST /_sandbox/files` with `notify: true`).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import structlog

from ..mail import deliver_mail
from . import store

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem, MailMessage, User

log = structlog.get_logger(__name__)


def send(sb: SandboxState, item: DriveItem, sharer: User, recipients: list[User], message: str | None,
         url: str | None = None) -> list[MailMessage]:
    """One notice to the recipients: who shared what, their message, and the link that opens it."""
    if not recipients:
        return []
    link = url or store.web_url(sb, item)
    kind = "folder" if item.is_folder else "file"
    body = (f"<p>{html.escape(sharer.display_name)} shared the {kind} "
            f'<a href="{html.escape(link, quote=True)}">{html.escape(item.name)}</a> with you.</p>')
    if message:
        body += f"<blockquote>{html.escape(message)}</blockquote>"
    body += f'<p><a href="{html.escape(link, quote=True)}">Open</a></p>'
    subject = f'{sharer.display_name} shared "{item.name}" with you'
    sent = deliver_mail(sb, sharer.mail, [r.mail for r in recipients], subject, body, "html", save_to_sent=False)
    log.info("drive_sharing_notice_sent", item=item.id, recipients=len(recipients))
    return sent
