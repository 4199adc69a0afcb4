"""The AGENTSEAT_EVENTHUB_* settings: what `--mode eventhub` requires, the shapes it accepts, and the
values derived from them (the namespace host, the hub, the `EventHub:` notificationUrl)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentseat.config import Settings
from agentseat.errors import ConfigError
from agentseat.eventhub.client import client_options
from agentseat.eventhub.settings import blob_store, eventhub_name, fully_qualified_namespace, notification_url

SAS = "Endpoint=sb://contoso-events.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=abc="


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, state_dir=Path("/nonexistent/agentseat"), **values)  # type: ignore[arg-type]


def test_eventhub_mode_without_a_namespace_names_both_settings_and_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(mode="eventhub")
    assert "AGENTSEAT_EVENTHUB_NAMESPACE and AGENTSEAT_EVENTHUB_NAME" in caught.value.message
    assert "--mode poll" in (caught.value.hint or "")


def test_other_modes_do_not_require_event_hub_settings() -> None:
    assert settings(mode="poll").mode == "poll"


def test_bare_namespace_gets_the_public_cloud_suffix_and_the_notification_url_form() -> None:
    s = settings(mode="eventhub", eventhub_namespace="Contoso-Events", eventhub_name="graph", tenant_id="t-1")
    assert fully_qualified_namespace(s) == "contoso-events.servicebus.windows.net"
    # change-notifications-delivery-event-hubs: `eventhubname` is a literal segment.
    assert notification_url(s) == \
        "EventHub:https://contoso-events.servicebus.windows.net/eventhubname/graph?tenantId=t-1"
    assert s.eventhub_consumer_group == "$Default"


def test_namespace_and_hub_come_from_a_sas_connection_string() -> None:
    s = settings(mode="eventhub", eventhub_connection_string=SAS + ";EntityPath=graph")
    assert fully_qualified_namespace(s) == "contoso-events.servicebus.windows.net"
    assert eventhub_name(s) == "graph"
    assert "abc=" not in repr(s)  # a SecretStr: the key never reaches a repr or a log


def test_a_connection_string_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="not an Event Hubs SAS connection string"):
        settings(eventhub_connection_string="Endpoint=sb://x.servicebus.windows.net/")


def test_a_hub_that_differs_from_the_policy_entity_is_refused() -> None:
    with pytest.raises(ConfigError, match="EntityPath"):
        settings(mode="eventhub", eventhub_connection_string=SAS + ";EntityPath=graph", eventhub_name="other")


@pytest.mark.parametrize("endpoint", ["https://host:5671", "sb://", "sb://host:5671/hub", "sb://host:99999"])
def test_a_custom_endpoint_must_be_sb_host_port(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="AGENTSEAT_EVENTHUB_ENDPOINT"):
        settings(eventhub_endpoint=endpoint)


def test_the_custom_endpoint_and_its_ca_reach_the_sdk(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = settings(eventhub_endpoint="sb://127.0.0.1:35671", ca_bundle=ca)
    options = client_options(s)
    assert options["custom_endpoint_address"] == "sb://127.0.0.1:35671"
    assert options["connection_verify"] == str(ca)  # the sandbox CA verifies its endpoint too
    assert options["load_balancing_interval"] == 10.0 and options["partition_ownership_expiration_interval"] == 60.0
    # Without a custom endpoint Azure's own certificate is checked against system roots, not AGENTSEAT_CA_BUNDLE.
    assert "connection_verify" not in client_options(settings(ca_bundle=ca))


def test_the_transport_setting_picks_the_sdk_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.eventhub import TransportType

    assert client_options(settings())["transport_type"] == TransportType.Amqp  # AMQP over TLS, 5671, by default
    monkeypatch.setenv("AGENTSEAT_EVENTHUB_TRANSPORT", "WebSocket")  # read from the environment, any case
    s = settings(eventhub_endpoint="sb://private.example.com")
    assert s.eventhub_transport == "websocket"
    assert client_options(s)["transport_type"] == TransportType.AmqpOverWebsocket
    assert client_options(s)["custom_endpoint_address"] == "sb://private.example.com"  # the SDK dials 443 on it


def test_an_unknown_transport_is_a_config_error_naming_both_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSEAT_EVENTHUB_TRANSPORT", "wss")
    with pytest.raises(ConfigError) as caught:
        settings()
    assert caught.value.message == "AGENTSEAT_EVENTHUB_TRANSPORT must be `amqp` or `websocket`, not 'wss'"
    assert "443" in (caught.value.hint or "") and "5671" in (caught.value.hint or "")


def test_the_cli_reports_an_unknown_transport_in_one_line_with_the_config_exit_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from agentseat.cli import main

    monkeypatch.setenv("AGENTSEAT_CONFIG_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv("AGENTSEAT_EVENTHUB_TRANSPORT", "https")
    assert main(["--state-dir", str(tmp_path), "status"]) == ConfigError.exit_code
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "agentseat: AGENTSEAT_EVENTHUB_TRANSPORT must be `amqp` or `websocket`, not 'https'"
    assert err[1].startswith("  hint: ") and "Traceback" not in "\n".join(err)


def test_a_missing_ca_bundle_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EVENTHUB_CA_BUNDLE"):
        settings(eventhub_ca_bundle=tmp_path / "absent.pem")


def test_ownership_expiry_must_outlast_two_balancing_rounds() -> None:
    with pytest.raises(ConfigError, match="OWNERSHIP_SECONDS"):
        settings(eventhub_balance_seconds=30, eventhub_ownership_seconds=40)


def test_checkpoint_store_is_local_or_one_blob_container() -> None:
    assert blob_store("local") is None
    store = blob_store("https://acct.blob.core.windows.net/checkpoints?sv=2024&sig=x")
    assert store is not None and store.account_url == "https://acct.blob.core.windows.net"
    assert store.container == "checkpoints" and store.sas == "sv=2024&sig=x"
    azurite = blob_store("http://127.0.0.1:10000/devstoreaccount1/checkpoints?sv=2024&sig=x")
    assert azurite is not None and azurite.account_url == "http://127.0.0.1:10000/devstoreaccount1"
    token = blob_store("https://127.0.0.1:10000/devstoreaccount1/checkpoints")  # Azurite on HTTPS, the agent's token
    assert token is not None and token.account_url == "https://127.0.0.1:10000/devstoreaccount1" and not token.sas
    for bad in ("blob", "https://acct.blob.core.windows.net/", "https://acct.blob.core.windows.net/c/blob",
                "http://storage.example.com/acct/c?sig=x",
                "http://127.0.0.1:10000/devstoreaccount1/checkpoints"):  # no SAS: a token, never over http
        with pytest.raises(ConfigError, match="AGENTSEAT_CHECKPOINT_STORE"):
            settings(checkpoint_store=bad)
