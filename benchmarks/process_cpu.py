"""CPU seconds of the deployment's processes and of the machine, from the kernel's accounting.

A process's user and system times are its own; its children's times are those of the children it
has reaped (waited for), each with theirs. So the CPU of a process tree over a span is the change
of the sum, over its processes alive at the end, of their own and their children's times, with
the processes that exited inside the tree counted once, through the parent that reaped them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil

# A process, told apart from a later one given the same pid.
Key = tuple[int, float]


def _tree(pid: int) -> Iterator[psutil.Process]:
    try:
        root = psutil.Process(pid)
        yield root
        yield from root.children(recursive=True)
    except psutil.NoSuchProcess:
        return


def _key(process: psutil.Process) -> Key | None:
    try:
        return process.pid, process.create_time()
    except psutil.Error:
        return None


@dataclass(frozen=True)
class TreeTimes:
    """One reading of a process tree: per process, its own CPU seconds and its reaped
    children's."""

    own: dict[Key, float]
    reaped: dict[Key, float]

    @classmethod
    def read(cls, pid: int) -> TreeTimes:
        own, reaped = {}, {}
        for process in _tree(pid):
            try:
                key, times = _key(process), process.cpu_times()
            except psutil.Error:
                continue
            if key is not None:
                own[key] = times.user + times.system
                reaped[key] = times.children_user + times.children_system
        return cls(own, reaped)

    def total(self) -> float:
        return sum(self.own.values()) + sum(self.reaped.values())

    def started_since(self, before: TreeTimes) -> float:
        """CPU seconds of the processes started in the tree after `before` was read: those
        still there, and those exited and reaped by a process that was there before."""
        new = sum(self.own[key] + self.reaped[key] for key in self.own if key not in before.own)
        reaped_by_old = sum(
            self.reaped[key] - before.reaped[key] for key in self.reaped if key in before.reaped
        )
        return new + reaped_by_old


def machine_times() -> tuple[float, float, float]:
    """The machine's busy, idle (waiting for I/O included) and stolen CPU seconds so far, all
    cores together."""
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system + times.irq + times.softirq
    return busy, times.idle + times.iowait, getattr(times, "steal", 0.0)


@dataclass
class Sampler:
    """Samples, every `every` seconds in a thread of its own: the machine's busy share, the
    CPU of each of the code server's worker processes started since `since`, and the CPU of the
    PostgreSQL backends by database (a backend's title names its database; one that lives less
    than a sample is missed, and one's last fraction of a sample too)."""

    postmaster: int
    code_server: int
    since: TreeTimes
    every: float = 0.25
    # Per worker process: (time, its CPU seconds so far) at each sample.
    workers: dict[Key, list[tuple[float, float]]] = field(default_factory=dict)
    busy_shares: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    backends: dict[Key, tuple[str, float, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._sample_backends(first=True)
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample_backends()

    def _run(self) -> None:
        busy, idle, steal = machine_times()
        while not self._stop.wait(self.every):
            now = machine_times()
            spent = [b - a for a, b in zip((busy, idle, steal), now, strict=True)]
            if sum(spent) > 0:
                self.busy_shares.append(spent[0] / sum(spent))
            busy, idle, steal = now
            self.loads.append(psutil.getloadavg()[0])
            self._sample_backends()
            self._sample_workers()

    def _sample_backends(self, first: bool = False) -> None:
        try:
            children = psutil.Process(self.postmaster).children()
        except psutil.NoSuchProcess:
            return
        for process in children:
            try:
                key, title, times = _key(process), process.cmdline(), process.cpu_times()
            except psutil.Error:
                continue
            if key is None or not title:
                continue
            # "postgres: <user> <database> <host>(<port>) <state>"; auxiliary processes differ.
            words = title[0].split()
            database = words[2] if len(words) > 3 and "(" in words[3] else "(auxiliary)"
            cpu = times.user + times.system
            start = self.backends[key][1] if key in self.backends else (cpu if first else 0.0)
            self.backends[key] = (database, start, cpu)

    def _sample_workers(self) -> None:
        for process in _tree(self.code_server):
            key = _key(process)
            if key is None or key in self.since.own:
                continue
            if key not in self.workers:
                if not _is_worker(process):
                    continue
                self.workers[key] = []
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            cpu = times.user + times.system + times.children_user + times.children_system
            self.workers[key].append((time.time(), cpu))

    def cpu_at(self, pid: int, moment: float) -> float | None:
        """The CPU seconds the worker `pid` had spent at `moment`, between the samples around
        it (None if it was not sampled then)."""
        for (worker, _), series in self.workers.items():
            if worker != pid or not series or not series[0][0] <= moment <= series[-1][0]:
                continue
            for (t0, c0), (t1, c1) in itertools.pairwise(series):
                if t0 <= moment <= t1:
                    return c0 + (c1 - c0) * (moment - t0) / (t1 - t0) if t1 > t0 else c0
        return None

    def workers_cpu(self) -> float:
        """The workers' CPU seconds at their last samples: a check on what the kernel counted
        for them, short by what each spent after its last sample."""
        return sum(series[-1][1] for series in self.workers.values() if series)

    def backend_cpu(self) -> dict[str, float]:
        """CPU seconds of the backends seen, by database, since the sampler started."""
        spent: dict[str, float] = {}
        for database, start, last in self.backends.values():
            spent[database] = spent.get(database, 0.0) + last - start
        return spent


def postmaster_of(port: int) -> int:
    """The pid of the PostgreSQL server listening on `port` (its command line names it)."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if (
            cmdline
            and cmdline[0].endswith("postgres")
            and "-p" in cmdline
            and cmdline[cmdline.index("-p") + 1] == str(port)
        ):
            return process.pid
    raise LookupError(f"no PostgreSQL server on port {port}")


def _is_worker(process: psutil.Process) -> bool:
    """A process multiprocessing spawned to do work (a run's), not its resource tracker."""
    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "spawn_main" in cmdline


def workers_since(pid: int, since: TreeTimes) -> set[Key]:
    """The worker processes in the tree started since `since` was read, alive or not reaped."""
    return {
        key
        for process in _tree(pid)
        if (key := _key(process)) is not None and key not in since.own and _is_worker(process)
    }


def wait_until_exited(pid: int, since: TreeTimes, timeout: float = 60) -> int:
    """Wait until every worker started in the tree since `since` has exited and been reaped;
    how many are left when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    while (left := len(workers_since(pid, since))) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left
