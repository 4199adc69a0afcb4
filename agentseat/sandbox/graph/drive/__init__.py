"""The sandbox's OneDrive: per-user drives, uploads and sharing (store, resources, items, upload, sharing)."""

from __future__ import annotations

from aiohttp import web

from . import items, sharing, upload


def routes() -> list[web.RouteDef]:
    """Upload and sharing routes before the item reads, whose `{item_id}` would match `invite` paths."""
    return [*upload.routes(), *sharing.routes(), *items.routes()]
