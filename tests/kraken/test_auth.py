"""API-Sign (Kraken's published vector) and nonce sources, with several real processes sharing one key."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from ingest.kraken.auth import FileLockNonce, ProcessNonce, sign

VECTOR_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
VECTOR_BODY = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
VECTOR_SIGN = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="

PROCESSES = 6
DRAWS = 3000


def test_sign_reproduces_krakens_published_vector() -> None:
    assert sign("/0/private/AddOrder", "1616492376594", VECTOR_BODY, VECTOR_SECRET) == VECTOR_SIGN
    assert sign("/0/private/AddOrder", 1616492376594, VECTOR_BODY, VECTOR_SECRET) == VECTOR_SIGN


def test_sign_changes_with_the_body() -> None:
    assert sign("/0/private/AddOrder", 1616492376594, VECTOR_BODY + "0", VECTOR_SECRET) != VECTOR_SIGN


def test_process_nonce_strictly_increases_when_the_clock_stalls_or_goes_back() -> None:
    readings = iter([100, 100, 90, 100, 200])
    source = ProcessNonce(clock=lambda: next(readings))
    assert [source.next_nonce() for _ in range(5)] == [100, 101, 102, 103, 200]


def test_process_nonce_is_unique_across_threads() -> None:
    source = ProcessNonce()
    results: list[list[int]] = [[] for _ in range(8)]

    def draw(out: list[int]) -> None:
        for _ in range(2000):
            out.append(source.next_nonce())

    threads = [threading.Thread(target=draw, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = [n for out in results for n in out]
    assert len(set(merged)) == len(merged)
    assert all(out == sorted(set(out)) for out in results)


def test_file_nonce_continues_above_the_last_issued_value_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "nonce"
    first = FileLockNonce(path, clock=lambda: 1_000)
    assert [first.next_nonce() for _ in range(3)] == [1_000, 1_001, 1_002]
    first.close()
    # A new process whose clock is behind (or equal) still continues above what was issued.
    second = FileLockNonce(path, clock=lambda: 500)
    assert second.next_nonce() == 1_003
    assert second.draw() == (4, 1_004)


def _worker(path: str, start: multiprocessing.synchronize.Event, out_path: str) -> None:
    source = FileLockNonce(path)
    start.wait()
    draws = [source.draw() for _ in range(DRAWS)]
    Path(out_path).write_text("\n".join(f"{i} {n}" for i, n in draws))


def test_file_nonce_is_strictly_increasing_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "nonce")
    start = ctx.Event()
    outs = [str(tmp_path / f"out{i}") for i in range(PROCESSES)]
    procs = [ctx.Process(target=_worker, args=(path, start, out)) for out in outs]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0

    per_process = [[tuple(map(int, line.split())) for line in Path(out).read_text().splitlines()] for out in outs]
    # Each process's own nonces strictly increase in its draw order.
    for draws in per_process:
        nonces = [n for _, n in draws]
        assert len(nonces) == DRAWS
        assert all(a < b for a, b in zip(nonces, nonces[1:], strict=False))
    # The lock order: draw indexes are exactly 0..N-1 (no two processes ever read the same state) ...
    merged = sorted(d for draws in per_process for d in draws)
    assert [i for i, _ in merged] == list(range(PROCESSES * DRAWS))
    # ... and nonces strictly increase in that global order, so they are globally unique.
    nonces = [n for _, n in merged]
    assert all(a < b for a, b in zip(nonces, nonces[1:], strict=False))
    assert len(set(nonces)) == PROCESSES * DRAWS
    # The processes really interleaved (otherwise the test proves little).
    owners = {i: k for k, draws in enumerate(per_process) for i, _ in draws}
    switches = sum(owners[i] != owners[i + 1] for i in range(PROCESSES * DRAWS - 1))
    assert switches > PROCESSES
