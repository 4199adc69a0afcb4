"""The interaction record: what the agent itself said, sent, edited, reacted to or deleted.

`Record` (store.py) keeps it in `record.db` in the state dir; `outbound` (classify.py)
reads an accepted Graph write as one record entry; `history` (history.py) joins it with
the inbox into one conversation, both directions; `tools` (tools.py) is `read_interactions`.
"""

from .classify import Outbound, outbound
from .store import Record

__all__ = ["Outbound", "Record", "outbound"]
