"""A real authoritative DNS server on 127.0.0.1 for tests: a small dnspython responder on UDP and TCP.

Why not dnsmasq: tests need per-record TTLs, SERVFAIL / REFUSED / silence for chosen names, negative
answers carrying a SOA (RFC 2308) and a count of the queries that reached the server (to prove that a
cache works). A responder of our own gives all of that in one place; it answers real DNS messages over
real sockets, so the resolver under test cannot tell it from any other server.

    records = {
        "example.test": {"MX": ["10 mx1.example.test", "20 mx2.example.test"], "TXT": ["v=spf1 -all"]},
        "mx1.example.test": {"A": ["127.0.0.2"], "AAAA": ["::1"]},
        "null.test": {"MX": ["0 ."]},
    }
    with DnsServer(records, servfail=["broken.test"]) as server:
        resolver = DnsPythonResolver(server.nameservers)

Names are absolute (no origin). A name with no records but with records below it exists (NODATA,
RFC 8020); any other unknown name is NXDOMAIN. ``servfail``, ``refused`` and ``drop`` (no answer at
all: the client times out) apply to a name and every name below it.
"""

from __future__ import annotations

import collections
import selectors
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from tests.integration.harness import free_port

__all__ = ["DnsServer", "Dnsmasq", "Records", "dns_server_factory"]

Records = Mapping[str, Mapping[str, Sequence[str]]]


def _key(name: str) -> str:
    return name.rstrip(".").lower()


