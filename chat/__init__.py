"""chat: a multi-user chat server, its terminal client, and a pair chat, on Twisted."""

__version__ = "0.1.0"
