"""The database layer: configuration, the SQLite and PostgreSQL backends, the pool, the one
statement path (``Database.run``), transactions, the tiny ORM with the kata's models and schema,
isolated databases for tests, and the queue's own SQL."""
