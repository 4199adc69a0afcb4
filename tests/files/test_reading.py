"""files/reading.py against the sandbox: a file is downloaded into a fresh 0700 directory under a
fixed name (its own name never becomes a path), read, and the directory is gone afterwards,
whether the read worked or not; a file over the read limit is refused before any download."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from agentseat.config import Settings
from agentseat.documents import ReadLimits
from agentseat.errors import ToolInputError
from agentseat.files import reading
from agentseat.files.refs import ItemRef
from agentseat.graph.client import GraphClient
from agentseat.sandbox.app import Sandbox
from tests.graph.test_client import provider_for
from tests.tools.test_attachments_e2e import _upn
from tests.tools.test_files_e2e import put_file


async def test_a_download_lives_in_a_private_dir_under_a_fixed_name_and_is_removed(
        sandbox: Sandbox, agent_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: list[tuple[str, int, str]] = []
    real = reading.read_document

    def spy(path: Path, **kw: Any) -> Any:
        seen.append((path.name, stat.S_IMODE(os.stat(path.parent).st_mode), kw["name"]))
        return real(path, **kw)

    monkeypatch.setattr(reading, "read_document", spy)
    agent = _upn(sandbox, "agent_user")
    name = "$(touch pwned); notes.txt"
    good = await put_file(sandbox, agent, name, b"plain words\n")
    bad = await put_file(sandbox, agent, "broken.docx", b"PK\x03\x04 not really a zip")
    async with GraphClient(agent_settings, provider_for(agent_settings)) as graph:
        for made in (good, bad):
            ref = ItemRef(made["drive_id"], made["item_id"])
            item = await graph.get(ref.path)
            if made is good:
                doc = await reading.read_item(graph, agent_settings, ref, item, ReadLimits())
                assert doc.markdown.strip() == "plain words"
            else:
                with pytest.raises(ToolInputError) as caught:
                    await reading.read_item(graph, agent_settings, ref, item, ReadLimits())
                assert "cannot read it" in caught.value.message
        big = await graph.get(ItemRef(good["drive_id"], good["item_id"]).path)
        with pytest.raises(ToolInputError) as too_big:
            await reading.read_item(graph, agent_settings, ItemRef(good["drive_id"], good["item_id"]), big,
                                    ReadLimits(max_input_bytes=5))
    assert seen == [("content.txt", 0o700, name), ("content.docx", 0o700, "broken.docx")]
    assert "over the" in too_big.value.message and len(seen) == 2  # refused from its size, never downloaded
    assert list(scratch.iterdir()) == [] and not (tmp_path / "pwned").exists()
