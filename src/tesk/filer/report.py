"""How a filer's report reaches the Kubernetes taskmaster: in the container's termination message.

The termination message travels in the pod's status, so no log limit, cut or rotation loses it. The
kubelet keeps at most `TERMINATION_LOG_BYTES` of it; a report larger than that is replaced there by
`{"report_bytes": N}` and read back from the end of the pod's log, where the filer printed it last.
"""

from __future__ import annotations

import json

TERMINATION_LOG_BYTES = 4096
"""What the kubelet keeps of a container's termination message (kubelet: maxMsgSize)."""
REPORT_BYTES = "report_bytes"
"""The termination message's key for the size of a report too big for the message itself."""


def termination_message(report: str) -> str:
    """The report itself when it fits in a termination message, else its size in bytes."""
    size = len(report.encode())
    return report if size <= TERMINATION_LOG_BYTES else json.dumps({REPORT_BYTES: size})
