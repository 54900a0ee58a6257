"""A TLS-terminating gRPC proxy (Debian's nginx) in front of a Temporal dev server, for connection tests.

It stands in for a secured cluster or Temporal Cloud: one port requires a client certificate signed by
a test CA (mTLS), another requires `authorization: Bearer <key>` (an API key, as Cloud checks it).
The certificates are made here with `cryptography`: a CA, the proxy's server certificate for
127.0.0.1/localhost, a client certificate, and a second CA that signed nothing the proxy uses
(the "untrusted server" case).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.debian import ensure_commands
from devstack.postgres import free_port
from devstack.processes import die_with_parent_prefix


@dataclass(frozen=True)
class Pki:
    """PEM files in one folder: the CA the proxy trusts and serves under, and what it issued."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA that issued nothing here: a client trusting only it must refuse the proxy


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("warmup test CA")
    other_ca, _ = _ca("some other CA")
    server_cert, server_key = _leaf("localhost", ca, server=True)
    client_cert, client_key = _leaf("warmup-worker", ca, server=False)
    pki = Pki(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca_cert=directory / "other-ca.pem",
    )
    pem = serialization.Encoding.PEM
    pki.ca_cert.write_bytes(ca[0].public_bytes(pem))
    pki.other_ca_cert.write_bytes(other_ca.public_bytes(pem))
    pki.server_cert.write_bytes(server_cert.public_bytes(pem))
    _write_key(pki.server_key, server_key)
    pki.client_cert.write_bytes(client_cert.public_bytes(pem))
    _write_key(pki.client_key, client_key)
    return pki


def nginx_binary() -> str:
    """nginx from Debian, installed on first use (raises DebianInstallError saying why it cannot be)."""
    ensure_commands({"nginx": "nginx"})
    return shutil.which("nginx") or "/usr/sbin/nginx"


class GrpcProxy:
    """nginx on two loopback ports, both TLS with HTTP/2, both `grpc_pass`ing to `upstream`:

    - `mtls_port` requires a client certificate signed by the test CA (`ssl_verify_client on`);
    - `api_key_port` requires the header `authorization: Bearer <api_key>` (any other: HTTP 401,
      which gRPC clients read as UNAUTHENTICATED).
    """

    def __init__(self, directory: Path, upstream: str, api_key: str) -> None:
        self.directory = directory
        self.upstream = upstream
        self.api_key = api_key
        self.pki = make_pki(directory / "pki")
        self.mtls_port = free_port()
        self.api_key_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def mtls_address(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def api_key_address(self) -> str:
        return f"127.0.0.1:{self.api_key_port}"

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"

    def config(self) -> str:
        def unauthenticated(message: str) -> str:
            # A trailers-only gRPC reply: HTTP 200, status 16 (UNAUTHENTICATED), as a gRPC server sends it.
            return (
                "default_type application/grpc; "
                "add_header grpc-status 16 always; "
                f'add_header grpc-message "{message}" always; '
                "return 200;"
            )

        d = self.directory
        pki = self.pki
        # Long polls last up to 70 s: nginx's 60 s defaults would cut every idle worker's poll.
        grpc = """
            grpc_pass grpc://temporal;
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
        """
        tls = f"""
        ssl_certificate {pki.server_cert};
        ssl_certificate_key {pki.server_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        """
        # Running as root, nginx would otherwise drop its workers to `nobody`, who cannot enter pytest's
        # private temporary folders.
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""
{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 512; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    client_max_body_size 0;
    keepalive_requests 100000;
    upstream temporal {{
        server {self.upstream};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.mtls_port} ssl http2;
        {tls}
        ssl_client_certificate {pki.ca_cert};
        ssl_verify_client on;
        # nginx checks the client certificate after the TLS 1.3 handshake and answers HTTP 496/495;
        # turn that into the gRPC status a secured Temporal frontend gives.
        error_page 495 496 = @no_client_certificate;
        location / {{ {grpc} }}
        location @no_client_certificate {{ {unauthenticated("client certificate required")} }}
    }}
    server {{
        listen 127.0.0.1:{self.api_key_port} ssl http2;
        {tls}
        error_page 401 = @bad_api_key;
        location / {{
            if ($http_authorization != "Bearer {self.api_key}") {{ return 401; }}
            {grpc}
        }}
        location @bad_api_key {{ {unauthenticated("invalid API key")} }}
    }}
}}
"""

    def start(self, timeout: float = 15.0) -> None:
        binary = nginx_binary()
        (self.directory / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nginx.conf"
        conf.write_text(self.config())
        check = subprocess.run(
            [binary, "-t", "-p", str(self.directory), "-e", str(self.error_log), "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused its configuration:\n{check.stderr}")
        with (self.directory / "nginx.out").open("wb") as out:
            self._proc = subprocess.Popen(
                [
                    *die_with_parent_prefix(),
                    binary,
                    "-p",
                    str(self.directory),
                    "-e",
                    str(self.error_log),
                    "-c",
                    str(conf),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not all(_listening(p) for p in (self.mtls_port, self.api_key_port)):
            if self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._proc.returncode}: {self.error_log.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"nginx did not listen within {timeout:.0f}s: {self.error_log.read_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # nginx's fast shutdown
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> GrpcProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
