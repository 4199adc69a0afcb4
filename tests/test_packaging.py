"""The published shapes agree: the plugin marketplace, the plugin, its server launcher,
server.json for the MCP Registry, the README's mcp-name line and the package itself."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

import agentseat

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugins" / "agentseat"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_marketplace_lists_the_agentseat_plugin_and_its_folder_names_it_the_same() -> None:
    market = _json(ROOT / ".claude-plugin" / "marketplace.json")
    assert market["name"] == "agentseat"
    assert market["owner"]["name"]
    [entry] = [p for p in market["plugins"] if p["name"] == "agentseat"]
    assert (ROOT / entry["source"]).resolve() == PLUGIN
    manifest = _json(PLUGIN / ".claude-plugin" / "plugin.json")
    assert manifest["name"] == "agentseat"
    assert manifest["version"] == agentseat.__version__


def test_the_plugin_server_is_named_agentseat_and_starts_the_launcher() -> None:
    servers = _json(PLUGIN / ".mcp.json")["mcpServers"]
    assert list(servers) == ["agentseat"]  # the channel's name: plugin:agentseat@agentseat
    assert servers["agentseat"]["command"] == "sh"
    assert servers["agentseat"]["args"] == ["${CLAUDE_PLUGIN_ROOT}/scripts/serve.sh"]


def _stub(directory: Path, name: str, label: str = "") -> None:
    """An executable that records its label (default: its name) and argv in $STUB_RECORD."""
    directory.mkdir(parents=True, exist_ok=True)
    (exe := directory / name).write_text(f'#!/bin/sh\nprintf "%s\\n" {label or name} "$@" > "$STUB_RECORD"\n')
    exe.chmod(0o755)


def _launch(tmp_path: Path, *, on_path: tuple[str, ...], env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    bin_dir, record = tmp_path / "bin", tmp_path / "argv.txt"
    for name in on_path:
        _stub(bin_dir, name)
    bin_dir.mkdir(exist_ok=True)
    environ = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_RECORD": str(record), **(env or {})}
    environ = {k: v for k, v in environ.items() if v}
    # Only the stubs may answer to `agentseat`/`uvx`: /usr/bin and /bin must have neither.
    for name in ("agentseat", "uvx"):
        assert not any(Path(d, name).exists() for d in ("/usr/bin", "/bin")), f"a real {name} in /usr/bin or /bin"
    done = subprocess.run(["sh", str(PLUGIN / "scripts" / "serve.sh")], env=environ, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False)
    argv = record.read_text().split() if record.exists() else []
    return done.returncode, done.stderr, argv


@pytest.mark.parametrize(("on_path", "expected"), [
    (("agentseat", "uvx"), ["agentseat", "serve"]),   # the installed command first
    (("uvx",), ["uvx", "agentseat", "serve"]),        # else the package from PyPI
])
def test_the_launcher_runs_agentseat_serve(tmp_path: Path, on_path: tuple[str, ...], expected: list[str]) -> None:
    code, _, argv = _launch(tmp_path, on_path=on_path)
    assert (code, argv) == (0, expected)


def test_the_launcher_prefers_agentseat_bin(tmp_path: Path) -> None:
    _stub(own := tmp_path / "own", "agentseat", label="own-agentseat")
    code, _, argv = _launch(tmp_path, on_path=("agentseat",), env={"AGENTSEAT_BIN": str(own / "agentseat")})
    assert (code, argv) == (0, ["own-agentseat", "serve"])


def test_the_launcher_without_agentseat_says_how_to_install_it(tmp_path: Path) -> None:
    code, stderr, argv = _launch(tmp_path, on_path=())
    assert (code, argv) == (127, [])
    assert "pipx install agentseat" in stderr and "agentseat setup" in stderr


@pytest.mark.parametrize("skill", ["configure", "access"])
def test_the_plugin_has_the_configure_and_access_skills(skill: str) -> None:
    text = (PLUGIN / "skills" / skill / "SKILL.md").read_text(encoding="utf-8")
    front = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert front and re.search(rf"^name: {skill}$", front.group(1), re.M)
    assert re.search(r"^description: \S", front.group(1), re.M)


def test_the_access_skill_acts_only_on_the_terminal_and_uses_the_access_command() -> None:
    text = (PLUGIN / "skills" / "access" / "SKILL.md").read_text(encoding="utf-8")
    assert "acts only on what the user types in this terminal session" in text
    for command in ("list", "approve CODE", "deny CODE", "revoke WHO"):
        assert f"agentseat access {command}" in text
    for value in ("sponsors", "allowlist", "pairing", "tenant"):
        assert f"`{value}`" in text
    for setting in ("AGENTSEAT_INBOUND_POLICY", "AGENTSEAT_ALLOW`", "AGENTSEAT_ALLOW_EXTERNAL"):
        assert setting in text


def test_server_json_describes_this_package_for_the_mcp_registry() -> None:
    server = _json(ROOT / "server.json")
    project = _pyproject()["project"]
    assert server["$schema"].startswith("https://static.modelcontextprotocol.io/schemas/")
    assert re.fullmatch(r"io\.github\.[A-Za-z0-9-]+/agentseat", server["name"])
    assert 1 <= len(server["description"]) <= 100
    assert server["version"] == agentseat.__version__
    [package] = server["packages"]
    assert (package["registryType"], package["identifier"], package["version"]) == (
        "pypi", project["name"], agentseat.__version__)
    assert package["transport"] == {"type": "stdio"}
    assert [a.get("value") for a in package["packageArguments"]] == ["serve"]
    # The registry proves PyPI ownership by this line in the package's README.
    readme = (ROOT / project["readme"]["file"]).read_text(encoding="utf-8")
    assert re.findall(r"mcp-name: (\S+)", readme) == [server["name"]]
    owner = server["name"].split("/")[0].removeprefix("io.github.")
    assert server["repository"]["url"] == f"https://github.com/{owner}/agentseat"
    assert set(project["urls"].values()) >= {server["repository"]["url"]}


def test_the_version_has_one_source() -> None:
    pyproject = _pyproject()
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "agentseat.__version__"}


def test_every_non_python_file_of_the_package_is_package_data() -> None:
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["agentseat"]
    package = Path(agentseat.__file__).parent
    data = [p.relative_to(package) for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "expected the prompts"
    missing = [str(p) for p in data if not any(p.full_match(pattern) if hasattr(p, "full_match")
                                               else _glob_match(p, pattern) for pattern in patterns)]
    assert missing == []


def _glob_match(path: Path, pattern: str) -> bool:
    """`**` spans directories, `*` does not (setuptools' package-data rules)."""
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
    return re.fullmatch(regex, path.as_posix()) is not None

