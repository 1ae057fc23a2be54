"""The backends: where presence and durable state live (memory, SQLite)."""
