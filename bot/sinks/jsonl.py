"""The file sink: one JSON object a line, appended, flushed and fsynced before the batch counts as delivered.

The file is opened for each batch, so a log rotation (the file moved away, a new one created) is followed at the next
batch. A line cut short by a crash mid-write is closed with a newline before the next batch, so it cannot swallow the
first event after it: that event, and every other one not confirmed, is written again whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.policy.sinks import FileSink
from bot.sinks.base import SinkDown


class JsonLinesFile:
    kind = "file"
    batch = 500

    def __init__(self, config: FileSink) -> None:
        self.name = config.name
        self.path = Path(config.path).expanduser()

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        # ASCII only, as the export writes it: no line separator can hide inside a line.
        lines = "".join(json.dumps(event, ensure_ascii=True, separators=(",", ":")) + "\n" for event in events)
        try:
            created = not self.path.exists()
            with self.path.open("ab") as handle:
                if not created and handle.tell() > 0 and not _ends_with_newline(self.path):
                    handle.write(b"\n")
                handle.write(lines.encode("ascii"))
                handle.flush()
                os.fsync(handle.fileno())
            if created:  # the new name itself must survive a crash too
                _fsync_directory(self.path.parent)
        except OSError as error:
            raise SinkDown(f"cannot append to {self.path} ({error.strerror or type(error).__name__})") from None

    def close(self) -> None:
        pass


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
