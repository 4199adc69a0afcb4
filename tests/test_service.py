"""`agentseat bot --install-service`: the systemd user unit, its passphrase file, and the runtime
reading that file. Units are written under a temporary XDG_CONFIG_HOME, never the real one;
the bot is never started, since no systemd user manager runs here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from agentseat.bot import handler_env
from agentseat.cli import main
from agentseat.config import KEY_PASSPHRASE_CREDENTIAL, Settings
from agentseat.errors import ConfigError
from agentseat.runtime.inbox import Event
from agentseat.sandbox.app import Sandbox
from agentseat.service import BotCommandLine, render_unit, service_spec
from tests.runtime.test_runtime import upn
from tests.test_bot import _log_events, wait_agent_messages
from tests.tools._mcp import post_dm

PASSPHRASE = "service-test-passphrase"


# --- reading a unit back as systemd does --------------------------------------------------------------
_C_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def systemd_words(value: str) -> list[str]:
    """Split a setting's value as systemd does for ExecStart= and Environment=: specifiers
    first (only `%%` here), then words, double quotes and C escapes."""
    value = value.replace("%%", "%")
    words, i = [], 0
    while i < len(value):
        if value[i].isspace():
            i += 1
            continue
        word = []
        while i < len(value) and not value[i].isspace():
            if value[i] == '"':
                i += 1
                while value[i] != '"':
                    if value[i] == "\\":
                        if value[i + 1] == "x":
                            word.append(chr(int(value[i + 2:i + 4], 16)))
                            i += 4
                            continue
                        word.append(_C_UNESCAPES[value[i + 1]])
                        i += 2
                        continue
                    word.append(value[i])
                    i += 1
                i += 1
            else:
                word.append(value[i])
                i += 1
        words.append("".join(word))
    return words


def settings_of(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def exec_start(unit: str) -> list[str]:
    (line,) = settings_of(unit)["ExecStart"]
    return [word.replace("$$", "$") for word in systemd_words(line)]


def handler(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "reply 100%.sh"
    path.write_text("#!/bin/sh\ncat >/dev/null\necho ok\n")
    path.chmod(0o755)
    return path


# --- the unit's text -----------------------------------------------------------------------------------
def test_unit_runs_the_same_bot_command_with_absolute_paths_escaped_for_systemd(tmp_path: Path) -> None:
    cwd = tmp_path / "work dir 50%"
    script = handler(cwd / "handlers")
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config 1%"),
               "AGENTSEAT_MODE": "poll", "AGENTSEAT_PUBLIC_URL": "https://x.example/a%20b",
               "AGENTSEAT_KEY_PASSPHRASE": PASSPHRASE, "AGENTSEAT_NGROK_AUTHTOKEN": "tok-secret",
               "AGENTSEAT_STATE_DIR": "/elsewhere", "UNRELATED": "1"}
    settings = Settings(_env_file=None, state_dir=Path("state $HOME"))  # type: ignore[call-arg]
    command = BotCommandLine(exec_line="'handlers/reply 100%.sh' --greeting \"hi $USER\"", allow=["grace@contoso.com"],
                             timeout=5.0, tunnel="static", public_url="https://bot.example/hook",
                             env_file=Path("my env/sandbox.env"), verbose=True)

    spec, left_out = service_spec(command, settings, environ, python="/opt/py env/bin/python", cwd=cwd)
    unit = render_unit(spec)

    assert exec_start(unit) == [
        "/opt/py env/bin/python", "-m", "agentseat.cli", "--state-dir", f"{cwd}/state $HOME",
        "--env-file", f"{cwd}/my env/sandbox.env", "-v", "bot",
        "--exec", f"'{script}' --greeting 'hi $USER'", "--allow", "grace@contoso.com", "--timeout", "5.0",
        "--tunnel", "static", "--public-url", "https://bot.example/hook"]
    found = settings_of(unit)
    assert found["WorkingDirectory"] == [str(cwd).replace("%", "%%")]
    assert found["LoadCredential"] == [f"{KEY_PASSPHRASE_CREDENTIAL}:{tmp_path}/config 1%%/agentseat/key-passphrase"]
    environment = dict(w.split("=", 1) for line in found["Environment"] for w in systemd_words(line))
    assert environment == {"AGENTSEAT_MODE": "poll", "AGENTSEAT_PUBLIC_URL": "https://x.example/a%20b",
                           "PATH": "/usr/bin:/bin"}
    assert sorted(left_out) == ["AGENTSEAT_KEY_PASSPHRASE", "AGENTSEAT_NGROK_AUTHTOKEN"]
    assert PASSPHRASE not in unit and "tok-secret" not in unit
    for line in ("Restart=on-failure", "RestartSec=30", "StartLimitBurst=10", "StartLimitIntervalSec=900",
                 "RestartPreventExitStatus=77 78", "StandardOutput=journal", "StandardError=journal",
                 "SyslogIdentifier=agentseat-bot", "WantedBy=default.target"):
        assert line in unit.splitlines()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    cwd = tmp_path / "a b %d"
    handler(cwd)
    settings = Settings(_env_file=None, state_dir=tmp_path / "st\"ate")  # type: ignore[call-arg]
    spec, _ = service_spec(BotCommandLine(exec_line="'reply 100%.sh' ';' $x"), settings,
                           {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, python=sys.executable, cwd=cwd)
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    (unit_dir / "agentseat-bot.service").write_text(render_unit(spec))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(["systemd-analyze", "--user", "verify", str(unit_dir / "agentseat-bot.service")],
                          capture_output=True, text=True, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_path_systemd_cannot_hold_is_refused(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, state_dir=tmp_path / "state")  # type: ignore[call-arg]
    spec, _ = service_spec(BotCommandLine(exec_line="/bin/cat"), settings, {"HOME": str(tmp_path)},
                           python=sys.executable, cwd=tmp_path / "ends with a backslash\\")
    with pytest.raises(ConfigError, match="cannot be written in a systemd unit"):
        render_unit(spec)


# --- the command -----------------------------------------------------------------------------------------
def test_print_shows_the_unit_and_writes_nothing(tmp_path: Path) -> None:
    script = handler(tmp_path)
    config = tmp_path / "config"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(config)}
    env.pop("AGENTSEAT_KEY_PASSPHRASE", None)
    done = subprocess.run([sys.executable, "-m", "agentseat.cli", "--state-dir", "state", "bot", "--exec",
                           f"'{script}'", "--mode", "poll", "--install-service", "--print"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0, done.stderr
    assert exec_start(done.stdout) == [sys.executable, "-m", "agentseat.cli", "--state-dir", f"{tmp_path}/state",
                                       "bot", "--exec", f"'{script}'", "--mode", "poll"]
    assert not config.exists()


def test_print_and_force_need_install_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--state-dir", str(tmp_path), "bot", "--exec", "/bin/cat", "--print"]) == 1
    assert "go with --install-service" in capsys.readouterr().err


def test_without_a_passphrase_or_a_terminal_it_says_how_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(config)}
    env.pop("AGENTSEAT_KEY_PASSPHRASE", None)
    done = subprocess.run([sys.executable, "-m", "agentseat.cli", "--state-dir", str(tmp_path / "state"), "bot",
                           "--exec", "/bin/cat", "--install-service"],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 78, done.stderr
    assert "no key passphrase for the service" in done.stderr and "hint:" in done.stderr
    assert "AGENTSEAT_KEY_PASSPHRASE" in done.stderr and not config.exists()


@pytest.fixture
def agent(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An agent set up on the sandbox; the global options that name it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AGENTSEAT_KEY_PASSPHRASE", PASSPHRASE)
    options = ["--env-file", str(sandbox.env_path), "--state-dir", str(tmp_path / "state")]
    assert main([*options, "setup"]) == 0
    return options


def test_install_writes_the_unit_and_a_0600_passphrase_file_the_runtime_reads(
        agent: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    script = handler(tmp_path)
    capsys.readouterr()
    code = main([*agent, "bot", "--exec", f"'{script}'", "--install-service"])
    out, err = capsys.readouterr()
    assert code == 0, err
    unit_file = tmp_path / "config" / "systemd" / "user" / "agentseat-bot.service"
    credential = tmp_path / "config" / "agentseat" / "key-passphrase"
    unit = unit_file.read_text()
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600 and credential.read_text() == PASSPHRASE
    assert PASSPHRASE not in unit and f"LoadCredential=agentseat-key-passphrase:{credential}" in unit
    assert "--env-file" in exec_start(unit) and str(script) in exec_start(unit)[-1]
    assert "systemctl --user daemon-reload && systemctl --user enable --now agentseat-bot" in out
    assert "journalctl --user -u agentseat-bot -f" in out and "loginctl enable-linger $USER" in out

    # As systemd runs it: no passphrase in the environment, the credential in $CREDENTIALS_DIRECTORY.
    monkeypatch.delenv("AGENTSEAT_KEY_PASSPHRASE")
    credentials_directory = tmp_path / "credentials"
    credentials_directory.mkdir(mode=0o700)
    shutil.copy(credential, credentials_directory / KEY_PASSPHRASE_CREDENTIAL)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials_directory))
    assert main([*agent, "doctor"]) == 0
    assert re.search(r"^✓ key: ", capsys.readouterr().out, re.M)

    # And from a file named by AGENTSEAT_KEY_PASSPHRASE_FILE, for a service manager of another kind.
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    monkeypatch.setenv("AGENTSEAT_KEY_PASSPHRASE_FILE", str(credential))
    assert main([*agent, "doctor"]) == 0
    assert re.search(r"^✓ key: ", capsys.readouterr().out, re.M)


def test_install_refuses_to_replace_a_different_unit_without_force(
        agent: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit_file = tmp_path / "config" / "systemd" / "user" / "agentseat-bot.service"
    assert main([*agent, "bot", "--exec", "/bin/cat", "--install-service"]) == 0
    first = unit_file.read_text()
    capsys.readouterr()
    assert main([*agent, "bot", "--exec", "/bin/cat", "--install-service"]) == 0
    assert capsys.readouterr().out.startswith("unchanged: ")

    assert main([*agent, "bot", "--exec", "/bin/cat", "--allow", "*", "--install-service"]) == 78
    assert "already exists and says something else" in capsys.readouterr().err
    assert unit_file.read_text() == first

    assert main([*agent, "bot", "--exec", "/bin/cat", "--allow", "*", "--install-service", "--force"]) == 0
    assert capsys.readouterr().out.startswith("replaced ")
    assert exec_start(unit_file.read_text())[-2:] == ["--allow", "*"]


def test_a_passphrase_that_does_not_open_the_key_is_refused_before_anything_is_written(
        agent: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AGENTSEAT_KEY_PASSPHRASE", "not-the-passphrase")
    assert main([*agent, "bot", "--exec", "/bin/cat", "--install-service"]) == 77
    assert "does not open the agent's key" in capsys.readouterr().err
    assert not (tmp_path / "config").exists()


def test_the_passphrase_file_must_exist_and_hold_something(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSEAT_KEY_PASSPHRASE", raising=False)
    with pytest.raises(ConfigError, match="cannot read the key passphrase file"):
        Settings(_env_file=None, key_passphrase_file=tmp_path / "missing")  # type: ignore[call-arg]
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        Settings(_env_file=None, key_passphrase_file=tmp_path / "empty")  # type: ignore[call-arg]
    (tmp_path / "file").write_text("from a file\n")
    settings = Settings(_env_file=None, key_passphrase_file=tmp_path / "file")  # type: ignore[call-arg]
    assert settings.key_passphrase is not None and settings.key_passphrase.get_secret_value() == "from a file"


def test_the_handler_does_not_inherit_the_credentials_directory() -> None:
    event = Event.teams(chat_id="c", message_id="m", sender_id="u", sender_upn="", sender_name="", trust="sponsor",
                        text="t", source="poll", created_at="2026-01-01T00:00:00Z")
    env = handler_env(event, {"CREDENTIALS_DIRECTORY": "/run/user/1000/credentials/agentseat-bot.service",
                              "AGENTSEAT_KEY_PASSPHRASE_FILE": "/x", "HOME": "/home/a"})
    assert "CREDENTIALS_DIRECTORY" not in env and "AGENTSEAT_KEY_PASSPHRASE_FILE" not in env and env["HOME"] == "/home/a"


async def test_the_unit_command_run_as_systemd_would_answers_a_message(
        sandbox: Sandbox, agent: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit's ExecStart, in its WorkingDirectory, with only its Environment= and the passphrase
    in $CREDENTIALS_DIRECTORY, as the user manager starts it: the bot starts and replies."""
    monkeypatch.setenv("AGENTSEAT_LOG_FORMAT", "json")  # a setting from the environment, kept in the unit
    workdir = tmp_path / "bot home 100%"
    handler(workdir)
    monkeypatch.chdir(workdir)
    assert main([*agent, "bot", "--exec", "'./reply 100%.sh'", "--mode", "webhook", "--tunnel", "loopback",
                 "--install-service"]) == 0
    unit = (tmp_path / "config" / "systemd" / "user" / "agentseat-bot.service").read_text()
    found = settings_of(unit)
    environment = dict(w.split("=", 1) for line in found["Environment"] for w in systemd_words(line))
    assert environment["AGENTSEAT_LOG_FORMAT"] == "json"
    credentials = tmp_path / "run" / "credentials"
    credentials.mkdir(parents=True, mode=0o700)
    shutil.copy(found["LoadCredential"][0].split(":", 1)[1].replace("%%", "%"), credentials / KEY_PASSPHRASE_CREDENTIAL)
    child_env = {**environment, "HOME": str(tmp_path), "CREDENTIALS_DIRECTORY": str(credentials),
                 "PYTHON_KEYRING_BACKEND": os.environ["PYTHON_KEYRING_BACKEND"]}
    log_path = tmp_path / "journal.log"
    monkeypatch.chdir(tmp_path)
    with log_path.open("w") as journal:
        process = await anyio.open_process(exec_start(unit), env=child_env, stdout=journal, stderr=journal,
                                           cwd=found["WorkingDirectory"][0].replace("%%", "%"))
        try:
            with anyio.fail_after(60):
                while not {"bot_ready", "subscription_created"} <= {e.get("event") for e in _log_events(log_path)}:
                    assert process.returncode is None, log_path.read_text()
                    await anyio.sleep(0.05)
            posted = await post_dm(sandbox, upn(sandbox, "sponsor"), upn(sandbox, "agent_user"), "are you there?")
            [reply] = await wait_agent_messages(sandbox, posted["chat_id"], 1)
            assert reply["text"] == "ok"
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await process.wait() == 0, log_path.read_text()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
    assert PASSPHRASE not in log_path.read_text()
