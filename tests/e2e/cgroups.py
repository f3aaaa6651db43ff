"""Cgroups for the tests that run the broker as a container or a systemd
unit would: under a CPU quota or a memory limit.

make(name, controller) makes a cgroup in the hierarchy that has the
controller (cgroup v1's where there is one, as the kernel does, else v2's)
and skips the test where none can be made (no cgroup file system this
process may write, as in an unprivileged container). The bench scripts use
make_or_raise, which raises Unavailable instead."""
import os
import subprocess
import time


class Unavailable(Exception):
    """No cgroup can be made here; the message says why."""


def make(name, controller):
    """make_or_raise, the test skipped where no cgroup can be made."""
    try:
        return make_or_raise(name, controller)
    except Unavailable as e:
        import pytest
        pytest.skip(str(e))


def make_or_raise(name, controller):
    """A new cgroup, with no limit yet, for `controller` ("cpu",
    "memory"); its directory."""
    v1 = v2 = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if "-" not in fields[6:]:
                continue
            dash = fields.index("-", 6)
            kind, point = fields[dash + 1], fields[4].replace("\\040", " ")
            # Of several, the last: a later mount at the same place hides
            # the earlier ones.
            if kind == "cgroup" and controller in fields[dash + 3].split(","):
                v1 = point
            elif kind == "cgroup2":
                v2 = point
    try:
        if v1:
            d = os.path.join(v1, name)
            os.mkdir(d)
        elif v2:
            with open(os.path.join(v2, "cgroup.controllers")) as f:
                if controller not in f.read().split():
                    raise Unavailable("cgroup v2 without the %s controller" % controller)
            with open(os.path.join(v2, "cgroup.subtree_control"), "w") as f:
                f.write("+" + controller)
            d = os.path.join(v2, name)
            os.mkdir(d)
        else:
            raise Unavailable("no cgroup hierarchy with the %s controller is mounted" % controller)
    except OSError as e:
        raise Unavailable("cannot make a cgroup here: %s" % e)
    # A process must be able to join it (not so where the hierarchy is
    # delegated elsewhere).
    if subprocess.run(["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs"', d], stderr=subprocess.DEVNULL).returncode:
        os.rmdir(d)
        raise Unavailable("cannot move a process into a new cgroup here")
    return d


def run_in(d):
    """The head of a command line that runs the rest of it in cgroup `d`."""
    return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', d]


def remove(d):
    """Removes cgroup `d` once the processes in it are gone."""
    for _ in range(50):
        try:
            os.rmdir(d)
            return
        except OSError:
            time.sleep(0.1)


def set_cpu_quota(d, cpus, period_us=100000):
    if os.path.exists(os.path.join(d, "cpu.max")):
        with open(os.path.join(d, "cpu.max"), "w") as f:
            f.write("%d %d" % (round(cpus * period_us), period_us))
    else:
        with open(os.path.join(d, "cpu.cfs_period_us"), "w") as f:
            f.write(str(period_us))
        with open(os.path.join(d, "cpu.cfs_quota_us"), "w") as f:
            f.write(str(round(cpus * period_us)))


def cpu_quota_in(d):
    """The CPU quota set in cgroup directory `d` itself, in CPUs; None."""
    try:
        with open(os.path.join(d, "cpu.max")) as f:
            q, period = f.read().split()
            return None if q == "max" else int(q) / int(period)
    except OSError:
        pass
    try:
        with open(os.path.join(d, "cpu.cfs_quota_us")) as f, open(os.path.join(d, "cpu.cfs_period_us")) as g:
            q, period = int(f.read()), int(g.read())
            return None if q <= 0 else q / period
    except OSError:
        return None


def set_memory_limit(d, limit):
    v2 = os.path.exists(os.path.join(d, "memory.max"))
    with open(os.path.join(d, "memory.max" if v2 else "memory.limit_in_bytes"), "w") as f:
        f.write(str(limit))


def memory_limits_above(d):
    """The memory limits set in the cgroups above `d`, in bytes (v1 writes
    none as a number near 2**63)."""
    found = []
    up = os.path.dirname(d)
    while True:
        for name in ("memory.max", "memory.limit_in_bytes"):
            try:
                with open(os.path.join(up, name)) as f:
                    text = f.read().strip()
            except OSError:
                continue
            if text != "max" and int(text) < 1 << 62:
                found.append(int(text))
        if not os.path.exists(os.path.join(os.path.dirname(up), "cgroup.procs")) or up == os.path.dirname(up):
            return found
        up = os.path.dirname(up)


def oom_kills(d):
    """Processes of cgroup `d` the kernel killed for want of memory."""
    for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
        try:
            with open(os.path.join(d, name)) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v)
        except OSError:
            pass
    return None
