-- pgfs differential program
-- journal_mode: persist
-- client: apsw
-- seed: 30045
-- note: not a pgfs defect: SQLite 3.40 (pgfs verify's integrity_check) formats the REAL in the expression index differently from the SQLite apsw bundles, so it fails on the local file too
-- connection A
PRAGMA journal_mode=persist;
-- connection B
PRAGMA journal_mode=persist;
-- steps
-- connection A
CREATE TABLE "t1"("id" INTEGER PRIMARY KEY AUTOINCREMENT, "c1" REAL);
ALTER TABLE "t1" ADD COLUMN "c10" DATETIME DEFAULT 1e+300;
ALTER TABLE "t1" ADD COLUMN "c6" TEXT;
CREATE INDEX "i1" ON "t1"(lower("c1"));
INSERT OR REPLACE INTO "t1"("c1", "c6", "c10") VALUES (zeroblob(5000), printf('%0*d', 5000, 864), -9223372036854775808), (9007199254740993, 969, 4611686018427387904);
