"""A real one-node SLURM cluster on this machine, for tests of SLURM launchers.

Needs root and Debian's packages (SLURM 22.05; ``install_packages()``). ``LocalSlurm`` writes the
configs, starts munged, MariaDB, slurmdbd, slurmctld and slurmd as its own children (there is no
init system), waits until the node is idle, and stops exactly those daemons again; a cluster that
already answers ``sinfo`` is reused and left running. Any other start is a fresh cluster (empty
controller state and accounting database: job ids start at 1). ``with LocalSlurm().start(tmp):``

Requeue: ``scontrol requeue ID`` (``JobRequeue=1``); the job starts again after ``requeue_delay``
seconds (``AuthInfo=cred_expire``, 120 s by default). Signals: ``sbatch --time=1 --signal=B:USR1@20``;
slurmctld checks time limits every 30 s, so a signal may come up to 60 s early (``sbatch(1)``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
BINARIES = (
    "slurmctld",
    "slurmd",
    "slurmdbd",
    "sbatch",
    "sinfo",
    "squeue",
    "scancel",
    "sacct",
    "sacctmgr",
    "scontrol",
    "munged",
    "munge",
    "mariadbd",
    "mysqladmin",
    "mysql",
)
ETC = Path("/etc/slurm")
MYSQL_SOCKET = "/run/mysqld/mysqld.sock"
MARKER = "# written by salfmix.slurm_cluster"
LOCK = "/run/salfmix-slurm-cluster.lock"


def _which(name: str) -> str | None:
    """Path of executable ``name`` on PATH or in the sbin folders (which PATH may lack)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def _run(cmd: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run ``cmd`` capturing text output; a missing program or a timeout reads as status 127/124."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as err:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(err))
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(cmd), 124, "", f"timed out after {timeout:.0f} s")


def _last_line(text: str) -> str:
    """The last error line of ``text`` (``E:``, ``error``, ``fatal``), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:") or "error" in line.lower() or "fatal" in line]
    return (errors or lines or ["no output"])[-1]


def install_packages() -> None:
    """apt-get install SLURM, munge and MariaDB if ``slurmctld`` or ``sbatch`` is missing.

    ``apt-get update`` runs only when a first install fails. Raises a one-line RuntimeError.
    """
    if _which("slurmctld") and _which("sbatch"):
        return
    if os.geteuid() != 0 or not _which("apt-get"):
        raise RuntimeError("SLURM packages are missing and installing them needs root and apt-get")
    os.environ.setdefault("DEBIAN_FRONTEND", "noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    done = _run(install, timeout=900)
    if done.returncode != 0:
        update = _run(["apt-get", "update", "-q"], timeout=600)
        if update.returncode != 0:
            raise RuntimeError(f"apt-get update failed: {_last_line(update.stderr + update.stdout)}")
        done = _run(install, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed: {_last_line(done.stderr + done.stdout)}")


def _controller_listens() -> bool:
    """Whether slurm.conf's controller accepts connections: quick, where ``sinfo`` retries ~10 s."""
    conf = Path(os.environ.get("SLURM_CONF", ETC / "slurm.conf"))
    if not conf.is_file():
        return False
    host, port = "", 6817
    for line in conf.read_text(errors="replace").splitlines():
        key, _, value = line.split("#")[0].strip().partition("=")
        if key.lower() in ("slurmctldhost", "controlmachine") and not host:
            host = value.split("(")[-1].rstrip(")").strip()  # "name(address)" or "name"
        elif key.lower() == "slurmctldport" and value.split("-")[0].strip().isdigit():
            port = int(value.split("-")[0])
    try:
        socket.create_connection((host or "localhost", port), timeout=3).close()
    except OSError:
        return False
    return True


def node_state() -> str | None:
    """The node's state as ``sinfo -h -o %T`` prints it, or None if no controller answers."""
    if not _which("sinfo") or not _controller_listens():
        return None
    done = _run(["sinfo", "-h", "-o", "%T"], timeout=15)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def why_unavailable() -> str | None:
    """One line saying why ``LocalSlurm`` cannot start here, or None (this may install packages)."""
    return LocalSlurm().why_unavailable()


