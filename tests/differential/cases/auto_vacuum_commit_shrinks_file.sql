-- pgfs differential program
-- journal_mode: truncate
-- client: apsw
-- seed: 1003
-- note: issue 10: with auto_vacuum=FULL every commit that frees pages truncates the file after the journal is gone
-- connection A
PRAGMA journal_mode=truncate;
PRAGMA cache_size=10;
-- connection B
PRAGMA journal_mode=truncate;
PRAGMA cache_size=10;
-- steps
-- connection A
CREATE TABLE "t1"("c1" BLOB, "c2" VARCHAR(20) UNIQUE, "c3" VARCHAR(20));
INSERT OR REPLACE INTO "t1"("c1", "c2", "c3") WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20) SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1.5 END, CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1.5 END, CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1.5 END FROM s;
ALTER TABLE "t1" RENAME TO "t3";
REPLACE INTO "t3"("c1", "c2", "c3") VALUES ('nul' || char(0) || 'inside', X'6ba9d98d1527c39148ebe6611cab9b32e785', printf('%0*d', 4000, 837));
PRAGMA auto_vacuum=FULL;
VACUUM;
DELETE FROM "t3" WHERE length("c3") > 0;
