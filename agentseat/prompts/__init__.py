"""The agent's body prompt (agent_system.md + anatomy/*.md) and its loader."""
