"""The journal keeps every record until it is applied, across crashes and restarts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from ingest.journal import Journal
from tests.conftest import ROOT


def test_records_stay_pending_until_applied_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    seqs = [journal.append({"exec_id": f"E{i}"}) for i in range(3)]
    assert seqs == [1, 2, 3]
    journal.mark_applied(2)  # out of order: the checkpoint cannot pass 1 yet
    assert journal.applied_through == 0
    assert [r["exec_id"] for _, r in journal.pending()] == ["E0", "E2"]
    journal.mark_applied(1)
    assert journal.applied_through == 2
    assert [r["exec_id"] for _, r in journal.pending()] == ["E2"]


def test_a_new_process_sees_what_the_old_one_did_not_apply(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    for i in range(4):
        first.append({"exec_id": f"E{i}"})
    first.mark_applied(1)
    first.mark_applied(2)
    second = Journal(tmp_path)
    assert [seq for seq, _ in second.pending()] == [3, 4]
    assert second.append({"exec_id": "E4"}) == 5


def test_compaction_keeps_the_sequence_going(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append({"a": 1})
    journal.mark_applied(1)
    assert not journal.path.exists()
    assert Journal(tmp_path).append({"a": 2}) == 2


def test_records_survive_sigkill_of_the_writer(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from ingest.journal import Journal
        j = Journal(Path({str(tmp_path)!r}))
        for i in range(50):
            j.append({{"exec_id": "E%d" % i}})
        j.mark_applied(1)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=False)
    assert result.returncode == -9
    pending = Journal(tmp_path).pending()
    assert [r["exec_id"] for _, r in pending] == [f"E{i}" for i in range(1, 50)]


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append({"exec_id": "E0"})
    with journal.path.open("a") as handle:
        handle.write('{"seq": 2, "record": {"exe')  # a crash in the middle of a write
    reopened = Journal(tmp_path)
    assert [r["exec_id"] for _, r in reopened.pending()] == ["E0"]
    assert reopened.append({"exec_id": "E1"}) == 2
    assert [r["exec_id"] for _, r in Journal(tmp_path).pending()] == ["E0", "E1"]
