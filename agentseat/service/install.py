"""`agentseat bot --install-service`: turn the bot command a user gave into a systemd user unit.

It owns the service's command line (the same options, with absolute paths, run by this
install's Python), which environment goes with it, the 0600 file the key passphrase is
passed from, and writing both files. It never writes the passphrase into the unit, and never
replaces a different unit unless asked. The unit's text is `systemd.py`'s.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr

from ..config import Settings
from ..errors import ConfigError, KeyStoreError
from .systemd import SYSLOG_IDENTIFIER, UNIT_NAME, ServiceSpec, credential_path, render_unit, unit_path

#: LoadCredential= appeared in systemd 247 (its NEWS).
MIN_SYSTEMD = 247
_SERVICE = UNIT_NAME.removesuffix(".service")
#: Settings the unit sets another way: the state directory is on the command line, and the
#: passphrase comes from the credential, not from a file the user pointed at.
_PINNED = frozenset({"AGENTSEAT_STATE_DIR", "AGENTSEAT_KEY_PASSPHRASE_FILE"})


@dataclass(frozen=True)
class BotCommandLine:
    """The `agentseat bot` options the user gave, to run the same bot under systemd."""

    exec_line: str
    allow: Sequence[str] = ()
    timeout: float | None = None
    mode: str | None = None
    tunnel: str | None = None
    public_url: str | None = None
    env_file: Path | None = None
    verbose: bool = False


def service_spec(command: BotCommandLine, settings: Settings, environ: Mapping[str, str],
                 *, python: str | None = None, cwd: Path | None = None) -> tuple[ServiceSpec, list[str]]:
    """The unit's contents for `command`, and the names of secret settings left out of it."""
    cwd = cwd or Path.cwd()
    python = python or sys.executable
    if not python:
        raise ConfigError("cannot tell which Python runs agentseat", hint="run agentseat with a Python interpreter")
    argv = [os.path.abspath(python), "-m", "agentseat.cli", "--state-dir", _absolute(settings.state_dir, cwd)]
    if command.env_file is not None:
        argv += ["--env-file", _absolute(command.env_file, cwd)]
    if command.verbose:
        argv.append("-v")
    argv += ["bot", "--exec", _handler(command.exec_line, environ, cwd)]
    argv += [arg for person in command.allow for arg in ("--allow", person)]
    if command.timeout is not None:
        argv += ["--timeout", repr(command.timeout)]
    for option, value in (("--mode", command.mode), ("--tunnel", command.tunnel), ("--public-url", command.public_url)):
        if value is not None:
            argv += [option, value]
    environment, left_out = _environment(environ)
    agent = f" for {settings.agent_user_upn}" if settings.agent_user_upn else ""
    spec = ServiceSpec(argv=argv, working_directory=cwd, credential_file=credential_path(environ),
                       environment=environment, description=f"agentseat headless bot{agent}")
    return spec, left_out


def print_unit(spec: ServiceSpec, out: TextIO) -> int:
    """`--print`: the unit on stdout; nothing is written, no passphrase is asked for."""
    out.write(render_unit(spec))
    return 0


def install(spec: ServiceSpec, settings: Settings, environ: Mapping[str, str], *, force: bool,
            out: TextIO, err: TextIO, ask: Callable[[str], str] | None = None) -> int:
    """Write the credential file and the unit, then say what to run next.

    `ask` reads a passphrase from the user (None: nobody to ask). Nothing is written when
    the unit would replace a different one without `force`, or the passphrase is missing
    or does not open the agent's key.
    """
    text = render_unit(spec)
    path = unit_path(environ)
    existing = _read(path)
    if existing is not None and existing != text and not force:
        raise ConfigError(f"{path} already exists and says something else",
                          hint="compare with `--print`, then add --force to replace it")
    passphrase, source = _passphrase(settings, spec.credential_file, ask)
    has_key = _check_opens_key(settings, passphrase)
    wrote_credential = _write_if_changed(spec.credential_file, passphrase.encode("utf-8"), 0o600)
    wrote_unit = _write_if_changed(path, text.encode("utf-8"), 0o644)

    _warn_about_systemd(path, environ, err)
    verb = "replaced" if existing is not None and wrote_unit else "wrote" if wrote_unit else "unchanged:"
    out.write(f"{verb} {path}\n")
    credential_verb = "wrote" if wrote_credential else "kept"
    out.write(f"{credential_verb} the key passphrase ({source}) in {spec.credential_file} (0600); the unit loads it "
              "with LoadCredential=, so it is never in the unit or the service's environment\n")
    if not has_key:
        err.write("agentseat: no agent key yet: run `agentseat setup` before starting the service\n")
    out.write("next:\n")
    out.write(f"  systemctl --user daemon-reload && systemctl --user enable --now {_SERVICE}\n")
    if existing is not None and wrote_unit:
        out.write(f"  systemctl --user restart {_SERVICE}    # if it was running, to use the new unit\n")
    out.write(f"  journalctl --user -u {_SERVICE} -f    # its log (SyslogIdentifier={SYSLOG_IDENTIFIER})\n")
    out.write("  loginctl enable-linger $USER    # keep it running without a login session\n")
    return 0


def interactive_prompt() -> Callable[[str], str] | None:
    """getpass when a person is at a terminal, else None."""
    if not (sys.stdin and sys.stdin.isatty()):
        return None
    return getpass.getpass


# --- the command line ---------------------------------------------------------------------------
def _absolute(path: Path | str, cwd: Path) -> str:
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(str(path))))


