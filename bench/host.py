"""The machine under `vision bench`: what it is, and how busy other processes keep it.

The benchmark shares the CPU with whatever else runs (a training job, another server). Per
level it records the CPU time of the whole machine and of our own processes (the bench and
the server's process tree); the difference, per second, is the load from everyone else.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

_TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.platform()}"


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()  # fields after the command name, from field 3
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK


def _tree_cpu_s(roots: set[int]) -> float:
    """CPU seconds of the processes in the trees below `roots` (BentoML's workers each run
    in a session of their own, so process groups do not find them)."""
    stats = {int(e): st for e in os.listdir("/proc") if e.isdigit() and (st := _stat(e))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0.0, [r for r in roots if r in stats], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total


@dataclass(frozen=True)
class CpuSnapshot:
    machine_s: float
    ours_s: float


def cpu_snapshot(roots: set[int]) -> CpuSnapshot | None:
    """CPU seconds so far: the machine's, and those of this process and the process trees
    below `roots` (the server). Take both snapshots while the server runs."""
    try:
        return CpuSnapshot(_machine_busy_s(), _tree_cpu_s(roots | {os.getpid()}))
    except (OSError, ValueError, IndexError):
        return None


def cpu_split(
    before: CpuSnapshot | None, after: CpuSnapshot | None, seconds: float
) -> tuple[float, float]:
    """(ours, others): cores kept busy by our processes and by everyone else between two
    snapshots; NaN when unknown."""
    if before is None or after is None or seconds <= 0:
        return float("nan"), float("nan")
    machine_s = after.machine_s - before.machine_s
    ours_s = after.ours_s - before.ours_s
    return ours_s / seconds, max(0.0, machine_s - ours_s) / seconds
