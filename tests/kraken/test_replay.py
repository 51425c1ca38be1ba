"""The replay CLI, run as a real subprocess: exact output and exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRECISION_ARGS = ["--depth", "10", "--price-precision", "1", "--qty-precision", "8"]


def run_replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.kraken.replay", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_replay_of_the_recording_verifies_every_checksum(recording: Path) -> None:
    proc = run_replay(str(recording), *PRECISION_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '{"messages": 510, "checksums_verified": 510, "mismatches": 0}\n'


def test_replay_with_a_corrupted_qty_reports_mismatches_and_exits_1(tmp_path: Path, recording: Path) -> None:
    lines = recording.read_text().splitlines()
    assert "8.25182177" in lines[2]
    lines[2] = lines[2].replace("8.25182177", "8.25182178")
    corrupted = tmp_path / "corrupted.jsonl"
    corrupted.write_text("\n".join(lines) + "\n")
    proc = run_replay(str(corrupted), *PRECISION_ARGS)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    # Line 3 mismatches; the book stays invalid (no later snapshot), so the rest cannot be verified.
    assert result == {"messages": 510, "checksums_verified": 2, "mismatches": 508}
    assert "checksum mismatch" in proc.stderr


def test_replay_skips_non_book_messages_and_recovers_at_a_new_snapshot(tmp_path: Path, recording: Path) -> None:
    lines = recording.read_text().splitlines()
    bad = lines[1].replace('"checksum":3547452596', '"checksum":1')
    stream = [
        '{"channel":"heartbeat"}',
        lines[0],
        bad,
        lines[2],
        lines[0],
        *lines[1:5],
        '{"method":"pong","req_id":1}',
    ]
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join(stream) + "\n\n")
    proc = run_replay(str(path), *PRECISION_ARGS)
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"messages": 8, "checksums_verified": 6, "mismatches": 2}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["FILE", "--depth", "5", "--price-precision", "1", "--qty-precision", "8"],
        ["FILE", "--depth", "ten", "--price-precision", "1", "--qty-precision", "8"],
        ["FILE", "--depth", "10", "--qty-precision", "8"],
        ["FILE", "--depth", "10", "--price-precision", "-1", "--qty-precision", "8"],
    ],
)
def test_replay_bad_usage_exits_2(args: list[str], recording: Path) -> None:
    proc = run_replay(*[str(recording) if a == "FILE" else a for a in args])
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "usage" in proc.stderr


def test_replay_of_a_missing_file_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    proc = run_replay(str(tmp_path / "absent.jsonl"), *PRECISION_ARGS)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "cannot read" in proc.stderr
    assert "absent.jsonl" in proc.stderr


def test_replay_of_a_file_with_a_non_json_line_exits_2(tmp_path: Path, recording: Path) -> None:
    lines = recording.read_text().splitlines()[:3]
    lines.insert(2, "this is not json")
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines))
    proc = run_replay(str(path), *PRECISION_ARGS)
    assert proc.returncode == 2
    assert "line 3" in proc.stderr


def test_replay_of_a_binary_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    proc = run_replay(str(path), *PRECISION_ARGS)
    assert proc.returncode == 2
    assert "UTF-8" in proc.stderr
