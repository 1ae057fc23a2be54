"""
``twistd chat`` options and the service they build.
"""

from __future__ import annotations

import gc
import os

from twisted.application.service import IServiceCollection
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial import unittest

from chat.server.backends.memory import MemoryStore
from chat.server.backends.sqlite import SQLiteStore
from chat.server.edges.tcp import host_of
from chat.server.service import ChatService
from chat.server.signals import Signals
from chat.server.systemd import Notifier
from chat.server.tap import Collector, Listener, Options, dual_stack, endpoint_description, makeService


class EndpointTests(unittest.TestCase):
    def test_bare_number_means_tcp_with_a_large_backlog(self) -> None:
        self.assertEqual(endpoint_description("4119", both=False), "tcp:4119:backlog=1024")

    def test_bare_number_means_ipv6_and_ipv4_where_the_machine_has_both(self) -> None:
        self.assertEqual(endpoint_description("4119", both=True), "tcp6:4119:interface=\\:\\::backlog=1024")
        self.assertEqual(endpoint_description("4119"), endpoint_description("4119", dual_stack()))

    def test_tcp_and_ssl_get_a_backlog_unless_given(self) -> None:
        self.assertEqual(
            endpoint_description("tcp:4119:interface=127.0.0.1"),
            "tcp:4119:interface=127.0.0.1:backlog=1024",
        )
        self.assertEqual(
            endpoint_description("ssl:4443:privateKey=k.pem:certKey=c.pem"),
            "ssl:4443:privateKey=k.pem:certKey=c.pem:backlog=1024",
        )
        self.assertEqual(endpoint_description("tcp:4119:backlog=5"), "tcp:4119:backlog=5")

    def test_an_ipv4_client_of_a_dual_stack_socket_is_known_by_its_ipv4_address(self) -> None:
        self.assertEqual(host_of(IPv6Address("TCP", "::ffff:10.0.0.1", 4119)), "10.0.0.1")
        self.assertEqual(host_of(IPv6Address("TCP", "::1", 4119)), "::1")
        self.assertEqual(host_of(IPv4Address("TCP", "10.0.0.1", 4119)), "10.0.0.1")

    def test_other_endpoints_are_left_alone(self) -> None:
        self.assertEqual(endpoint_description("unix:/tmp/chat.sock"), "unix:/tmp/chat.sock")


class OptionsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.users = self.mktemp()
        with open(self.users, "w") as f:
            f.write("columbia 116bway\nseas summerisover\n")

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--users", self.users, *args])
        return options

    def refuse(self, *args: str) -> str:
        with self.assertRaises(SystemExit) as caught:
            self.parse(*args)
        message = str(caught.exception.code)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith("twistd chat: "), message)
        return message

    def test_defaults(self) -> None:
        options = self.parse()
        self.assertEqual(options["port"], "4119")
        self.assertEqual(options["endpoint"], endpoint_description("4119"))
        self.assertEqual(options["database"], "chat.sqlite")
        self.assertEqual(options["block-time"], 60)
        self.assertEqual(options["max-attempts"], 3)
        self.assertEqual(options["idle-timeout"], 1800)
        self.assertEqual(options["last-hour"], 60)
        self.assertEqual(options["max-message"], 500)
        self.assertEqual(options["login-timeout"], 60)
        self.assertEqual(options["max-connections-per-ip"], 20)
        self.assertEqual(options["rate"], 10)
        self.assertEqual(options["burst"], 20)
        self.assertEqual(options["max-output-buffer"], 262144)
        self.assertEqual(set(options["users-db"]), {"columbia", "seas"})

    def test_loopback_is_exempt_by_default(self) -> None:
        exemptions = self.parse()["exemptions"]
        self.assertTrue(exemptions.covers("127.0.0.1"))
        self.assertTrue(exemptions.covers("::1"))
        self.assertFalse(exemptions.covers("10.1.2.3"))

    def test_exempt_can_be_emptied_or_changed(self) -> None:
        self.assertFalse(self.parse("--exempt", "")["exemptions"].covers("127.0.0.1"))
        self.assertTrue(self.parse("--exempt", "10.0.0.0/8")["exemptions"].covers("10.1.2.3"))
        self.assertEqual(
            self.refuse("--exempt", "10.0.0.0/8,nonsense"),
            "twistd chat: --exempt: 'nonsense' is not an IP network or address",
        )

    def test_default_users_file_is_user_pass_txt(self) -> None:
        self.assertEqual(Options()["users"], "user_pass.txt")

    def test_values_are_converted(self) -> None:
        options = self.parse("--port", "5000", "--block-time", "2.5", "--max-attempts", "5")
        self.assertEqual(options["endpoint"], endpoint_description("5000"))
        self.assertEqual(options["block-time"], 2.5)
        self.assertEqual(options["max-attempts"], 5)

    def test_negative_time_is_one_line(self) -> None:
        self.assertEqual(
            self.refuse("--block-time", "-5"), "twistd chat: --block-time must be at least 0, not '-5'"
        )

    def test_not_a_number_is_one_line(self) -> None:
        self.assertEqual(
            self.refuse("--max-attempts", "three"),
            "twistd chat: --max-attempts must be a whole number, not 'three'",
        )
        self.assertIn("finite", self.refuse("--idle-timeout", "nan"))
        self.assertIn("finite", self.refuse("--idle-timeout", "inf"))

    def test_zero_attempts_or_message_length_is_refused(self) -> None:
        self.refuse("--max-attempts", "0")
        self.refuse("--max-message", "0")

    def test_a_message_length_no_line_can_carry_is_refused_in_one_line(self) -> None:
        self.assertEqual(
            self.refuse("--max-message", "10000"),
            "twistd chat: --max-message must be at most 4000 characters: a line of the text"
            " protocol (and a WebSocket message) carries at most 4096 bytes, command included",
        )
        self.assertEqual(self.parse("--max-message", "4000")["max-message"], 4000)

    def test_missing_users_file_is_one_line(self) -> None:
        self.assertEqual(
            self.refuse("--users", "/nonexistent/users.txt"),
            "twistd chat: users file '/nonexistent/users.txt' does not exist",
        )

    def test_malformed_users_file_names_the_line(self) -> None:
        with open(self.users, "a") as f:
            f.write("justaname\n")
        self.assertIn("line 3", self.refuse())

    def test_unknown_option_is_one_line(self) -> None:
        self.assertEqual(self.refuse("--colour"), "twistd chat: option --colour not recognized")

    def test_redis_options_need_redis(self) -> None:
        for option in ("--node", "--redis-password", "--redis-password-file"):
            self.assertIn(f"{option} needs --redis", self.refuse(option, "x"))

    def test_node_name_is_checked(self) -> None:
        message = self.refuse("--redis", "tcp:127.0.0.1:6379", "--node", "a b")
        self.assertIn("--node must be letters, digits", message)
        self.assertEqual(
            self.parse("--redis", "tcp:127.0.0.1:6379", "--node", "chat-1.eu_w")["node"], "chat-1.eu_w"
        )

    def test_node_name_defaults_to_host_and_pid(self) -> None:
        node = self.parse("--redis", "tcp:127.0.0.1:6379")["node"]
        self.assertTrue(node.endswith(f"-{os.getpid()}"), node)

    def test_redis_password_is_read_from_the_first_line_of_its_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("s3cret word\nignored\n")
        options = self.parse("--redis", "tcp:127.0.0.1:6379", "--redis-password-file", path)
        self.assertEqual(options["redis-password"], "s3cret word")

    def test_a_missing_password_file_is_one_line(self) -> None:
        message = self.refuse("--redis", "tcp:127.0.0.1:6379", "--redis-password-file", "/nonexistent/pw")
        self.assertIn("--redis-password-file: No such file or directory: /nonexistent/pw", message)

    def test_password_and_password_file_together_are_refused(self) -> None:
        message = self.refuse(
            "--redis", "tcp:127.0.0.1:6379", "--redis-password", "a", "--redis-password-file", self.users
        )
        self.assertIn("not both", message)

    def test_a_unix_socket_path_too_long_for_an_address_is_refused(self) -> None:
        message = self.refuse("--redis", "unix:/tmp/" + "d" * 100 + "/redis.sock")
        self.assertIn("at most 107 bytes", message)

    def test_usage_error_is_what_twistd_would_see_without_our_handling(self) -> None:
        # The one-line handling wraps usage.Options' own error, not a new check.
        with self.assertRaises(usage.UsageError):
            usage.Options.parseOptions(Options(), ["--colour"])


