"""The bulk fold: the retained history folded in memory, share by share, and written once.

`customers replay` (and nothing else writes a version this way) hands the history to N fold
processes. A *share* is one partition number of every projected topic: the topics are keyed by
expert and have the same partition count, so an expert's bookings, payment facts, commands and
messages all sit in the same partition number, and a share holds every record of its experts.
A process folds one share at a time, in memory (`projections.memory`), through the very rules
the worker applies (`projections.projector.run_batch`), then COPYs the share's rows into the
version's fresh tables and forgets it: its memory is bounded by the largest share, not by the
history.

Three kinds of record are not keyed by their expert, and are routed first (`route`):

* a payment fact whose Stripe metadata named no expert is keyed by its payment id. It goes to
  the share holding a booking or an expert-keyed fact that names one of the ids its payment is
  known by (joined through the other unkeyed facts of the same payment); a payment nobody names
  stays in its own share (an unlinked payment, as the worker would keep it);
* an email-provider report is keyed by the provider's email id: it goes to the share of the
  message that names that id;
* an erasure is keyed by the person: every share applies it (the person leaves every expert),
  each at its place in time among the share's own records.

Within a share, the records of its topics are merged in the order of their Kafka timestamps,
each partition's records staying in partition order; nothing depends on the order between
partitions. A record that does not decode, or that fails when applied alone, goes to its
`.dlq` topic as in the worker.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import logging
import os
import signal
import sys
import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import select

from customers import kafka as names
from customers.settings import Settings
from projections.rules.status import Lifecycle
from projections import tables as t
from projections.db import copy_rows, make_engine
from projections.memory import FoldState, MemoryStore, version_rows
from projections.physical import partition_name
from projections.projector import in_order, run_batch
from projections.rules import registry
from projections.rules.payment_facts import named
from projections.sweep import watermark
from streams.decode import base_name, dead_letter, decoder_for
from streams.metrics import peak_rss_mb
from streams.poison import kafka_time

log = logging.getLogger("customers.fold")

Tp = tuple[str, int]  # (topic, partition)
FOLD_BATCH = 250_000  # records a fold's rules take at once (larger: fewer passes, more memory)
Record = Any  # a Kafka record as the consumer gives it: topic, partition, offset, key, value, timestamp (ms)


@dataclass(frozen=True)
class Share:
    """What one fold holds: the records of `tps` (one partition number of every projected topic)
    whose key falls in slice `part` of `parts` (every record of them when `parts` is 1). An
    expert's records all have the expert as key, so they all fall in one share."""

    index: int
    tps: tuple[Tp, ...]
    part: int = 0
    parts: int = 1

    def holds(self, record: Record) -> bool:
        return self.parts == 1 or slice_of(record.key, self.parts) == self.part


def slice_of(key: bytes | None, parts: int) -> int:
    return zlib.crc32(key or b"") % parts


# --- reading ---------------------------------------------------------------------------------------

async def read_partitions(settings: Settings, tps: Iterable[Tp], ends: dict[Tp, int],
                          keep: Callable[[Any], bool] | None = None,
                          starts: dict[Tp, int] | None = None) -> dict[Tp, list[Any]]:
    """Every record of these partitions from `starts` (default: offset 0) up to `ends`
    (exclusive), in order: Kafka's records as the consumer gives them (topic, partition, offset,
    key, value, timestamp in ms)."""
    starts = starts or {}
    wanted = [TopicPartition(topic, p) for topic, p in tps if ends.get((topic, p), 0) > starts.get((topic, p), 0)]
    out: dict[Tp, list[Any]] = {(tp.topic, tp.partition): [] for tp in wanted}
    if not wanted:
        return out
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
                                fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        for tp in wanted:
            if starts.get((tp.topic, tp.partition)):
                consumer.seek(tp, starts[(tp.topic, tp.partition)])
        open_tps = set(wanted)
        while open_tps:
            fetched = await consumer.getmany(*open_tps, timeout_ms=1000, max_records=20_000)
            for tp, records in fetched.items():
                end, into = ends[(tp.topic, tp.partition)], out[(tp.topic, tp.partition)]
                for r in records:
                    if r.offset < end and (keep is None or keep(r)):
                        into.append(r)
            for tp in list(open_tps):
                if await consumer.position(tp) >= ends[(tp.topic, tp.partition)]:
                    open_tps.discard(tp)
    finally:
        await consumer.stop()
    return out


