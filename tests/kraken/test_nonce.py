"""The one nonce source of every authenticated Kraken client (`ingest.kraken.auth.RedisNonce`, chosen by
`trading.kraken_clients.kraken_nonce_source`), against the real Redis of REDIS_URL and the simulator in a process of
its own: strictly increasing and unique across threads, processes and "machines" (separate connections, clocks
that disagree), never below the clock, never backwards when a clock steps back, and a clear failure, with nothing
sent, when Redis cannot answer."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from ingest.kraken.auth import FileLockNonce, NonceSource, NonceUnavailable, ProcessNonce, RedisNonce
from ingest.kraken.errors import InvalidNonce, TransportError
from ingest.kraken.ratelimit import RestCallCounter
from ingest.kraken.rest import KrakenRestClient
from tests.conftest import free_port, kraken_sim_process, run_manage
from trading.kraken_clients import kraken_nonce_source

pytestmark = pytest.mark.services("redis")

THREADS = 8
THREAD_DRAWS = 500
PROCESSES = 4
PROCESS_DRAWS = 1500
SECOND_NS = 1_000_000_000
SIM_KEY = "kraken-sim-key"
SIM_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="


def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture
def prefix() -> Iterator[str]:
    """A namespace of this test's own in the shared Redis database, removed after."""
    value = f"test:kraken-nonce:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(redis_url())
    for key in client.scan_iter(match=value + "*"):
        client.delete(key)
    client.close()


def source(prefix: str, api_key: str = "the-key", **options: Any) -> RedisNonce:
    return RedisNonce.from_url(redis_url(), api_key, prefix=prefix, **options)


def strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


