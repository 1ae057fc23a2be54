"""
The project as an operator installs it: a wheel built from this checkout,
installed into a fresh virtual environment, run from a directory that has
nothing to do with the checkout.

An editable install puts the checkout on C{sys.path}, which hides a wheel
that lacks the twistd plugin; this test does not.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
import tempfile
import zipfile

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from tests import ROOT
from tests.e2e.support import Lab

#: Left out of the copy the wheel is built from: what a clean clone lacks.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    "_trial_temp*",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "dropin.cache",
    ".venv",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "chat.sqlite*",
)


def _environment() -> dict[str, str]:
    """This process's environment without anything that points at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


async def _run(case: unittest.TestCase, *argv: str, cwd: str) -> str:
    """Run a command to completion; fail the test, with its output, if it fails."""
    out, err, code = await getProcessOutputAndValue(argv[0], argv[1:], env=_environment(), path=cwd)
    text = (out + err).decode("utf-8", "replace")
    if code != 0:
        case.fail(f"{' '.join(argv)} exited with {code}:\n{text[-4000:]}")
    return text


async def getPage(url: str) -> bytes:
    response = await Agent(reactor).request(b"GET", url.encode("ascii"))
    if response.code != 200:
        raise AssertionError(f"GET {url}: {response.code}")
    return await readBody(response)


class WheelTests(unittest.TestCase):
    #: Building and installing fetches build requirements and dependencies.
    timeout = 900

    def setUp(self) -> None:
        self.outside = tempfile.mkdtemp(prefix="chat-wheel-")
        self.addCleanup(shutil.rmtree, self.outside, True)

    async def _build_wheel(self) -> str:
        source = os.path.join(self.outside, "source")
        shutil.copytree(ROOT, source, ignore=_NOT_SOURCE, symlinks=True)
        dist = os.path.join(self.outside, "dist")
        await _run(
            self, sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, source, cwd=source
        )
        [wheel] = glob.glob(os.path.join(dist, "chat-*.whl"))
        return wheel

    async def test_a_wheel_serves_chat_from_any_directory(self) -> None:
        wheel = await self._build_wheel()
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("twisted/plugins/chat_plugin.py", names)
        for shadowing in (
            "twisted/__init__.py",
            "twisted/plugins/__init__.py",
            "twisted/plugins/dropin.cache",
        ):
            self.assertNotIn(shadowing, names)

        venv = os.path.join(self.outside, "venv")
        await _run(self, sys.executable, "-m", "venv", venv, cwd=self.outside)
        await _run(
            self, os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", wheel, cwd=self.outside
        )
        twistd = os.path.join(venv, "bin", "twistd")

        elsewhere = os.path.join(self.outside, "elsewhere")
        os.makedirs(elsewhere)
        listing = await _run(self, twistd, "--help", cwd=elsewhere)
        self.assertRegex(listing, re.compile(r"^\s+chat\s+A multi-user chat server", re.M))

        lab = Lab(self)
        server = lab.server("--web", "tcp:0:interface=127.0.0.1", directory=elsewhere, twistd=(twistd,))
        port = await server.start()
        client = await lab.login(port, "columbia")
        client.send("whoelse")
        await client.expect("Nobody else is online.")
        # The page's files came with the wheel.
        page = await getPage(f"http://127.0.0.1:{server.web_port}/")
        self.assertIn(b'<script src="chat.js" defer></script>', page)
        self.assertIn(b"textContent", await getPage(f"http://127.0.0.1:{server.web_port}/chat.js"))
        # twistd names the Python it runs on: the new environment's.
        self.assertIn(os.path.join(venv, "bin", "python"), server.log.decode("utf-8", "replace"))
