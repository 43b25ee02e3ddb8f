"""pgfs: keep an unmodified SQLite application's database in PostgreSQL, through FUSE."""