def merged(streams: Iterable[list[Any]]) -> Iterable[Any]:
    """The records of several partitions in the order of their timestamps, each partition's in order."""
    return heapq.merge(*streams, key=lambda record: record.timestamp or 0)



# --- routing ---------------------------------------------------------------------------------------

@dataclass
class Scan:
    """What one share holds that is not keyed by its expert."""

    share: int
    unkeyed: list[tuple[Record, frozenset[str]]] = field(default_factory=list)  # payment facts, the ids they name
    reports: list[tuple[Record, str]] = field(default_factory=list)  # email reports, their provider email id
    erasures: list[Record] = field(default_factory=list)


@dataclass
class Plan:
    """Where records go: what each share folds besides its own records, and what it leaves to others."""

    moved: dict[int, set[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(set))  # (topic, partition, offset)
    extra: dict[int, list[Record]] = field(default_factory=lambda: defaultdict(list))  # moved in
    copies: dict[int, list[Record]] = field(default_factory=lambda: defaultdict(list))  # another share's erasures


async def scan_shares(settings: Settings, shares: list[Share], ends: dict[Tp, int]) -> list[Scan]:
    """The records these shares (of one partition number) hold that their experts' keys do not
    place: the partition's topics that may hold them, read once."""
    prefix = settings.topic_prefix
    movable = {settings.topic(n) for n in (names.ACTIVITY, names.EMAIL_EVENTS, names.COMMANDS)}
    read = await read_partitions(settings, [tp for tp in shares[0].tps if tp[0] in movable], ends)
    scans = [Scan(share.index) for share in shares]
    for (topic, _p), records in read.items():
        base, decode = base_name(topic, prefix), decoder_for(topic, prefix)
        for src in records:
            if base == names.ACTIVITY and _names_its_key(src):
                continue  # keyed by the expert it names: already in its expert's share
            try:
                item = decode(src.value)
            except ValueError:
                continue  # its own share dead-letters it
            scan = scans[_holder(shares, src)]
            if base == names.ACTIVITY and item.type == "payment.observed" and not item.expert_id:
                scan.unkeyed.append((src, frozenset(named(item))))
            elif base == names.EMAIL_EVENTS:
                scan.reports.append((src, item.email_id))
            elif base == names.COMMANDS and registry.alone(item):  # an erasure reaches every share
                scan.erasures.append(src)
    return scans


def _holder(shares: list[Share], record: Record) -> int:
    """The position in `shares` (of one partition number) of the share holding the record."""
    return 0 if len(shares) == 1 else next(i for i, share in enumerate(shares) if share.holds(record))


def _names_its_key(src: Record) -> bool:
    """The record is keyed by the expert it names (its JSON says so, however it was spaced)."""
    return bool(src.key) and src.value is not None and (
        b'"expert_id":"' + src.key + b'"' in src.value or b'"expert_id": "' + src.key + b'"' in src.value)


async def locate(settings: Settings, shares: list[Share], ends: dict[Tp, int], ids: set[str],
                 provider_ids: set[str]) -> list[tuple[int, tuple[set[str], set[str]]]]:
    """Which of these payment ids and provider email ids the experts of these shares (of one
    partition number) name: for each share, (payment ids, provider email ids)."""
    prefix = settings.topic_prefix
    topics = {settings.topic(names.BOOKINGS), settings.topic(names.ACTIVITY)} if ids else set()
    if provider_ids:
        topics.add(settings.topic(names.COMMUNICATIONS))
    read = await read_partitions(settings, [tp for tp in shares[0].tps if tp[0] in topics], ends)
    found: list[tuple[set[str], set[str]]] = [(set(), set()) for _ in shares]
    for (topic, _p), records in read.items():
        base, decode = base_name(topic, prefix), decoder_for(topic, prefix)
        for src in records:
            try:
                item = decode(src.value)
            except ValueError:
                continue
            found_ids, found_providers = found[_holder(shares, src)]
            if base == names.BOOKINGS and item.type == "booking.created":
                payment = getattr(item, "payment", None)
                for value in (getattr(payment, "payment_intent_id", None), getattr(payment, "checkout_session_id", None)):
                    if value in ids:
                        found_ids.add(value)
            elif base == names.ACTIVITY and item.type == "payment.observed" and item.expert_id:
                found_ids |= named(item) & ids
            elif base == names.COMMUNICATIONS and getattr(item, "provider_message_id", None) in provider_ids:
                found_providers.add(item.provider_message_id)
    return [(share.index, answer) for share, answer in zip(shares, found)]


def route(scans: list[Scan], located: dict[int, tuple[set[str], set[str]]]) -> Plan:
    """Pure: the share each unkeyed record is folded in (see the module's docstring)."""
    plan = Plan()
    shares = sorted(s.share for s in scans)
    owner_of_id: dict[str, int] = {}
    owner_of_email: dict[str, int] = {}
    for share in sorted(located):
        ids, providers = located[share]
        for i in ids:
            owner_of_id.setdefault(i, share)
        for i in providers:
            owner_of_email.setdefault(i, share)
    # the unkeyed facts of one payment: joined through any id two of them share
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    facts = [(scan.share, src, ids) for scan in scans for src, ids in scan.unkeyed if ids]
    for _share, _src, ids in facts:
        first, *rest = sorted(ids)
        for other in rest:
            a, b = find(first), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    components: dict[str, list[tuple[int, Record, frozenset[str]]]] = defaultdict(list)
    for fact in facts:
        components[find(min(fact[2]))].append(fact)
    for members in components.values():
        owners = {owner_of_id[i] for _s, _src, ids in members for i in ids if i in owner_of_id}
        target = min(owners) if owners else min(share for share, _src, _ids in members)
        for share, src, _ids in members:
            _send(plan, share, target, src)
    for scan in scans:
        for src, email_id in scan.reports:
            _send(plan, scan.share, owner_of_email.get(email_id, scan.share), src)
        for src in scan.erasures:
            for other in shares:
                if other != scan.share:
                    plan.copies[other].append(src)
    return plan


def _send(plan: Plan, source: int, target: int, src: Record) -> None:
    if target != source:
        plan.moved[source].add((src.topic, src.partition, src.offset))
        plan.extra[target].append(src)


# --- folding ---------------------------------------------------------------------------------------

@dataclass
class Folded:
    """What one share's fold did."""

    share: int
    records: int = 0
    dead: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    erasures: dict[str, datetime] = field(default_factory=dict)  # ledger rows the fold added
    erased_refs: dict[tuple[str, str], datetime] = field(default_factory=dict)
    last: dict[Tp, tuple[int, datetime | None]] = field(default_factory=dict)  # newest offset and time per partition
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None


async def load_ledger(conn) -> tuple[dict, dict]:
    e, r = t.erasures.c, t.erased_refs.c
    erasures = {row.email_hash: row.erased_at for row in await conn.execute(select(e.email_hash, e.erased_at))}
    refs = {(row.kind, row.ref): row.erased_at for row in await conn.execute(select(r.kind, r.ref, r.erased_at))}
    return erasures, refs


class DeadLetters:
    """Sends a record that does not decode, or fails when applied alone, to its `.dlq` topic."""

    def __init__(self, settings: Settings, producer: Any) -> None:
        self.settings, self.producer = settings, producer

    async def __call__(self, src: Record, exc: BaseException) -> None:
        s = self.settings
        await self.producer.publish(s.topic(names.dlq(base_name(src.topic, s.topic_prefix))),
                                    [(src.key, dead_letter(src.value, exc, src.topic, src.partition, src.offset))])
        log.warning("dead-lettered %s[%s]@%s: %s", src.topic, src.partition, src.offset, type(exc).__name__)


class Applying:
    """Applies batches of decoded records to a `FoldState` through the worker's unit of work
    (`run_batch`, cut around erasures): a batch that fails is rolled back and its records are
    applied one by one; a record that fails alone goes to `to_dlq`, and the rest flow on."""

    def __init__(self, state: FoldState, store: MemoryStore, to_dlq: Callable[[Record, BaseException], Any]) -> None:
        self.state, self.store, self.to_dlq = state, store, to_dlq

    async def __call__(self, batch: list[tuple[Record, Any]]) -> None:
        state, store, now = self.state, self.store, datetime.now(timezone.utc)
        state.begin()
        try:
            for part in in_order([item for _, item in batch]):
                _keep(await run_batch(store, part, now))
            state.commit()
            return
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the fold
            state.rollback()
            log.warning("fold batch failed (%s); applying its records one by one", type(exc).__name__)
        for src, item in batch:
            state.begin()
            try:
                await run_batch(store, [item], now)
                state.commit()
            except Exception as exc:  # noqa: BLE001
                state.rollback()
                await self.to_dlq(src, exc)


async def fold_share(settings: Settings, version: int, share: Share, ends: dict[Tp, int],
                     moved: set, extra: list[Any], copies: list[Any] = (), *, batch_size: int = 5000,
                     progress: Callable[[int], None] | None = None) -> Folded:
    """Fold one share of the history in memory and COPY its rows into `version`'s tables."""
    result = Folded(share.index)
    clock = time.monotonic()
    tps = list(share.tps)

    def keep(record: Record) -> bool:
        return share.holds(record) and (record.topic, record.partition, record.offset) not in moved
    read = await read_partitions(settings, tps, ends, keep=keep if moved or share.parts > 1 else None)
    for tp, records in read.items():
        if records:
            result.last[tp] = (ends[tp] - 1, kafka_time(records[-1].timestamp))
    for tp in tps:  # a partition whose every record went to other shares is still read to its end
        if ends.get(tp, 0) > 0 and tp not in result.last:
            result.last[tp] = (ends[tp] - 1, None)
    streams = list(read.values()) + [sorted([*extra, *copies], key=lambda s: (s.topic, s.partition, s.offset))]
    copied = {(r.topic, r.partition, r.offset) for r in copies}  # applied here too, counted by their own share
    result.seconds["read"] = round(time.monotonic() - clock, 2)

    engine = make_engine(settings.database_url)
    producer = names.LazyProducer(settings, timeout=60.0)
    gc_was = gc.isenabled()
    gc.disable()  # the state is a few large acyclic tables: collecting mid-fold only costs time
    try:
        async with engine.connect() as conn:
            as_of = await watermark(conn, version)
            erasures, refs = await load_ledger(conn)
        state = FoldState(settings.customer_id_secret, erasures, refs)
        store = MemoryStore(state, version, as_of, Lifecycle.of(settings))
        prefix = settings.topic_prefix
        clock = time.monotonic()

        async def to_dlq(src: Any, exc: BaseException) -> None:
            if (src.topic, src.partition, src.offset) in copied:  # its own share sends the letter
                log.warning("a copy of %s[%s]@%s failed here too: %s", src.topic, src.partition, src.offset,
                            type(exc).__name__)
                return
            await dead_letters(src, exc)
            result.dead += 1

        dead_letters = DeadLetters(settings, producer)
        apply = Applying(state, store, to_dlq)
        batch: list[tuple[Any, Any]] = []
        decoders: dict[str, Callable] = {}
        counted = 0
        for src in merged(streams):
            decode = decoders.get(src.topic) or decoders.setdefault(src.topic, decoder_for(src.topic, prefix))
            if not copied or (src.topic, src.partition, src.offset) not in copied:
                result.records += 1
            try:
                batch.append((src, decode(src.value)))
            except ValueError as exc:
                await to_dlq(src, exc)
            if len(batch) >= batch_size:
                await apply(batch)
                if progress:
                    progress(result.records - counted)
                _keep(batch)
                counted, batch = result.records, []
        if batch:
            await apply(batch)
        if progress and result.records > counted:
            progress(result.records - counted)
        _keep(streams, read, extra, copies, batch)
        del streams, read, extra, copies, batch
        result.seconds["fold"] = round(time.monotonic() - clock, 2)

        clock = time.monotonic()
        async with engine.begin() as conn:
            for table, columns, rows in version_rows(state, version):
                into = partition_name(table, version) if conn.dialect.name == "postgresql" else None
                result.rows[table.name] = await copy_rows(conn, table, columns, rows, into=into)
        result.erasures = {h: state.erasures.rows[h] for h in state.new_erasures}
        result.erased_refs = {r: state.erased_refs.rows[r] for r in state.new_refs}
        result.seconds["copy"] = round(time.monotonic() - clock, 2)
        _keep(state, store)
    finally:
        await producer.close()
        await engine.dispose()
        if gc_was:
            gc.enable()
    result.peak_rss_mb = peak_rss_mb()
    return result


def shares_of(ends: dict[Tp, int], settings: Settings, share_size: int | None = None) -> list[Share]:
    """The shares: one per partition number when every projected topic has as many partitions
    (else one share of everything: an expert's records could then sit in different numbers),
    each cut into as many slices as it takes for no share to hold more than `share_size`
    records (none: not cut). The bound of a fold process's memory."""
    topics = [settings.topic(n) for n in names.PROJECTED]
    counts: dict[str, int] = {}
    for topic, partition in ends:
        counts[topic] = max(counts.get(topic, 0), partition + 1)
    numbers = {counts.get(topic, 0) for topic in topics}
    if len(numbers) == 1:
        groups = [tuple((topic, p) for topic in topics) for p in range(numbers.pop())]
    else:
        log.warning("projected topics have different partition counts (%s): folding them as one share", counts)
        groups = [tuple((topic, p) for topic in topics for p in range(counts.get(topic, 0)))]
    biggest = max((sum(ends.get(tp, 0) for tp in group) for group in groups), default=0)
    parts = max(1, -(-biggest // share_size)) if share_size else 1
    return [Share(g * parts + j, group, j, parts) for g, group in enumerate(groups) for j in range(parts)]


# --- processes -------------------------------------------------------------------------------------

_COUNTER = None  # records folded, shared with the parent (set in each fold process)
_TICK: Callable[[int], None] | None = None  # or told directly, when the parent folds in a thread
_HOLD: list = []  # in a process that exits without taking its heap apart: what the fold would free
_EXIT_WITHOUT_FREEING = False


def _keep(*objects: Any) -> None:
    """Hold what would be freed now, in a fold process that ends with `os._exit`: freeing a share's
    millions of objects one by one costs seconds and gives back memory nobody will ask for."""
    if _EXIT_WITHOUT_FREEING:
        _HOLD.extend(objects)


def _init(counter) -> None:
    """A fold process's start: the shared counter, and death with its parent (a replay killed
    with SIGKILL must not leave fold processes that COPY into the tables of the next run; the
    parent is the server the replay forks them from, which ends with the replay)."""
    global _COUNTER
    _COUNTER = counter
    logging.basicConfig(level=logging.WARNING)
    _die_with(os.getppid())


def _die_with(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's pid is watched below instead
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="parent-watch").start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _count(n: int) -> None:
    if _COUNTER is not None:
        with _COUNTER.get_lock():
            _COUNTER.value += n
    elif _TICK is not None:
        _TICK(n)


def scan_job(args: tuple) -> list[Scan]:
    settings, groups, ends = args  # shares grouped by partition number
    return [scan for shares in groups for scan in asyncio.run(scan_shares(settings, shares, ends))]


def locate_job(args: tuple) -> list[tuple[int, tuple[set[str], set[str]]]]:
    settings, groups, ends, ids, providers = args
    return [found for shares in groups for found in asyncio.run(locate(settings, shares, ends, ids, providers))]


def fold_job(args: tuple) -> Folded:
    settings, version, share, ends, moved, extra, copies, batch_size = args
    return asyncio.run(fold_share(settings, version, share, ends, moved, extra, copies, batch_size=batch_size,
                                  progress=_count))


def run_child(job: Callable, args: tuple, send, counter) -> None:
    """A job's process (`streams.replay`): run it, send (True, result) or (False, error) to the
    parent, and exit at once, without taking the heap apart."""
    global _EXIT_WITHOUT_FREEING
    _EXIT_WITHOUT_FREEING = True
    _init(counter)
    try:
        out: tuple = (True, job(args))
    except BaseException as exc:  # noqa: BLE001 - the parent raises it
        out = (False, exc)
    try:
        send.send(out)
    except Exception as exc:  # noqa: BLE001 - an error that does not pickle
        send.send((False, RuntimeError(f"{type(out[1]).__name__}: {out[1]}" if not out[0] else repr(exc))))
    send.close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
