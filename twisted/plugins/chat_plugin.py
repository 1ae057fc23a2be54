"""The twistd plugin: ``twistd chat`` runs chat.server.tap's service."""

from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "chat",
    "chat.server.tap",
    "A multi-user chat server (log in, whoelse, wholast, broadcast, message).",
    "chat",
)
