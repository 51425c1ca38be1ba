"""A durable, append-only journal for the private events the ingest worker must never lose.

Each record is appended as one JSON line and fsynced before `append` returns; applying it to the database
happens afterwards. `mark_applied(seq)` advances a checkpoint once every record up to `seq` is applied, so after
a crash, a SIGKILL or a database outage `pending()` yields exactly the records not yet applied, in order.
Application must be idempotent (execution reports are keyed by execution id), since a crash between applying
and checkpointing replays that record once more. When everything is applied the journal is compacted.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# fdatasync flushes the appended bytes and the file size (what reading them back needs) without the timestamps.
_sync = getattr(os, "fdatasync", os.fsync)


class Journal:
    def __init__(self, directory: Path, name: str = "journal") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{name}.jsonl"
        self.checkpoint_path = self.directory / f"{name}.checkpoint"
        self._lock = threading.Lock()
        self._repair_torn_tail()
        self._applied = self._read_checkpoint()
        self._done: set[int] = set()
        self._next_seq = self._last_seq() + 1

    def _repair_torn_tail(self) -> None:
        """Cut a partial last line left by a crash mid-write (it was never acknowledged to anyone)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
                handle.flush()
                os.fsync(handle.fileno())

    def _read_checkpoint(self) -> int:
        try:
            return int(self.checkpoint_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def _last_seq(self) -> int:
        last = self._applied
        for seq, _ in self._records():
            last = max(last, seq)
        return last

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                entry = json.loads(line)
                yield int(entry["seq"]), entry["record"]

    def append(self, record: dict[str, Any]) -> int:
        """Write the record durably; returns its sequence number."""
        return self.append_many([record])[0]

    def append_many(self, records: list[dict[str, Any]]) -> list[int]:
        """Write records durably with one write and one flush to disk (a message's items: a snapshot carries
        hundreds); returns their sequence numbers. A crash mid-write leaves whole lines (kept: each is a real
        report, applied idempotently) and at most one torn last line (cut when the journal is reopened)."""
        if not records:
            return []
        with self._lock:
            first = self._next_seq
            data = "".join(
                json.dumps({"seq": first + i, "record": record}, separators=(",", ":")) + "\n"
                for i, record in enumerate(records)
            )
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                _sync(handle.fileno())
            self._next_seq += len(records)
            return list(range(first, self._next_seq))

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """Records appended but not yet marked applied, oldest first."""
        with self._lock:
            return [(seq, rec) for seq, rec in self._records() if seq > self._applied and seq not in self._done]

    def mark_applied(self, seq: int) -> None:
        with self._lock:
            self._done.add(seq)
            advanced = self._applied
            while advanced + 1 in self._done:
                advanced += 1
                self._done.discard(advanced)
            if advanced == self._applied:
                return
            self._applied = advanced
            tmp = self.checkpoint_path.with_suffix(".tmp")
            tmp.write_text(str(advanced))
            os.replace(tmp, self.checkpoint_path)
            if advanced == self._next_seq - 1:
                self._compact()

    def _compact(self) -> None:
        # Everything written is applied: start an empty journal (the checkpoint keeps the sequence going).
        self.path.unlink(missing_ok=True)

    @property
    def applied_through(self) -> int:
        return self._applied
