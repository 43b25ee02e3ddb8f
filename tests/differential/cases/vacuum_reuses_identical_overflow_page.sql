-- pgfs differential program
-- journal_mode: truncate
-- client: apsw
-- seed: 20003
-- note: VACUUM moves an overflow page of zeros to another b-tree with the same bytes; pgfs dropped that page from the commit and kept its old role (verify failed, the remounted file was malformed)
-- connection A
PRAGMA journal_mode=truncate;
PRAGMA cache_size=40;
-- connection B
PRAGMA journal_mode=truncate;
PRAGMA cache_size=40;
-- steps
-- connection A
CREATE TABLE "t1"("k", "c1", "c2" DOUBLE, "c3" INTEGER, "c4" REAL, PRIMARY KEY("k"));
INSERT OR REPLACE INTO "t1"("k", "c1", "c2", "c3", "c4") WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50) SELECT i + 5859, 'r' || i, i * 8 % 13, printf('%0*d', i * 48 % 6000 + 1, i), CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1.5 END FROM s;
UPDATE "t1" SET "c4" = zeroblob(1500) WHERE rowid = 31;
UPDATE OR IGNORE "t1" SET "c3" = zeroblob(20000) WHERE length("c4") > 10;
-- connection B
CREATE INDEX "i2" ON "t1"("c3" DESC);
-- connection A
UPDATE OR REPLACE "t1" SET "c2" = zeroblob(9000) WHERE rowid = 50;
VACUUM;
