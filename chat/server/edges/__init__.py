"""
The edges: how users reach sessions (a TCP line protocol, a WebSocket),
each rendering events its own way.
"""
