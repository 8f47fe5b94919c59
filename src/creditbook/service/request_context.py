"""The id of the request being served, in a context variable.

The HTTP middleware sets it for each request; every log record is stamped
with it (``entrypoints/api/logs.py``), and the group committer reads it when
a command is queued, so a batch's log lines name the requests of that batch
(the committer itself runs with no request id of its own).
"""

from __future__ import annotations

from contextvars import ContextVar

NO_REQUEST = "-"
request_id_var: ContextVar[str] = ContextVar("creditbook_request_id", default=NO_REQUEST)
