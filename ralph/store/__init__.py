"""What a run leaves to read later: the journal (SQLite: schema, writer, queries), the
locks that keep one process per run, and `ralph runs` / `ralph show`."""
