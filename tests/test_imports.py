"""`agentseat serve` imports only what it needs to answer `initialize` and push events (issue 16, item 3).

The document libraries, Azure, ngrok's driver, the sandbox and the bot cost a cold start
hundreds of milliseconds and a session that never reads a document or runs in eventhub mode
never uses them. A real `serve` (a fresh interpreter, the sandbox over loopback, mcp's real
stdio client) answers `initialize`, lists its tools and pushes a DM; when it exits, the
modules it ever imported are compared with the ones that must stay lazy. An eager import
reintroduced anywhere on that path fails this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.extension import NotificationBinding
from mcp.client.stdio import stdio_client

from agentseat.sandbox.app import Sandbox
from agentseat.tools.channel import METHOD, ChannelParams
from tests.tools._mcp import BOUND, PACKAGE_ROOT, post_dm

#: Packages `serve` must not import for a session that reads no document and runs in webhook mode.
LAZY = ("azure", "docx", "pypdf", "openpyxl", "pptx", "PIL", "lxml", "pyngrok", "yaml", "agentseat.sandbox",
        "agentseat.bot", "agentseat.demo", "agentseat.documents.docx_reader", "agentseat.documents.pdf_reader",
        "agentseat.documents.xlsx_reader", "agentseat.documents.pptx_reader", "agentseat.documents.writer",
        "agentseat.eventhub.client", "agentseat.eventhub.consumer", "agentseat.tunnel.ngrok",
        "agentseat.identity.provision")

#: Needed once the runtime runs (the first token), never before `initialize` is answered.
AFTER_INITIALIZE = ("msal", "requests")

#: `agentseat serve` as the CLI runs it. When the server is about to speak MCP (everything `initialize`
#: waits for is loaded by then; the runtime has not started) it notes the modules imported and the
#: garbage collector's state, and at exit every module the session imported.
LAUNCHER = """
import atexit, gc, importlib.abc, importlib.util, json, os, sys
seen = {}

def noting(options):
    def initialization_options(srv):
        seen.setdefault("before_initialize", sorted(sys.modules))
        seen.setdefault("gc", {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                               "full_collections": gc.get_stats()[2]["collections"]})
        return options(srv)
    return initialization_options

class Hook(importlib.abc.MetaPathFinder):  # wraps tools/server.py's hook once serve imports it
    def find_spec(self, name, path, target=None):
        if name != "agentseat.tools.server":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            module.initialization_options = noting(module.initialization_options)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Hook())
def dump():
    seen["session"] = sorted(sys.modules)
    open(os.environ["IMPORTS_OUT"], "w").write(json.dumps(seen))
atexit.register(dump)
from agentseat.cli import main
sys.exit(main(["serve"]))
"""


def _among(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in names))


async def test_serve_answers_and_pushes_without_the_lazy_modules(sandbox: Sandbox, agent_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    env = {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback", "PYTHONPATH": PACKAGE_ROOT,
           "IMPORTS_OUT": str(out)}
    params = StdioServerParameters(command=sys.executable, args=["-c", LAUNCHER], env=env, cwd=str(tmp_path))
    pushed: list[str] = []
    arrived = anyio.Event()

    async def on_channel(p: ChannelParams) -> None:
        pushed.append((p.meta or {}).get("message_id", ""))
        arrived.set()

    sponsor = sandbox.tenant.users[sandbox.role("sponsor")].upn
    agent = sandbox.tenant.users[sandbox.role("agent_user")].upn
    with (tmp_path / "serve.log").open("a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            binding = NotificationBinding(method=METHOD, params_type=ChannelParams, handler=on_channel)
            async with ClientSession(read, write, notification_bindings=[binding]) as session:
                with anyio.fail_after(BOUND):
                    init = await session.initialize()
                    tools = (await session.list_tools()).tools
                    posted = await post_dm(sandbox, sponsor, agent, "first event after a cold start")
                    await arrived.wait()
    assert init.capabilities.experimental and "claude/channel" in init.capabilities.experimental
    assert {"read_file", "write_file", "send_card", "status"} <= {t.name for t in tools}
    assert posted["message_id"] in pushed
    seen = json.loads(out.read_text())
    early, session = seen["before_initialize"], seen["session"]
    assert "agentseat.runtime.app" in early and "agentseat.documents" in early  # the path really ran
    assert _among(session, LAZY) == []
    assert _among(early, AFTER_INITIALIZE) == [] and "msal" in session  # loaded for the first token
    # No full collection ran while serve imported (they only build long-lived objects); collection is
    # back on once they are loaded, with what they built frozen out of its way.
    assert seen["gc"]["full_collections"] == 0 and seen["gc"]["enabled"] and seen["gc"]["frozen"] > 10_000


def test_the_lazy_modules_still_load_when_used() -> None:
    """What serve leaves out is imported on first use: a docx written and read back, ngrok's tunnel class."""
    code = """
import sys, tempfile, pathlib
from agentseat.documents import ReadLimits, markdown_to_docx, read_document
import agentseat.tunnel as tunnel
assert "docx" not in sys.modules and "pyngrok" not in sys.modules
path = pathlib.Path(tempfile.mkdtemp()) / "a.docx"
markdown_to_docx("# Title\\n\\nbody text", path)
print(read_document(path, name="a.docx", mime=None, limits=ReadLimits()).markdown.strip().splitlines()[0])
print(tunnel.NgrokTunnel.__module__, "pyngrok" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": PACKAGE_ROOT, "PATH": "/usr/bin:/bin"})
    assert done.stdout.splitlines()[-2:] == ["# Title", "agentseat.tunnel.ngrok True"]  # after structlog's line
