"""Tunnels: the pyngrok adapter against a fake ngrok agent, static and loopback URLs, the factory.

The fake agent (`fake_ngrok.py`) is a real process that pyngrok starts and talks to
over its local HTTP API, so these tests exercise pyngrok and our adapter unchanged.
`anyio.fail_after` bounds are safety nets against hangs, not timing assertions.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.request
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


def _install_fake(directory: Path, record: Path, **env: str) -> Path:
    """Write an executable `ngrok` whose shebang is this interpreter."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "ngrok"
    settings = {"FAKE_NGROK_RECORD": str(record), **env}
    exe.write_text(
        f"#!{sys.executable}\n"
        "import os, runpy, sys\n"
        f"os.environ.update({settings!r})\n"
        f"sys.argv[0] = {str(FAKE_NGROK)!r}\n"
        f"runpy.run_path({str(FAKE_NGROK)!r}, run_name='__main__')\n"
    )
    exe.chmod(0o755)
    return exe


def _record(path: Path) -> dict:
    return json.loads(path.read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(autouse=True)
def _no_ambient_ngrok_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent reads NGROK_AUTHTOKEN itself; a developer's own token must not leak in.
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any attempt by pyngrok to install or download ngrok."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(str(args[0]) if args else "?")
        raise AssertionError("pyngrok tried to download ngrok")

    monkeypatch.setattr(installer, "install_ngrok", refuse)
    monkeypatch.setattr(installer, "_download_file", refuse)
    return attempts


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, Path]:
    record = tmp_path / "record.json"
    return _install_fake(tmp_path / "bin", record), record


async def test_start_returns_the_agents_https_url_forwarding_to_our_port(
    fake: tuple[Path, Path], downloads: list[str]
) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, TOKEN, check_interval=0.05)
    try:
        with anyio.fail_after(SAFETY):
            url = await tunnel.start(8765)
        assert URL_PATTERN.match(url)
        assert tunnel.public_url == url
        endpoints = _record(record)["endpoints"]
        assert [e["url"] for e in endpoints] == [url]
        assert endpoints[0]["upstream"]["url"] == "http://127.0.0.1:8765"
    finally:
        await tunnel.stop()
    assert downloads == []


async def test_authtoken_reaches_the_agent_but_not_its_command_line(fake: tuple[Path, Path]) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, TOKEN, check_interval=0.05)
    try:
        with anyio.fail_after(SAFETY):
            await tunnel.start(8765)
        seen = _record(record)
        assert seen["authtoken"] == TOKEN
        assert seen["authtoken_source"] == "config"
        assert TOKEN not in " ".join(seen["argv"])
        assert TOKEN not in repr(tunnel)
        config = Path(seen["config_path"])
        assert config.stat().st_mode & 0o077 == 0
    finally:
        await tunnel.stop()
    assert not config.exists(), "the private config holding the token outlives stop()"


async def test_own_config_file_is_used_and_kept(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    exe, record = fake
    own = tmp_path / "mine" / "ngrok.yml"
    tunnel = NgrokTunnel(exe, TOKEN, config_path=own, check_interval=0.05)
    try:
        with anyio.fail_after(SAFETY):
            await tunnel.start(8765)
        seen = _record(record)
        assert seen["config_path"] == str(own)
        assert seen["authtoken"] == TOKEN
    finally:
        await tunnel.stop()
    assert own.exists()


async def test_killing_the_agent_makes_wait_lost_return_and_a_restart_works(fake: tuple[Path, Path]) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, None, check_interval=0.05)
    try:
        with anyio.fail_after(SAFETY):
            first = await tunnel.start(8765)
            pid = _record(record)["pid"]
            os.kill(pid, signal.SIGKILL)
            await tunnel.wait_lost()
            await tunnel.stop()
            assert not _alive(pid)
            second = await tunnel.start(8765)
        assert URL_PATTERN.match(second) and second != first
        assert _alive(_record(record)["pid"])
    finally:
        await tunnel.stop()


async def test_endpoint_vanishing_from_the_agent_makes_wait_lost_return(fake: tuple[Path, Path]) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, None, check_interval=0.05)
    try:
        with anyio.fail_after(SAFETY):
            await tunnel.start(8765)
            seen = _record(record)
            name = seen["endpoints"][0]["name"]
            request = urllib.request.Request(f"http://{seen['api_addr']}/api/endpoints/{name}", method="DELETE")
            await anyio.to_thread.run_sync(urllib.request.urlopen, request)
            await tunnel.wait_lost()
        assert _alive(seen["pid"]), "the agent itself is still up; only the endpoint went"
    finally:
        await tunnel.stop()
    assert not _alive(seen["pid"])


