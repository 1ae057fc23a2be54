"""The twistd plugin: ``twistd chat`` runs chat.tap's service."""

from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "chat",
    "chat.tap",
    "A multi-user chat server (log in, whoelse, wholast, broadcast, message).",
    "chat",
)
