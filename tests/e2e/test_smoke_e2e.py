from twisted.trial import unittest

from tests.e2e.support import Lab, ServerProcess


class SmokeTests(unittest.TestCase):
    async def test_two_users_exchange_a_message(self) -> None:
        server = ServerProcess(self.mktemp())
        port = await server.start()
        self.addCleanup(server.stop)
        a = await Lab(self).login(port, "columbia")
        b = await Lab(self).login(port, "seas")
        a.send("message seas hello there")
        await b.expect(r"columbia \(private\): hello there")
        await a.close()
        await b.close()
