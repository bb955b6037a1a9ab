"""Persistence: the schema, its migrations, and the queries. The row in the database is the truth."""
