"""agentseat: a device-local AI agent's own Microsoft Entra Agent ID seat, event-driven."""

__version__ = "0.1.0"
