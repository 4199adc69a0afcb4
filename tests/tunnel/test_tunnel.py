"""Tunnels: the pyngrok adapter against a fake ngrok agent, static and loopback URLs, the factory.

The fake agent (`fake_ngrok.py`) is a real process that pyngrok starts and talks to over its
local HTTP API. `anyio.fail_after` bounds are safety nets against hangs, not timing assertions.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from pyngrok import installer

from agentseat.config import Settings
from agentseat.errors import ConfigError, TunnelError
from agentseat.tunnel import LoopbackTunnel, NgrokTunnel, StaticTunnel, Tunnel, make_tunnel

FAKE_NGROK = Path(__file__).with_name("fake_ngrok.py")
TOKEN = "2fAkEtOkEn_0123456789abcdefghijklmnop"
URL_PATTERN = re.compile(r"^https://[0-9a-f]+\.fake-ngrok\.test$")
SAFETY = 30  # seconds; only a bound against hangs
Fake = tuple[Path, Path]  # the fake agent executable and its record file


def _executable(directory: Path, body: str) -> Path:
    """An `ngrok` in `directory` run by this interpreter (a shebang written now gets its path right)."""
    directory.mkdir(parents=True, exist_ok=True)
    (exe := directory / "ngrok").write_text(f"#!{sys.executable}\n{body}")
    exe.chmod(0o755)
    return exe


def _install_fake(directory: Path, record: Path, **env: str) -> Path:
    env = dict(env, FAKE_NGROK_RECORD=str(record))
    fake = str(FAKE_NGROK)
    return _executable(directory, f"import os, runpy, sys\nos.environ.update({env!r})\nsys.argv[0] = {fake!r}\n"
                                  f"runpy.run_path({fake!r}, run_name='__main__')\n")


def _pyngrok_script(directory: Path) -> Path:
    """A harmless stand-in for the `ngrok` console script pyngrok installs (that one downloads ngrok)."""
    return _executable(directory, "# from pyngrok.ngrok import main\nraise SystemExit(3)\n")


def _record(path: Path) -> dict:  # what the fake agent saw
    return json.loads(path.read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
        return True
    except ProcessLookupError:
        return False


@asynccontextmanager
async def _running(tunnel: Tunnel, port: int = 8765) -> AsyncIterator[str]:
    """Start the tunnel, yield its URL, and always stop it."""
    try:
        with anyio.fail_after(SAFETY):
            url = await tunnel.start(port)
        yield url
    finally:
        await tunnel.stop()


async def _stop_ends_wait_lost(tunnel: Tunnel) -> None:
    """wait_lost() in a task stays blocked while healthy and returns on stop() (called twice)."""
    returned = anyio.Event()

    async def watch() -> None:
        await tunnel.wait_lost()
        returned.set()

    with anyio.fail_after(SAFETY):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            assert not returned.is_set()
            await tunnel.stop()
            await tunnel.stop()
    assert returned.is_set()


@pytest.fixture(autouse=True)
def _no_ambient_ngrok_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent reads NGROK_AUTHTOKEN itself; a developer's own token must not leak in.
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any attempt by pyngrok to install or download ngrok."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args))
        raise AssertionError("pyngrok tried to download ngrok")

    monkeypatch.setattr(installer, "install_ngrok", refuse)
    monkeypatch.setattr(installer, "_download_file", refuse)
    return attempts


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return _install_fake(tmp_path / "bin", tmp_path / "record.json"), tmp_path / "record.json"


async def test_start_returns_the_agents_https_url_forwarding_to_our_port(fake: Fake, downloads: list[str]) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, TOKEN, check_interval=0.05)
    async with _running(tunnel) as url:
        assert URL_PATTERN.match(url)
        assert tunnel.public_url == url
        endpoints = _record(record)["endpoints"]
        assert [e["url"] for e in endpoints] == [url]
        assert endpoints[0]["upstream"]["url"] == "http://127.0.0.1:8765"
    assert downloads == []


async def test_authtoken_reaches_the_agent_but_not_its_command_line(fake: Fake) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, TOKEN, check_interval=0.05)
    async with _running(tunnel):
        seen = _record(record)
        assert seen["authtoken"] == TOKEN
        assert seen["authtoken_source"] == "config"
        assert TOKEN not in " ".join(seen["argv"])
        assert TOKEN not in repr(tunnel)
        assert (config := Path(seen["config_path"])).stat().st_mode & 0o077 == 0, "config readable by others"
    assert not config.exists(), "the private config holding the token outlives stop()"


async def test_own_config_file_is_used_and_kept(tmp_path: Path, fake: Fake) -> None:
    exe, record = fake
    own = tmp_path / "mine" / "ngrok.yml"
    async with _running(NgrokTunnel(exe, TOKEN, config_path=own, check_interval=0.05)):
        seen = _record(record)
        assert seen["config_path"] == str(own)
        assert seen["authtoken"] == TOKEN
    assert own.exists()


@pytest.mark.parametrize("own_config", [False, True], ids=["generated config", "own config file"])
async def test_the_endpoint_starts_with_request_inspection_off(tmp_path: Path, fake: Fake, own_config: bool) -> None:
    # With inspection on, ngrok's local inspector keeps each Graph POST (clientState and a live
    # validation token) for any local process to read and replay.
    exe, record = fake
    config = tmp_path / "mine" / "ngrok.yml" if own_config else None
    async with _running(NgrokTunnel(exe, TOKEN, config_path=config, check_interval=0.05)) as url:
        endpoints = _record(record)["endpoints"]
        assert [(e["url"], e["inspect"]) for e in endpoints] == [(url, False)]


async def test_killing_the_agent_makes_wait_lost_return_and_a_restart_works(fake: Fake) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, None, check_interval=0.05)
    async with _running(tunnel) as first:
        pid = _record(record)["pid"]
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(SAFETY):
            await tunnel.wait_lost()
            await tunnel.stop()
            assert not _alive(pid)
            second = await tunnel.start(8765)
        assert URL_PATTERN.match(second) and second != first
        assert _alive(_record(record)["pid"])


async def test_endpoint_vanishing_from_the_agent_makes_wait_lost_return(fake: Fake) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, None, check_interval=0.05)
    async with _running(tunnel):
        seen = _record(record)
        name = seen["endpoints"][0]["name"]
        request = urllib.request.Request(f"http://{seen['api_addr']}/api/endpoints/{name}", method="DELETE")
        with anyio.fail_after(SAFETY):
            await anyio.to_thread.run_sync(urllib.request.urlopen, request)
            await tunnel.wait_lost()
        assert _alive(seen["pid"]), "the agent itself is still up; only the endpoint went"
    assert not _alive(seen["pid"])


async def test_stop_is_idempotent_kills_the_agent_and_ends_wait_lost(fake: Fake) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, None, check_interval=0.05)
    with anyio.fail_after(SAFETY):
        await tunnel.start(8765)
    pid = _record(record)["pid"]
    await _stop_ends_wait_lost(tunnel)
    assert not _alive(pid)
    assert tunnel.public_url is None


async def test_missing_binary_is_a_tunnel_error_with_hint_and_nothing_is_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloads: list[str]
) -> None:
    script = _pyngrok_script(tmp_path / "shim")
    monkeypatch.setenv("PATH", str(script.parent))  # only pyngrok's script: no agent on PATH
    cases = [(tmp_path / "nowhere" / "ngrok", "no executable"), (script, "pyngrok"), (None, "no ngrok agent on PATH")]
    for configured, message in cases:
        with pytest.raises(TunnelError) as caught:
            await NgrokTunnel(configured, TOKEN).start(8765)
        assert message in caught.value.message
        for advice in ("install", "AGENTSEAT_NGROK_PATH", "--tunnel static", "--mode poll"):
            assert advice in caught.value.hint
    assert downloads == []


async def test_first_real_ngrok_on_path_is_used_when_no_path_is_configured(
    tmp_path: Path, fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe, record = fake
    shim = _pyngrok_script(tmp_path / "shim")
    monkeypatch.setenv("PATH", os.pathsep.join([str(shim.parent), str(exe.parent)]))  # the script comes first
    async with _running(NgrokTunnel(None, None, check_interval=0.05)) as url:
        assert URL_PATTERN.match(url)
        assert _record(record)["argv"][0] == "start"


AGENT_FAILURES = {
    "plain_http_url_is_refused": ({"FAKE_NGROK_SCHEME": "http"}, "non-https"),
    "missing_authtoken_gets_a_hint": ({"FAKE_NGROK_REQUIRE_AUTHTOKEN": "1"}, "AGENTSEAT_NGROK_AUTHTOKEN"),
}


@pytest.mark.parametrize(("env", "expected"), AGENT_FAILURES.values(), ids=AGENT_FAILURES.keys())
async def test_agent_failure_leaves_no_agent_and_is_a_tunnel_error(tmp_path: Path, env: dict, expected: str) -> None:
    record = tmp_path / "record.json"
    tunnel = NgrokTunnel(_install_fake(tmp_path / "bin", record, **env), None)
    with anyio.fail_after(SAFETY), pytest.raises(TunnelError) as caught:
        await tunnel.start(8765)
    assert expected in str(caught.value)
    assert not _alive(_record(record)["pid"])
    assert tunnel.public_url is None


# --- static and loopback ------------------------------------------------------


REFUSED = ["http://agent.example.com/hooks", "http://10.0.0.5:8080", "ftp://agent.example.com", "agent.example.com",
           "https://user:pw@agent.example.com", "https://agent.example.com:99999", "https://agent.example.com/#x"]
ACCEPTED = ["https://agent.example.com/hooks", "http://127.0.0.1:8443", "http://localhost:9000/x", "http://[::1]:8080"]


@pytest.mark.parametrize("url", REFUSED)
def test_static_url_graph_cannot_deliver_to_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StaticTunnel(url)
    assert "AGENTSEAT_PUBLIC_URL" in caught.value.hint


@pytest.mark.parametrize("url", ACCEPTED)
async def test_static_https_or_loopback_http_url_is_returned_unchanged(url: str) -> None:
    assert await StaticTunnel(url).start(8765) == url


async def test_static_wait_lost_returns_only_after_stop() -> None:
    tunnel = StaticTunnel("https://agent.example.com")
    await tunnel.start(8765)
    await _stop_ends_wait_lost(tunnel)


async def test_loopback_tunnel_serves_plain_http_on_the_given_port() -> None:
    tunnel = LoopbackTunnel()
    assert isinstance(tunnel, Tunnel)
    assert await tunnel.start(8765) == "http://127.0.0.1:8765"
    await tunnel.stop()
    assert tunnel.public_url is None
    with pytest.raises(ConfigError):
        LoopbackTunnel("192.168.1.10")


# --- factory ------------------------------------------------------------------


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_factory_none_means_no_tunnel_and_static_means_the_public_url() -> None:
    assert make_tunnel(_settings(tunnel="none")) is None
    tunnel = make_tunnel(_settings(tunnel="static", public_url="https://agent.example.com"))
    assert isinstance(tunnel, StaticTunnel) and isinstance(tunnel, Tunnel)
    assert tunnel.public_url == "https://agent.example.com"


def test_factory_static_without_public_url_is_a_config_error_with_hint() -> None:
    with pytest.raises(ConfigError) as caught:
        make_tunnel(_settings(tunnel="static", public_url=None))
    assert "AGENTSEAT_PUBLIC_URL" in caught.value.hint


async def test_factory_ngrok_honours_the_binary_path_and_authtoken_settings(fake: Fake) -> None:
    exe, record = fake
    tunnel = make_tunnel(_settings(tunnel="ngrok", ngrok_path=exe, ngrok_authtoken=TOKEN))
    assert isinstance(tunnel, NgrokTunnel) and isinstance(tunnel, Tunnel)
    async with _running(tunnel) as url:
        assert URL_PATTERN.match(url)
        assert _record(record)["authtoken"] == TOKEN
