"""The store: ClickHouse DDL (ddl.py) and the embedded chDB engine that owns the data dir (chdb_store.py)."""
