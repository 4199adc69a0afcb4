"""The HTTP client msal uses, with the CA bundle agentseat chose pinned against the environment.

Its own module so that importing the token chain (tokens.py) imports neither requests nor
msal: `serve` answers `initialize` first and mints its first token after.
"""

from __future__ import annotations

from typing import Any

import requests

from ..config import Settings


class PinnedSession(requests.Session):
    """A requests session whose `verify` the environment cannot override.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace `Session.verify`
    (`merge_environment_settings`), which would drop AGENTSEAT_CA_BUNDLE on hosts that
    export those variables; proxies from the environment still apply.
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        merged["verify"] = self.verify
        return merged


def msal_http_client(settings: Settings) -> requests.Session:
    """AGENTSEAT_CA_BUNDLE if set (the sandbox's CA), else system roots."""
    session = PinnedSession()
    session.verify = str(settings.ca_bundle) if settings.ca_bundle else True
    return session
