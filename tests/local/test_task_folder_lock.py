"""One live server per task folder: a second one is refused with a message saying what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tesk.backends.local import LocalBackend
from tesk.config import TeskConfig
from tesk.store.sql import SqlTaskStore


async def test_a_second_server_on_the_same_task_folder_is_refused(tmp_path: Path) -> None:
    config = TeskConfig.read(server={"data_dir": tmp_path}, local={"max_tasks": 0})  # draining: no engine needed
    store = SqlTaskStore(config.database_url)
    await store.open()
    first, second = LocalBackend.from_config(config, store), LocalBackend.from_config(config, store)
    try:
        await first.start()
        with pytest.raises(RuntimeError, match="another tesk server is running tasks from .*TESK_DATA_DIR"):
            await second.start()
        assert second.generation is None, "the refused server took no lease"
        await first.stop()
        again = LocalBackend.from_config(config, store)
        await again.start()  # the folder is free once the first server stopped
        await again.stop()
    finally:
        await store.close()
