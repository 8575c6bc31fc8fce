"""The SQLite store and its migrations: all SQL lives here. May import domain values only."""
