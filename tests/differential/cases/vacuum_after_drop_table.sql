-- pgfs differential program
-- journal_mode: truncate
-- client: sqlite3
-- seed: 1002
-- note: issue 10: in a rollback-journal mode VACUUM truncates the file after the journal is gone; pgfs refused it with EIO
-- connection A
PRAGMA journal_mode=truncate;
-- connection B
PRAGMA journal_mode=truncate;
-- steps
-- connection A
CREATE TABLE "t4"("id" INTEGER PRIMARY KEY, "Col 1" TEXT, "c2" BLOB, "c3" INT);
DROP TABLE "t4";
VACUUM;
