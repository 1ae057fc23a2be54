"""
README.rst as a newcomer reads it: rendered, with the commands it promises
visible, and the test command the same one CI runs.
"""

from __future__ import annotations

import html
import os
import re
import subprocess

import docutils.core
from twisted.trial import unittest

from tests import ROOT

README = os.path.join(ROOT, "README.rst")


def rendered_text() -> str:
    """The README as a browser shows it: rendered to HTML, tags removed."""
    with open(README, encoding="utf-8") as f:
        source = f.read()
    page = docutils.core.publish_string(
        source, writer_name="html", settings_overrides={"report_level": 5, "halt_level": 5}
    )
    return html.unescape(re.sub(r"<[^>]+>", "", page.decode("utf-8")))


def ci_test_command() -> str:
    """The command .ci/run takes from the README, found the way .ci/run finds it."""
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        script = f.read()
    m = re.search(r"^test_command=\$\((awk .*README\.rst)\)$", script, re.M)
    assert m is not None, "no test_command line in .ci/run"
    return subprocess.run(["sh", "-c", m.group(1)], cwd=ROOT, capture_output=True, text=True).stdout.strip()


class ReadmeTests(unittest.TestCase):
    def test_the_start_command_is_visible_and_runs_twistd_chat(self) -> None:
        text = rendered_text()
        # The first one, in the Quick start; the Install section has more.
        start = next(
            line.strip() for line in text.splitlines() if line.strip().endswith("twistd -n chat --port 4119")
        )
        self.assertTrue(start.startswith("python3 -m venv .venv && "), start)

    def test_the_test_command_ci_runs_is_visible_and_makes_its_own_venv(self) -> None:
        command = ci_test_command()
        self.assertTrue(command.startswith("python3 -m venv .venv && "), command)
        self.assertIn("twisted.trial tests", command)
        self.assertIn(command, rendered_text())

    def test_the_quick_unit_suite_is_named_next_to_it(self) -> None:
        self.assertIn("python -m twisted.trial tests.unit", rendered_text())
