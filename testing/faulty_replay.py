"""`customers replay` (the same call as the command line's) with a fault the tests install: SIGKILL in the middle of the bulk fold's COPY,
or in the middle of the index build that follows it. The service itself has no such switch, and
nothing in the service imports this module.

    PYTHONPATH=<project root> python testing/faulty_replay.py {copy|index} replay [replay options...]

* ``copy``: once a fold process has sent the first chunk of the first non-empty table of its share
  (`streams.fold.copy_rows`, inside the share's still open transaction), the whole replay dies by
  SIGKILL: the parent and every fold process.
* ``index``: `streams.replay.finish_bare_version` runs as usual until its builders start their
  ``connections + 2``-th primary key or index (so at least two are built, most are not, and no
  table is attached yet); then the replay dies by SIGKILL.

Fold processes are spawned: each imports this script again as ``__mp_main__``, so the module-level
code below runs in them too (that is how the ``copy`` fault reaches them), while the
``if __name__ == "__main__"`` block runs in the parent only. The parent tells them the fault and
its pid through the environment (``FAULT_KIND``, ``FAULT_PARENT``) before the pool starts.

When the parent leads its own process group (the test starts it with ``start_new_session=True``),
the whole group is killed at once; otherwise the parent and the current process are.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys

KINDS = ("copy", "index")


def _say(message: str) -> None:
    sys.stderr.write(f"fault injection [pid {os.getpid()}]: {message}\n")
    sys.stderr.flush()


def _kill_replay() -> None:
    """SIGKILL the replay: its process group when the parent leads one, else parent and self."""
    parent = int(os.environ.get("FAULT_PARENT") or os.getpid())
    try:
        if os.getpgid(parent) == parent:
            os.killpg(parent, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if parent != os.getpid():
        try:
            os.kill(parent, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def _install_copy() -> None:
    from streams import fold

    real = fold.copy_rows

    async def copy_first_chunk_then_die(conn, table, columns, records, *, into=None, chunk=50_000):
        first = list(itertools.islice(iter(records), chunk))
        if not first:  # an empty table sends nothing: wait for one that does
            return await real(conn, table, columns, first, into=into, chunk=chunk)
        sent = await real(conn, table, columns, first, into=into, chunk=chunk)
        _say(f"killing the replay after the first chunk ({sent} rows) of {into or table.name} was sent, "
             f"its transaction still open")
        _kill_replay()

    fold.copy_rows = copy_first_chunk_then_die


def _install_index() -> None:
    from sqlalchemy import event

    from streams import replay

    real_finish = replay.finish_bare_version

    async def finish_then_die(engine, version, connections=2):
        """The real `finish_bare_version`, with the replay killed as its builders start their
        `connections + 2`-th primary key or index: by then each builder has finished the ones it
        took before (at least two are built), most are not, and no table is attached yet."""
        after, started = max(1, connections) + 2, []

        def before(conn, cursor, statement, parameters, context, executemany):
            words = " ".join(statement.split()).upper()
            if words.startswith("CREATE INDEX") or (words.startswith("ALTER TABLE") and "PRIMARY KEY" in words):
                started.append(words)
                if len(started) >= after:
                    _say(f"killing the replay while building indexes of version {version}: statement "
                         f"{len(started)} starting ({words[:80]}), {len(started) - 1} taken before")
                    _kill_replay()

        event.listen(engine.sync_engine, "before_cursor_execute", before)
        try:
            return await real_finish(engine, version, connections=connections)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", before)

    replay.finish_bare_version = finish_then_die


def install(kind: str) -> None:
    if kind == "copy":
        _install_copy()  # in the parent too: it folds inline when it has a single process
    elif kind == "index":
        _install_index()  # the parent builds the indexes
    else:
        raise SystemExit(f"unknown fault {kind!r}; one of {KINDS}")


if __name__ != "__main__" and os.environ.get("FAULT_KIND") == "copy":
    install("copy")  # a fold process, importing this script again as __mp_main__


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in KINDS:
        raise SystemExit(__doc__)
    fault = sys.argv.pop(1)
    os.environ["FAULT_KIND"] = fault
    os.environ["FAULT_PARENT"] = str(os.getpid())
    install(fault)
    import asyncio
    import logging

    from customers.settings import get_settings
    from streams.replay import replay

    logging.basicConfig(level=logging.INFO)
    args = sys.argv[1:]  # replay [--grace SECONDS]: what the command line would take
    grace = float(args[args.index("--grace") + 1]) if "--grace" in args else None
    asyncio.run(replay(get_settings(), grace=grace))