class DnsServer:
    """An authoritative server for whatever ``records`` hold. ``ttl`` is the default record TTL,
    ``ttls`` overrides it per ``(name, type)``; negative answers carry a SOA whose TTL and MINIMUM are
    ``soa_minimum``."""

    def __init__(
        self,
        records: Records | None = None,
        *,
        ttl: int = 300,
        ttls: Mapping[tuple[str, str], int] | None = None,
        soa_minimum: int = 60,
        servfail: Iterable[str] = (),
        refused: Iterable[str] = (),
        drop: Iterable[str] = (),
    ) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, list[str]]] = {}
        for name, by_type in (records or {}).items():
            for rdtype, values in by_type.items():
                self.set(name, rdtype, values)
        self._ttl = ttl
        self._ttls = {(_key(n), t.upper()): v for (n, t), v in (ttls or {}).items()}
        self._soa_minimum = soa_minimum
        self._special = {
            **{_key(n): "drop" for n in drop},
            **{_key(n): "refused" for n in refused},
            **{_key(n): "servfail" for n in servfail},
        }
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._thread: threading.Thread | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self.host = "127.0.0.1"
        self.port = 0

    # --- records and counters, safe to use while the server runs -----------------------------------

    def set(self, name: str, rdtype: str, values: Sequence[str] | None) -> None:
        """Replace the ``rdtype`` records of ``name`` (None or empty: remove them)."""
        with self._lock:
            by_type = self._records.setdefault(_key(name), {})
            if values:
                by_type[rdtype.upper()] = list(values)
            else:
                by_type.pop(rdtype.upper(), None)

    def count(self, name: str, rdtype: str) -> int:
        """How many queries for ``(name, rdtype)`` reached this server."""
        with self._lock:
            return self._counts[(_key(name), rdtype.upper())]

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        return [(self.host, self.port)]

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind UDP and TCP on one free port of 127.0.0.1 and serve in a thread; ``(host, port)``."""
        self._udp, self._tcp = _bind_pair(self.host)
        self.port = self._udp.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"dns-{self.port}", daemon=True)
        self._thread.start()
        return self.host, self.port

    def stop(self) -> None:
        if self._thread is not None:
            self._wake_w.send(b"x")
            self._thread.join(timeout=5)
            self._thread = None
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- serving ----------------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None
        with selectors.DefaultSelector() as selector:
            for sock in (self._udp, self._tcp, self._wake_r):
                selector.register(sock, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    if key.fileobj is self._udp:
                        self._serve_udp(self._udp)
                    else:
                        self._serve_tcp(self._tcp)

    def _serve_udp(self, udp: socket.socket) -> None:
        data, peer = udp.recvfrom(65535)
        query = _parse(data)
        if query is None:
            return
        response = self._respond(query)
        if response is None:
            return
        max_size = query.payload if query.edns >= 0 else 512
        try:
            wire = response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            # RFC 1035 §4.2.1 / RFC 7766: too big for UDP → TC=1, the client retries over TCP.
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC | dns.flags.AA
            wire = response.to_wire()
        udp.sendto(wire, peer)

    def _serve_tcp(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            try:
                while True:
                    header = _recv_exact(conn, 2)
                    if header is None:
                        return
                    query = _parse(_recv_exact(conn, struct.unpack("!H", header)[0]) or b"")
                    response = self._respond(query) if query is not None else None
                    if response is None:
                        return
                    wire = response.to_wire()
                    conn.sendall(struct.pack("!H", len(wire)) + wire)
            except OSError:
                return

    def _respond(self, query: dns.message.Message) -> dns.message.Message | None:
        if not query.question:
            return None
        question = query.question[0]
        name = _key(question.name.to_text())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self._counts[(name, rdtype)] += 1
            special = self._special_for(name)
            if special == "drop":
                return None
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            if special is not None:
                rcode = dns.rcode.SERVFAIL if special == "servfail" else dns.rcode.REFUSED
                response.set_rcode(rcode)
                return response
            self._answer(response, name, rdtype)
        return response

    def _answer(self, response: dns.message.Message, name: str, rdtype: str) -> None:
        for _ in range(8):  # follow CNAMEs inside our own data, as an authoritative server does
            by_type = self._records.get(name, {})
            if rdtype in by_type:
                response.answer.append(self._rrset(name, rdtype, by_type[rdtype]))
                return
            if "CNAME" in by_type and rdtype != "CNAME":
                response.answer.append(self._rrset(name, "CNAME", by_type["CNAME"]))
                name = _key(by_type["CNAME"][0])
                continue
            break
        if not self._exists(name):
            response.set_rcode(dns.rcode.NXDOMAIN)
        # RFC 2308 §3: negative answers carry the zone's SOA, whose MINIMUM bounds negative caching.
        soa = f"ns.test. hostmaster.test. 1 3600 600 86400 {self._soa_minimum}"
        response.authority.append(self._rrset(".", "SOA", [soa], ttl=self._soa_minimum))

    def _rrset(
        self, name: str, rdtype: str, values: Sequence[str], ttl: int | None = None
    ) -> dns.rrset.RRset:
        if ttl is None:
            ttl = self._ttls.get((name, rdtype), self._ttl)
        rdatas = [
            dns.rdata.from_text(
                dns.rdataclass.IN, rdtype, _quote(rdtype, v), origin=dns.name.root, relativize=False
            )
            for v in values
        ]
        return dns.rrset.from_rdata_list(dns.name.from_text(name or "."), ttl, rdatas)

    def _exists(self, name: str) -> bool:
        suffix = "." + name
        return any(
            (owner == name or owner.endswith(suffix)) and by_type for owner, by_type in self._records.items()
        )

    def _special_for(self, name: str) -> str | None:
        for owner, kind in self._special.items():
            if name == owner or name.endswith("." + owner):
                return kind
        return None


def _quote(rdtype: str, value: str) -> str:
    """TXT values are given as plain text; quote them (long ones split into 255-octet strings)."""
    if rdtype != "TXT" or value.startswith('"'):
        return value
    raw = value.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def _parse(data: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(data)
    except dns.exception.DNSException:
        return None


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free port (retry when the TCP port is taken)."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp
    raise RuntimeError("no free port for UDP and TCP on one number")


class Dnsmasq:
    """The same ``records`` served by a real dnsmasq (interop check for the resolver). dnsmasq answers
    NXDOMAIN / NODATA for unknown names under ``local_domains``; names in ``unreachable`` are forwarded
    to a dead port, so their lookups fail temporarily. No per-record TTLs, no query counts."""

    BINARY = "/usr/sbin/dnsmasq"

    def __init__(
        self, records: Records, *, local_domains: Iterable[str] = ("test",), unreachable: Iterable[str] = ()
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._args = [f"--local=/{d}/" for d in local_domains]
        self._args += [f"--server=/{n}/127.0.0.1#1" for n in unreachable]
        for name, by_type in records.items():
            for rdtype, values in by_type.items():
                self._args += [_dnsmasq_arg(name, rdtype.upper(), v) for v in values]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        return [(self.host, self.port)]

    def start(self) -> tuple[str, int]:
        # Not a port from _bind_pair: released, a port of the ephemeral range may be taken (by any
        # resolver's UDP socket, say) before dnsmasq binds it. See harness.free_port.
        self.port = free_port(self.host, udp=True)
        options = ["--no-resolv", "--no-hosts", "--keep-in-foreground", "--conf-file=/dev/null"]
        options += ["--bind-interfaces", f"--listen-address={self.host}", f"--port={self.port}"]
        self._process = subprocess.Popen(
            [self.BINARY, *options, *self._args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_ready()
        return self.host, self.port

    def _wait_ready(self) -> None:
        query = dns.message.make_query("ready.invalid.", "A").to_wire()
        deadline = time.monotonic() + 60  # generous: a loaded CI machine
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"dnsmasq exited: {err.strip()}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.settimeout(0.2)
                probe.sendto(query, (self.host, self.port))
                try:
                    probe.recv(512)
                    return
                except OSError:
                    continue
        raise RuntimeError("dnsmasq did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stderr is not None:
                self._process.stderr.close()
            self._process = None

    def __enter__(self) -> Dnsmasq:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _dnsmasq_arg(name: str, rdtype: str, value: str) -> str:
    name = _key(name)
    if rdtype == "MX":
        preference, host = value.split()
        return f"--mx-host={name},{host.rstrip('.') or '.'},{preference}"
    if rdtype in ("A", "AAAA"):
        return f"--host-record={name},{value}"
    if rdtype == "TXT":
        return f"--txt-record={name},{value}"
    raise ValueError(f"dnsmasq fixture: no {rdtype} records")


@pytest.fixture
def dns_server_factory() -> Iterator[Callable[..., DnsServer]]:
    """A factory fixture: ``dns_server_factory(records, **options)`` → a started ``DnsServer``,
    stopped at the end of the test."""
    servers: list[DnsServer] = []

    def make(records: Records | None = None, **options: object) -> DnsServer:
        server = DnsServer(records, **options)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
