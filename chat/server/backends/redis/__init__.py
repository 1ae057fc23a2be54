"""
The Redis backend: everything a node of a cluster shares with the others.

``resp`` is the wire protocol, ``link`` the node's connections (kept alive,
made again together), ``keys`` every key and channel, ``store`` the
L{IStore}, ``cluster`` the L{IRegistry} and L{IPeers}, ``guard`` the login
guard counted across nodes.
"""
