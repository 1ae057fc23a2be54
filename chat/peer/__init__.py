"""
The pair chat, C{python -m chat.peer}: two people, one running C{serve} and
one C{connect}, compatible on the wire with the classic C{chatserve.py} and
C{chatclient} programs.

L{chat.peer.framing} is the wire as pure values and functions: handles, what
we send, and how messages are found again in what arrives from programs that
do not frame them.  L{chat.peer.protocol} is the network side (a
conversation, the server's one-at-a-time rule); the terminal side is
L{chat.terminal}.  L{chat.peer.app} joins the two, and L{chat.peer.cli} is the
command line.
"""
