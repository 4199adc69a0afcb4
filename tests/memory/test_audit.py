"""The audit log's hash chain: intact, it verifies; one row changed or removed, verify names it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from agentseat.audit import AuditLog
from agentseat.cli import main


def _log(state: Path) -> AuditLog:
    log = AuditLog(state / "audit.db")
    log.append("action", "teams_send", chat_id="19:a@thread.v2", digest="ab" * 32)
    log.append("refusal", "add_chat_member", reason="refused: no recent message from a sponsor in this chat")
    log.append("action", "graph_write", method="PUT", route="/me/drive/root:/a.txt:/content",
               token="never", body="never")
    return log


def test_an_intact_chain_verifies_and_keeps_no_secrets(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.verify() == (3, None)
    assert log.rows()[2]["detail"] == {"method": "PUT", "route": "/me/drive/root:/a.txt:/content"}
    log.close()


def test_tampering_with_one_row_fails_verify_naming_it(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    _log(tmp_path).close()
    env = ["--state-dir", str(tmp_path)]
    assert main([*env, "audit", "verify"]) == 0
    assert "3 rows" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "audit.db") as conn:  # someone rewrites what a refusal said
        conn.execute("UPDATE audit SET detail = ? WHERE id = 2", (json.dumps({"reason": "allowed"}),))
    assert main([*env, "audit", "verify"]) == 1
    assert "BROKEN at row 2" in capsys.readouterr().out


def test_removing_a_row_fails_verify_naming_it(tmp_path: Path) -> None:
    _log(tmp_path).close()
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        conn.execute("DELETE FROM audit WHERE id = 2")
    log = AuditLog(tmp_path / "audit.db")
    count, broken = log.verify()
    assert broken is not None and broken.row == 2 and "missing" in broken.reason
    log.close()


def test_tail_and_export_since(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    _log(tmp_path).close()
    assert main(["--state-dir", str(tmp_path), "audit", "tail", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["#2", "#3"]
    assert main(["--state-dir", str(tmp_path), "audit", "export", "--since", "2000-01-01T00:00:00Z"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3] and rows[1]["prev"] == rows[0]["hash"]
    assert main(["--state-dir", str(tmp_path), "audit", "export", "--since", "2999-01-01T00:00:00Z"]) == 0
    assert capsys.readouterr().out == ""
