"""The certificate part of `agentseat setup`: generate, append, rotate and retire.

The Blueprint's keyCredentials are only ever appended to (addKey, or PATCH that sends the
existing entries back), so a certificate another machine registered keeps working. A rotation
appends the new certificate and switches the active one; the old stays registered, and valid,
until `--retire-old` removes it (removeKey) and deletes its local key. The Graph calls live in
`provision_graph.py`, the local store in `keys.py`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from ..errors import KeyStoreError, ProvisionError
from .keys import AgentCertificate, StoredCertificate, generate_certificate
from .provision_checks import NEEDS
from .provision_graph import credential_sha1

if TYPE_CHECKING:
    from .provision import Action, Plan, Provisioner, SetupOptions

log = structlog.get_logger(__name__)

_WHY_APPEND = ("the Blueprint's client assertion (hop 1) is signed with it; it is appended, never replacing "
               "another machine's certificate (application-addkey, application-update)")


class KeySteps:
    """Plans and applies the certificate steps of one setup run."""

    def __init__(self, provisioner: Provisioner, options: SetupOptions) -> None:
        self.p = provisioner
        self.options = options
        self.store = provisioner.store

    async def plan(self, plan: Plan) -> None:
        seat, store = self.p.seat, self.store
        stored: list[StoredCertificate] = await anyio.to_thread.run_sync(store.list)
        active = next((c for c in stored if c.active), None)
        registered = await self._registered()
        now = dt.datetime.now(dt.timezone.utc)
        rotate = self.options.rotate_key or (active is not None and active.not_after <= now)
        if rotate:
            reason = "--rotate-key" if self.options.rotate_key else \
                f"the active certificate expired {active and active.not_after:%Y-%m-%d}"
            plan.check(False, "", f"generate a new certificate, append it to the Blueprint and make it active "
                       f"({reason})", _WHY_APPEND + "; the old one stays valid until --retire-old", self._rotate,
                       NEEDS["keys"])
        elif active is None:
            plan.check(False, "", "generate a certificate, store its key encrypted and append it to the Blueprint",
                       _WHY_APPEND, self._first, NEEDS["keys"])
        else:
            seat.cert_sha1 = active.sha1
            expires = f"{active.not_after:%Y-%m-%d}"
            plan.check(active.sha1 in registered,
                       f"certificate {active.sha1} is registered on the Blueprint (expires {expires})",
                       f"append the active certificate {active.sha1} to the Blueprint", _WHY_APPEND,
                       self._append_active, NEEDS["keys"])
        if self.options.retire_old:
            old = [c.sha1 for c in stored if not c.active or rotate]
            for sha1 in old:
                plan.check(False, "", f"remove certificate {sha1} from the Blueprint and delete its local key",
                           "a retired certificate should not be able to sign in anywhere (application-removekey)",
                           self._retire_action(sha1), NEEDS["keys"])
            if not old:
                plan.check(True, "no old certificate to retire", "", "")

    async def _registered(self) -> dict[str, dict[str, Any]]:
        """SHA-1 -> keyCredential of the certificates now on the Blueprint."""
        blueprint = self.p.seat.blueprint
        if blueprint is None:
            return {}
        entries = await self.p.d.key_credentials(str(blueprint["id"]))
        return {sha1: e for e in entries if (sha1 := credential_sha1(e)) is not None}

    async def _signer(self, registered: dict[str, dict[str, Any]], exclude: str = "") -> AgentCertificate | None:
        """A locally held certificate that is registered and valid now: it can sign an addKey proof."""
        now = dt.datetime.now(dt.timezone.utc)
        for cert in await anyio.to_thread.run_sync(self.store.list):
            if cert.sha1 in registered and cert.sha1 != exclude and cert.not_after > now:
                try:
                    return await anyio.to_thread.run_sync(self.store.load, cert.sha1)
                except KeyStoreError as exc:
                    log.warning("provision_signer_unusable", thumbprint=cert.sha1, error=exc.message)
        return None

    async def _upload(self, cert: AgentCertificate) -> None:
        blueprint = self.p.seat.blueprint
        assert blueprint is not None
        object_id = str(blueprint["id"])

        async def append() -> str:
            registered = await self._registered()
            if cert.sha1_thumbprint in registered:
                return "already registered"
            signer = await self._signer(registered, exclude=cert.sha1_thumbprint)
            return await self.p.d.append_key(object_id, cert, signer)

        how = await self.p.eventually(append)
        log.info("certificate_registered", thumbprint=cert.sha1_thumbprint, how=how)

    async def _new_certificate(self) -> AgentCertificate:
        blueprint = self.p.seat.blueprint
        assert blueprint is not None
        cert = await anyio.to_thread.run_sync(generate_certificate, f"agentseat-blueprint-{blueprint['appId']}")
        await anyio.to_thread.run_sync(self.store.add, cert)
        return cert

    async def _first(self) -> None:
        cert = await self._new_certificate()  # the store's first certificate becomes active by itself
        await self._upload(cert)
        self.p.seat.cert_sha1 = cert.sha1_thumbprint

    async def _append_active(self) -> None:
        cert = await anyio.to_thread.run_sync(self.store.load, None)
        await self._upload(cert)
        self.p.seat.cert_sha1 = cert.sha1_thumbprint

    async def _rotate(self) -> None:
        cert = await self._new_certificate()
        # Registered first, active second: the runtime never signs with an unregistered key.
        await self._upload(cert)
        await anyio.to_thread.run_sync(self.store.set_active, cert.sha1_thumbprint)
        self.p.seat.cert_sha1 = cert.sha1_thumbprint

    def _retire_action(self, sha1: str) -> Action:
        async def retire() -> None:
            blueprint = self.p.seat.blueprint
            assert blueprint is not None
            registered = await self._registered()
            if sha1 in registered:
                signer = await self._signer(registered, exclude=sha1)
                if signer is None:
                    raise ProvisionError(f"cannot remove certificate {sha1}: no other registered certificate is held "
                                         "here to prove possession", hint="run `agentseat setup` first, then retire")
                await self.p.d.remove_key(str(blueprint["id"]), str(registered[sha1]["keyId"]), signer)
            if sha1 in {c.sha1 for c in await anyio.to_thread.run_sync(self.store.list)}:
                await anyio.to_thread.run_sync(self.store.retire, sha1)
        return retire