class LocalSlurm:
    """A one-node cluster (node ``localhost``, partition ``debug``), started and stopped by hand."""

    def __init__(self, cluster_name: str = "salfmix", timeout: float = 60.0, requeue_delay: int = 10) -> None:
        self.cluster_name = cluster_name
        self.timeout = timeout  # for each daemon to come up, and for the node to be idle
        self.requeue_delay = max(5, requeue_delay)  # AuthInfo=cred_expire: SLURM's minimum is 5 s
        self.database = f"{cluster_name}_slurm_acct_db"  # also its MariaDB user; emptied on start
        self.workdir: Path | None = None
        self.reused = False
        self.error: str | None = None
        self.started: dict[str, subprocess.Popen] = {}  # daemon name -> process, in start order

    def why_unavailable(self) -> str | None:
        """None if a cluster answers or can be started; else one line why not (or why start failed)."""
        if self.error:
            return self.error
        if self.started or node_state() is not None:
            return None
        if os.name != "posix" or os.geteuid() != 0:
            return "starting a SLURM cluster needs root on Linux"
        try:
            install_packages()
        except RuntimeError as err:
            return str(err)
        missing = [name for name in BINARIES if not _which(name)]
        return f"SLURM programs missing after install: {', '.join(missing)}" if missing else None

    def start(self, workdir: os.PathLike) -> LocalSlurm:
        """Start the cluster (configs, logs and state under ``workdir``); returns self once idle.

        Raises a one-line RuntimeError (also kept in ``self.error``) if a daemon does not come up;
        whatever had been started is stopped again.
        """
        self.error = None
        if node_state() is None:
            reason = self.why_unavailable()
            if reason:
                raise RuntimeError(reason)
            with open(LOCK, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be starting one right now
                if node_state() is None:
                    self.workdir = Path(workdir).resolve()
                    atexit.register(self.stop)
                    try:
                        self._start(self.workdir)
                    except RuntimeError as err:
                        self.error = str(err)
                        self.stop()
                        raise
                    return self
        self.reused = True
        self._wait("the node", lambda: node_state() in ("idle", "mixed", "allocated"))
        return self

    def stop(self) -> None:
        """Cancel all jobs, stop the daemons this object started (no others) and what jobs left."""
        if "slurmctld" in self.started:
            ids = _run(["squeue", "-h", "-o", "%i"], timeout=15).stdout.split()
            if ids:
                _run(["scancel", *ids], timeout=15)
                self._wait(
                    "jobs to end", lambda: not _run(["squeue", "-h"], 15).stdout.strip(), timeout=20.0, fail=False
                )
        for proc in reversed(list(self.started.values())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if "slurmd" in self.started:
            # SIGKILL is delivered, not waited for: a busy process takes a moment to exit, and one a
            # job was still starting may appear after the first look. Kill until none is left.
            self._wait("the jobs' processes to exit", self._kill_leftovers, timeout=30.0, fail=False)
        self.started.clear()

    def _kill_leftovers(self) -> bool:
        """SIGKILL every leftover process of this cluster's jobs; whether there was none."""
        pids = self.leftover_processes()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return not pids

    def __enter__(self) -> LocalSlurm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, work: Path) -> None:
        for sub in ("etc", "log", "run", "munge", "spool/slurmctld", "spool/slurmd"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(work / "munge", 0o700)
        if _run(["munge", "-n"], timeout=10).returncode != 0:
            key = work / "munge" / "munge.key"
            if not key.exists():
                key.write_bytes(os.urandom(1024))
                os.chmod(key, 0o400)
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            self._spawn(
                "munged",
                [
                    "munged",
                    "-F",
                    "--force",
                    f"--key-file={key}",  # runs as root
                    f"--log-file={work / 'log' / 'munged.log'}",
                    f"--pid-file={work / 'run' / 'munged.pid'}",
                    f"--seed-file={work / 'munge' / 'munged.seed'}",
                ],
            )
            self._wait("munged", lambda: _run(["munge", "-n"], 10).returncode == 0, daemon="munged")

        ping = ["mysqladmin", f"--socket={MYSQL_SOCKET}", "ping"]
        if _run(ping, timeout=10).returncode != 0:
            if not Path("/var/lib/mysql/mysql").is_dir():
                done = _run(["mariadb-install-db", "--user=mysql", "--datadir=/var/lib/mysql"], 300)
                if done.returncode != 0:
                    raise RuntimeError(f"mariadb-install-db failed: {_last_line(done.stderr)}")
            Path("/run/mysqld").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/mysqld", "mysql", "mysql")
            self._spawn(
                "mariadb",
                [
                    "mariadbd",
                    "--user=mysql",
                    "--datadir=/var/lib/mysql",
                    f"--socket={MYSQL_SOCKET}",
                    "--skip-networking",
                ],
            )
            self._wait("MariaDB", lambda: _run(ping, 10).returncode == 0, daemon="mariadb")
        db, user = self.database, f"'{self.database}'@'localhost'"
        sql = (
            f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; CREATE USER IF NOT EXISTS {user};"
            f" ALTER USER {user} IDENTIFIED BY 'slurm'; GRANT ALL ON {db}.* TO {user};"
        )
        done = _run(["mysql", f"--socket={MYSQL_SOCKET}", "-e", sql], timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"creating the slurmdbd database failed: {_last_line(done.stderr)}")

        self._write_configs(work)
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait(
            "slurmdbd", lambda: _run(["sacctmgr", "-n", "list", "cluster"], 15).returncode == 0, daemon="slurmdbd"
        )
        done = _run(["sacctmgr", "-i", "add", "cluster", self.cluster_name], timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"sacctmgr add cluster failed: {_last_line(done.stderr + done.stdout)}")
        self._spawn("slurmctld", ["slurmctld", "-D", "-c"])  # -c: no jobs of an earlier start
        self._wait("slurmctld", lambda: node_state() is not None, daemon="slurmctld")
        self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost"])
        self._wait("the node to be idle", lambda: node_state() == "idle", daemon="slurmd")

    def _write_configs(self, work: Path) -> None:
        """slurm.conf and slurmdbd.conf in workdir/etc, copied to /etc/slurm where SLURM reads them."""
        slurm_conf = f"""{MARKER}
ClusterName={self.cluster_name}
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire={self.requeue_delay}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=300
SchedulerParameters=sched_interval=2,bf_interval=2
StateSaveLocation={work / "spool" / "slurmctld"}
SlurmdSpoolDir={work / "spool" / "slurmd"}
SlurmctldPidFile={work / "run" / "slurmctld.pid"}
SlurmdPidFile={work / "run" / "slurmd.pid"}
SlurmctldLogFile={work / "log" / "slurmctld.log"}
SlurmdLogFile={work / "log" / "slurmd.log"}
NodeName=localhost CPUs={os.cpu_count() or 1} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
        dbd_conf = f"""{MARKER}
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser={self.database}
StoragePass=slurm
StorageLoc={self.database}
PidFile={work / "run" / "slurmdbd.pid"}
LogFile={work / "log" / "slurmdbd.log"}
"""
        ETC.mkdir(parents=True, exist_ok=True)
        for name, text, mode in (("slurm.conf", slurm_conf, 0o644), ("slurmdbd.conf", dbd_conf, 0o600)):
            local, target = work / "etc" / name, ETC / name
            local.write_text(text)
            os.chmod(local, mode)
            if target.exists() and MARKER not in target.read_text(errors="replace"):
                target.rename(target.with_name(f"{name}.orig"))  # someone else's config: keep it
            shutil.copyfile(local, target)
            os.chmod(target, mode)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        """Start daemon ``name`` in the foreground as a child, its output in workdir/log/NAME.out."""
        assert self.workdir is not None
        with open(self.workdir / "log" / f"{name}.out", "ab") as out:
            self.started[name] = subprocess.Popen(
                [_which(cmd[0]) or cmd[0], *cmd[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        timeout: float | None = None,
        daemon: str | None = None,
        fail: bool = True,
    ) -> bool:
        """Poll ``ready()`` until true; raise (if ``fail``) when ``daemon`` died or time ran out."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while not ready():
            proc = self.started.get(daemon or "")
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{daemon} exited with status {proc.returncode}: {self._log_tail(daemon)}")
            if time.monotonic() > deadline:
                if not fail:
                    return False
                tail = f": {self._log_tail(daemon)}" if daemon else ""
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")
            time.sleep(0.5)
        return True

    def _log_tail(self, daemon: str | None) -> str:
        """The last line of a daemon's own log file or else of its captured output."""
        assert self.workdir is not None
        for path in (self.workdir / "log" / f"{daemon}.log", self.workdir / "log" / f"{daemon}.out"):
            text = path.read_text(errors="replace") if path.is_file() else ""
            if text.strip():
                return f"{_last_line(text)} (see {path})"
        return "no log"

    def leftover_processes(self) -> list[int]:
        """Pids left by this cluster's jobs: slurmstepd, or SLURM_CLUSTER_NAME=ours in the environment."""
        pids, tag = [], f"SLURM_CLUSTER_NAME={self.cluster_name}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                comm = (entry / "comm").read_text().strip()
                # A zombie's environ cannot be read (ESRCH): it is skipped, as it should be (it runs
                # nothing and holds nothing, it only waits for its parent to reap it).
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if comm == "slurmstepd" or tag in environ:
                pids.append(int(entry.name))
        return pids
