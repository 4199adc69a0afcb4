"""A stand-in for the ngrok v3 agent, enough for pyngrok 9.1 to drive offline.

Run as `ngrok start --none --log stdout --config PATH [--authtoken T]` (what pyngrok
runs). It prints the logfmt lines pyngrok waits for, serves the local agent API
pyngrok calls (`GET/POST /api/endpoints`, `GET/DELETE /api/endpoints/{name}`, and
the v2 `/api/tunnels` twins), and hands out `https://<random>.fake-ngrok.test` URLs.

Behaviour is set by environment variables, which the test's wrapper script sets:
  FAKE_NGROK_RECORD   JSON file rewritten on every change: pid, argv, API address,
                      the authtoken seen and where it came from, endpoints (each with
                      the `inspect` option it was created with; ngrok's default is true).
  FAKE_NGROK_SCHEME   scheme of the URLs handed out (default https).
  FAKE_NGROK_REQUIRE_AUTHTOKEN  if "1", fail at startup like ngrok without a token.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml  # present wherever pyngrok is installed

_lock = threading.Lock()
_endpoints: dict[str, dict[str, object]] = {}
_state: dict[str, object] = {}


def _emit(line: str) -> None:
    with _lock:
        sys.stdout.write(f"t=2026-01-01T00:00:00+0000 {line}\n")
        sys.stdout.flush()


def _save() -> None:
    record = os.environ.get("FAKE_NGROK_RECORD")
    if not record:
        return
    with _lock:
        data = dict(_state, endpoints=list(_endpoints.values()))
    tmp = Path(record + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(record)


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def _find_authtoken(argv: list[str]) -> tuple[str | None, str | None]:
    """The token ngrok would use and its source; the command line wins, as in ngrok."""
    token = _option(argv, "--authtoken")
    if token:
        return token, "argv"
    config_path = _option(argv, "--config")
    if config_path and os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
        token = (config.get("agent") or {}).get("authtoken") or config.get("authtoken")
        if token:
            return token, "config"
    token = os.environ.get("NGROK_AUTHTOKEN")
    return (token, "env") if token else (None, None)


class _Api(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        _emit(f'lvl=info msg="api request" obj=web method={self.command} path={self.path}')

    def _reply(self, status: int, body: object | None = None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self) -> tuple[str | None, str | None]:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "api" and parts[1] in ("endpoints", "tunnels"):
            return parts[1], (parts[2] if len(parts) > 2 else None)
        return None, None

    def _view(self, collection: str, endpoint: dict[str, object]) -> dict[str, object]:
        view = dict(endpoint, uri=f"/api/{collection}/{endpoint['name']}")
        if collection == "tunnels":
            view["public_url"] = view["url"]
        return view

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        collection, name = self._route()
        if collection is None:
            return self._reply(404, {"error_code": 100, "msg": "not found"})
        with _lock:
            items = [self._view(collection, e) for e in _endpoints.values()]
        if name is None:
            return self._reply(200, {collection: items, "uri": f"/api/{collection}"})
        match = [item for item in items if item["name"] == name]
        return self._reply(200, match[0]) if match else self._reply(404, {"error_code": 101, "msg": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        collection, name = self._route()
        if collection is None or name is not None:
            return self._reply(404, {"error_code": 100, "msg": "not found"})
        options = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        scheme = os.environ.get("FAKE_NGROK_SCHEME", "https")
        endpoint = {
            "id": f"ep_{secrets.token_hex(8)}",
            "name": options.get("name") or secrets.token_hex(4),
            "url": f"{scheme}://{secrets.token_hex(6)}.fake-ngrok.test",
            "proto": scheme,
            "upstream": options.get("upstream") or {"url": options.get("addr")},
            # ngrok inspects (keeps request bodies) unless the endpoint says otherwise.
            "inspect": options.get("inspect", True),
        }
        with _lock:
            _endpoints[str(endpoint["name"])] = endpoint
        _save()
        return self._reply(201, self._view(collection, endpoint))

    def do_DELETE(self) -> None:  # noqa: N802
        collection, name = self._route()
        with _lock:
            found = _endpoints.pop(name, None) if collection and name else None
        _save()
        return self._reply(204) if found else self._reply(404, {"error_code": 101, "msg": "not found"})


def main(argv: list[str]) -> int:
    if argv[:1] in (["--version"], ["version"]):
        print("ngrok version 3.99.0-fake")
        return 0
    if argv[:1] != ["start"]:
        print(f"fake ngrok: unsupported command {argv[:1]}", file=sys.stderr)
        return 2
    token, source = _find_authtoken(argv)
    _state.update(pid=os.getpid(), argv=argv, config_path=_option(argv, "--config"), authtoken=token,
                  authtoken_source=source)
    _save()
    if os.environ.get("FAKE_NGROK_REQUIRE_AUTHTOKEN") == "1" and not token:
        _emit('lvl=eror msg="failed to reconnect session" obj=tunnels.session '
              'err="authentication failed: Usage of ngrok requires a verified account and authtoken. ERR_NGROK_4018"')
        return 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.daemon_threads = True
    addr = f"127.0.0.1:{server.server_address[1]}"
    _state["api_addr"] = addr
    _save()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _emit('lvl=info msg="no configuration paths supplied"')
    _emit(f'lvl=info msg="starting web service" obj=web addr={addr} allow_hosts=[]')
    _emit('lvl=info msg="client session established" obj=tunnels.session')
    _emit('lvl=info msg="tunnel session started" obj=tunnels.session')
    threading.Event().wait()  # until killed, like the real agent
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
