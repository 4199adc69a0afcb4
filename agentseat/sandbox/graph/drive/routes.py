"""The sandbox drives' route table, in the order aiohttp must match them."""

from __future__ import annotations

from aiohttp import web

from . import items, search, sessions, sharing, sites, upload, workbook


def routes() -> list[web.RouteDef]:
    """Search, upload and sharing routes before the item reads, whose `{item_id}` would match `invite`
    paths; the site-by-path form before `/sites/{site_id}`."""
    return [*sites.routes(), *search.routes(), *sessions.routes(), *upload.routes(), *sharing.routes(),
            *workbook.routes(), *items.routes()]