def _handler(exec_line: str, environ: Mapping[str, str], cwd: Path) -> str:
    """The handler with its program made absolute: the user manager's PATH and directory
    are not the shell's. Its arguments stay as given; the unit runs in the same directory."""
    try:
        words = shlex.split(exec_line)
    except ValueError as exc:
        raise ConfigError(f"--exec cannot be parsed: {exc}", hint="check the quotes in the command") from exc
    if not words:
        raise ConfigError("--exec is empty", hint="give the handler command, for example --exec './handler.py'")
    program = words[0]
    if os.sep not in program:
        program = shutil.which(program, path=environ.get("PATH")) or program
    words[0] = _absolute(program, cwd)
    return shlex.join(words)


def _environment(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The user's agentseat settings from the environment (not secrets) and PATH, so the
    service's bot and its handler see what they saw in the shell."""
    fields = Settings.model_fields
    names = {f"AGENTSEAT_{name.upper()}": info for name, info in fields.items()}
    kept: dict[str, str] = {}
    left_out: list[str] = []
    for key in sorted(environ):
        info = names.get(key.upper())
        if info is None or key.upper() in _PINNED:
            continue
        if info.annotation is SecretStr or SecretStr in typing.get_args(info.annotation):
            left_out.append(key)
        else:
            kept[key] = environ[key]
    if environ.get("PATH"):
        kept["PATH"] = environ["PATH"]
    return kept, left_out


# --- the passphrase -----------------------------------------------------------------------------
def _passphrase(settings: Settings, credential: Path, ask: Callable[[str], str] | None) -> tuple[str, str]:
    """The key passphrase and where it came from: the settings, the existing file, or the user."""
    if settings.key_passphrase is not None and settings.key_passphrase.get_secret_value():
        return settings.key_passphrase.get_secret_value(), "from AGENTSEAT_KEY_PASSPHRASE"
    existing = _read(credential)
    if existing:
        return existing.rstrip("\r\n"), "already there"
    if ask is None:
        raise ConfigError(
            f"no key passphrase for the service: AGENTSEAT_KEY_PASSPHRASE is not set, {credential} does not exist, "
            "and there is no terminal to ask on",
            hint="run it again with the key's passphrase in AGENTSEAT_KEY_PASSPHRASE (e.g. `read -rs "
                 "AGENTSEAT_KEY_PASSPHRASE && export AGENTSEAT_KEY_PASSPHRASE`), or from a terminal to be asked")
    answer = ask("The agent key's passphrase (AGENTSEAT_KEY_PASSPHRASE), kept 0600 for the service: ")
    if not answer:
        raise ConfigError("no passphrase given", hint="type the passphrase the agent's key was saved with")
    return answer, "as typed"


def _check_opens_key(settings: Settings, passphrase: str) -> bool:
    """True if the passphrase opens the active key; False when there is no key yet.

    It decrypts the key file itself rather than through KeyStore.load, which would try the
    keyring first and so accept any passphrase where a keyring holds the right one; the
    service, run without a login session, may have no keyring to fall back on.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from ..identity.keys import KeyStore

    store = KeyStore(settings)
    sha1 = store.active()
    if sha1 is None:
        return False
    key_file = store.dir / f"{sha1}.key.pem"  # the KeyStore's documented layout
    try:
        load_pem_private_key(key_file.read_bytes(), password=passphrase.encode("utf-8"))
    except OSError as exc:
        raise KeyStoreError(f"cannot read {key_file}: {exc.strerror}", hint="run `agentseat doctor`") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyStoreError(
            f"the passphrase for the service does not open the agent's key {key_file}",
            hint="set AGENTSEAT_KEY_PASSPHRASE to the passphrase the key was saved with; if the OS keyring "
                 f"holds it, `python -m keyring get {settings.keyring_service} key-passphrase:{sha1}` prints it") from None
    return True


# --- files --------------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="check the file and its permissions") from None


def _write_if_changed(path: Path, data: bytes, mode: int) -> bool:
    """Replace `path` atomically with `data` and `mode`; False if it already held exactly that."""
    try:
        if path.exists() and path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file 0600 beside the target, so no one else can read it before the rename.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}", hint="check the directory's permissions") from None
    return True


# --- systemd on this machine (advice only) --------------------------------------------------------
def _warn_about_systemd(path: Path, environ: Mapping[str, str], err: TextIO) -> None:
    """Say so if this systemd is too old for LoadCredential=, or `systemd-analyze` finds fault."""
    try:
        if shutil.which("systemctl") is not None:
            first = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=10).stdout
            found = re.match(r"systemd (\d+)", first)
            if found and int(found.group(1)) < MIN_SYSTEMD:
                err.write(f"agentseat: warning: systemd {found.group(1)} is older than {MIN_SYSTEMD}, which "
                          "LoadCredential= needs; the service will not start\n")
        analyze = shutil.which("systemd-analyze")
        if analyze is not None and environ.get("XDG_RUNTIME_DIR"):
            done = subprocess.run([analyze, "--user", "verify", str(path)], capture_output=True, text=True,
                                  timeout=30, env=dict(environ))
            if done.returncode != 0:
                err.write(f"agentseat: warning: `systemd-analyze --user verify` found a problem:\n{done.stdout}"
                          f"{done.stderr}")
    except (OSError, subprocess.SubprocessError) as exc:
        err.write(f"agentseat: could not ask systemd about the unit ({type(exc).__name__}); it was written anyway\n")


def warn_left_out(left_out: Sequence[str], settings: Settings, err: TextIO) -> None:
    """Secrets set in the environment are not copied into the unit, where others may read them."""
    for name in left_out:
        if name.upper() != "AGENTSEAT_KEY_PASSPHRASE":
            err.write(f"agentseat: warning: {name} is set here but not copied into the unit (it is a secret); "
                      f"put it in {os.path.abspath(settings.config_file or '')} (0600) for the service to use it\n")


__all__ = ["BotCommandLine", "install", "interactive_prompt", "print_unit", "service_spec",
           "warn_left_out"]
