"""
The admins' commands end to end: two real ``twistd -n chat --admins
columbia`` nodes on one real Redis, users over TCP and WebSocket on both.
An admin on node a sees every session, announces to everyone and kicks a
user of node b, as an operator would before a restart.
"""

from __future__ import annotations

import re

from twisted.trial import unittest

from tests.e2e.support import WEB, Lab, closing
from tests.e2e.test_e2e_cluster import Cluster, answer

ADMINS = ("--admins", "columbia")


class AdminAcrossNodesTests(unittest.TestCase):
    async def test_an_admin_sees_every_session_announces_and_kicks_a_user_of_the_other_node(self) -> None:
        cluster = await Cluster.start(self, *ADMINS, a_args=WEB)
        lab = cluster.lab
        columbia = await lab.login(cluster.port_a, "columbia")
        seas = await lab.login(cluster.port_b, "seas")
        google = await lab.ws_login(cluster.web_a, "google")

        # Every session, on both nodes, with its edge and node.
        listing = await answer(columbia, "sessions")
        rows = {line.split()[0]: line.split() for line in listing.splitlines()[2:] if line.strip()}
        self.assertTrue(listing.startswith("3 sessions:"), listing)
        self.assertEqual(rows["columbia"][1:2] + rows["columbia"][3:4], ["tcp", "a"])
        self.assertEqual(rows["seas"][1:2] + rows["seas"][3:4], ["tcp", "b"])
        self.assertEqual(rows["google"][1:2] + rows["google"][3:4], ["web", "a"])
        self.assertEqual(rows["seas"][2], "127.0.0.1")

        # An announcement reaches everyone, on both nodes and both edges.
        reply = await answer(columbia, "announce the server restarts at noon")
        self.assertIn("*** Announcement from the server: the server restarts at noon", reply)
        self.assertIn("Announced to 2 users here and to the other nodes.", reply)
        await seas.expect(re.escape("*** Announcement from the server: the server restarts at noon\r\n"))
        shown = await google.expect(type="announcement")
        self.assertEqual(shown["text"], "the server restarts at noon")

        # A kick of a user of node b: told why, disconnected, gone from everyone's view.
        reply = await answer(columbia, "kick seas flooding the channel")
        self.assertEqual(reply, "Asked the other nodes to disconnect seas.\r\n")
        await seas.expect(re.escape("You were disconnected by the admin columbia: flooding the channel\r\n"))
        await closing(seas)
        await cluster.a.expect_log(r"admin columbia kicked seas \(on another node\): flooding the channel")
        await cluster.b.expect_log(r"seas logged out from .* over tcp on node b after \d+ s: kicked")

        # And a page of node a, kicked: the goodbye says who and why.
        reply = await answer(columbia, "kick google")
        self.assertEqual(
            reply, "Disconnected google; they cannot resume the session without their password.\r\n"
        )
        goodbye = await google.expect(type="goodbye")
        self.assertEqual((goodbye["reason"], goodbye["by"], goodbye["why"]), ("kicked", "columbia", ""))

    async def test_a_user_who_is_not_an_admin_is_told_the_commands_do_not_exist(self) -> None:
        lab = Lab(self)
        _, port = await lab.start(*ADMINS)
        seas = await lab.login(port, "seas")
        for line in ("sessions", "kick columbia", "announce hi"):
            word = line.split()[0]
            reply = await answer(seas, line)
            self.assertEqual(reply, f"Unknown command '{word}'; type 'help' for the list of commands.\r\n")
        self.assertNotIn("kick", await answer(seas, "help"))
