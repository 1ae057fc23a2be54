"""C{python -m chat.peer}: see L{chat.peer.cli}."""

import signal

if __name__ == "__main__":
    # Ctrl+C while the modules load ends the process quietly, as for any
    # command, not with a traceback from the middle of an import.  Python's
    # own handler goes back before the reactor starts: the reactor takes
    # SIGINT over only from that one.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from chat.peer.cli import main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
