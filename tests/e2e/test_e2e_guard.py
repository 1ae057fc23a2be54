"""
Password guessing against a cluster, end to end: two real ``twistd -n
chat`` nodes on one real redis-server (L{tests.e2e.test_e2e_cluster.Cluster}),
guessed at from one address over many connections at once.

columbia's password is an scrypt hash here, so each check takes tens of
milliseconds in a thread and the checks of guesses sent together overlap:
what a guard that counts failures only once they are known would let
through is then there to be counted.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from chat.server.auth import ScryptSecret, format_user_line
from chat.server.backends.redis import keys
from tests.e2e.support import INVALID, PASSWORD, USERNAME, USERS, ServerProcess
from tests.e2e.test_e2e_cluster import LONG_BLOCK, Cluster

#: Where the guesses come from: a loopback address of its own.
ATTACKER = "127.0.0.2"
MAX_ATTEMPTS = 3
#: Connections per node, each with one guess, all sent together.
PARALLEL = 10

#: The answers a guess can get.  Only a checked password is answered
#: "Invalid": the other two refuse it before its hash is computed.
CHECKED = INVALID
BEING_CHECKED = r"Too many logins for columbia from your address are being checked"
BLOCKED = r"columbia is blocked from your address for \d+ more seconds"

#: columbia's line of the users file, hashed once for the whole module (a
#: hash takes as long as a check).
_HASHED = format_user_line("columbia", ScryptSecret.create(USERS["columbia"].encode("utf-8")))


class HashedCluster(Cluster):
    """A L{Cluster} whose users file holds columbia's password as an scrypt hash."""

    def node(self, name: str, *args: str) -> ServerProcess:
        server = super().node(name, *args)
        with open(server.users_path, "w", encoding="utf-8") as f:
            for user, password in USERS.items():
                f.write((_HASHED if user == "columbia" else f"{user} {password}") + "\n")
        return server


class ParallelGuessingTests(unittest.TestCase):
    async def test_parallel_guesses_on_two_nodes_get_max_attempts_checks_in_all(self) -> None:
        """
        Ten wrong passwords for columbia at once on each node, from one
        address, with --max-attempts 3: three are checked, across both
        nodes together; the others are refused before their hash is
        computed, and the three failures block columbia from that address.

        What is counted is the "Invalid username or password." answers:
        every password checked here is wrong, and a session that checked
        one answers so (the session that starts the block too, before
        saying so), while a guess refused unchecked is answered "being
        checked" or "blocked" instead.  Every connection stays open, so
        every guess is answered once, one way or the other.
        """
        cluster = await HashedCluster.start(
            self, "--max-attempts", str(MAX_ATTEMPTS), "--block-time", LONG_BLOCK
        )
        ports = [cluster.port_a, cluster.port_b] * PARALLEL
        clients = [await cluster.lab.connect(port, source=ATTACKER) for port in ports]
        await defer.gatherResults([client.expect(USERNAME) for client in clients])
        for client in clients:
            client.send("columbia")
        await defer.gatherResults([client.expect(PASSWORD) for client in clients])
        # Every guess at once: sent in one turn of the reactor.
        for i, client in enumerate(clients):
            client.send(f"guess-{i}")
        answers = await defer.gatherResults(
            [client.expect(f"{CHECKED}|{BEING_CHECKED}|{BLOCKED}", timeout=30) for client in clients]
        )
        said = [m.group(0) for m in answers]
        checked = sum(1 for s in said if s.startswith("Invalid"))
        refused = sum(1 for s in said if s.startswith("Too many"))
        blocked = sum(1 for s in said if "is blocked" in s)
        self.assertEqual(checked + refused + blocked, 2 * PARALLEL, said)
        self.assertEqual(checked, MAX_ATTEMPTS, said)
        # The guesses did overlap: some were refused while others were checked.
        self.assertGreater(refused, 0, said)
        # And the three failures blocked columbia from that address, on both nodes.
        self.assertEqual(cluster.redis.command("ZCARD", keys.BLOCKS), "1")
        for port in (cluster.port_a, cluster.port_b):
            late = await cluster.lab.connect(port, source=ATTACKER)
            await late.expect(USERNAME)
            late.send("columbia", USERS["columbia"])
            await late.expect(BLOCKED)
