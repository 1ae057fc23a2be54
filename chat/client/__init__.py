"""
The terminal client, C{python -m chat.client HOST PORT}.

The network side (L{chat.client.protocol}: server output as lines and
prompts; L{chat.client.connect}: TCP or verified TLS) knows nothing of
terminals; the terminal side is L{chat.terminal}.  L{chat.client.app} joins
the two, and L{chat.client.cli} is the command line.
"""
