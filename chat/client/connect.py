"""
Reaching the server: the endpoint for C{HOST PORT} (TCP, or TLS that
verifies the server), and why a connection could not be made, in words.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.client.protocol import ChatClientProtocol, NoGreeting

#: Seconds to wait for the TCP connection.
CONNECT_TIMEOUT = 30
#: Seconds a server reached over TCP (not TLS) has to say its first words.
#: The chat server says C{Username: } as soon as it accepts; one that says
#: nothing is most likely waiting for a TLS handshake that will never come.
GREETING_TIMEOUT = 5.0


class SetupError(Exception):
    """The options cannot be used: a message for the user."""


@attrs.frozen
class Target:
    """Where to connect, and how to trust it."""

    host: str
    port: int
    tls: bool = False
    #: PEM file of the certificates to trust instead of the platform's.
    cafile: str | None = None
    #: Skip verifying the server's certificate (TLS only).
    insecure: bool = False

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def load_trust(cafile: str) -> Any:
    """The certificates in C{cafile}, as a trust root."""
    try:
        with open(cafile, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SetupError(f"cannot read --cafile {cafile}: {e.strerror}") from None
    blocks = _PEM.findall(data)
    if not blocks:
        raise SetupError(f"--cafile {cafile} holds no PEM certificate")
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:  # OpenSSL's own error types
        raise SetupError(f"--cafile {cafile} holds a certificate that cannot be read: {e}") from None
    return trustRootFromCertificates(certificates)


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """TLS that accepts any certificate: what C{--insecure} asks for."""

    def __init__(self, hostname: str) -> None:
        self._context = CertificateOptions().getContext()
        self._hostname = hostname

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if not re.fullmatch(r"[0-9.]+|.*:.*", self._hostname):
            connection.set_tlsext_host_name(self._hostname.encode("idna"))
        return connection


def endpoint_for(reactor: Any, target: Target) -> IStreamClientEndpoint:
    tcp = HostnameEndpoint(reactor, target.host, target.port, timeout=CONNECT_TIMEOUT)
    if not target.tls:
        return tcp
    creator: IOpenSSLClientConnectionCreator
    if target.insecure:
        creator = _Unverified(target.host)
    elif target.cafile is not None:
        creator = optionsForClientTLS(target.host, trustRoot=load_trust(target.cafile))
    else:
        creator = optionsForClientTLS(target.host)
    return wrapClientTLS(creator, tcp)


async def connect(reactor: Any, target: Target) -> ChatClientProtocol:
    """
    Connect, and over TLS finish the handshake, over TCP wait for the
    server's first words, so that every reason not to go on -- refused,
    unknown host, untrusted certificate, a server that speaks TLS (it says
    nothing) -- fails here.
    """
    endpoint = endpoint_for(reactor, target)
    factory = Factory.forProtocol(
        lambda: ChatClientProtocol(reactor, tls=target.tls, greeting_timeout=GREETING_TIMEOUT)
    )
    protocol = await endpoint.connect(factory)
    assert isinstance(protocol, ChatClientProtocol)
    return await protocol.ready


def _tls_reasons(e: SSL.Error) -> list[str]:
    reasons = []
    for entry in e.args[0] if e.args and isinstance(e.args[0], list) else []:
        if isinstance(entry, tuple) and entry and entry[-1]:
            reasons.append(str(entry[-1]))
    return reasons


def describe_failure(reason: Failure | BaseException, target: Target) -> str:
    """Why connecting to C{target} failed, in one line for the user."""
    e = reason.value if isinstance(reason, Failure) else reason
    if isinstance(e, error.DNSLookupError):
        return f"unknown host {target.host!r}"
    if isinstance(e, error.ConnectionRefusedError):
        return "connection refused (is the server running, and on that port?)"
    if isinstance(e, error.TimeoutError):
        return "no answer (timed out)"
    if isinstance(e, NoGreeting):
        return f"no answer in {e.seconds:g} seconds; is the server using TLS on that port? try --tls"
    if isinstance(e, SSL.Error):
        reasons = _tls_reasons(e)
        if any("certificate verify failed" in r for r in reasons):
            hint = "--cafile FILE trusts its certificate, --insecure skips the check"
            return f"the server's certificate is not trusted ({hint})"
        detail = ", ".join(reasons) or "no details"
        return f"the TLS handshake failed ({detail}); is the server using TLS on that port?"
    if type(e).__name__ == "VerificationError":  # from Twisted or service_identity, by version
        return f"the server's certificate is not for {target.host!r}"
    if isinstance(e, (error.ConnectionDone, error.ConnectionLost)):
        if target.tls:
            return "the connection closed during the TLS handshake; is the server using TLS on that port?"
        return "the connection closed at once"
    if isinstance(e, error.ConnectError) and e.osError:
        return str(e.osError)
    return str(e) or type(e).__name__
