"""
Tests for chat, by kind:

- C{tests.unit}: in-process tests (StringTransport, task.Clock, in-memory
  and SQLite stores); they start no process.  C{python -m twisted.trial
  tests.unit} runs them in under a minute.
- C{tests.e2e}: tests that start processes (twistd, redis-server, Chromium,
  console programs in pipes and pseudo-terminals, pip).

C{python -m twisted.trial tests} runs both.  Helpers used by both kinds are
here: C{tests.screen} (a terminal screen), C{tests.certificates}.
"""

import os

from hypothesis import settings

# Property tests check what is answered, not how fast: on a loaded machine
# (CI, trial -j2) an example taking over Hypothesis's 200 ms deadline must
# not fail them.  Speed is the benchmarks' business.
settings.register_profile("chat", deadline=None)
settings.load_profile("chat")

#: The checkout's top directory.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
