"""
What every session of one server shares: the service, the portal, the
login guard, the clock, the rules from the options, the count of open
connections, the resume tokens.  Built once, by L{chat.server.build}.
"""

from __future__ import annotations

import attrs
from twisted.cred.portal import Portal
from twisted.internet.interfaces import IReactorTime

from chat.server.auth import ResumeTokens
from chat.server.commands import Limits
from chat.server.interfaces import ILoginGuard
from chat.server.limits import ConnectionCount, Exemptions
from chat.server.service import ChatService


@attrs.frozen
class Settings:
    """The per-session rules, from the server's options."""

    limits: Limits = attrs.field(factory=Limits)
    login_timeout: float = 60.0
    idle_timeout: float = 1800.0
    #: Commands per second, on average, and at once.
    rate: float = 10.0
    burst: float = 20.0
    #: Refused commands in a row after which a flooding user is disconnected.
    flood_disconnect: int = 50
    #: Lines (or messages) a connection may send before it has logged in,
    #: per second and at once: a name and a password, and a few retries.
    #: Past that it is closed: nobody is served less than a client that has
    #: not said who it is.
    prelogin_rate: float = 2.0
    prelogin_burst: float = 10.0
    #: Addresses free of the connection and flood limits.
    exempt: Exemptions = attrs.field(factory=Exemptions)
    #: Messages kept per user for history (sent in the page's hello).
    history: int = 200


@attrs.frozen
class ServerContext:
    """What every session of one server shares."""

    service: ChatService
    portal: Portal
    guard: ILoginGuard
    clock: IReactorTime
    settings: Settings = attrs.field(factory=Settings)
    connections: ConnectionCount = attrs.field(factory=ConnectionCount)
    #: Resume tokens, for edges whose clients reconnect on their own.
    tokens: ResumeTokens | None = None
