"""This machine's floors, measured in the same run as the figures they judge (issue 16, point 1).

What one notification cannot cost less than, whatever the runtime does:

- **crypto**: the runtime's own functions on a genuine rich item: `KeyRing.decrypt`
  (RSA-OAEP unwrap of the AES key, HMAC-SHA256 check, AES-CBC decrypt; runtime/crypto.py)
  and `assess_tokens` on one fresh RS256 validation token (runtime/verify.py; its cache of
  verified tokens is off, so every call verifies the signature). Beside it, the same four
  operations called straight on `cryptography`, each timed alone: the raw cost.
- **loopback**: one HTTP round trip, aiohttp client to aiohttp server on 127.0.0.1,
  keep-alive, a notification-sized POST answered 202 (as the webhook answers).
- **commit**: one SQLite write transaction in the inbox's mode (agentseat/storage.py:
  WAL, synchronous NORMAL, BEGIN IMMEDIATE), one event-sized row.
- **pipe**: one MCP-push-sized line written to a child process's stdin and parsed there
  with `json.loads`, one way (both ends read CLOCK_MONOTONIC, shared by every process).
- **at the latency run's pace**: the same four, one notification's worth (a round trip, the
  crypto, a commit, a pipe line) every 1/10 s, the pace of the latency run whose p99 they judge
  (bench/latency.py, `RATE`). A machine that sits idle between messages runs each of them cold:
  on the 2-core VM of BENCHMARKS.md the round trip took 10x and the commit 14x its hot median.
  The own-overhead goal compares like with like (bench/ratios.py); the hot floors stay beside it.
- **beyond one core**: the runtime's decrypt in one thread, two threads and two processes at
  once, with the CPU each setup got (issue 16, point 2: does a second thread or process pay?).
- **import**: a fresh interpreter importing aiohttp and the mcp SDK's server side
  (what `serve` needs of them), best of a few; and a bare interpreter for comparison.

Every figure is the median of its samples, in microseconds (import: seconds). The
crypto-bound rate is 1 / crypto: one core doing nothing but the crypto. A benchmark run
measures them at its start and again at its end (bench/run.py) and is judged against the mean
of the two (bench/ratios.py); `python -m bench floors` measures them once and prints them alone.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
import anyio
import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from agentseat.config import GRAPH_CHANGE_TRACKING_APP_ID
from agentseat.runtime.crypto import KeyRing, encrypt_content
from agentseat.runtime.verify import JwksCache, assess_tokens
from agentseat.storage import connect, create_private, immediate

from .coldstart import FLOOR_CODE, fresh_import_seconds
from .harness import REPO, quiet_logging

TENANT = "9f4ebab6-520d-49c0-85cc-7b25c78d4a93"
AUDIENCE = "925bff9f-f6e2-4a69-b858-f71ea2b9b6d0"
KID = "bench-floor"
#: Seconds of decrypting per setup (one thread, two threads, two processes).
SCALING_SECONDS = 1.0
PROCESS_LEAD_S = 4.0  # a spawned worker imports cryptography and agentseat's crypto before its first task
WARM_UP = 20  # samples not counted (connections, caches, the child's first reads)
#: Sample counts per profile.
SAMPLES = {"quick": 300, "full": 2000}
#: Samples of the paced floors; each takes one period (`PACE_S`), so these are 10 and 30 seconds.
PACED_SAMPLES = {"quick": 100, "full": 300}
PACE_S = 0.1  # bench/latency.py's RATE of 10 messages/s


def _us(values: list[float]) -> float:
    return round(median(values) * 1e6, 1)


# --- a genuine rich item --------------------------------------------------------------------------------
def _certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentseat-bench-floor")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))


def chat_message(text_chars: int = 300) -> bytes:
    """A chatMessage as Graph puts it in `encryptedContent` (about the size the sandbox sends)."""
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    user = {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": str(uuid.uuid4()),
            "displayName": "Megan Bowen", "userIdentityType": "aadUser", "tenantId": TENANT}
    return json.dumps({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#chats('19%3Abench')/messages/$entity",
        "id": str(int(time.time() * 1000)), "replyToId": None, "etag": "1", "messageType": "message",
        "createdDateTime": now, "lastModifiedDateTime": now, "lastEditedDateTime": None, "deletedDateTime": None,
        "subject": None, "summary": None, "chatId": "19:bench_floor@unq.gbl.spaces", "importance": "normal",
        "locale": "en-us", "webUrl": None, "channelIdentity": None, "policyViolation": None,
        "eventDetail": None, "from": {"application": None, "device": None, "user": user},
        "body": {"contentType": "text", "content": "x" * text_chars},
        "attachments": [], "mentions": [], "reactions": [],
    }).encode()


class Item:
    """One notification's crypto material: the agent's key, the encrypted resource, a signed token."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # as identity/keys.py makes it
        self.certificate = _certificate(self.key)
        self.signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # Entra's key
        self.ring = KeyRing()
        self.ring.add(self.key, certificate=self.certificate, certificate_id="bench-floor-cert")
        self.plaintext = chat_message()
        self.encrypted = encrypt_content(self.plaintext, self.certificate, "bench-floor-cert")
        now = int(time.time())
        claims = {"aud": AUDIENCE, "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "iat": now,
                  "nbf": now, "exp": now + 3600, "azp": GRAPH_CHANGE_TRACKING_APP_ID, "azpacr": "2",
                  "tid": TENANT, "ver": "2.0"}
        self.token = jwt.encode(claims, self.signing, algorithm="RS256", headers={"kid": KID})

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.signing.public_key()))
        return {"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}


# --- crypto -----------------------------------------------------------------------------------------------
async def crypto(item: Item, jwks: JwksCache, samples: int) -> dict[str, Any]:
    """The runtime's decrypt and one token check per sample, then the raw `cryptography` steps."""
    decrypt, verify = [], []
    for _ in range(samples):
        t0 = time.perf_counter()
        plain = item.ring.decrypt(item.encrypted)
        t1 = time.perf_counter()
        report = await assess_tokens([item.token], jwks=jwks, audiences=(AUDIENCE,), tenant_ids=(TENANT,),
                                     caller_app_id=GRAPH_CHANGE_TRACKING_APP_ID)
        t2 = time.perf_counter()
        if plain != item.plaintext or report.reason is not None:
            raise RuntimeError(f"the floor's item did not verify: {report.reason}")
        decrypt.append(t1 - t0)
        verify.append(t2 - t1)
    raw = _raw_crypto(item, samples)
    runtime_us = round(_us(decrypt) + _us(verify), 1)
    return {
        "runtime_decrypt_us": _us(decrypt), "runtime_token_verify_us": _us(verify), "runtime_us": runtime_us,
        "raw": raw, "raw_us": round(sum(raw.values()), 1),
        "resource_bytes": len(item.plaintext), "rsa_bits": item.key.key_size, "samples": samples,
    }


def _raw_crypto(item: Item, samples: int) -> dict[str, float]:
    """The four operations alone, on `cryptography` directly: what the runtime's functions wrap."""
    oaep = asym_padding.OAEP(mgf=asym_padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    wrapped = base64.b64decode(item.encrypted["dataKey"])
    data = base64.b64decode(item.encrypted["data"])
    signature = base64.b64decode(item.encrypted["dataSignature"])
    signing_input, _, sig_b64 = item.token.rpartition(".")
    token_sig = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    public = item.signing.public_key()
    times: dict[str, list[float]] = {"rsa_oaep_unwrap_us": [], "hmac_sha256_us": [], "aes_cbc_decrypt_us": [],
                                     "rs256_verify_us": []}
    for _ in range(samples):
        t0 = time.perf_counter()
        key = item.key.decrypt(wrapped, oaep)
        t1 = time.perf_counter()
        ok = hmac.compare_digest(hmac.new(key, data, hashlib.sha256).digest(), signature)
        t2 = time.perf_counter()
        dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        unpadder = sym_padding.PKCS7(128).unpadder()
        unpadder.update(dec.update(data) + dec.finalize()) + unpadder.finalize()
        t3 = time.perf_counter()
        public.verify(token_sig, signing_input.encode(), asym_padding.PKCS1v15(), hashes.SHA256())
        t4 = time.perf_counter()
        if not ok:
            raise RuntimeError("the floor's item failed its HMAC")
        for name, took in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[name].append(took)
    return {name: _us(values) for name, values in times.items()}


# --- beyond one core -----------------------------------------------------------------------------------------
def _decrypt_until(pem: bytes, encrypted: dict[str, str], start: float, seconds: float) -> tuple[int, float]:
    """Decrypts from `start` (CLOCK_MONOTONIC, shared by every process) for `seconds`; returns the
    count and the CPU seconds this thread got meanwhile."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(pem, password=None)
    ring = KeyRing()
    ring.add(key, certificate_id=encrypted["encryptionCertificateId"])  # type: ignore[arg-type]
    while time.monotonic() < start:
        time.sleep(0.001)
    done, end, cpu = 0, start + seconds, time.thread_time()
    while time.monotonic() < end:
        ring.decrypt(encrypted)
        done += 1
    return done, time.thread_time() - cpu


def parallel_decrypt(item: Item, seconds: float) -> dict[str, Any]:
    """Decrypts per second in one thread, two threads and two processes, all at once per setup:
    whether a second thread or process pays for itself (the pinned cryptography holds the GIL
    for RSA, so two threads should do no better than one)."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
    from multiprocessing import get_context

    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    pem = item.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    out: dict[str, Any] = {"seconds": seconds}
    for label, pool, workers in (("one_thread", ThreadPoolExecutor, 1), ("two_threads", ThreadPoolExecutor, 2),
                                 ("two_processes", ProcessPoolExecutor, 2)):
        extra = {"mp_context": get_context("spawn")} if pool is ProcessPoolExecutor else {}
        with pool(max_workers=workers, **extra) as executor:  # type: ignore[operator]
            # Each task blocks until `start`, so each worker takes one; a spawned interpreter needs
            # time to import before it can take its task, hence the longer lead for processes.
            start = time.monotonic() + (PROCESS_LEAD_S if pool is ProcessPoolExecutor else 0.2)
            got = list(executor.map(_decrypt_until, [pem] * workers, [item.encrypted] * workers,
                                    [start] * workers, [seconds] * workers))
        out[f"{label}_per_s"] = round(sum(n for n, _ in got) / seconds)
        # CPU the workers got: on a busy machine a low rate with few cores is starvation, not the GIL.
        out[f"{label}_cores"] = round(sum(c for _, c in got) / seconds, 2)
    one = out["one_thread_per_s"] or 1
    out["two_threads_speedup"] = round(out["two_threads_per_s"] / one, 2)
    out["two_processes_speedup"] = round(out["two_processes_per_s"] / one, 2)
    return out


# --- loopback HTTP ------------------------------------------------------------------------------------------
@asynccontextmanager
async def loopback_server(jwks: dict[str, Any]) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """An aiohttp server on 127.0.0.1 answering POST /notifications 202 (as the webhook does) and
    serving `jwks` at /keys; yields its URL and a client session with one kept-alive connection."""
    async def notify(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    async def keys(_: web.Request) -> web.Response:
        return web.json_response(jwks)

    app = web.Application()
    app.router.add_post("/notifications", notify)
    app.router.add_get("/keys", keys)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            yield f"http://127.0.0.1:{port}", session
    finally:
        await runner.cleanup()


async def round_trips(base: str, session: aiohttp.ClientSession, body_bytes: int, samples: int) -> dict[str, Any]:
    """One notification-sized POST and its 202 per sample, after a warm-up."""
    body = b"{" + b" " * (body_bytes - 2) + b"}"
    headers = {"Content-Type": "application/json"}
    rtt = []
    for i in range(samples + WARM_UP):
        t0 = time.perf_counter()
        async with session.post(f"{base}/notifications", data=body, headers=headers) as response:
            await response.read()
        if i >= WARM_UP:  # the first requests open the connection and warm aiohttp's caches
            rtt.append(time.perf_counter() - t0)
        if response.status != 202:
            raise RuntimeError(f"loopback server answered {response.status}")
    return {"round_trip_us": _us(rtt), "body_bytes": body_bytes, "samples": samples}


# --- SQLite -------------------------------------------------------------------------------------------------
class _Commits:
    """A table like the inbox's events, in the inbox's mode (agentseat/storage.py); `one()` times a commit."""

    def __init__(self, root: Path, name: str) -> None:
        path = root / name
        create_private(path)
        self.conn, self.mode = connect(path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                          "key TEXT NOT NULL UNIQUE, text TEXT NOT NULL)")

    def one(self) -> float:
        """One BEGIN IMMEDIATE; INSERT of an event-sized row; COMMIT."""
        t0 = time.perf_counter()
        with immediate(self.conn) as tx:
            tx.execute("INSERT INTO events(key, text) VALUES (?, ?)", (uuid.uuid4().hex, "x" * 600))
        return time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


def commit(root: Path, samples: int) -> dict[str, Any]:
    """One BEGIN IMMEDIATE; INSERT; COMMIT per sample, in the inbox's mode (agentseat/storage.py)."""
    commits = _Commits(root, "floor-commit.db")
    try:
        took = [commits.one() for _ in range(samples)]
        synchronous = commits.conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        commits.close()
    return {"commit_us": _us(took), "journal_mode": commits.mode, "synchronous": synchronous, "samples": samples}


# --- pipe ---------------------------------------------------------------------------------------------------
_CHILD = """
import json, sys, time
took = []
out = sys.stdout
for line in sys.stdin:
    message = json.loads(line)
    if not message.get("warm"):
        took.append(time.perf_counter() - message["sent"])
    out.write("\\n"); out.flush()
out.write(json.dumps(took) + "\\n"); out.flush()
"""
_PUSH = {"jsonrpc": "2.0", "method": "notifications/claude/channel",
         "params": {"content": "x" * 300,
                    "meta": {"chat_id": "19:bench@unq.gbl.spaces", "message_id": "1733520000000",
                             "user": "Megan Bowen", "ts": "2026-12-07T00:00:00Z", "kind": "teams"}}}


class _Pipe:
    """A child process that `json.loads` each line written to its stdin and answers, so that no
    line waits behind another; its one-way times (CLOCK_MONOTONIC, shared) come back at `close`."""

    def __init__(self) -> None:
        self.child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, bufsize=0)
        self.line_bytes = 0

    def one(self, *, warm: bool = False) -> None:
        assert self.child.stdin is not None and self.child.stdout is not None
        line = (json.dumps({**_PUSH, "warm": warm, "sent": time.perf_counter()}) + "\n").encode()
        self.line_bytes = len(line)
        self.child.stdin.write(line)
        self.child.stdout.readline()

    def close(self) -> list[float]:
        assert self.child.stdin is not None and self.child.stdout is not None
        try:
            self.child.stdin.close()
            return [float(t) for t in json.loads(self.child.stdout.readline())]
        finally:
            self.child.wait(10)


def pipe(samples: int) -> dict[str, Any]:
    """One MCP-push-sized line to a child's stdin and its `json.loads` there, one way."""
    child = _Pipe()
    for i in range(samples + WARM_UP):
        child.one(warm=i < WARM_UP)
    took = child.close()
    return {"write_and_parse_us": _us(took), "line_bytes": child.line_bytes, "samples": samples}


# --- at the latency run's pace --------------------------------------------------------------------------------
async def paced(item: Item, jwks: JwksCache, base: str, session: aiohttp.ClientSession, root: Path,
                samples: int, period: float = PACE_S) -> dict[str, Any]:
    """One notification's worth of the four floors every `period`: round trip, crypto, commit, pipe.

    In the order a notification meets them, nothing else running in this process between
    samples, as the latency run's messages arrive (open loop, one every `period`).
    """
    body = b"{" + b" " * 2046 + b"}"
    headers = {"Content-Type": "application/json"}
    commits, child = _Commits(root, "floor-paced.db"), _Pipe()
    took: dict[str, list[float]] = {"loopback": [], "crypto": [], "commit": []}
    try:
        next_at = time.perf_counter()
        for i in range(samples + WARM_UP):
            t0 = time.perf_counter()
            async with session.post(f"{base}/notifications", data=body, headers=headers) as response:
                await response.read()
            t1 = time.perf_counter()
            item.ring.decrypt(item.encrypted)
            report = await assess_tokens([item.token], jwks=jwks, audiences=(AUDIENCE,), tenant_ids=(TENANT,),
                                         caller_app_id=GRAPH_CHANGE_TRACKING_APP_ID)
            t2 = time.perf_counter()
            commit_s = commits.one()
            child.one(warm=i < WARM_UP)
            if report.reason is not None or response.status != 202:
                raise RuntimeError(f"a paced sample failed: {report.reason or response.status}")
            if i >= WARM_UP:
                took["loopback"].append(t1 - t0)
                took["crypto"].append(t2 - t1)
                took["commit"].append(commit_s)
            next_at += period
            await anyio.sleep(max(0.0, next_at - time.perf_counter()))
    finally:
        commits.close()
        pipe_took = child.close()
    out: dict[str, Any] = {f"{name}_us": _us(values) for name, values in took.items()}
    out["pipe_us"] = _us(pipe_took)
    out["sum_us"] = round(sum(out.values()), 1)
    out |= {"period_s": period, "samples": samples}
    return out


# --- imports ------------------------------------------------------------------------------------------------
def import_floor(repeat: int = 3) -> dict[str, Any]:
    """Fastest fresh interpreter importing aiohttp and the mcp SDK (bench/coldstart.py's floor, the
    same code and timing), and a bare interpreter beside it."""
    return {"import_s": fresh_import_seconds(FLOOR_CODE, str(REPO), repeat),
            "python_s": fresh_import_seconds("pass", str(REPO), repeat), "code": FLOOR_CODE, "repeat": repeat}


# --- all of them ----------------------------------------------------------------------------------------------
async def measure(root: Path, *, samples: int = 300, paced_samples: int = PACED_SAMPLES["quick"],
                  import_repeat: int = 3) -> dict[str, Any]:
    """Every floor, and the sums the goals are judged against (see bench/ratios.py)."""
    root.mkdir(parents=True, exist_ok=True)
    item = Item()
    async with loopback_server(item.jwks()) as (base, session):
        http = await round_trips(base, session, 2048, samples)
        jwks = JwksCache(f"{base}/keys", session, ssl=False, max_remembered_tokens=0)
        await assess_tokens([item.token], jwks=jwks, audiences=(AUDIENCE,), tenant_ids=(TENANT,),
                            caller_app_id=GRAPH_CHANGE_TRACKING_APP_ID)  # fetches the keys once
        crypto_floor = await crypto(item, jwks, samples)
        at_pace = await paced(item, jwks, base, session, root, paced_samples)
    scaling = await anyio.to_thread.run_sync(parallel_decrypt, item, SCALING_SECONDS)
    sqlite_floor = await anyio.to_thread.run_sync(commit, root, samples)
    pipe_floor = await anyio.to_thread.run_sync(pipe, samples)
    imports = await anyio.to_thread.run_sync(import_floor, import_repeat)
    crypto_us = crypto_floor["runtime_us"]
    return {
        "crypto": crypto_floor, "parallel_decrypt": scaling, "loopback": http, "commit": sqlite_floor,
        "pipe": pipe_floor, "imports": imports, "paced": at_pace,
        "crypto_us": crypto_us,
        "crypto_bound_items_per_s": round(1e6 / crypto_us) if crypto_us else None,
        "overhead_floor_us": round(crypto_us + http["round_trip_us"] + sqlite_floor["commit_us"]
                                   + pipe_floor["write_and_parse_us"], 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench floors", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES["full"])
    parser.add_argument("--paced-samples", type=int, default=PACED_SAMPLES["full"])
    args = parser.parse_args(argv)
    quiet_logging()  # warnings only, to stderr: stdout is the result
    with tempfile.TemporaryDirectory(prefix="agentseat-bench-floors-") as root:
        result = anyio.run(lambda: measure(Path(root), samples=args.samples, paced_samples=args.paced_samples))
    print(json.dumps(result, indent=1))
    return 0
