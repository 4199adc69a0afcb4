"""Event Hubs delivery: Graph's change notifications read from an Azure event hub (issue 14).

`settings` checks and derives the AGENTSEAT_EVENTHUB_* settings, `credential` adapts the
agent's token chain to azure-core, `checkpoints` keeps checkpoints and ownership in the
inbox database, `consumer` reads the hub into the webhook's pipeline, `doctor` checks the
namespace. Wiring is in runtime/app.py and cli.py.
"""
