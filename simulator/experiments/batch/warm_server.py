"""A warm fork server for the process pool: workers fork from a server process that has already
imported the model and loaded its compiled kernels, so a worker is ready in milliseconds instead
of paying ~1.5 s of imports and kernel loading each.

``warm_context(preload)`` gives a multiprocessing context (start method ``forkserver``) backed by
a fork server of its own, one per ``preload`` tuple and per batch process, kept for the life of
that process (later batches reuse it; it exits when the batch process does). It is not the
standard library's process-wide fork server: its preload list is not touched, and a fork server
someone else started cannot leave our workers cold. The server imports the ``preload`` modules
(a module may do warm-up work when imported: ``simulator.experiments.batch.preload``) and then
only forks; it is started by ``start()`` without waiting, so it warms up while the batch process
validates and writes its manifest, and the first worker's start waits for it.

The server is launched with the parent's ``sys.path`` and imports the modules as they are on
disk when it starts: a process that edits the model's code between two batches (a notebook)
gets the old code in the second batch's workers; ``mp_context="spawn"`` imports afresh.
"""

from __future__ import annotations

import io
import os
import threading
from multiprocessing import context, forkserver, spawn, util
from multiprocessing.popen_forkserver import Popen as _ForkServerPopen

_SERVERS: dict[tuple[str, ...], forkserver.ForkServer] = {}
_LOCK = threading.Lock()


def _server(preload: tuple[str, ...]) -> forkserver.ForkServer:
    with _LOCK:
        server = _SERVERS.get(preload)
        if server is None:
            server = _SERVERS[preload] = forkserver.ForkServer()
            server.set_forkserver_preload(list(preload))
        return server


class _WarmPopen(_ForkServerPopen):
    """The standard fork-server ``Popen``, asking our server (not the process-wide one) to fork."""

    def __init__(self, process_obj, server: forkserver.ForkServer):
        self._server = server
        super().__init__(process_obj)

    def _launch(self, process_obj):  # as popen_forkserver.Popen._launch, with self._server
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            context.reduction.dump(prep_data, buf)
            context.reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = self._server.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)  # the child watches it to see this process die
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _WarmProcess(context.ForkServerProcess):
    """A process forked by the warm server named by its ``_warm_preload`` (a tuple of module
    names; pickled to the child with the process object, where it is not used)."""

    _warm_preload: tuple[str, ...] = ()

    @staticmethod
    def _Popen(process_obj):
        return _WarmPopen(process_obj, _server(process_obj._warm_preload))


class WarmForkServerContext(context.ForkServerContext):
    """A ``forkserver`` context whose processes fork from the warm server for ``preload``."""

    def __init__(self, preload: tuple[str, ...]):
        super().__init__()
        self.preload = tuple(preload)

    def Process(self, *args, **kwargs):  # noqa: N802 - the multiprocessing name
        p = _WarmProcess(*args, **kwargs)
        p._warm_preload = self.preload
        return p

    def start(self) -> None:
        """Start the server now if it is not running; returns without waiting for its preload."""
        _server(self.preload).ensure_running()

    def server_cpu_s(self) -> float | None:
        """CPU seconds the server has used (its start-up: imports, preload); ``None`` if it is not
        running or this is not Linux. 0.0 before it was started."""
        server = _SERVERS.get(self.preload)
        pid = None if server is None else server._forkserver_pid
        return 0.0 if pid is None else _cpu_s(pid)


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of process ``pid`` from ``/proc``; ``None`` where unreadable."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def warm_context(preload) -> WarmForkServerContext:
    """The context whose workers fork from a server that imported ``preload`` (module names)."""
    return WarmForkServerContext(tuple(preload))