async def test_stop_is_idempotent_kills_the_agent_and_ends_wait_lost(fake: tuple[Path, Path]) -> None:
    exe, record = fake
    tunnel = NgrokTunnel(exe, None, check_interval=0.05)
    returned = anyio.Event()

    async def watch() -> None:
        await tunnel.wait_lost()
        returned.set()

    with anyio.fail_after(SAFETY):
        await tunnel.start(8765)
        pid = _record(record)["pid"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            await tunnel.stop()
            await tunnel.stop()
        assert returned.is_set()
    assert not _alive(pid)
    assert tunnel.public_url is None
    await tunnel.stop()


async def test_missing_configured_binary_is_a_tunnel_error_and_nothing_is_downloaded(
    tmp_path: Path, downloads: list[str]
) -> None:
    tunnel = NgrokTunnel(tmp_path / "nowhere" / "ngrok", TOKEN)
    with pytest.raises(TunnelError) as caught:
        await tunnel.start(8765)
    assert "install" in caught.value.hint and "--mode poll" in caught.value.hint
    assert downloads == []
    assert not (tmp_path / "nowhere").exists()


async def test_no_ngrok_on_path_is_a_tunnel_error_and_nothing_is_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloads: list[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(TunnelError) as caught:
        await NgrokTunnel(None, None).start(8765)
    assert "--tunnel static" in caught.value.hint
    assert downloads == []


async def test_ngrok_on_path_is_used_when_no_path_is_configured(
    fake: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    exe, record = fake
    monkeypatch.setenv("PATH", str(exe.parent))
    tunnel = NgrokTunnel(None, None, check_interval=0.05)
    try:
        with anyio.fail_after(SAFETY):
            assert URL_PATTERN.match(await tunnel.start(8765))
        assert _record(record)["argv"][0] == "start"
    finally:
        await tunnel.stop()


async def test_plain_http_url_from_the_agent_is_refused_and_the_agent_killed(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    exe = _install_fake(tmp_path / "bin", record, FAKE_NGROK_SCHEME="http")
    tunnel = NgrokTunnel(exe, None, check_interval=0.05)
    with anyio.fail_after(SAFETY), pytest.raises(TunnelError, match="non-https"):
        await tunnel.start(8765)
    assert not _alive(_record(record)["pid"])
    assert tunnel.public_url is None


async def test_agent_refusing_to_run_without_authtoken_gives_an_authtoken_hint(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    exe = _install_fake(tmp_path / "bin", record, FAKE_NGROK_REQUIRE_AUTHTOKEN="1")
    with anyio.fail_after(SAFETY), pytest.raises(TunnelError) as caught:
        await NgrokTunnel(exe, None).start(8765)
    assert "AGENTSEAT_NGROK_AUTHTOKEN" in caught.value.hint
    assert not _alive(_record(record)["pid"])


# --- static and loopback ------------------------------------------------------


async def test_static_https_url_is_returned_unchanged() -> None:
    tunnel = StaticTunnel("https://agent.example.com/hooks")
    assert await tunnel.start(8765) == "https://agent.example.com/hooks"
    await tunnel.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://agent.example.com/hooks",
        "http://10.0.0.5:8080",
        "ftp://agent.example.com",
        "agent.example.com",
        "https://user:pw@agent.example.com",
        "https://agent.example.com:99999",
    ],
)
def test_static_url_graph_cannot_deliver_to_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StaticTunnel(url)
    assert "AGENTSEAT_PUBLIC_URL" in caught.value.hint


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443", "http://localhost:9000/x", "http://[::1]:8080"])
def test_static_plain_http_is_allowed_on_loopback(url: str) -> None:
    assert StaticTunnel(url).public_url == url


async def test_static_wait_lost_returns_only_after_stop() -> None:
    tunnel = StaticTunnel("https://agent.example.com")
    returned = anyio.Event()

    async def watch() -> None:
        await tunnel.wait_lost()
        returned.set()

    await tunnel.start(8765)
    with anyio.fail_after(SAFETY):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            assert not returned.is_set()
            await tunnel.stop()
    assert returned.is_set()


async def test_loopback_tunnel_serves_plain_http_on_the_given_port() -> None:
    tunnel = LoopbackTunnel()
    assert await tunnel.start(8765) == "http://127.0.0.1:8765"
    await tunnel.stop()
    assert tunnel.public_url is None
    with pytest.raises(ConfigError):
        LoopbackTunnel("192.168.1.10")


# --- factory ------------------------------------------------------------------


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_factory_none_means_no_tunnel() -> None:
    assert make_tunnel(_settings(tunnel="none")) is None


def test_factory_static_without_public_url_is_a_config_error_with_hint() -> None:
    with pytest.raises(ConfigError) as caught:
        make_tunnel(_settings(tunnel="static", public_url=None))
    assert "AGENTSEAT_PUBLIC_URL" in caught.value.hint


def test_factory_static_uses_the_public_url() -> None:
    tunnel = make_tunnel(_settings(tunnel="static", public_url="https://agent.example.com"))
    assert isinstance(tunnel, StaticTunnel) and isinstance(tunnel, Tunnel)
    assert tunnel.public_url == "https://agent.example.com"


async def test_factory_ngrok_honours_the_binary_path_and_authtoken_settings(fake: tuple[Path, Path]) -> None:
    exe, record = fake
    tunnel = make_tunnel(_settings(tunnel="ngrok", ngrok_path=exe, ngrok_authtoken=TOKEN))
    assert isinstance(tunnel, NgrokTunnel) and isinstance(tunnel, Tunnel)
    try:
        with anyio.fail_after(SAFETY):
            assert URL_PATTERN.match(await tunnel.start(8765))
        assert _record(record)["authtoken"] == TOKEN
    finally:
        await tunnel.stop()


def test_loopback_tunnel_is_a_tunnel() -> None:
    assert isinstance(LoopbackTunnel(), Tunnel)
