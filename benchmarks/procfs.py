"""
What /proc says about a server on this machine: its CPU time, its memory,
which process listens on a port, and what the machine is.

A Python load generator can be slower than the server it loads, so its
deliveries/s may measure itself; the server's own CPU seconds per delivery
(utime + stime of every thread) do not depend on who is sending.
"""

from __future__ import annotations

import os
import platform


def parse_stat_ticks(stat: str) -> tuple[int, int]:
    """
    (utime, stime), in clock ticks, from the text of /proc/PID/stat.

    The command name (field 2) is in parentheses and may itself contain
    spaces and parentheses, so fields are counted from the last ')'.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[11]), int(rest[12])


def cpu_times(pid: int) -> tuple[float, float] | None:
    """
    (user, system) CPU seconds used so far by process C{pid}, all threads.
    System time is the kernel working for the process: system calls, which
    is most of what a server does per message when messages do not batch.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            user, system = parse_stat_ticks(f.read())
    except (OSError, ValueError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return user / hz, system / hz


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by process C{pid} (all threads), or None."""
    times = cpu_times(pid)
    return None if times is None else times[0] + times[1]


def parse_status_kib(status: str, field: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def status_kib(pid: int, field: str = "VmRSS") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return parse_status_kib(f.read(), field)
    except OSError:
        return None


def parse_system_ticks(stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs, from the text of /proc/stat."""
    first = stat.splitlines()[0].split()
    values = [int(v) for v in first[1:9]]
    total = sum(values)
    idle = values[3] + values[4]  # idle and iowait
    return total - idle, total


def system_ticks() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            return parse_system_ticks(f.read())
    except (OSError, ValueError, IndexError):
        return None


def listening_inodes(table: str, port: int) -> set[int]:
    """Socket inodes listening on C{port}, from the text of /proc/net/tcp or tcp6."""
    inodes: set[int] = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port and inode != "0":
            inodes.add(int(inode))
    return inodes


def find_listener_pid(port: int) -> int | None:
    """
    The process with a socket listening on C{port}, as chatload finds it:
    the listening socket's inode from /proc/net/tcp*, then the process that
    has a descriptor for it.  None if it cannot be seen (another user's
    process, another network namespace).
    """
    inodes: set[int] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                inodes |= listening_inodes(f.read(), port)
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in wanted:
                    return int(entry)
            except OSError:
                continue
    return None


def machine() -> str:
    """One line naming the machine, for every results table."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    try:
        load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = ""
    return f"{cores} cores ({model}), Linux {platform.release()}, Python {platform.python_version()}{load}"
