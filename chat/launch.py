"""
Starting a console program from its C{__main__}, before anything else of it
is loaded.

This module imports nothing but two modules of Python's own, so that it is
loaded in a moment: what it then loads, the program and Twisted, is what
takes long enough to be interrupted.
"""

import importlib
import signal


def launch(module: str) -> None:
    """
    Load C{module} and call its C{main}.

    While it loads, Ctrl+C ends the process quietly, as it would any command,
    instead of with a KeyboardInterrupt traceback from the middle of an
    import.  Python's own handler is back before C{main} runs: the reactor
    takes SIGINT over only from that one.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main = importlib.import_module(module).main
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
