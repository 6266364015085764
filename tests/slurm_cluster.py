"""A throw-away single-node Slurm (munged, slurmctld, slurmd) with everything in one directory.

Used by tests/test_slurm.py. Config, munge key, state, spool, logs and sockets all live under
``root``; the daemons get free localhost ports, so nothing clashes with a system Slurm, and
``stop()`` ends every daemon this module started (TERM, then KILL), whatever happened before.
Clients find the cluster through ``SLURM_CONF`` and an ``srun`` wrapper (``env()``).

Choices that work in a container without systemd or a writable cgroup tree:
``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none`` (no cgroups),
``SlurmdParameters=config_overrides`` (the node is what slurm.conf says: 2 CPUs, whatever the
machine has), ``AccountingStorageType=accounting_storage/none`` (no slurmdbd, so no sacct: job
status comes from squeue, and ``MinJobAge`` keeps finished jobs visible to it for an hour).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
PARTITIONS = ("cpu", "gpu")  # the names workflows/profiles/slurm uses; both hold the one node
NODE_CPUS = 2
NODE_MEMORY_MB = 32000  # declared (config_overrides): the profile's largest request (16000) fits
START_S = 60


def missing_binaries() -> list[str]:
    found = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") for name in DAEMONS + CLIENTS}
    return [name for name, where in found.items() if where is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path, node: str, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
ClusterName=grpoamptest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
SchedulerType=sched/backfill
InactiveLimit=0
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} State=UNKNOWN
PartitionName={PARTITIONS[0]} Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITIONS[1]} Nodes={node} MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """Start with ``start()``; always call ``stop()`` (a ``finally``): it is safe after a failed start."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def _daemon(self, name: str, *args: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self._logs.append(log)
        self.procs[name] = subprocess.Popen([shutil.which(name, path="/usr/sbin:/sbin:/usr/bin") or name, *args],
                                            env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> "SlurmCluster":
        for sub in ("munge", "state", "spool", "run", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)  # munged refuses a socket or key directory others can write
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(slurm_conf(self.root, self.node, _free_port(), _free_port()))
        # snakemake-executor-plugin-slurm-jobstep (0.6.1) drops every SLURM_* variable but the job's
        # ids before its `srun`, SLURM_CONF included: a cluster configured anywhere but
        # /etc/slurm/slurm.conf (this one) would leave srun without a config. An `srun` first on PATH
        # puts it back.
        (self.root / "bin").mkdir(exist_ok=True)
        srun = self.root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)

        # -F: stay in the foreground, so the Popen is the daemon and stop() can end it.
        self._daemon("munged", "-F", "--force", f"--key-file={key}", f"--socket={self.root}/munge/munge.socket",
                     f"--pid-file={self.root}/run/munged.pid", f"--log-file={self.root}/log/munged.log",
                     f"--seed-file={self.root}/munge/munge.seed")
        self._wait(lambda: (self.root / "munge" / "munge.socket").exists(), "munged socket")
        self._daemon("slurmctld", "-D", "-i", "-f", str(self.conf))  # -i: ignore (no) saved state
        self._daemon("slurmd", "-D", "-N", self.node, "-f", str(self.conf))
        self._wait(self.node_idle, f"node {self.node} idle in sinfo")
        return self

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_S
        while not ready():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n"
                                       f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} after {START_S} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=timeout, check=check)

    def node_idle(self) -> bool:
        try:
            out = self.run("sinfo", "--noheader", "-N", "-o", "%N %t", timeout=10, check=False).stdout
        except subprocess.TimeoutExpired:
            return False
        return any(line.split() == [self.node, "idle"] for line in out.splitlines())

    def _descendants(self) -> list[int]:
        """Processes that carry this cluster's SLURM_CONF: its daemons' children (slurmstepd, jobs)."""
        mark = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if mark in (entry / "environ").read_bytes().split(b"\0"):
                        pids.append(int(entry.name))
                except OSError:  # gone, or not ours to read
                    continue
        return pids

    def stop(self) -> None:
        """End every job and daemon started here: scancel, then slurmd, slurmctld, munged (TERM, then
        KILL), then any leftover job step that still carries this cluster's SLURM_CONF."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--quiet", "--user", str(os.getuid()), timeout=15, check=False)
            except subprocess.TimeoutExpired:
                pass
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
                try:
                    os.killpg(proc.pid, sig)  # the daemon and anything it forked (slurmstepd, jobs)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for pid in self._descendants():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for log in self._logs:
            log.close()
