"""Placeholder: routes are added by the engineer who owns this module."""

from __future__ import annotations

from aiohttp import web


def routes() -> list[web.RouteDef]:
    return []
