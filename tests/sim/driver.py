"""One run of a :class:`~sim.workload.Plan` on real processes, and shrinking a failing plan.

A run: a hub process, a :class:`~sim.faultproxy.FaultProxy` per device, daemons ``alice-1``–``alice-3`` and
``bob-1``. alice-1 writes the initial files into a folder, adds it (``ctl add``) and shares it with bob (``U`` or
``D``, as the plan says); every device finds its copy. Then each round: its operations, in order, on the devices'
copies, with the round's faults starting before the operation they name and ending after the round's settle time.
Then every fault ends, every daemon is asked for a cycle (``ctl sync``), held mass deletions are confirmed as a
user would, and the driver waits for quiet: every copy identical for :data:`QUIET` seconds and every daemon idle.
The oracle (:mod:`sim.oracle`) then checks the invariants.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon_helpers import DaemonProcess
from e2e_helpers import Cluster, local_path

from oaiod.daemon.ctl.protocol import CtlError
from sim import oracle
from sim.faultproxy import FaultProxy
from sim.faultshim import DeviceFaults, build
from sim.hubproc import HubProcess
from sim.workload import DEVICES, Fault, Plan, Round, apply, step_names, without

QUIET = 5.0  #: seconds every copy must stay identical, with every daemon idle, to count as converged
CONVERGE_TIMEOUT = 300.0  #: generous: a device may back off after a round offline


@dataclass
class Outcome:
    """What a run found; ``problems`` empty means every invariant held."""

    problems: list[str] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)  #: "kind" and "kind skipped" -> count
    faults: Counter[str] = field(default_factory=Counter)
    network: Counter[str] = field(default_factory=Counter)  #: what the fault proxies did
    log: list[str] = field(default_factory=list)  #: every step with its outcome
    seconds: float = 0.0
    files: int = 0  #: files in the converged folder
    contents: int = 0  #: written contents the oracle looked for (not destroyed by a user)

    def kind(self) -> str:
        """The first problem's kind, e.g. ``lost`` or ``no convergence``: what a shrunk plan must still show."""
        return self.problems[0].split(":")[0].split(" ")[0] if self.problems else ""


