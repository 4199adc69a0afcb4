"""The settings file `agentseat setup` writes (`AGENTSEAT_CONFIG_FILE`, default `<state_dir>/agentseat.env`).

It owns reading and rewriting that dotenv file: values are updated in place, unrelated lines and
comments are kept, and the file is replaced atomically with mode 0600 (it names the agent's
identity, which is not a secret, but nobody else needs to read it). It also loads settings with the
file in effect when the CLI was pointed at another env file. It holds no secret and writes none.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import structlog

from ..config import Settings
from ..errors import ConfigError

log = structlog.get_logger(__name__)

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
# Values that dotenv reads back unchanged without quotes.
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@,+=~-]*$")


def _quote(value: str) -> str:
    if _PLAIN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        inner = raw[1:-1]
        return inner.replace('\\"', '"').replace("\\\\", "\\") if raw[0] == '"' else inner
    return raw.split(" #", 1)[0].strip()


def read_env_file(path: Path) -> dict[str, str]:
    """KEY -> value of a dotenv file (the last assignment wins); {} if it does not exist."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="check the file's permissions") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        if (match := _LINE.match(line)) and not line.lstrip().startswith("#"):
            values[match.group(1)] = _unquote(match.group(2))
    return values


def update_env_file(path: Path, updates: Mapping[str, str | None]) -> bool:
    """Set (or, for None, remove) keys in a dotenv file, keeping every other line.

    Returns whether the file changed. The write is atomic (temp file in the same
    directory, fsync, rename), so a crash leaves the old file or the new one.
    """
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        lines = ["# Written by `agentseat setup`; other lines in this file are kept."]
    pending = dict(updates)
    out: list[str] = []
    for line in lines:
        match = _LINE.match(line)
        if match and not line.lstrip().startswith("#") and match.group(1) in updates:
            key = match.group(1)
            if key not in pending:
                continue  # a duplicate assignment of a key already written
            value = pending.pop(key)
            if value is not None:
                out.append(f"{key}={_quote(value)}")
            continue
        out.append(line)
    out += [f"{key}={_quote(value)}" for key, value in pending.items() if value is not None]
    if path.exists() and out == lines:
        return False
    _write_atomic(path, ("\n".join(out) + "\n").encode("utf-8"))
    log.info("config_file_written", path=str(path), keys=len(updates))
    return True


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file 0600 beside the target, so the rename is atomic and private.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}", hint="check the directory's permissions") from None


def with_config_file(settings: Settings, env_file: Path | None, overrides: Mapping[str, object]) -> Settings:
    """`settings` again, with the setup-written config file read under `env_file`.

    `--env-file` replaces pydantic-settings' env files, and the default list is computed
    when config.py is imported; so a command run with `--env-file sandbox.env` would not
    see what `agentseat setup` wrote. Explicit files win over the config file, and the
    environment wins over both, as in `Settings`' own order.
    """
    config_file = settings.config_file
    if config_file is None or not config_file.exists():
        return settings
    files = (str(config_file), str(env_file) if env_file is not None else ".env")
    return Settings(_env_file=files, **dict(overrides))  # type: ignore[arg-type]
