"""Helpers the sections share: list parsing and the default data folder."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """A per-user data folder, as XDG says: `$XDG_DATA_HOME/tesk` or `~/.local/share/tesk`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tesk"


def comma_list(text: str | None) -> list[str]:
    """The non-empty, stripped items of a comma-separated setting (`"a, b,,"` gives `["a", "b"]`).

    One parser for every list-valued environment variable, so all of them accept the same spacing.
    """
    return [part.strip() for part in (text or "").split(",") if part.strip()]