class Simulation:
    """The processes of one run under ``base`` (removed by nobody: pytest's tmp folders keep the last runs)."""

    def __init__(self, plan: Plan, base: Path) -> None:
        self.plan = plan
        self.base = base
        self.ledger = oracle.Ledger()
        self.outcome = Outcome()
        self.hub = HubProcess(base / "hub", base / "csh-local")
        self.cluster = Cluster(self.hub, base, base / "csh-local")
        self.proxies: dict[str, FaultProxy] = {}
        self.shims: dict[str, DeviceFaults] = {}  #: each daemon's clock and disk (sim.faultshim)
        self.procs: dict[str, DaemonProcess] = {}
        self.folders: dict[str, Path] = {}
        self.paused: set[str] = set()
        self.killed: set[str] = set()
        self._hub_lock = threading.Lock()  # the proxy's commit-cut kills the hub from its own thread

    # -- processes ------------------------------------------------------------------------------------------------

    def _user(self, device: str) -> str:
        return device.split("-")[0]

    def _spawn(self, device: str) -> DaemonProcess:
        config = self.base / f"{device}.toml"
        if not config.exists():
            config = self.cluster.config(device, self._user(device), url=self.proxies[device].url, interval=5)
            if self.plan.storage != "Local":
                config.write_text(config.read_text().replace('csh_id = "Local"', f'csh_id = "{self.plan.storage}"'))
        proc = DaemonProcess(config, real=True, env=self.shims[device].env())
        self.cluster.started.append(proc)
        self.procs[device] = proc
        return proc

    def _kill(self, device: str) -> None:
        proc = self.procs[device]
        if proc.proc.poll() is None:
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait(30)
        proc.close()
        self.paused.discard(device)
        self.killed.add(device)

    def _restart(self, device: str) -> None:
        self._spawn(device).ready()
        self.killed.discard(device)

    def _start(self) -> None:
        (self.base / "csh-local").mkdir(parents=True, exist_ok=True)
        self.hub.start()
        library = build()
        for number, device in enumerate(DEVICES):
            self.proxies[device] = FaultProxy(self.hub.url, self.plan.seed * 100 + number)
            self.shims[device] = DeviceFaults(self.base / f"{device}.faults", library)
        for device in DEVICES:
            self._spawn(device)
        for device in DEVICES:
            self.procs[device].ready()

    def _share(self) -> None:
        """alice-1 writes the initial files, adds the folder and shares it; every device finds its copy."""
        team = self.base / "team"
        team.mkdir()
        for op in self.plan.initial:
            self._note(op, apply(team, self.plan.seed, op, self.ledger))
        owner = self.procs[DEVICES[0]]
        oaio_id = owner.call("add", path=str(team), wait=True)["oaio_id"]
        owner.call("share", oaio_id=oaio_id, user="bob", right=self.plan.bob_right)
        self.folders[DEVICES[0]] = team
        for device in DEVICES[1:]:
            self.folders[device] = local_path(self.procs[device], oaio_id)

    def close(self) -> None:
        for device in list(self.paused):
            self._signal(device, signal.SIGCONT)
        self.cluster.stop_all()
        for proxy in self.proxies.values():
            self.outcome.network.update(proxy.counts)
            proxy.close()
        self.hub.stop()

    def _signal(self, device: str, sig: int) -> None:
        proc = self.procs[device].proc
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        if sig == signal.SIGSTOP:
            self.paused.add(device)
        elif sig == signal.SIGCONT:
            self.paused.discard(device)

    # -- rounds ---------------------------------------------------------------------------------------------------

    def _note(self, step: Any, outcome: str) -> None:
        self.outcome.log.append(f"{step}: {outcome}")
        if hasattr(step, "kind") and isinstance(step, Fault):
            self.outcome.faults[step.kind] += 1
        else:
            self.outcome.ops[step.kind if outcome == "done" else f"{step.kind} skipped"] += 1

    def _begin(self, fault: Fault) -> None:
        device = fault.device
        if fault.kind == "kill" and device not in self.killed:
            self._kill(device)
        elif fault.kind == "kill-bounce":
            self._kill(device)
            self._restart(device)
        elif fault.kind == "pause" and device not in self.killed:
            self._signal(device, signal.SIGSTOP)
        elif fault.kind in ("offline", "flaky"):
            self.proxies[device].set_mode("down" if fault.kind == "offline" else "flaky")
        elif fault.kind in ("hub-kill", "hub-bounce"):
            with self._hub_lock:
                self.hub.kill()
                if fault.kind == "hub-bounce":
                    self.hub.start()
        elif fault.kind == "clock-jump":
            self.shims[device].jump(fault.seconds)
        elif fault.kind == "disk-full":
            self.shims[device].fill(True)
        elif fault.kind == "hub-kill-at-commit":
            for proxy in self.proxies.values():
                proxy.at_commit = self._kill_hub_once
        self._note(fault, "begun")

    def _kill_hub_once(self) -> None:
        """Called by the proxy that forwards the next commit: only the first caller kills, the rest do nothing."""
        for proxy in self.proxies.values():
            proxy.at_commit = None
        with self._hub_lock:
            self.hub.kill()

    def _hub_up(self) -> None:
        with self._hub_lock:
            if not self.hub.alive():
                self.hub.start()

    def _end_faults(self) -> None:
        for proxy in self.proxies.values():
            proxy.at_commit = None
        for device in list(self.paused):
            self._signal(device, signal.SIGCONT)
        for proxy in self.proxies.values():
            proxy.set_mode("ok")
        for shim in self.shims.values():
            shim.fill(False)
            shim.jump(0.0)
        self._hub_up()
        for device in list(self.killed):
            self._restart(device)

    def _round(self, rnd: Round) -> None:
        for index, op in enumerate(rnd.ops):
            for fault in rnd.faults:
                if fault.at == index:
                    self._begin(fault)
            time.sleep(op.pause)
            self._note(op, apply(self.folders[op.device], self.plan.seed, op, self.ledger))
            self._stamp(op)
        for fault in rnd.faults:
            if fault.at >= len(rnd.ops):
                self._begin(fault)
        time.sleep(rnd.settle)
        self._end_faults()

    def _stamp(self, op: Any) -> None:
        """A file written on a device whose clock jumped carries that clock's time, as its kernel would give it."""
        shim = self.shims[op.device]
        if not shim.offset:
            return
        for rel in (op.path, op.dst):
            path = self.folders[op.device] / rel if rel else None
            if path is not None and path.is_file() and not path.is_symlink():
                os.utime(path, (shim.now(), shim.now()))

    # -- quiet and the oracle -------------------------------------------------------------------------------------

    def _statuses(self) -> dict[str, dict[str, Any]] | None:
        found = {}
        for device, proc in self.procs.items():
            if proc.proc.poll() is not None:
                self.outcome.problems.append(f"daemon died: {device} exited {proc.proc.returncode}")
                return None
            try:
                found[device] = proc.call("status")
            except CtlError:
                return {}
        return found

    def _quiet(self) -> bool:
        """Wait until every copy is identical for :data:`QUIET` seconds with every daemon idle."""
        for proc in self.procs.values():
            proc.call("sync")
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        stable_since, last = 0.0, None
        while time.monotonic() < deadline:
            self._hub_up()  # a commit cut that fired late
            statuses = self._statuses()
            if statuses is None:
                return False
            for device, status in statuses.items():
                for held in status["engine"].get("held") or []:
                    self.outcome.log.append(f"confirm-delete on {device}: {held}")
                    self.procs[device].call("confirm-delete", oaio_id=held["oaio_id"])
            idle = len(statuses) == len(self.procs) and all(_idle(s) for s in statuses.values())
            snaps = {device: oracle.snapshot(folder) for device, folder in self.folders.items()}
            same = all(s == snaps[DEVICES[0]] for s in snaps.values())
            if idle and same and snaps[DEVICES[0]] == last:
                if time.monotonic() - stable_since >= QUIET:
                    return True
            else:
                stable_since, last = time.monotonic(), snaps[DEVICES[0]] if same else None
            time.sleep(0.5)
        return False

    def _check(self, converged: bool) -> None:
        problems = self.outcome.problems
        if not converged and not problems:
            problems.append(f"no convergence within {CONVERGE_TIMEOUT:.0f} s")
        statuses = self._statuses() or {}
        for device, status in statuses.items():
            if status["state"] == "error":
                problems.append(f"status error: {device}: {status['last_error']} {status['engine'].get('errors')}")
        roots = {device: oracle.snapshot(folder) for device, folder in self.folders.items()}
        stores = {device: self.base / device for device in DEVICES}
        stores["alice-1 team"] = self.folders[DEVICES[0]]
        problems += oracle.check(self.ledger, roots, stores)
        self.outcome.files = len(roots[DEVICES[0]])
        self.outcome.contents = len(self.ledger.written.keys() - self.ledger.destroyed)

    def run(self) -> Outcome:
        started = time.monotonic()
        try:
            self._start()
            self._share()
            for rnd in self.plan.rounds:
                self._round(rnd)
            self._end_faults()
            self._check(self._quiet())
        finally:
            self.close()
            self.outcome.seconds = time.monotonic() - started
        return self.outcome


