"""C{python -m chat.client}: see L{chat.client.cli}."""

from chat.launch import launch

if __name__ == "__main__":
    launch("chat.client.cli")
