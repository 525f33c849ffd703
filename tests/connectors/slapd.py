"""A private OpenLDAP ``slapd`` for tests and benchmarks: started, seeded, stopped and restarted.

``Slapd`` owns one server process listening on a free loopback port, with its configuration,
database and log in a directory the caller gives it (a test's ``tmp_path``). The directory tree
is ``dc=example,dc=org`` with ``ou=people`` (users, ``inetOrgPerson``) and ``ou=groups``;
the ``memberof`` overlay is on, as in a typical deployment. Two accounts are seeded:
``SERVICE_DN`` may change the groups (what a connector binds as), ``READER_DN`` only reads.
The helper seeds and inspects the directory as the root DN with the OpenLDAP command-line tools
(``ldapadd``, ``ldapmodify``, ``ldapsearch``), so that what it reports is what the server says,
independently of the ``ldap3`` code under test.

The server logs its operations (``-d stats``) to ``slapd.log`` in the directory:
``modify_count(dn)`` counts the modify operations it received for an entry, which is how tests
check that a connector changes many members in one round trip (``operation_count`` counts
searches and binds too). Benchmarks that need no such
count pass ``log_operations=False``. ``tls=True`` adds StartTLS on ``url`` and an ``ldaps_url``,
with a certificate for 127.0.0.1 signed by a throwaway CA (``ca_file``).

``slapd`` is the pytest fixture (a started server, stopped after the test). Without the
``slapd`` binary it skips with the reason, except under ``CI=true``, where it fails instead.
This module must not know about any connector.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "slapd-test-root-password"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=pimlico,{SUFFIX}"
"""The account a connector binds as: it may change the groups under ``GROUPS``."""
SERVICE_PASSWORD = "pimlico-test-service-password"
READER_DN = f"cn=reader,{SUFFIX}"
"""An account that may read everything and change nothing."""
READER_PASSWORD = "reader-test-password"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
GroupClass = Literal["groupOfNames", "groupOfUniqueNames"]

_CONFIG = """\
{includes}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {directory}/slapd.pid
sizelimit unlimited

database mdb
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {directory}/data
maxsize 1073741824
dbnosync
index objectClass eq
index uid,mail,cn eq
overlay memberof

access to attrs=userPassword
  by anonymous auth
  by * none
access to dn.subtree="{groups}"
  by dn.exact="{service_dn}" write
  by * read
access to *
  by * read
