"""C{python -m chat.client}: see L{chat.client.cli}."""

import signal


def _run() -> None:
    # While the modules load, Ctrl+C ends the process quietly, as it would
    # any command, instead of with a KeyboardInterrupt traceback from the
    # middle of an import.  The reactor takes SIGINT over only from Python's
    # own handler, so that goes back before it runs.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from chat.client.cli import main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()


if __name__ == "__main__":
    _run()