def _idle(status: dict[str, Any]) -> bool:
    """No cycle running, nothing held, nothing waiting to go up or down (an ``error`` state is checked later)."""
    engine = status["engine"]
    busy = engine.get("held") or engine.get("queued_uploads") or engine.get("queued_downloads")
    return status["state"] in ("idle", "error") and not busy


def run_plan(plan: Plan, base: Path) -> Outcome:
    base.mkdir(parents=True, exist_ok=True)
    return Simulation(plan, base).run()


def shrink(plan: Plan, kind: str, base: Path, max_runs: int) -> tuple[Plan, int]:
    """Greedy removal of steps, halves first, then smaller chunks down to single steps, keeping a removal when
    the smaller plan still fails with a problem of ``kind``; at most ``max_runs`` runs. Returns the smallest
    failing plan found and the runs made (the system is concurrent: a step that only matters by its timing may
    stay in)."""
    runs = 0
    names = step_names(plan)
    chunk = max(1, len(names) // 2)
    while chunk >= 1 and runs < max_runs:
        start = 0
        while start < len(names) and runs < max_runs:
            drop = set(names[start : start + chunk])
            candidate = without(plan, drop)
            runs += 1
            outcome = run_plan(candidate, base / f"shrink-{runs}")
            if outcome.kind() == kind:
                plan, names = candidate, step_names(candidate)
            else:
                start += chunk
        chunk //= 2
    return plan, runs
