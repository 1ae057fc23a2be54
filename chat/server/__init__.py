"""The chat server: sessions, the service, its edges and backends; ``twistd chat`` runs it."""