class MakeServiceTests(unittest.TestCase):
    def options(self, *args: str) -> Options:
        users = self.mktemp()
        with open(users, "w") as f:
            f.write("columbia 116bway\n")
        options = Options()
        options.parseOptions(["--users", users, *args])
        return options

    def test_builds_a_chat_service_and_a_listener(self) -> None:
        service = makeService(self.options("--database", ":memory:"), MemoryReactorClock())
        collection = IServiceCollection(service)
        kinds = [type(s) for s in collection]
        self.assertEqual(kinds, [ChatService, Signals, Listener, Notifier, Collector])
        chat = next(s for s in collection if isinstance(s, ChatService))
        self.assertIsInstance(chat.store, MemoryStore)
        self.assertEqual(set(chat.users), {"columbia"})

    def test_the_collector_is_set_for_a_server_while_it_runs_and_put_back_after(self) -> None:
        before = gc.get_threshold()
        collector = Collector()
        collector.startService()
        self.addCleanup(lambda: collector.stopService() if collector.running else None)
        self.assertEqual(gc.get_threshold(), Collector.THRESHOLDS)
        self.assertGreater(gc.get_freeze_count(), 0)
        collector.stopService()
        self.assertEqual(gc.get_threshold(), before)
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_with_redis_the_service_is_a_node_of_a_cluster(self) -> None:
        from chat.server.backends.redis.cluster import RedisCluster
        from chat.server.backends.redis.store import RedisStore
        from chat.server.edges.tcp import ChatFactory
        from chat.server.tap import JoinCluster

        options = self.options("--redis", "tcp:127.0.0.1:6379", "--node", "a", "--database", "/nonexistent/x")
        service = makeService(options, MemoryReactorClock())
        collection = list(IServiceCollection(service))
        self.assertEqual(
            [type(s) for s in collection], [ChatService, Signals, JoinCluster, Listener, Notifier, Collector]
        )
        chat = collection[0]
        assert isinstance(chat, ChatService)
        # --database is not opened: the store is Redis.
        self.assertIsInstance(chat.store, RedisStore)
        self.assertIsInstance(chat.registry, RedisCluster)
        self.assertIs(chat.peers, chat.registry)
        # Replies read from Redis start a turn whose writes to TCP clients gather, as client reads do.
        cluster = chat.registry
        assert isinstance(cluster, RedisCluster)
        [listener] = [s for s in collection if isinstance(s, Listener)]
        factory = listener.factory
        assert isinstance(factory, ChatFactory)
        turn = factory.turn
        for link in (cluster.link, cluster.store_link, cluster.subscriber):
            self.assertEqual(link.on_read, turn.begin, link)

    def test_database_file_is_sqlite(self) -> None:
        from twisted.internet import reactor

        path = os.path.abspath(self.mktemp())
        # The store answers from its thread through the reactor, so a real one.
        service = makeService(self.options("--database", path), reactor)
        chat = next(s for s in IServiceCollection(service) if isinstance(s, ChatService))
        self.assertIsInstance(chat.store, SQLiteStore)
        self.addCleanup(chat.store.close)
        self.assertTrue(os.path.exists(path))

    def test_unusable_database_is_one_line(self) -> None:
        options = self.options("--database", "/nonexistent/dir/chat.sqlite")
        with self.assertRaises(SystemExit) as caught:
            makeService(options, MemoryReactorClock())
        self.assertIn("cannot use database '/nonexistent/dir/chat.sqlite'", str(caught.exception.code))

    def test_unusable_endpoint_is_one_line(self) -> None:
        options = self.options("--database", ":memory:", "--port", "bogus:1234")
        with self.assertRaises(SystemExit) as caught:
            makeService(options, MemoryReactorClock())
        message = str(caught.exception.code)
        self.assertTrue(message.startswith("twistd chat: --port 'bogus:1234' is not usable"), message)
        self.assertNotIn("\n", message)

    def test_listens_with_the_large_backlog(self) -> None:
        reactor = MemoryReactorClock()
        service = makeService(self.options("--database", ":memory:", "--port", "0"), reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        [(port, _, backlog, _)] = reactor.tcpServers
        self.assertEqual((port, backlog), (0, 1024))


class ListenerTests(unittest.TestCase):
    def test_a_port_in_use_stops_startup_with_one_line(self) -> None:
        import socket

        from twisted.internet import reactor
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.protocol import Factory

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        endpoint = serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1")
        listener = Listener(endpoint, Factory(), str(port))
        with self.assertRaises(SystemExit) as caught:
            listener.privilegedStartService()
        message = str(caught.exception.code)
        self.assertTrue(message.startswith(f"twistd chat: cannot listen on '{port}': "), message)
        self.assertIn("in use", message)
        self.assertNotIn("\n", message)


class PluginTests(unittest.TestCase):
    def test_twistd_finds_the_chat_plugin(self) -> None:
        from twisted.application.service import IServiceMaker

        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("chat", makers)
        self.assertIs(makers["chat"].options, Options)
