"""The systemd user unit that runs `agentseat bot`: where it lives and what it says.

Pure text: it renders a unit from a `ServiceSpec` and escapes every value the way systemd
reads it back. Writing files, the passphrase and the CLI's words live in `install.py`.

Escaping (systemd.unit(5) "Specifiers", systemd.service(5) "Command lines", systemd.exec(5)
"Environment="): every setting expands specifiers, so a literal `%` is `%%`; ExecStart= also
expands `$VAR`, so a literal `$` is `$$`; ExecStart= and Environment= split words like a
shell and undo C escapes inside double quotes. WorkingDirectory= and LoadCredential='s path
are taken as the rest of the line, unquoted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import KEY_PASSPHRASE_CREDENTIAL
from ..errors import ConfigError

UNIT_NAME = "agentseat-bot.service"
SYSLOG_IDENTIFIER = "agentseat-bot"
CREDENTIAL_FILE_NAME = "key-passphrase"

#: Restart after a failure, but give up (and show it in `systemctl --user status`) when
#: starts keep failing: at most START_LIMIT_BURST starts in START_LIMIT_INTERVAL seconds.
RESTART_SECONDS = 30
START_LIMIT_INTERVAL = 900
START_LIMIT_BURST = 10
#: Exit codes a restart cannot fix: settings (ConfigError, 78) and the key (KeyStoreError, 77).
NO_RESTART_EXIT_CODES = (77, 78)
#: The bot shields a reply in flight from shutdown for up to 20 s (bot.FINISH_BOUND).
STOP_TIMEOUT_SECONDS = 30


def config_home(environ: Mapping[str, str]) -> Path:
    """$XDG_CONFIG_HOME, or ~/.config (the XDG base directory spec ignores a relative value)."""
    value = environ.get("XDG_CONFIG_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".config"


def unit_path(environ: Mapping[str, str]) -> Path:
    """Where systemd's user manager looks for the user's own units."""
    return config_home(environ) / "systemd" / "user" / UNIT_NAME


def credential_path(environ: Mapping[str, str]) -> Path:
    return config_home(environ) / "agentseat" / CREDENTIAL_FILE_NAME


@dataclass(frozen=True)
class ServiceSpec:
    """What the unit runs: an absolute command line, where, and with which environment."""

    argv: Sequence[str]
    working_directory: Path
    credential_file: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    description: str = "agentseat headless bot"


def render_unit(spec: ServiceSpec) -> str:
    """The unit file's text. The passphrase is never in it: only the path of its 0600 file."""
    if not spec.argv or not os.path.isabs(spec.argv[0]):
        raise ConfigError("the service's command must start with an absolute path", hint="report this as a bug")
    environment = [f"Environment={quote_word(f'{k}={v}', dollar=False)}" for k, v in spec.environment.items()]
    lines = [
        "# Written by `agentseat bot --install-service`. To change it, run that again (with --force).",
        "[Unit]",
        f"Description={_line_value(spec.description)}",
        f"StartLimitIntervalSec={START_LIMIT_INTERVAL}",
        f"StartLimitBurst={START_LIMIT_BURST}",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={path_value(spec.working_directory)}",
        f"ExecStart={exec_line(spec.argv)}",
        *environment,
        # systemd copies the file to $CREDENTIALS_DIRECTORY/agentseat-key-passphrase for this
        # service alone (systemd.exec(5) "Credentials"); agentseat reads it there (config.py).
        f"LoadCredential={KEY_PASSPHRASE_CREDENTIAL}:{path_value(spec.credential_file)}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SECONDS}",
        f"RestartPreventExitStatus={' '.join(str(code) for code in NO_RESTART_EXIT_CODES)}",
        f"TimeoutStopSec={STOP_TIMEOUT_SECONDS}",
        "StandardOutput=journal",
        "StandardError=journal",
        f"SyslogIdentifier={SYSLOG_IDENTIFIER}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


# --- escaping -------------------------------------------------------------------------------------
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


_PLAIN_WORD = re.compile(r"[\w@%+=:,./$-]+")


def quote_word(value: str, *, dollar: bool = True) -> str:
    """One word of ExecStart= (`dollar`: `$` expands there) or Environment=; double-quoted
    unless it is plain (a lone `;` would separate commands in older systemd's ExecStart=)."""
    out = []
    for char in value:
        if char in _C_ESCAPES:
            out.append(_C_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif char == "%":
            out.append("%%")
        elif char == "$" and dollar:
            out.append("$$")
        else:
            out.append(char)
    word = "".join(out)
    return word if _PLAIN_WORD.fullmatch(value) else f'"{word}"'


def exec_line(argv: Sequence[str]) -> str:
    return " ".join(quote_word(arg) for arg in argv)


def path_value(path: Path | str) -> str:
    """A path for a setting that takes the rest of the line as it is (no quotes, no C escapes)."""
    text = str(path)
    if not os.path.isabs(text):
        raise ConfigError(f"{text!r} is not an absolute path", hint="give an absolute path")
    return _line_value(text)


def _line_value(text: str) -> str:
    # systemd trims the value, joins a line ending in a backslash with the next, and has no
    # escape for a newline in such a setting: these cannot be written, so refuse them.
    if text != text.strip() or text.endswith("\\") or any(c in text for c in "\n\r"):
        raise ConfigError(f"{text!r} cannot be written in a systemd unit (leading or trailing space, a "
                          "newline or a final backslash)", hint="rename it, or use another directory")
    return text.replace("%", "%%")
