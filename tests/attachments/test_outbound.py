"""Which local files may be sent: resolved first, the agent's state and any key or secret refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentseat.attachments.outbound import INLINE_IMAGE_MAX, MAX_FILES, check_file, check_files
from agentseat.config import Settings
from agentseat.errors import ToolInputError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    state = tmp_path / "state"
    (state / "keys").mkdir(parents=True)
    (state / "keys" / "abc.key.enc").write_bytes(b"secret")
    (state / "inbox.db").write_bytes(b"SQLite format 3\x00")
    return Settings(_env_file=None, state_dir=state,  # type: ignore[call-arg]
                    config_file=tmp_path / "conf" / "agentseat.conf", provisioner_key_path=tmp_path / "prov" / "p.bin")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def _refused(raw: str, settings: Settings, cwd: Path | None = None) -> str:
    with pytest.raises(ToolInputError) as info:
        check_file(raw, settings, cwd)
    return info.value.message


def test_an_ordinary_file_and_an_image_pass(settings: Settings, work: Path) -> None:
    (work / "report.pdf").write_bytes(b"%PDF-1.7 ...")
    (work / "shot.png").write_bytes(PNG)
    doc = check_file("report.pdf", settings, work)
    assert doc.path == (work / "report.pdf").resolve() and doc.image_type is None and doc.size == 12
    assert check_file(str(work / "shot.png"), settings).image_type == "image/png"


def test_an_image_too_large_to_inline_is_sent_as_a_file(settings: Settings, work: Path) -> None:
    (work / "big.png").write_bytes(PNG + b"\x00" * INLINE_IMAGE_MAX)
    assert check_file(str(work / "big.png"), settings).image_type is None


def test_a_png_name_without_png_bytes_is_not_an_image(settings: Settings, work: Path) -> None:
    (work / "fake.png").write_bytes(b"GIF8 not really")
    assert check_file(str(work / "fake.png"), settings).image_type is None


@pytest.mark.parametrize("target", ["state/inbox.db", "state/keys/abc.key.enc", "state", "conf/agentseat.conf",
                                    "prov/p.bin"])
def test_the_agents_state_and_config_are_refused(settings: Settings, tmp_path: Path, target: str) -> None:
    path = tmp_path / target
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(b"x")
    assert "refused" in _refused(str(path), settings)


def test_a_symlink_into_the_state_dir_is_refused(settings: Settings, work: Path) -> None:
    (work / "innocent.txt").symlink_to(settings.state_dir / "inbox.db")
    assert "state directory" in _refused("innocent.txt", settings, work)


def test_a_dotdot_path_into_the_state_dir_is_refused(settings: Settings, work: Path) -> None:
    assert "state directory" in _refused("../state/inbox.db", settings, work)


def test_a_symlinked_state_dir_is_still_refused(tmp_path: Path, work: Path) -> None:
    real = tmp_path / "real-state"
    real.mkdir()
    (real / "inbox.db").write_bytes(b"x")
    (tmp_path / "link-state").symlink_to(real)
    settings = Settings(_env_file=None, state_dir=tmp_path / "link-state")  # type: ignore[call-arg]
    assert "state directory" in _refused(str(real / "inbox.db"), settings)


@pytest.mark.parametrize("name", ["server.key", "cert.pem", "id_ed25519", ".env", ".env.local", "bundle.p12",
                                  "x.pfx", ".netrc", "agentseat.env"])
def test_key_and_secret_files_are_refused_by_name(settings: Settings, work: Path, name: str) -> None:
    (work / name).write_bytes(b"harmless")
    assert "key, certificate or credentials" in _refused(name, settings, work)


def test_files_in_key_folders_are_refused(settings: Settings, work: Path) -> None:
    (work / ".ssh").mkdir()
    (work / ".ssh" / "config").write_text("Host *")
    assert "keys or credentials" in _refused(".ssh/config", settings, work)


def test_a_private_key_under_an_innocent_name_is_refused(settings: Settings, work: Path) -> None:
    (work / "notes.txt").write_text("hello\n-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n")
    assert "private key" in _refused("notes.txt", settings, work)


def test_missing_folders_and_devices_are_refused(settings: Settings, work: Path) -> None:
    assert "no such file" in _refused("nope.txt", settings, work)
    assert "not a regular file" in _refused(str(work), settings)
    assert "not a regular file" in _refused("/dev/null", settings)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_an_unreadable_file_is_refused(settings: Settings, work: Path) -> None:
    (work / "locked.txt").write_text("x")
    (work / "locked.txt").chmod(0)
    assert "cannot read" in _refused("locked.txt", settings, work)


def test_one_refusal_refuses_the_list_and_the_list_is_capped(settings: Settings, work: Path) -> None:
    (work / "a.txt").write_text("a")
    with pytest.raises(ToolInputError):
        check_files([str(work / "a.txt"), str(settings.state_dir / "inbox.db")], settings)
    with pytest.raises(ToolInputError, match="at most"):
        check_files([str(work / "a.txt")] * (MAX_FILES + 1), settings)


async def test_a_file_swapped_after_the_check_is_not_read(settings: Settings, work: Path) -> None:
    (work / "a.txt").write_text("original")
    checked = check_file("a.txt", settings, work)
    assert await checked.read(0, 8) == b"original"
    (work / "a.txt").unlink()
    (work / "a.txt").symlink_to(settings.state_dir / "inbox.db")
    with pytest.raises((ToolInputError, OSError)):
        await checked.read(0, 8)
