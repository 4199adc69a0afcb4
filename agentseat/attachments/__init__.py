"""Attachments on Teams messages, in and out: what an inbound message carries (inbound.py), the
names and ids the agent sees (names.py), and which local files may leave the device (outbound.py).

Graph calls live in agentseat/graph/ (drive.py, content.py); the MCP tools in agentseat/tools/.
"""