"""


_LOG_PATTERNS = {
    "MOD": r' MOD dn="([^"]*)"',
    "SRCH": r' SRCH base="([^"]*)"',
    "BIND": r' BIND dn="([^"]*)" method=',  # the first of the two lines a bind logs
}


def slapd_missing() -> str | None:
    """Why a private slapd cannot run here, or ``None`` when it can."""
    for tool in ("slapd", "slaptest", "ldapadd", "ldapmodify", "ldapsearch"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install slapd ldap-utils; see .ci/run)"
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Slapd:
    """One private slapd: ``start``/``stop``/``restart`` keep its port and its data."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        log_operations: bool = True,
        tls: bool = False,
    ) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.tls_port: int | None = None
        while tls and self.tls_port in (None, self.port):
            self.tls_port = free_port()
        self.ca_file = directory / "ca.pem"
        """With ``tls``: the CA that signed the server's certificate (for 127.0.0.1)."""
        self.config = directory / "slapd.conf"
        self.log = directory / "slapd.log"
        self.log_operations = log_operations
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._seeded = False

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def ldaps_url(self) -> str:
        assert self.tls_port is not None, "ldaps_url needs Slapd(..., tls=True)"
        return f"ldaps://127.0.0.1:{self.tls_port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the server (configuring and seeding the tree the first time); wait until it
        answers on its port."""
        if self.running:
            return
        if not self.config.exists():
            self._configure()
        self._log_file = self.log.open("ab")
        debug = "stats" if self.log_operations else "0"
        urls = self.url if self.tls_port is None else f"{self.url} {self.ldaps_url}"
        self._process = subprocess.Popen(
            [_tool("slapd"), "-f", str(self.config), "-h", urls, "-d", debug],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_listening(timeout)
        if not self._seeded:
            self._ldif(
                "ldapadd",
                f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
                "dc: example\no: Example\n\n"
                f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n"
                f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n"
                + _account(SERVICE_DN, "pimlico", SERVICE_PASSWORD)
                + "\n"
                + _account(READER_DN, "reader", READER_PASSWORD),
            )
            self._seeded = True

    def stop(self) -> None:
        """Stop the server and wait for it to exit; its data stays for a later ``start``."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                # A paused server cannot act on SIGTERM until it runs again.
                process.send_signal(signal.SIGCONT)
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> Slapd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Seeding and inspecting, with the OpenLDAP tools.

    def add_user(self, uid: str, *, mail: str | None = None) -> str:
        """Add ``uid=UID,ou=people,…`` (an ``inetOrgPerson``); return its DN."""
        return self.add_users([uid], mails={uid: mail} if mail else None)[0]

    def add_users(self, uids: Iterable[str], *, mails: dict[str, str] | None = None) -> list[str]:
        """Add many users in one ``ldapadd``; return their DNs in order."""
        dns: list[str] = []
        blocks: list[str] = []
        for uid in uids:
            dn = f"uid={uid},{PEOPLE}"
            mail = (mails or {}).get(uid)
            block = f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
            if mail:
                block += f"mail: {mail}\n"
            dns.append(dn)
            blocks.append(block)
        if blocks:
            self._ldif("ldapadd", "\n".join(blocks))
        return dns

    def add_group(
        self, cn: str, *, members: Iterable[str], object_class: GroupClass = "groupOfNames"
    ) -> str:
        """Add ``cn=CN,ou=groups,…`` with its first members (these classes need at least one)."""
        dn = f"cn={cn},{GROUPS}"
        attribute = _member_attribute(object_class)
        values = "".join(f"{attribute}: {member}\n" for member in members)
        self._ldif("ldapadd", f"dn: {dn}\nobjectClass: {object_class}\ncn: {cn}\n{values}")
        return dn

    def add_entry(self, dn: str, *attributes: str) -> str:
        """Add any entry: ``add_entry(dn, "objectClass: organizationalRole", "cn: x")``."""
        self._ldif("ldapadd", f"dn: {dn}\n" + "".join(f"{line}\n" for line in attributes))
        return dn

    def members(self, group_dn: str) -> frozenset[str]:
        """The member values of a group exactly as the server stores them."""
        output = self._search(group_dn, "member", "uniqueMember")
        return frozenset(
            value
            for attribute, value in _ldif_values(output)
            if attribute.lower() in ("member", "uniquemember")
        )

    def add_member_by_hand(self, group_dn: str, member_dn: str) -> None:
        """Add a member with ``ldapmodify``, as an administrator would, behind Pimlico's back."""
        attribute = self._member_attribute_of(group_dn)
        self._ldif(
            "ldapmodify",
            f"dn: {group_dn}\nchangetype: modify\nadd: {attribute}\n{attribute}: {member_dn}\n",
        )

    def remove_member_by_hand(self, group_dn: str, member_dn: str) -> None:
        attribute = self._member_attribute_of(group_dn)
        self._ldif(
            "ldapmodify",
            f"dn: {group_dn}\nchangetype: modify\ndelete: {attribute}\n{attribute}: {member_dn}\n",
        )

    def modify_count(self, dn: str) -> int:
        """How many modify operations the server has received for ``dn``."""
        return self.operation_count("MOD", dn)

    def operation_count(self, operation: Literal["MOD", "SRCH", "BIND"], dn: str) -> int:
        """How many operations of a kind the server has received for ``dn`` (the entry
        modified, the base searched, the DN bound as), read from its stats log. The helper's
        own ``ldapmodify`` and ``ldapsearch`` calls (as the root DN) count too."""
        assert self.log_operations, "operation_count needs Slapd(..., log_operations=True)"
        if self._log_file is not None:
            self._log_file.flush()
        pattern = re.compile(_LOG_PATTERNS[operation])
        wanted = dn.replace(" ", "").lower()
        text = self.log.read_text(errors="replace")
        return sum(
            1 for match in pattern.finditer(text) if match[1].replace(" ", "").lower() == wanted
        )

    def _member_attribute_of(self, group_dn: str) -> str:
        classes = {
            value.lower()
            for attribute, value in _ldif_values(self._search(group_dn, "objectClass"))
            if attribute.lower() == "objectclass"
        }
        return "uniqueMember" if "groupofuniquenames" in classes else "member"

    def _configure(self) -> None:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
        if self.tls_port is not None:
            _write_certificates(self.directory)
            includes += (
                f"\nTLSCACertificateFile {self.ca_file}"
                f"\nTLSCertificateFile {self.directory}/server.pem"
                f"\nTLSCertificateKeyFile {self.directory}/server.key"
            )
        self.config.write_text(
            _CONFIG.format(
                includes=includes,
                directory=self.directory,
                suffix=SUFFIX,
                root_dn=ROOT_DN,
                root_password=ROOT_PASSWORD,
                groups=GROUPS,
                service_dn=SERVICE_DN,
            )
        )
        subprocess.run(
            [_tool("slaptest"), "-f", str(self.config), "-u", "-Q"],
            check=True,
            capture_output=True,
        )

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self._process.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"slapd did not listen on {self.url} within {timeout} s"
                    ) from None
                time.sleep(0.02)

    def _ldif(self, tool: str, ldif: str) -> None:
        subprocess.run(
            [_tool(tool), "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            input=ldif.encode(),
            check=True,
            capture_output=True,
        )

    def _search(self, base: str, *attributes: str) -> str:
        completed = subprocess.run(
            [
                *(_tool("ldapsearch"), "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.url),
                *("-D", ROOT_DN, "-w", ROOT_PASSWORD, "-s", "base", "-b", base, "(objectClass=*)"),
                *attributes,
            ],
            check=True,
            capture_output=True,
        )
        return completed.stdout.decode()


def _write_certificates(directory: Path) -> None:
    """A throwaway CA (``ca.pem``) and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.now(UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        certificate("Pimlico test CA", ca_key, "Pimlico test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        certificate("127.0.0.1", server_key, "Pimlico test CA", ca_key)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _account(dn: str, cn: str, password: str) -> str:
    return (
        f"dn: {dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: {cn}\nuserPassword: {password}\n"
    )


def _member_attribute(object_class: GroupClass) -> str:
    return "uniqueMember" if object_class == "groupOfUniqueNames" else "member"


def _ldif_values(output: str) -> Iterator[tuple[str, str]]:
    """(attribute, value) pairs of an unwrapped LDIF answer (base64 values decoded)."""
    for line in output.splitlines():
        if line.startswith(" ") or ":" not in line:
            continue
        attribute, _, rest = line.partition(":")
        if rest.startswith(":"):
            yield attribute, base64.b64decode(rest[1:].strip()).decode()
        else:
            yield attribute, rest.strip()


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A started private slapd with an empty ``ou=people`` and ``ou=groups``."""
    missing = slapd_missing()
    if missing is not None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI must run the LDAP tests, but {missing}")
        pytest.skip(missing)
    with Slapd(tmp_path / "slapd") as server:
        yield server