def test_nonces_are_strictly_increasing_and_unique_across_threads(prefix: str) -> None:
    shared = source(prefix)
    # Two threads draw from sources of their own (other connections pools), the rest share one.
    sources = [shared] * (THREADS - 2) + [source(prefix), source(prefix)]
    results: list[list[int]] = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def draw(src: RedisNonce, out: list[int]) -> None:
        start.wait()
        out.extend(src.next_nonce() for _ in range(THREAD_DRAWS))

    threads = [threading.Thread(target=draw, args=(s, out)) for s, out in zip(sources, results, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    merged = [n for out in results for n in out]
    assert len(merged) == THREADS * THREAD_DRAWS
    assert len(set(merged)) == len(merged)
    assert all(strictly_increasing(out) for out in results)


def _draw_in_process(src: RedisNonce | None, prefix: str, start: EventType, out_path: str) -> None:
    # `src` is None: the process opens its own source; otherwise it uses the one inherited through fork (whose
    # connection pool must reopen in the child rather than share the parent's socket).
    own = src or source(prefix)
    start.wait()
    nonces = [own.next_nonce() for _ in range(PROCESS_DRAWS)]
    Path(out_path).write_text("\n".join(map(str, nonces)))


def test_nonces_are_strictly_increasing_and_unique_across_processes(prefix: str, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    inherited = source(prefix)
    first = inherited.next_nonce()  # the parent's pool holds a connection when the children fork
    start = ctx.Event()
    outs = [str(tmp_path / f"out{i}") for i in range(PROCESSES)]
    procs = [
        ctx.Process(target=_draw_in_process, args=(inherited if i % 2 else None, prefix, start, out))
        for i, out in enumerate(outs)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0

    per_process = [[int(line) for line in Path(out).read_text().splitlines()] for out in outs]
    for nonces in per_process:
        assert len(nonces) == PROCESS_DRAWS
        assert strictly_increasing(nonces)
        assert nonces[0] > first
    owned = sorted((n, k) for k, nonces in enumerate(per_process) for n in nonces)
    assert len({n for n, _ in owned}) == PROCESSES * PROCESS_DRAWS  # unique across processes
    # The processes really interleaved (otherwise the test proves little) ...
    switches = sum(a[1] != b[1] for a, b in zip(owned, owned[1:], strict=False))
    assert switches > PROCESSES
    # ... and the parent, drawing after all of them, continues above every nonce they were given.
    assert inherited.next_nonce() > owned[-1][0]


def test_a_nonce_is_never_below_the_clock(prefix: str) -> None:
    readings: list[int] = []

    def clock() -> int:
        readings.append(time.time_ns())
        return readings[-1]

    src = source(prefix, clock=clock)
    nonces = [src.next_nonce() for _ in range(200)]
    assert strictly_increasing(nonces)
    assert all(n >= reading for n, reading in zip(nonces, readings, strict=True))
    # Once the clock is ahead of the last nonce issued, the nonce is the clock's reading itself.
    ahead = time.time_ns() + 3600 * SECOND_NS
    assert source(prefix, clock=lambda: ahead).next_nonce() == ahead


def test_a_clock_that_steps_back_never_makes_a_nonce_go_backwards(prefix: str) -> None:
    base = time.time_ns()
    readings = iter([base, base + 1_000, base - 5 * SECOND_NS, base + 500, base + 2_000, base + SECOND_NS])
    src = source(prefix, clock=lambda: next(readings))
    assert [src.next_nonce() for _ in range(6)] == [
        base,
        base + 1_000,
        base + 1_001,  # the clock stepped 5 s back: last + 1
        base + 1_002,  # still behind the last nonce
        base + 2_000,  # the clock is ahead again
        base + SECOND_NS,
    ]
    # Another machine whose clock lags by a minute (its own connection) continues above what was issued.
    lagging = source(prefix, clock=lambda: base - 60 * SECOND_NS)
    assert [lagging.next_nonce(), lagging.next_nonce()] == [base + SECOND_NS + 1, base + SECOND_NS + 2]
    # And the first machine, whose clock stalls, continues above those.
    assert source(prefix, clock=lambda: base).next_nonce() == base + SECOND_NS + 3


def test_nonces_stay_exact_beyond_the_precision_of_a_double(prefix: str) -> None:
    # Redis scripts see numbers as doubles (exact below 2**53); nonces in nanoseconds are ~2**61.
    src = source(prefix, clock=lambda: 2**62)
    redis.Redis.from_url(redis_url()).set(src.key, str(2**62 + 1))
    assert [src.next_nonce(), src.next_nonce()] == [2**62 + 2, 2**62 + 3]
    assert source(prefix, clock=lambda: 2**62 + 7).next_nonce() == 2**62 + 7


def test_the_redis_key_names_a_hash_of_the_api_key_never_the_key(prefix: str) -> None:
    api_key = "a-secretish-api-key-" + uuid.uuid4().hex
    src = source(prefix, api_key)
    src.next_nonce()
    assert src.key == prefix + hashlib.sha256(api_key.encode()).hexdigest()
    client = redis.Redis.from_url(redis_url())
    stored = [key.decode() for key in client.scan_iter(match=prefix + "*")]
    assert stored == [src.key]
    assert not any(api_key in key.decode() for key in client.scan_iter())
    # Another API key has a state of its own.
    other = source(prefix, "another-key", clock=lambda: 5)
    assert other.next_nonce() == 5


def test_a_draw_fails_clearly_when_redis_is_down_and_nothing_is_issued(prefix: str) -> None:
    down = RedisNonce.from_url(f"redis://127.0.0.1:{free_port()}/0", "the-key", prefix=prefix)
    with pytest.raises(NonceUnavailable, match="request was not sent") as raised:
        down.next_nonce()
    # A TransportError the callers already handle: the request was not sent, retrying later is safe.
    assert isinstance(raised.value, TransportError)
    assert raised.value.retryable is True


def test_a_draw_fails_within_its_timeout_when_redis_stops_answering(prefix: str) -> None:
    # A server that accepts connections and never answers (a hung Redis): no local replacement nonce, an error.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        hung = RedisNonce.from_url(f"redis://127.0.0.1:{port}/0", "the-key", prefix=prefix, timeout_s=0.2)
        with pytest.raises(NonceUnavailable, match="Timeout"):
            hung.next_nonce()


def test_a_state_that_is_not_a_nonce_fails_clearly_and_is_left_alone(prefix: str) -> None:
    src = source(prefix)
    client = redis.Redis.from_url(redis_url())
    client.set(src.key, "0012")
    with pytest.raises(NonceUnavailable, match="not a positive integer"):
        src.next_nonce()
    assert client.get(src.key) == b"0012"


@pytest.fixture
def sim_urls() -> Iterator[dict[str, str]]:
    """The simulator as a process of its own on free ports (nonces enforced per key, as Kraken does)."""
    ports = ["--rest-port", "0", "--ws-port", "0", "--ws-auth-port", "0"]
    with kraken_sim_process("--market", "none", "--warmup", "0", "--no-rate-limits", *ports) as urls:
        yield urls


def sim_client(urls: dict[str, str], nonce_source: NonceSource) -> KrakenRestClient:
    return KrakenRestClient(
        base_url=urls["rest_url"],
        api_key=SIM_KEY,
        api_secret=SIM_SECRET,
        nonce_source=nonce_source,
        rest_counter=RestCallCounter(maximum=10**6, decay_per_s=1),
    )


async def test_nothing_is_sent_when_redis_is_down(sim_urls: dict[str, str], prefix: str) -> None:
    down = RedisNonce.from_url(f"redis://127.0.0.1:{free_port()}/0", SIM_KEY, prefix=prefix)
    client = sim_client(sim_urls, down)
    try:
        with pytest.raises(NonceUnavailable):
            await client.balance()
        assert client.stats["requests"] == 0
    finally:
        await client.aclose()


CALLS = 150


def _private_calls(
    urls: dict[str, str], make_source: Callable[[], NonceSource], start: EventType, out_path: str
) -> None:
    """A "machine" of its own: its client and nonce source, private calls back to back, at the same time as the
    other process; three at once on the client each time, as several threads of a worker would make them."""

    async def run() -> str:
        client = sim_client(urls, make_source())
        refused = 0
        try:
            await asyncio.to_thread(start.wait)
            for _ in range(CALLS // 3):
                for outcome in await asyncio.gather(
                    client.balance(), client.open_orders(), client.balance(), return_exceptions=True
                ):
                    if isinstance(outcome, InvalidNonce):
                        refused += 1
                    elif isinstance(outcome, BaseException):
                        raise outcome
        finally:
            await client.aclose()
        return f"{refused} {client.stats['nonce_retries']} {client.stats['requests']}"

    Path(out_path).write_text(asyncio.run(run()))


def run_two_machines(
    urls: dict[str, str], tmp_path: Path, first: Callable[[], NonceSource], second: Callable[[], NonceSource]
) -> list[tuple[int, int, int]]:
    """Two processes on one API key calling at once; returns (refused, nonce retries, requests sent) of each."""
    tmp_path.mkdir()
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    outs = [str(tmp_path / "a"), str(tmp_path / "b")]
    procs = [
        ctx.Process(target=_private_calls, args=(urls, first, start, outs[0])),
        ctx.Process(target=_private_calls, args=(urls, second, start, outs[1])),
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    results = [tuple(map(int, Path(out).read_text().split())) for out in outs]
    return [(r[0], r[1], r[2]) for r in results]


def assert_all_accepted(results: list[tuple[int, int, int]]) -> None:
    for refused, retries, sent in results:
        assert refused == 0
        assert sent == CALLS + retries
        # Without the send slot about one call in eight is refused once (arrival out of nonce order) and one in
        # thirty twice; with it, a rare refusal is left to the client's retry.
        assert retries <= CALLS // 50


def test_two_processes_calling_at_once_on_one_key_never_get_an_invalid_nonce(
    sim_urls: dict[str, str], prefix: str, tmp_path: Path
) -> None:
    """Concurrent private calls from two processes, the second standing for another machine whose clock lags a
    minute: with the shared Redis source (nonce and send slot) no call is refused."""
    lag = 60 * SECOND_NS
    shared = run_two_machines(
        sim_urls,
        tmp_path / "redis",
        lambda: source(prefix, SIM_KEY),
        lambda: source(prefix, SIM_KEY, clock=lambda: time.time_ns() - lag),
    )
    assert_all_accepted(shared)
    # Control: the same two machines, each with a nonce of its own (a file lock holds on one machine only): the
    # lagging one is refused on every call, even after the client's retry with a fresh nonce.
    machines = run_two_machines(
        sim_urls,
        tmp_path / "files",
        lambda: FileLockNonce(tmp_path / "machine-a.nonce"),
        lambda: FileLockNonce(tmp_path / "machine-b.nonce", clock=lambda: time.time_ns() - lag),
    )
    assert machines[1] == (CALLS, CALLS, 2 * CALLS)


def test_processes_sharing_the_nonce_file_on_one_machine_never_get_an_invalid_nonce(
    sim_urls: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "kraken-nonce"
    assert_all_accepted(
        run_two_machines(sim_urls, tmp_path / "run", lambda: FileLockNonce(path), lambda: FileLockNonce(path))
    )


# --- the send slot: held from the draw until the request is written ---------------------------------------------


async def test_no_one_draws_for_a_send_while_the_slot_is_held(prefix: str) -> None:
    holder, other = source(prefix), source(prefix)
    async with holder.send_slot(hold_s=30, wait_s=1) as held:
        waiting = asyncio.ensure_future(other.send_slot(hold_s=30, wait_s=30).__aenter__())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        # A plain draw (no send) is not held up, and stays in order.
        assert other.next_nonce() > held.nonce
    assert (await asyncio.wait_for(waiting, 5)).nonce > held.nonce


async def test_the_slot_is_freed_once_the_request_is_written_not_when_it_is_answered(prefix: str) -> None:
    """A stalled exchange (it reads the request and never answers) does not hold up the key's other clients."""
    received = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        received.set()
        await asyncio.sleep(3600)

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = KrakenRestClient(
        base_url=f"http://127.0.0.1:{port}", api_key="stalled", api_secret=SIM_SECRET, nonce_source=source(prefix)
    )
    call = asyncio.ensure_future(client.balance())
    try:
        await asyncio.wait_for(received.wait(), 10)
        async with source(prefix).send_slot(hold_s=30, wait_s=1) as slot:  # "stayed taken" if still held
            assert slot.nonce > 0
        assert not call.done()
    finally:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await client.aclose()
        server.close()


async def test_a_slot_whose_holder_died_is_taken_after_its_hold_time(prefix: str) -> None:
    died = source(prefix)
    hung = died.send_slot(hold_s=0.5, wait_s=1)  # kept referenced: never sent nor exited, as if its holder died
    first = await hung.__aenter__()
    other = source(prefix)
    with pytest.raises(NonceUnavailable, match="stayed taken"):
        async with other.send_slot(hold_s=30, wait_s=0.1):
            pass
    async with other.send_slot(hold_s=30, wait_s=5) as slot:
        assert slot.nonce > first.nonce


def _hold_the_file_slot(path: str, held: EventType) -> None:
    async def run() -> None:
        async with FileLockNonce(path).send_slot(hold_s=1, wait_s=1):
            held.set()
            await asyncio.sleep(3600)

    asyncio.run(run())


async def test_a_file_slot_is_freed_when_its_process_dies(tmp_path: Path) -> None:
    path = str(tmp_path / "kraken-nonce")
    ctx = multiprocessing.get_context("fork")
    held = ctx.Event()
    holder = ctx.Process(target=_hold_the_file_slot, args=(path, held))
    holder.start()
    try:
        assert await asyncio.to_thread(held.wait, 30)
        with pytest.raises(NonceUnavailable, match="stayed taken"):
            async with FileLockNonce(path).send_slot(hold_s=1, wait_s=0.1):
                pass
    finally:
        holder.kill()
        holder.join(timeout=30)
    async with FileLockNonce(path).send_slot(hold_s=1, wait_s=5) as slot:
        assert slot.nonce > 0


# --- the choice of source (trading.kraken_clients.kraken_nonce_source and KRAKEN_NONCE_SOURCE) ----------------


def test_every_client_of_a_key_draws_from_the_one_redis_source(settings: Any) -> None:
    settings.KRAKEN_NONCE_SOURCE = "redis"
    settings.REDIS_URL = redis_url()
    settings.KRAKEN_API_KEY = "factory-key-" + uuid.uuid4().hex
    execution, reconciliation = kraken_nonce_source(), kraken_nonce_source()
    ingest = kraken_nonce_source(settings.KRAKEN_API_KEY)
    assert isinstance(execution, RedisNonce)
    assert execution.key.endswith(hashlib.sha256(settings.KRAKEN_API_KEY.encode()).hexdigest())
    assert execution is reconciliation is ingest  # one source (one connection pool) per Redis and key
    try:
        drawn = [src.next_nonce() for src in (execution, reconciliation, ingest) * 3]
        assert strictly_increasing(drawn)
    finally:
        redis.Redis.from_url(redis_url()).delete(execution.key)
    other = kraken_nonce_source("another-key")
    assert isinstance(other, RedisNonce)
    assert other.key != execution.key


def test_the_file_source_is_chosen_by_the_setting(settings: Any, tmp_path: Path) -> None:
    settings.KRAKEN_NONCE_SOURCE = "file"
    settings.KRAKEN_NONCE_FILE = str(tmp_path / "kraken-nonce")
    chosen = kraken_nonce_source()
    assert isinstance(chosen, FileLockNonce)
    first = chosen.next_nonce()
    assert FileLockNonce(tmp_path / "kraken-nonce", clock=lambda: 1).next_nonce() == first + 1


def test_a_misconfigured_source_is_refused(settings: Any) -> None:
    settings.KRAKEN_NONCE_SOURCE = "clock"
    with pytest.raises(ImproperlyConfigured, match="KRAKEN_NONCE_SOURCE must be 'redis' or 'file'"):
        kraken_nonce_source()
    settings.KRAKEN_NONCE_SOURCE = "redis"
    settings.REDIS_URL = ""
    with pytest.raises(ImproperlyConfigured, match="needs REDIS_URL"):
        kraken_nonce_source()


def test_the_default_source_is_redis_with_a_redis_url_and_the_file_without(embedded_env: dict[str, str]) -> None:
    show = ("shell", "--no-imports", "-c", "from django.conf import settings; print(settings.KRAKEN_NONCE_SOURCE)")
    embedded = run_manage(*show, env=embedded_env)
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stdout.strip() == "file"
    with_redis = run_manage(*show, env={**embedded_env, "REDIS_URL": redis_url()})
    assert with_redis.returncode == 0, with_redis.stderr
    assert with_redis.stdout.strip() == "redis"


def test_the_process_source_is_not_shared(prefix: str) -> None:
    """Why ProcessNonce is not used for a shared key: two processes' sources know nothing of each other."""
    a, b = ProcessNonce(clock=lambda: 1_000), ProcessNonce(clock=lambda: 1_000)
    assert a.next_nonce() == b.next_nonce()
    shared_a, shared_b = source(prefix, clock=lambda: 1_000), source(prefix, clock=lambda: 1_000)
    assert shared_a.next_nonce() < shared_b.next_nonce()
