"""C{python -m chat.peer}: see L{chat.peer.cli}."""

from chat.launch import launch

if __name__ == "__main__":
    launch("chat.peer.cli")
