"""
Logging in over real TCP: prompts, failures, the block, duplicate sessions,
the login and idle timeouts, and the per-address connection limit.
"""

from __future__ import annotations

import base64
import hashlib
import re

from twisted.trial import unittest

from tests.e2e.support import COMMAND, INVALID, PASSWORD, USERNAME, Lab, LineClient, seconds_in
from tests.expect import pause

#: A block long enough that it cannot run out while a test looks at it.
LONG_BLOCK = "45"


async def fail_login(client: LineClient, name: str, password: str) -> str:
    """At the username prompt, log in wrongly; give the reply up to the next prompt."""
    client.send(name)
    await client.expect(PASSWORD)
    start = client.position
    client.send(password)
    m = await client.expect(USERNAME)
    return client.text[start : m.start()]


async def refused_as_blocked(client: LineClient, name: str, password: str) -> str:
    """Try C{name}; the server must refuse it as blocked and hang up.  Give the reply."""
    start = client.position
    client.send(name, password)
    await client.closed
    return client.text[start:]


class PromptTests(unittest.TestCase):
    async def test_prompts_are_not_followed_by_a_newline(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        client = await lab.connect(port)
        await client.expect(USERNAME + "$")
        client.send("columbia")
        await client.expect(PASSWORD + "$")
        client.send("116bway")
        await client.expect(r"Welcome[^\r\n]*\r\n" + COMMAND + "$")

    async def test_wrong_password_and_unknown_user_get_the_same_reply(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        client = await lab.connect(port)
        await client.expect(USERNAME)
        wrong_password = await fail_login(client, "columbia", "109bway")
        unknown_user = await fail_login(client, "colombia", "116bway")
        self.assertRegex(wrong_password, INVALID)
        self.assertEqual(wrong_password, unknown_user)
        # After both, the server asks for the username again and a good login works.
        client.send("columbia", "116bway")
        await client.expect("Welcome")

    async def test_blank_and_multiword_usernames_ask_again(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        client = await lab.connect(port)
        await client.expect(USERNAME)
        client.send("")
        await client.expect(USERNAME)
        client.send("two words")
        await client.expect("single word")
        await client.expect(USERNAME)
        client.send("seas", "summerisover")
        await client.expect("Welcome to chat, seas")

    async def test_password_with_spaces_and_hashed_password_log_in(self) -> None:
        """
        The users file takes the rest of the line as the password, or a
        scrypt hash of it; both work over the wire, and so do their refusals.
        """
        salt = b"0123456789abcdef"
        key = hashlib.scrypt(b"hashed secret", salt=salt, n=1 << 10, r=8, p=1, dklen=32)

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii").rstrip("=")

        users = {
            "spacey": "open sesame now",
            "hashed": f"$scrypt$ln=10,r=8,p=1${b64(salt)}${b64(key)}",
        }
        lab = Lab(self)
        _, port = await lab.start(users=users)
        client = await lab.connect(port)
        await client.expect(USERNAME)
        self.assertRegex(await fail_login(client, "spacey", "open"), INVALID)
        self.assertRegex(await fail_login(client, "hashed", "hashed"), INVALID)
        # Username, password and a command in one write, while the hash is checked.
        client.send("hashed", "hashed secret", "whoelse")
        await client.expect(r"Welcome to chat, hashed!\r\n" + COMMAND + r"Nobody else is online\.\r\n")
        spacey = await lab.login(port, "spacey", "open sesame now")
        spacey.send("whoelse")
        await spacey.expect(r"  hashed\r\n")

    async def test_simultaneous_logins_as_one_user_let_exactly_one_in(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        clients = [await lab.connect(port) for _ in range(4)]
        for client in clients:
            await client.expect(USERNAME)
        for client in clients:
            client.send("columbia", "116bway", "whoelse")
        outcomes = []
        for client in clients:
            m = await client.expect(r"(Welcome to chat|already logged in)")
            outcomes.append(m.group(1))
        self.assertEqual(sorted(outcomes), ["Welcome to chat"] + ["already logged in"] * 3)


class BlockTests(unittest.TestCase):
    async def test_third_failure_blocks_with_seconds_left_and_disconnects(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--block-time", LONG_BLOCK, "--max-attempts", "3")
        client = await lab.connect(port)
        await client.expect(USERNAME)
        for _ in range(2):
            self.assertRegex(await fail_login(client, "columbia", "nope"), INVALID)
        client.send("columbia")
        await client.expect(PASSWORD)
        start = client.position
        client.send("still-nope")
        await client.closed
        reply = client.text[start:]
        self.assertRegex(reply, "blocked")
        self.assertTrue(0 < seconds_in(reply) <= int(LONG_BLOCK), reply)

    async def test_blocked_user_is_refused_even_with_the_right_password(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--block-time", LONG_BLOCK, "--max-attempts", "2")
        first = await lab.connect(port)
        await first.expect(USERNAME)
        await fail_login(first, "columbia", "nope")
        first.send("columbia", "nope")
        await first.closed
        for _ in range(2):
            again = await lab.connect(port)
            await again.expect(USERNAME)
            reply = await refused_as_blocked(again, "columbia", "116bway")
            self.assertIn("blocked", reply)
            self.assertNotIn("Welcome", reply)
            self.assertTrue(0 < seconds_in(reply) <= int(LONG_BLOCK), reply)

    async def test_password_sent_during_a_block_is_refused_even_if_the_username_came_before(self) -> None:
        """
        A connection that gave the username before the block began, and the
        right password after, is refused: the block covers every attempt made
        during it, or an attacker would open connections up to the username
        prompt first and get one guess from each.
        """
        lab = Lab(self)
        _, port = await lab.start("--block-time", LONG_BLOCK, "--max-attempts", "2")
        waiting = await lab.connect(port)
        await waiting.expect(USERNAME)
        waiting.send("columbia")
        await waiting.expect(PASSWORD)
        guesser = await lab.connect(port)
        await guesser.expect(USERNAME)
        await fail_login(guesser, "columbia", "nope")
        guesser.send("columbia", "nope")
        await guesser.closed
        self.assertIn("columbia is blocked", guesser.text)
        start = waiting.position
        waiting.send("116bway")
        m = await waiting.expect(f"(Welcome|blocked|{USERNAME})")
        self.assertNotEqual(m.group(1), "Welcome", waiting.text[start:])
        # And the block is still in force for new attempts.
        again = await lab.connect(port)
        await again.expect(USERNAME)
        self.assertIn("blocked", await refused_as_blocked(again, "columbia", "116bway"))

    async def test_block_is_per_username_and_per_address(self) -> None:
        """
        A block of columbia from 127.0.0.1 leaves other usernames from there,
        and columbia from 127.0.0.2, free to log in.
        """
        lab = Lab(self)
        _, port = await lab.start("--block-time", LONG_BLOCK, "--max-attempts", "1")
        first = await lab.connect(port)
        await first.expect(USERNAME)
        first.send("columbia", "nope")
        await first.closed
        self.assertIn("blocked", first.text)
        seas = await lab.login(port, "seas")
        elsewhere = await lab.login(port, "columbia", source="127.0.0.2")
        elsewhere.send("whoelse")
        await elsewhere.expect(r"Online now \(1\):\r\n  seas\r\n")
        # And from 127.0.0.1 columbia is still blocked.
        again = await lab.connect(port)
        await again.expect(USERNAME)
        self.assertIn("blocked", await refused_as_blocked(again, "columbia", "116bway"))
        seas.send("whoelse")
        await seas.expect(r"Online now \(1\):\r\n  columbia\r\n")

    async def test_unknown_username_is_blocked_like_a_known_one(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--block-time", LONG_BLOCK, "--max-attempts", "2")
        client = await lab.connect(port)
        await client.expect(USERNAME)
        await fail_login(client, "nosuchuser", "x")
        client.send("nosuchuser", "y")
        await client.closed
        self.assertIn("nosuchuser is blocked", client.text)

    async def test_success_resets_the_failure_count(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--block-time", LONG_BLOCK, "--max-attempts", "3")
        client = await lab.connect(port)
        await client.expect(USERNAME)
        for _ in range(2):
            await fail_login(client, "columbia", "nope")
        client.send("columbia", "116bway")
        await client.expect("Welcome")
        await client.expect(COMMAND)
        client.send("logout")
        await client.closed
        # Two more failures, on new connections: not blocked, as the count restarted.
        client = await lab.connect(port)
        await client.expect(USERNAME)
        for _ in range(2):
            self.assertNotIn("blocked", await fail_login(client, "columbia", "nope"))
        client.send("columbia", "116bway")
        await client.expect("Welcome")

    async def test_failures_count_across_connections(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--block-time", LONG_BLOCK, "--max-attempts", "3")
        for _ in range(2):
            client = await lab.connect(port)
            await client.expect(USERNAME)
            self.assertNotIn("blocked", await fail_login(client, "columbia", "nope"))
            await client.close()
        client = await lab.connect(port)
        await client.expect(USERNAME)
        client.send("columbia", "nope")
        await client.closed
        self.assertIn("columbia is blocked", client.text)

    async def test_block_runs_out_after_block_time(self) -> None:
        """
        With --block-time 2: refused at once, then (polling, not sleeping a
        fixed time) let in again with the right password.
        """
        lab = Lab(self)
        _, port = await lab.start("--block-time", "2", "--max-attempts", "1")
        client = await lab.connect(port)
        await client.expect(USERNAME)
        client.send("columbia", "nope")
        await client.closed
        self.assertIn("blocked", client.text)
        refusals = []
        for _ in range(150):
            client = await lab.connect(port)
            await client.expect(USERNAME)
            client.send("columbia")
            m = await client.expect(f"({re.escape(PASSWORD)}|blocked[^\r\n]*\r\n)")
            if m.group(1) == PASSWORD:
                break
            refusals.append(m.group(1))
            self.assertLessEqual(seconds_in(m.group(1)), 2)
            await client.closed
            await pause(0.2)
        else:
            self.fail(f"still blocked after {len(refusals)} tries: {refusals[-1]}")
        client.send("116bway")
        await client.expect("Welcome")


class DuplicateLoginTests(unittest.TestCase):
    async def test_second_login_is_refused_and_first_session_goes_on(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--max-attempts", "2", "--block-time", LONG_BLOCK)
        first = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        second = await lab.connect(port)
        await second.expect(USERNAME)
        # Refused more often than --max-attempts: none of it counts as a failure.
        for _ in range(3):
            second.send("columbia")
            await second.expect(PASSWORD)
            second.send("116bway")
            await second.expect(r"columbia is already logged in[^\r\n]*\r\n" + USERNAME)
        self.assertNotIn("blocked", second.text)
        # The first session is untouched: it still sends and receives.
        first.send("message seas still here")
        await seas.expect(r"columbia \(private\): still here")
        seas.send("message columbia and so am I")
        await first.expect(r"seas \(private\): and so am I")
        seas.send("whoelse")
        await seas.expect(r"Online now \(1\):\r\n  columbia\r\n")
        # Once the first session logs out, the second connection may log in.
        first.send("logout")
        await first.closed
        second.send("columbia", "116bway")
        await second.expect("Welcome to chat, columbia")

    async def test_wrong_password_for_an_online_user_does_not_reveal_they_are_online(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        await lab.login(port, "columbia")
        client = await lab.connect(port)
        await client.expect(USERNAME)
        reply = await fail_login(client, "columbia", "109bway")
        self.assertRegex(reply, INVALID)
        self.assertNotIn("logged in", reply)


class TimeoutTests(unittest.TestCase):
    async def test_connection_that_never_logs_in_is_told_and_closed(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--login-timeout", "1")
        idle = await lab.connect(port)
        halfway = await lab.connect(port)
        await idle.expect(USERNAME)
        await halfway.expect(USERNAME)
        halfway.send("columbia")
        await halfway.expect(PASSWORD)
        for client in (idle, halfway):
            await client.expect(r"Login timed out after 1 second[^\r\n]*\r\n")
            await client.closed

    async def test_login_timeout_does_not_apply_once_logged_in(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--login-timeout", "1")
        columbia = await lab.login(port, "columbia")
        # A connection made after columbia's timing out shows that columbia's
        # login timeout, had it still run, would have fired by now.
        late = await lab.connect(port)
        await late.expect(r"Login timed out[^\r\n]*\r\n")
        await late.closed
        columbia.send("whoelse")
        await columbia.expect(r"Nobody else is online\.\r\n" + COMMAND)
        self.assertNotIn("timed out", columbia.text)

    async def test_idle_user_is_logged_out_with_a_reason(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--idle-timeout", "2")
        client = await lab.login(port, "columbia")
        await client.expect(r"Logged out after 2 seconds without a command[^\r\n]*\r\n")
        await client.closed
        # columbia is offline now: seen by wholast, and free to log in again.
        seas = await lab.login(port, "seas")
        seas.send("wholast 1")
        await seas.expect(r"  columbia  \(offline\)\r\n")
        again = await lab.login(port, "columbia")
        again.send("whoelse")
        await again.expect(r"  seas\r\n")


class ConnectionLimitTests(unittest.TestCase):
    async def test_connections_beyond_the_per_address_limit_are_refused(self) -> None:
        lab = Lab(self)
        # Loopback is exempt from the limit by default; here it is not.
        _, port = await lab.start("--max-connections-per-ip", "2", "--exempt", "")
        a = await lab.login(port, "columbia")
        b = await lab.connect(port)
        await b.expect(USERNAME)
        extra = await lab.connect(port)
        await extra.closed
        self.assertIn("Too many connections from your address (limit 2)", extra.text)
        self.assertNotIn(USERNAME, extra.text)
        # Another address is counted on its own.
        other = await lab.login(port, "seas", source="127.0.0.2")
        other.send("message columbia hi")
        await a.expect(r"seas \(private\): hi")
        # A closed connection frees its place.
        await b.close()
        for _ in range(50):
            c = await lab.connect(port)
            m = await c.expect(f"({USERNAME}|Too many connections)")
            if m.group(1) == USERNAME:
                break
            await c.closed
            await pause(0.1)
        else:
            self.fail("a closed connection never freed its place")
