"""Filer errors: one clear line for a task's `system_logs`, never a credential.

Every message names the URL (with its credentials removed), what the other side said, and what the
user or operator can do about it. The class says whether trying again can help: the transfer engine
retries `TransientError` with backoff and gives up at once on everything else (4xx, bad paths,
refused URLs).
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from tesk.models import OutputFileLog

_SECRET_PARAM = re.compile(r"sig|signature|token|key|credential|secret|password|auth", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL as it may appear in logs: no user or password, no signature-like query values.

    Presigned S3/GCS/Azure URLs carry their secret in the query string, so those values are
    replaced too; the rest of the URL stays readable so people can tell which file failed.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "REDACTED" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="/:,")
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


class FilerError(Exception):
    """A transfer failed or was refused; `str(error)` is the line for the task's system_logs."""


class TransientError(FilerError):
    """A failure that may go away when tried again (5xx, timeouts, dropped connections)."""


class NotFoundError(FilerError):
    """The remote file or folder does not exist (used to tell a missing file from a folder)."""


class RefusedError(FilerError):
    """The filer will not touch this URL or path (policy, not a failure of the remote side)."""


class TransferTimeout(FilerError):
    """One transfer ran past `TESK_FILER_TRANSFER_TIMEOUT`; retrying would only repeat it."""


class StagingError(FilerError):
    """Some outputs failed; `outputs` still lists the files that were uploaded before and after."""

    def __init__(self, message: str, outputs: list[OutputFileLog]) -> None:
        super().__init__(message)
        self.outputs = outputs
