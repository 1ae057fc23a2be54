"""
The commands of a logged-in session, between several real clients: each test
checks what every client involved saw, including what it did I{not} see.
"""

from __future__ import annotations

import re

from twisted.trial import unittest

from tests.e2e.support import COMMAND, PASSWORD, USERNAME, Lab, delivered, drain, entries, offline_line

STORED = r"is offline; the message will be delivered when they next log in\."


class WhoTests(unittest.TestCase):
    async def test_whoelse_lists_the_others_online_with_intros_and_not_oneself(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        columbia.send("whoelse")
        await columbia.expect(r"Nobody else is online\.\r\n" + COMMAND)
        seas = await lab.login(port, "seas")
        facebook = await lab.login(port, "facebook")
        facebook.send("personalintro An website")
        await facebook.expect(r"Personal introduction saved\.\r\n")
        columbia.send("whoelse")
        m = await columbia.expect(r"Online now \(2\):\r\n((?:  [^\r\n]*\r\n)*)" + COMMAND)
        self.assertEqual(entries(m.group(1)), ["facebook <An website>", "seas"])
        seas.send("logout")
        await seas.closed
        columbia.send("whoelse")
        m = await columbia.expect(r"Online now \(1\):\r\n((?:  [^\r\n]*\r\n)*)" + COMMAND)
        self.assertEqual(entries(m.group(1)), ["facebook <An website>"])

    async def test_wholast_includes_online_users_and_those_who_left_lately(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        seas = await lab.login(port, "seas")
        seas.send("logout")
        await seas.closed
        await lab.login(port, "google")
        columbia = await lab.login(port, "columbia")
        columbia.send("wholast 10")
        m = await columbia.expect(r"Online in the last 10 minutes \(2\):\r\n((?:  [^\r\n]*\r\n)*)" + COMMAND)
        self.assertEqual(entries(m.group(1)), ["google", "seas (offline)"])
        # N = 0 still lists whoever is online now.
        columbia.send("wholast 0")
        m = await columbia.expect(r"Online in the last 0 minutes \(\d+\):\r\n((?:  [^\r\n]*\r\n)*)")
        self.assertIn("google", entries(m.group(1)))

    async def test_wholast_accepts_zero_to_last_hour_only(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--last-hour", "30")
        client = await lab.login(port, "columbia")
        client.send("wholast 30")
        await client.expect(r"Nobody else was online in the last 30 minutes\.\r\n" + COMMAND)
        for bad in ("wholast 31", "wholast -1", "wholast ten", "wholast", "wholast 1 2"):
            client.send(bad)
            m = await client.expect(r"([^\r\n]*)\r\n" + COMMAND)
            self.assertIn("Usage: wholast N", m.group(1), bad)
            self.assertIn("0 to 30", m.group(1), bad)


class MessageTests(unittest.TestCase):
    async def test_private_message_reaches_only_its_recipient(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        google = await lab.login(port, "google")
        columbia.send("message seas mo mo da!")
        await columbia.expect(r"Sent to seas\.\r\n" + COMMAND)
        await seas.expect(delivered("columbia", "private", "mo mo da!"))
        self.assertNotIn("mo mo da", await drain(google))
        self.assertNotIn("mo mo da", await drain(columbia))

    async def test_message_to_oneself_is_refused(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        columbia.send("message columbia hello me")
        await columbia.expect(r"That is you[^\r\n]*\r\n" + COMMAND)
        self.assertNotIn("hello me", await drain(columbia))

    async def test_message_to_offline_user_is_kept_and_shown_oldest_first(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        columbia.send("message seas first")
        await columbia.expect(r"seas " + STORED + r"\r\n" + COMMAND)
        google = await lab.login(port, "google")
        google.send("broadcast user seas columbia message second")
        await google.expect(r"Sent to columbia\. seas " + STORED + r"\r\n" + COMMAND)
        await columbia.expect(delivered("google", "broadcast", "second"))
        columbia.send("message seas third")
        await columbia.expect(STORED)
        seas = await lab.connect(port)
        await seas.expect(USERNAME)
        seas.send("seas", "summerisover")
        await seas.expect(
            r"Welcome[^\r\n]*\r\n"
            r"You have 3 offline messages:\r\n"
            + offline_line("columbia", "private", "first")
            + offline_line("google", "broadcast", "second")
            + offline_line("columbia", "private", "third")
            + COMMAND
        )
        # Shown once: the next login finds nothing waiting.
        seas.send("logout")
        await seas.closed
        seas = await lab.connect(port)
        await seas.expect(USERNAME)
        seas.send("seas", "summerisover")
        m = await seas.expect(r"(?s)Welcome[^\r\n]*\r\n(.*?)" + COMMAND)
        self.assertEqual(m.group(1), "")

    async def test_broadcast_reaches_every_other_online_user_but_not_the_sender(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        google = await lab.login(port, "google")
        seas.send("broadcast message cao cao da!!")
        await seas.expect(r"Broadcast to 2 users\.\r\n" + COMMAND)
        await columbia.expect(delivered("seas", "broadcast", "cao cao da!!"))
        await google.expect(delivered("seas", "broadcast", "cao cao da!!"))
        self.assertNotIn("cao cao", await drain(seas))

    async def test_broadcast_with_nobody_else_online_says_so(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        columbia.send("broadcast message anyone?")
        await columbia.expect(r"Nobody else is online; the broadcast reached no one\.\r\n" + COMMAND)
        self.assertNotIn("anyone?", await drain(columbia))
        # A broadcast to everyone is not kept for those offline.
        seas = await lab.login(port, "seas")
        self.assertNotIn("anyone?", seas.text)

    async def test_broadcast_to_listed_users_only(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        google = await lab.login(port, "google")
        facebook = await lab.login(port, "facebook")
        columbia.send("broadcast user seas google columbia message to some")
        await columbia.expect(r"Sent to seas, google\.\r\n" + COMMAND)
        await seas.expect(delivered("columbia", "broadcast", "to some"))
        await google.expect(delivered("columbia", "broadcast", "to some"))
        self.assertNotIn("to some", await drain(facebook))
        self.assertNotIn("to some", await drain(columbia))

    async def test_personal_intro_asked_on_the_next_line(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        csee = await lab.login(port, "csee4119")
        seas = await lab.login(port, "seas")
        csee.send("personalintro")
        await csee.expect(r"Please enter your personal introduction[^\r\n]*\r\n")
        csee.send("The best course ever")
        await csee.expect(r"Personal introduction saved\.\r\n" + COMMAND)
        seas.send("whoelse")
        await seas.expect(r"  csee4119\s+<The best course ever>\r\n")
        # An empty answer keeps it; a new one on the command line replaces it.
        csee.send("personalintro", "")
        await csee.expect(r"Personal introduction unchanged\.\r\n" + COMMAND)
        seas.send("whoelse")
        await seas.expect(r"  csee4119\s+<The best course ever>\r\n")
        csee.send("personalintro Still the best")
        await csee.expect(r"Personal introduction saved\.\r\n" + COMMAND)
        csee.send("logout")
        await csee.closed
        seas.send("wholast 5")
        await seas.expect(r"  csee4119\s+<Still the best>\s+\(offline\)\r\n")

    async def test_message_arriving_at_the_intro_prompt_is_shown_and_the_intro_still_taken(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        csee = await lab.login(port, "csee4119")
        seas = await lab.login(port, "seas")
        csee.send("personalintro")
        await csee.expect("Intro: ")
        seas.send("message csee4119 are you there?")
        await csee.expect(delivered("seas", "private", "are you there?"))
        csee.send("Teaching networks")
        await csee.expect(r"Personal introduction saved\.\r\n" + COMMAND)
        seas.send("whoelse")
        await seas.expect(r"  csee4119\s+<Teaching networks>\r\n")

    async def test_help_lists_every_command_and_shows_one_usage(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        client = await lab.login(port, "columbia")
        client.send("help")
        m = await client.expect(r"(?s)Commands:\r\n(.*?)" + COMMAND)
        commands = ("whoelse", "wholast", "broadcast", "message", "personalintro", "history")
        rooms = ("join", "leave", "rooms", "members")
        for name in (*commands, *rooms, "help", "logout"):
            self.assertRegex(m.group(1), rf"(?m)^  {name}\b")
        client.send("help message")
        await client.expect(r"Usage: message USER TEXT \| message #ROOM TEXT\r\n")

    async def test_logout_says_goodbye_closes_and_goes_offline(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        columbia.send("logout")
        await columbia.expect(r"Goodbye, columbia!\r\n")
        await columbia.closed
        self.assertEqual(columbia.unread(), "")
        seas.send("whoelse")
        await seas.expect(r"Nobody else is online\.\r\n")
        seas.send("message columbia later")
        await seas.expect("columbia " + STORED)

    async def test_command_word_in_any_case_with_extra_spaces(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        columbia.send("  WhoElse  ")
        await columbia.expect(r"Online now \(1\):\r\n  seas\r\n" + COMMAND)
        columbia.send("MESSAGE   seas   spaced out")
        await seas.expect(delivered("columbia", "private", "spaced out"))
        columbia.send("Broadcast   Message   loud")
        await seas.expect(delivered("columbia", "broadcast", "loud"))
        columbia.send("WHOLAST   5")
        await columbia.expect(r"Online in the last 5 minutes \(1\):\r\n  seas\r\n")
        columbia.send("   ")
        columbia.send("LogOut")
        await columbia.expect("Goodbye, columbia!")
        await columbia.closed


class ParseAndCorrectTests(unittest.TestCase):
    async def test_unknown_command_suggests_the_closest(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        client = await lab.login(port, "columbia")
        for typo, meant in (
            ("whoels", "whoelse"),
            ("wholst 5", "wholast"),
            ("brodcast message hi", "broadcast"),
            ("mesage seas hi", "message"),
            ("logut", "logout"),
        ):
            client.send(typo)
            m = await client.expect(r"([^\r\n]*)\r\n" + COMMAND)
            self.assertIn(f"did you mean '{meant}'?", m.group(1), typo)
        client.send("xyzzy")
        m = await client.expect(r"([^\r\n]*)\r\n" + COMMAND)
        self.assertIn("xyzzy", m.group(1))
        self.assertIn("help", m.group(1))

    async def test_wrong_arguments_get_the_usage_line(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        client = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        for line, usage in (
            ("whoelse now", "Usage: whoelse"),
            ("message", "Usage: message USER TEXT"),
            ("message seas", "Usage: message USER TEXT"),
            ("broadcast", "Usage: broadcast message TEXT"),
            ("broadcast message", "Usage: broadcast message TEXT"),
            ("broadcast user seas", "Usage: broadcast message TEXT"),
            ("broadcast user message hi", "Usage: broadcast message TEXT"),
            ("broadcast seas message hi", "Usage: broadcast message TEXT"),
            ("logout now", "Usage: logout"),
        ):
            client.send(line)
            m = await client.expect(r"([^\r\n]*)\r\n" + COMMAND)
            self.assertIn(usage, m.group(1), line)
        self.assertNotIn("columbia (", await drain(seas))

    async def test_unknown_recipient_is_named_with_the_closest_user_and_nothing_sent(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        columbia.send("message seaz hello")
        m = await columbia.expect(r"([^\r\n]*)\r\n" + COMMAND)
        self.assertIn("'seaz'", m.group(1))
        self.assertIn("did you mean 'seas'?", m.group(1))
        self.assertIn("Nothing was sent", m.group(1))
        # One unknown name in a list stops the whole broadcast.
        columbia.send("broadcast user seas gogle message hello all")
        m = await columbia.expect(r"([^\r\n]*)\r\n" + COMMAND)
        self.assertIn("'gogle'", m.group(1))
        self.assertIn("did you mean 'google'?", m.group(1))
        self.assertIn("Nothing was sent", m.group(1))
        self.assertNotIn("hello", await drain(seas))
        # Nor was anything kept for later.
        seas.send("logout")
        await seas.closed
        google = await lab.login(port, "google")
        self.assertNotIn("hello", google.text)

    async def test_text_longer_than_max_message_is_refused_with_the_limit(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--max-message", "10")
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        for line in (
            "message seas 0123456789X",
            "broadcast message 0123456789X",
            "personalintro 0123456789X",
        ):
            columbia.send(line)
            m = await columbia.expect(r"([^\r\n]*)\r\n" + COMMAND)
            self.assertIn("10", m.group(1), line)
            self.assertIn("long", m.group(1), line)
        columbia.send("personalintro")
        await columbia.expect(COMMAND.replace("Command", "Intro"))
        columbia.send("0123456789X")
        m = await columbia.expect(r"([^\r\n]*)\r\n" + COMMAND)
        self.assertIn("the limit is 10", m.group(1))
        self.assertNotIn("0123456789X", await drain(seas))
        seas.send("whoelse")
        await seas.expect(r"Online now \(1\):\r\n  columbia\r\n")
        # At the limit it goes through; the limit counts characters, not bytes.
        columbia.send("message seas 0123456789")
        await seas.expect(delivered("columbia", "private", "0123456789"))
        columbia.send("message seas " + "é" * 10)
        await seas.expect(delivered("columbia", "private", "é" * 10))

    async def test_line_over_4_kib_is_refused_and_the_session_goes_on(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        columbia.send("message seas " + "x" * 5000)
        m = await columbia.expect(r"([^\r\n]*)\r\n" + COMMAND)
        self.assertIn("4096", m.group(1))
        columbia.send("message seas after one")
        await seas.expect(delivered("columbia", "private", "after one"))
        await columbia.expect(r"Sent to seas\.\r\n" + COMMAND)
        # The same in small pieces, as a slow client would send it.
        columbia.send_bytes(b"message seas ")
        for _ in range(10):
            columbia.send_bytes(b"y" * 1000)
        columbia.send_bytes(b"\nmessage seas after two\n")
        m = await columbia.expect(r"([^\r\n]*)\r\n" + COMMAND)
        self.assertIn("4096", m.group(1))
        await seas.expect(delivered("columbia", "private", "after two"))
        self.assertNotIn("xxxx", seas.text)
        self.assertNotIn("yyyy", seas.text)

    async def test_bytes_that_are_not_utf8_are_refused_and_the_session_goes_on(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        columbia.send_bytes(b"message seas caf\xe9 \xff\xfe\n")
        m = await columbia.expect(r"([^\r\n]*)\r\n" + COMMAND)
        self.assertIn("UTF-8", m.group(1))
        columbia.send("message seas café ok")
        await seas.expect(delivered("columbia", "private", "café ok"))
        self.assertNotIn("caf\ufffd", seas.text)

    async def test_control_characters_are_refused_and_the_session_goes_on(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        for line in (
            b"message seas \x1b[2Jgotcha\n",
            b"message seas nul\x00here\n",
            b"broadcast message \x07\n",
        ):
            columbia.send_bytes(line)
            m = await columbia.expect(r"([^\r\n]*)\r\n" + COMMAND)
            self.assertIn("Control characters", m.group(1), line)
        columbia.send("message seas\ttabs are fine")
        await seas.expect(delivered("columbia", "private", "tabs are fine"))
        received = seas.text
        for forbidden in ("\x1b", "\x00", "\x07", "gotcha", "nul"):
            self.assertNotIn(forbidden, received)

    async def test_bad_input_at_the_login_prompts_asks_again(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        client = await lab.connect(port)
        await client.expect(USERNAME)
        client.send_bytes(b"colum\xffbia\n")
        await client.expect(r"UTF-8[^\r\n]*\r\n" + USERNAME)
        client.send_bytes(b"colum\x1bbia\n")
        await client.expect(r"Control characters[^\r\n]*\r\n" + USERNAME)
        client.send_bytes(b"z" * 5000 + b"\n")
        await client.expect(r"4096[^\r\n]*\r\n" + USERNAME)
        client.send("columbia")
        await client.expect(PASSWORD)
        client.send_bytes(b"116\x00bway\n")
        await client.expect(r"Control characters[^\r\n]*\r\n" + PASSWORD)
        client.send("116bway")
        await client.expect("Welcome to chat, columbia")


class PipelineTests(unittest.TestCase):
    async def test_whole_session_in_one_write_is_answered_in_order(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        seas = await lab.login(port, "seas")
        client = await lab.connect(port)
        script = [
            "columbia",
            "wrong",
            "columbia",
            "116bway",
            "whoelse",
            "message google kept for later",
            "message seas one",
            "personalintro",
            "piped intro",
            "wholast 3",
            "message seas two",
            "logout",
            "message seas after logout",
        ]
        client.send_bytes("".join(line + "\r\n" for line in script).encode())
        await client.closed
        expected = [
            USERNAME,
            PASSWORD,
            "Invalid username or password.",
            USERNAME,
            PASSWORD,
            "Login successful. Welcome to chat, columbia!",
            COMMAND,
            "Online now (1):",
            "  seas",
            COMMAND,
            "google is offline; the message will be delivered when they next log in.",
            COMMAND,
            "Sent to seas.",
            COMMAND,
            "Please enter your personal introduction (an empty line keeps the current one):",
            "Intro: ",
            "Personal introduction saved.",
            COMMAND,
            "Online in the last 3 minutes (1):",
            "  seas",
            COMMAND,
            "Sent to seas.",
            COMMAND,
            "Goodbye, columbia!",
        ]
        position = 0
        for piece in expected:
            found = client.text.find(piece, position)
            self.assertNotEqual(found, -1, f"{piece!r} missing after {client.text[position:]!r}")
            self.assertEqual(client.text[position:found].strip(), "", f"unexpected text before {piece!r}")
            position = found + len(piece)
        self.assertEqual(client.text[position:].strip(), "")
        await seas.expect(delivered("columbia", "private", "one") + delivered("columbia", "private", "two"))
        self.assertNotIn("after logout", await drain(seas))
        seas.send("whoelse")
        await seas.expect("Nobody else is online.")
        seas.send("wholast 3")
        await seas.expect(r"  columbia\s+<piped intro>\s+\(offline\)\r\n")
        google = await lab.connect(port)
        await google.expect(USERNAME)
        google.send("google", "partofalphabet")
        await google.expect(
            r"You have 1 offline message:\r\n" + offline_line("columbia", "private", "kept for later")
        )

    async def test_piped_session_with_offline_messages_and_half_close_is_answered_in_order(self) -> None:
        """
        As ``printf ... | nc -N``: the whole session, then end of input.  The
        login waits for stored messages and a send waits for the store, and
        every reply still comes, in order, before the server closes.
        """
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        columbia.send("message seas waiting one", "message seas waiting two")
        await columbia.expect("seas " + STORED + r"\r\n" + COMMAND + "seas " + STORED)
        seas = await lab.connect(port)
        await seas.expect(USERNAME)
        script = "seas\nsummerisover\nmessage google for later\nwhoelse\nmessage columbia live\nlogout\n"
        seas.send_bytes(script.encode())
        seas.transport.loseWriteConnection()  # type: ignore[union-attr]
        await seas.closed
        self.assertRegex(
            seas.text,
            r"Welcome to chat, seas!\r\n"
            r"You have 2 offline messages:\r\n"
            + offline_line("columbia", "private", "waiting one")
            + offline_line("columbia", "private", "waiting two")
            + COMMAND
            + "google "
            + STORED
            + r"\r\n"
            + COMMAND
            + r"Online now \(1\):\r\n  columbia\r\n"
            + COMMAND
            + r"Sent to columbia\.\r\n"
            + COMMAND
            + r"Goodbye, seas!\r\n$",
        )
        await columbia.expect(delivered("seas", "private", "live"))

    async def test_commands_beyond_the_burst_are_refused_not_queued(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--burst", "3", "--rate", "0.001", "--exempt", "")
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        columbia.send(*[f"message seas n{i}" for i in range(5)])
        for i in range(3):
            await seas.expect(delivered("columbia", "private", f"n{i}"))
        for _ in range(2):
            await columbia.expect(r"Slow down[^\r\n]*ignored\.\r\n" + COMMAND)
        self.assertEqual(len(re.findall(r"Sent to seas", columbia.text)), 3)
        seas.send("whoelse")
        await seas.expect(r"Online now")
        self.assertNotIn("n3", seas.text)
        self.assertNotIn("n4", seas.text)


class SlowReaderTests(unittest.TestCase):
    async def test_user_who_stops_reading_is_cut_off_and_others_go_on(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--max-output-buffer", "4096", "--rate", "100000", "--burst", "100000")
        # A small receive window, so the kernel holds little for the slow reader.
        slow = await lab.connect_with_small_window(port)
        await slow.expect(USERNAME)
        slow.send("seas", "summerisover")
        await slow.expect(COMMAND)
        slow.transport.pauseProducing()  # type: ignore[union-attr]
        reader = await lab.login(port, "google")
        sender = await lab.login(port, "columbia")
        text = "x" * 400
        sent = 0
        # The kernel's buffers on both sides take a few megabytes first.
        for _ in range(400):
            sender.send(*["broadcast message " + text] * 50, "whoelse")
            sent += 50
            m = await sender.expect(r"Online now \(\d\):\r\n((?:  [^\r\n]*\r\n)*)" + COMMAND, timeout=30)
            if "seas" not in entries(m.group(1)):
                break
        else:
            self.fail(f"seas was still online after {sent} broadcasts it never read")
        # The one who reads got every broadcast.
        sender.send("broadcast message the end")
        await reader.expect(delivered("columbia", "broadcast", "the end"), timeout=30)
        self.assertEqual(reader.text.count(text), sent)
        # seas is offline, and may log in again.
        again = await lab.login(port, "seas")
        again.send("whoelse")
        await again.expect(r"Online now \(2\):\r\n  columbia\r\n  google\r\n")
