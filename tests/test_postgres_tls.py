"""TLS and passwords to PostgreSQL as libpq takes them: `sslmode` (disable, prefer, require,
verify-ca, verify-full) and `sslrootcert` in the URL, the password from PGPASSWORD or a
password file. Against a real PostgreSQL 15 cluster of this module's own that has TLS on and
refuses plain connections of the password role (as managed servers do)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pacha
from conftest import _start_service
from services import PostgresCluster, S3Server, start_postgres


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> None:
    _openssl(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2"),
        *("-subj", f"/CN={name}"),
        cwd=directory,
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate it signed for the name `localhost` only, and another CA."""
    directory = tmp_path_factory.mktemp("certs")
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _openssl(
        *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"),
        cwd=directory,
    )
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext"),
        cwd=directory,
    )
    return directory


@pytest.fixture(scope="module")
def tls_postgres(certs: Path) -> Iterator[PostgresCluster]:
    cluster = _start_service("PostgreSQL 15", start_postgres)
    try:
        data = cluster.data_dir
        owner = data.stat()
        for name, mode in (("server.crt", 0o644), ("server.key", 0o600)):
            target = data / name
            target.write_bytes((certs / name).read_bytes())
            target.chmod(mode)
            os.chown(target, owner.st_uid, owner.st_gid)
        # The password role only over TLS; the trusted superuser (setup) as before.
        hba = data / "pg_hba.conf"
        hba.write_text(
            f"hostnossl all {cluster.user} 127.0.0.1/32 reject\n"
            f"hostssl   all {cluster.user} 127.0.0.1/32 scram-sha-256\n" + hba.read_text()
        )
        cluster.psql(
            "ALTER SYSTEM SET ssl = on;\n"
            "ALTER SYSTEM SET ssl_cert_file = 'server.crt';\n"
            "ALTER SYSTEM SET ssl_key_file = 'server.key';\n"
            "SELECT pg_reload_conf();\n"
        )
        deadline = time.monotonic() + 20
        while cluster.psql("SHOW ssl") != "on":
            assert time.monotonic() < deadline, "ssl did not come on after a reload"
            time.sleep(0.1)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def shared(
    tls_postgres: PostgresCluster,
    s3: S3Server,
    conformance_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, str]:
    """(URL without sslmode, objects location) of a fresh registry on the TLS cluster."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PACHA_CACHE", str(tmp_path / "cache"))
    for key in ("PGPASSWORD", "PGPASSFILE", "PGSSLMODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.pgpass, no ~/.postgresql
    database = tls_postgres.new_database("tls")
    return tls_postgres.user_url(database), f"s3://{conformance_bucket}/tls/{database}"


def _open(url: str, objects: str) -> pacha.Registry:
    return pacha.Registry(metadata=url, objects=objects)


def _refused(url: str, objects: str, *needles: str) -> str:
    with pytest.raises(pacha.PachaError) as caught:
        _open(url, objects)
    text = str(caught.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


def test_tls_modes_as_libpq_means_them(
    shared: tuple[str, str], certs: Path, tmp_path: Path
) -> None:
    url, objects = shared
    # prefer (the default) and require: encrypted, the certificate not checked.
    reg = _open(url, objects)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights over TLS")
    reg.register_model("m", weights, "1.0.0")
    assert _open(f"{url}?sslmode=require", objects).get_model("m:1.0.0").version == "1.0.0"
    # disable: the server admits this role only over TLS.
    _refused(f"{url}?sslmode=disable", objects, "only over TLS", "sslmode=require")
    ca = certs / "ca.pem"
    other = certs / "other-ca.pem"
    # verify-ca checks the chain, not the name; verify-full both (the certificate names
    # only localhost, the URL says 127.0.0.1).
    _open(f"{url}?sslmode=verify-ca&sslrootcert={ca}", objects)
    _refused(
        f"{url}?sslmode=verify-full&sslrootcert={ca}",
        objects,
        "TLS handshake",
        "verify-full",
    )
    by_name = url.replace("@127.0.0.1:", "@localhost:")
    assert _open(f"{by_name}?sslmode=verify-full&sslrootcert={ca}", objects).get_model("m:1.0.0")
    # Another CA: refused by every checking mode, and by require given it (as libpq).
    for mode in ("verify-ca", "require"):
        _refused(f"{url}?sslmode={mode}&sslrootcert={other}", objects, "TLS handshake")
    # A checking mode without roots says where to give them.
    _refused(f"{url}?sslmode=verify-full", objects, "sslrootcert=PATH", "root.crt")
    # The system's roots: verify-full by default (the test CA is not among them), and no
    # weaker mode with them, as libpq 16.
    _refused(f"{url}?sslrootcert=system", objects, "TLS handshake")
    _refused(f"{url}?sslmode=require&sslrootcert=system", objects, "verify-full")
    # ~/.postgresql/root.crt is where libpq looks by default, for require too.
    home = Path(os.environ["HOME"]) / ".postgresql"
    home.mkdir(parents=True)
    (home / "root.crt").write_bytes(other.read_bytes())
    _refused(f"{url}?sslmode=require", objects, "TLS handshake")
    (home / "root.crt").write_bytes(ca.read_bytes())
    _open(f"{url}?sslmode=verify-ca", objects)
    _open(f"{url}?sslmode=require", objects)


def test_the_password_comes_from_pgpassword_or_a_private_password_file(
    shared: tuple[str, str],
    tls_postgres: PostgresCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, objects = shared
    bare = url.replace(f":{tls_postgres.password}@", "@")
    assert tls_postgres.password not in bare
    _refused(bare, objects, "PGPASSWORD", "~/.pgpass")
    monkeypatch.setenv("PGPASSWORD", tls_postgres.password)
    _open(bare, objects)
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    database = bare.rsplit("/", 1)[1]
    passfile.write_text(
        f"other:1:*:*:wrong\n127.0.0.1:{tls_postgres.port}:{database}:"
        f"{tls_postgres.user}:{tls_postgres.password}\n"
    )
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    passfile.chmod(0o644)  # others may read it: ignored, as libpq does
    _refused(bare, objects, "PGPASSWORD")
    passfile.chmod(0o600)
    _open(bare, objects)
    # ~/.pgpass by default.
    monkeypatch.delenv("PGPASSFILE")
    home = Path(os.environ["HOME"])
    home.mkdir(exist_ok=True)
    (home / ".pgpass").write_text(f"*:*:*:{tls_postgres.user}:{tls_postgres.password}\n")
    (home / ".pgpass").chmod(0o600)
    _open(bare, objects)
