"""A SQLite client in its own process, driven by JSON lines on stdin.

Requests: {"sql": ..., "params": [...]} -> {"rows": [...]};
{"digest": table} -> {"digest": hex, "count": n} (every row of the table, in rowid order);
{"sleep": seconds}; {"exit": true} (os._exit: no cleanup, like a crash).
Errors come back as {"error": message}. Bytes travel as {"hex": ...}.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from typing import Any

import apsw


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"hex": bytes(value).hex()}
    return value


def digest_rows(rows: list[tuple]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(
            repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode()
        )
    return digest.hexdigest()


def main() -> None:
    path, kind = sys.argv[1], sys.argv[2]
    if kind == "apsw":
        conn: Any = apsw.Connection(path)
        conn.set_busy_timeout(30000)
    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "exit" in request:
                os._exit(int(request["exit"]))
            if "sleep" in request:
                time.sleep(request["sleep"])
                reply: dict[str, Any] = {"ok": True}
            elif "digest" in request:
                table = request["digest"]
                rows = [tuple(r) for r in conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid')]
                reply = {"digest": digest_rows(rows), "count": len(rows)}
            else:
                rows = conn.execute(request["sql"], request.get("params", []))
                reply = {"rows": [[_jsonable(v) for v in row] for row in rows]}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
