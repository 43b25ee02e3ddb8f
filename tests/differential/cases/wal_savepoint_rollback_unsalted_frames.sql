-- pgfs differential program
-- journal_mode: wal
-- client: sqlite3
-- seed: 60094
-- note: issue 10, found by the 30-minute fuzz run of 2026-12-03: in B's transaction SQLite 3.40 spills, overwrites a spilled frame in place and rolls back to a savepoint; it keeps the overwrite's frame number, so the commit after it leaves its first frame with zero salts and checksums. The mount saw no valid commit there and missed that commit and every later one (SQLite read them from the WAL) until a later commit failed in the diff; the store export now shows such a gap at once
-- connection A
PRAGMA auto_vacuum=INCREMENTAL;
PRAGMA journal_mode=wal;
PRAGMA cache_size=10;
-- connection B
PRAGMA journal_mode=wal;
PRAGMA cache_size=10;
-- steps
-- connection A
CREATE TABLE "t1"("Col 1", "Col 2" BOOLEAN);
INSERT OR IGNORE INTO "t1"("Col 1", "Col 2") WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 300) SELECT i * 4 % 13, i * 5 % 13 FROM s;
BEGIN;
SAVEPOINT sp1;
ROLLBACK;
DELETE FROM "t1" WHERE "Col 2" IS NULL;
-- connection B
ROLLBACK;
ALTER TABLE "t1" ADD COLUMN "c5" VARCHAR(20) DEFAULT 'bÄ';
-- connection A
CREATE INDEX "i1" ON "t1"("c5");
ROLLBACK;
UPDATE OR REPLACE "t1" SET "Col 2" = NULL WHERE rowid BETWEEN 65 AND 85;
INSERT INTO "t1"("Col 1", "Col 2", "c5") WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50) SELECT i, printf('%0*d', i * 23 % 6000 + 1, i), i FROM s;
UPDATE "t1" SET "Col 1" = zeroblob(9000) WHERE rowid % 5 = 2;
-- connection B
UPDATE OR IGNORE "t1" SET "Col 2" = NULL WHERE typeof("c5") = 'text';
-- connection A
SELECT count(*), sum(length("c5")) FROM "t1";
CREATE TRIGGER "tr1" BEFORE INSERT ON "t1" BEGIN DELETE FROM "t1" WHERE rowid = 46; END;
INSERT INTO "t1"("Col 1", "Col 2", "c5") VALUES ('ÖÖ😀cxü b', NULL, -1099511627776);
-- connection B
SAVEPOINT outer_sp;
SAVEPOINT sp1;
UPDATE "t1" SET "c5" = zeroblob(4000) WHERE rowid BETWEEN 119 AND 172;
ROLLBACK TO sp1;
RELEASE outer_sp;
-- connection A
BEGIN;
UPDATE "t1" SET "Col 2" = "Col 2" + 1 WHERE rowid = 59;
UPDATE OR REPLACE "t1" SET "Col 1" = zeroblob(4000) WHERE rowid = 57;
INSERT OR IGNORE INTO "t1"("Col 1", "Col 2", "c5") VALUES (-87, 925, X'ee6dd30f58');
ROLLBACK;
VACUUM;
-- connection B
INSERT OR IGNORE INTO "t1"("Col 2", "Col 1") VALUES (-1.25, 927), (841, 2.5e-300), (NULL, 389);
-- connection A
DELETE FROM "t1" WHERE "Col 1" IS NULL;
CREATE TABLE "t2"("Col 1", "Col 2" INT, "c3" INTEGER, "c4" REAL);
UPDATE OR IGNORE "t1" SET "c5" = "c5" + 1 WHERE length("Col 1") > 3000;
CREATE TRIGGER "tr2" BEFORE INSERT ON "t1" BEGIN INSERT OR IGNORE INTO "t2"("c3") VALUES (NEW."c5"); END;
COMMIT;
-- connection B
COMMIT;
CREATE TABLE "t3"("id" INTEGER PRIMARY KEY, "c1" INTEGER, "c2" BOOLEAN);
-- connection A
INSERT OR REPLACE INTO "t1"("Col 1", "Col 2", "c5") WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 120) SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1.5 END, zeroblob(i % 4 * 1500), zeroblob(i % 4 * 1500) FROM s;
INSERT OR IGNORE INTO "t3"("c1", "c2") VALUES (2.5e-300, 0.5), (NULL, 'nul' || char(0) || 'inside');
