"""Markdown written as Word (`write_file(..., as_docx=true)`) and read back."""

from __future__ import annotations

import re
from pathlib import Path

import docx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentseat.documents import DocumentError, ReadLimits, markdown_to_docx, read_document

NOTE = """# Launch plan

Owner: **Ada**, reviewed by *Bob*; run `make release` when green.

## Steps

1. Freeze the branch
2. Tag the build
   1. sign it
   2. push it
3. Announce

- Risks
  - late review
- See [the tracker](https://contoso.example/tracker?q=launch) for details

| Task | Owner | Due |
|------|:-----:|-----|
| Reader | Ada | Friday |
| Writer \\| docs | Bob | Monday |

1. A second list starts again at one
"""


def test_markdown_note_round_trips_through_docx(tmp_path: Path) -> None:
    out = tmp_path / "plan.docx"
    markdown_to_docx(NOTE, out)
    back = read_document(out, name="plan.docx", mime=None, limits=ReadLimits())
    md = back.markdown
    assert back.kind == "docx" and not back.truncated and back.notes == []
    assert md.startswith("# Launch plan\n\n")
    assert "## Steps" in md.splitlines()
    assert "Owner: **Ada**, reviewed by *Bob*; run `make release` when green." in md
    assert "1. Freeze the branch\n2. Tag the build\n   1. sign it\n   2. push it\n3. Announce" in md
    assert "- Risks\n   - late review" in md
    assert "[the tracker](https://contoso.example/tracker?q=launch)" in md
    assert "| Task | Owner | Due |" in md
    assert "| Reader | Ada | Friday |" in md
    assert "| Writer \\| docs | Bob | Monday |" in md
    assert "1. A second list starts again at one" in md


def test_docx_written_from_markdown_uses_word_structures(tmp_path: Path) -> None:
    out = tmp_path / "plan.docx"
    markdown_to_docx(NOTE, out)
    d = docx.Document(str(out))
    headings = [(p.style.name, p.text) for p in d.paragraphs if p.style.name.startswith("Heading")]
    assert headings == [("Heading 1", "Launch plan"), ("Heading 2", "Steps")]
    links = [h for p in d.paragraphs for h in p.hyperlinks]
    assert [(h.text, h.url) for h in links] == [("the tracker", "https://contoso.example/tracker?q=launch")]
    assert len(d.tables) == 1 and d.tables[0].cell(2, 0).text == "Writer | docs"
    assert d.tables[0].rows[0].cells[0].paragraphs[0].runs[0].bold


def test_only_web_and_mail_links_become_hyperlinks(tmp_path: Path) -> None:
    out = tmp_path / "links.docx"
    markdown_to_docx("[run me](javascript:alert(1)) and [mail](mailto:ada@contoso.example) and "
                     "[file](file:///etc/passwd)", out)
    d = docx.Document(str(out))
    assert [h.url for p in d.paragraphs for h in p.hyperlinks] == ["mailto:ada@contoso.example"]
    assert "file (file:///etc/passwd)" in d.paragraphs[0].text


def test_control_characters_in_markdown_do_not_break_the_document(tmp_path: Path) -> None:
    out = tmp_path / "ctl.docx"
    markdown_to_docx("# Bell\x07 title\n\nnul\x00 byte", out)
    back = read_document(out, name="ctl.docx", mime=None, limits=ReadLimits())
    assert back.markdown == "# Bell title\n\nnul byte"


def test_unwritable_target_is_a_document_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as caught:
        markdown_to_docx("# x", tmp_path / "missing" / "x.docx")
    assert "cannot be written" in caught.value.message and caught.value.hint


_PIECES = st.sampled_from(["# ", "## ", "- ", "  - ", "1. ", "   2. ", "> ", "| ", " | ", "|---|---|", "**", "*", "_",
                           "__", "`", "[", "](", ")", "https://x.example/", "<", ">", "\\", "\n", "\n\n", " ",
                           "\t", "\x07", "\u202e", "---", "é"])
_WORDS = st.from_regex(r"[a-z]{1,8}", fullmatch=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_PIECES, _WORDS), max_size=60))
def test_any_markdown_writes_a_docx_that_reads_back_every_word(tmp_path: Path, parts: list[str]) -> None:
    text = "".join(parts)
    out = tmp_path / "any.docx"
    markdown_to_docx(text, out)
    back = read_document(out, name="any.docx", mime=None, limits=ReadLimits()).markdown
    for word in re.findall(r"[a-z]+", text):
        assert word in back
