-- pgfs differential program
-- journal_mode: wal
-- client: sqlite3
-- seed: 30078
-- note: issue 10: SQLite 3.40 leaves frames with zeroed headers before the frames it re-checksums after a statement rollback in a spilled WAL transaction; its own recovery would drop this commit, but SQLite reads it from its wal-index and told the application it committed, so the mount commits it too (wal_log.py)
-- connection A
PRAGMA journal_mode=wal;
-- connection B
PRAGMA journal_mode=wal;
-- steps
-- connection A
CREATE TABLE "t1"("k" INTEGER, "c1" NUMERIC, "c2" INTEGER, "Col 3", "c4" VARCHAR(20), PRIMARY KEY("k", "c1")) WITHOUT ROWID;
INSERT OR IGNORE INTO "t1"("k", "c1", "c2", "Col 3", "c4") WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 300) SELECT i + 6203, i + 6203, zeroblob(i % 4 * 300), printf('%0*d', i * 5 % 6000 + 1, i), i * 3 % 13 FROM s;
INSERT INTO "t1"("k", "c1", "c2", "Col 3", "c4") VALUES (1099511627777, 26, 'acÖxxÄÄz😀bbbxy😀cbaxüzyxy', 0.5, '😀a ycb😀😀😀😀bÖ  aÖÄüÄ😀''azÖ''Öx'), (1099511627777, 42, 204, 830, 'cÄbcbcÄ''ccy''y''Ä');
ALTER TABLE "t1" ADD COLUMN "c14" DOUBLE DEFAULT 2147483648;
INSERT INTO "t1"("k", "c1", "c2", "Col 3", "c4", "c14") VALUES (-1, 1, '😀Ä 😀''aÄzÖüÖx😀yüü', 528, hex(zeroblob(350)), zeroblob(700)), (1099511627777, 3, 596, 2.5e-300, 2.5e-300, NULL), (3, 1099511627777, zeroblob(20000), '-0', hex(zeroblob(2000)), printf('%0*d', 5000, 848));
INSERT OR IGNORE INTO "t1"("k", "c1", "c2", "Col 3", "c4", "c14") WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 300) SELECT i + 72, i + 72, zeroblob(i % 4 * 300), zeroblob(i % 4 * 3000), printf('%0*d', i * 31 % 6000 + 1, i), i * 9 % 13 FROM s;
CREATE TRIGGER "tr1" AFTER DELETE ON "t1" BEGIN UPDATE "t1" SET "c1" = OLD."Col 3" WHERE "c14" IS NULL; END;
UPDATE "t1" SET "c14" = NULL WHERE typeof("c14") = 'real';
CREATE INDEX "i2" ON "t1"("c4" DESC, "c2") WHERE "c4" IS NOT NULL;
CREATE TABLE "t2"("c1" INT, "c2" VARCHAR(20), "Col 3" DOUBLE UNIQUE, "c4");
ALTER TABLE "t2" ADD COLUMN "c11" DOUBLE DEFAULT 878;
BEGIN EXCLUSIVE;
INSERT OR REPLACE INTO "t2"("c1", "c2", "Col 3", "c4", "c11") VALUES (2147483648, hex(zeroblob(4500)), printf('%0*d', 5000, 968), '😀', zeroblob(4000)), (-40, 'ü😀a Öc', 'axb''ÄÄ''a😀b xÖ''''a ''zÖbxcxü', 'Äü yüaxyüyyzyÄ Ö'' Ä Öcc', -1099511627776);
DELETE FROM "t1" WHERE typeof("c14") = 'blob';
COMMIT;
