"""A Jellyfin library of a given size, and the statements Jellyfin runs on it.

Built from the real schema (`../shared/jellyfin/schema-10.11.sql`) with the
shapes `../shared/jellyfin/NOTES.md` describes: movies with provider ids, an
image, genres (ItemValues + ItemValuesMap), ancestors, 1-6 media streams, 0-12
chapters and a `BaseItems.Data` JSON of 0.1-5 KB; upper-case GUID keys, dates
as `yyyy-MM-dd HH:mm:ss.FFFFFFF`. About 9.3 KB of database per movie: 10,000
movies make the 93 MB library the scale issue measured.

- `build_library(path, schema, megabytes=...)`: the file (WAL, checkpointed);
- `add_movie(conn, rng, ...)`: one movie's rows, in the caller's transaction
  (a library scan adds each item in a transaction of its own);
- `BROWSE_COUNT`, `BROWSE_PAGE`: the home screen's browse query (a count, then
  one page of a genre filter ordered by SortName);
- `play(conn, rng, ...)`: a playback progress upsert (a single-row commit).
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

MOVIE = "MediaBrowser.Controller.Entities.Movies.Movie"
FOLDER = "MediaBrowser.Controller.Entities.CollectionFolder"
GENRES = [
    "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama",
    "Family", "Fantasy", "History", "Horror", "Music", "Mystery", "Romance",
    "Science Fiction", "Thriller", "War", "Western",
]  # fmt: skip
WORDS = [
    "the",
    "of",
    "and",
    "night",
    "day",
    "city",
    "last",
    "first",
    "man",
    "woman",
    "river",
    "house",
    "story",
    "secret",
    "world",
    "dark",
    "light",
    "return",
    "rise",
    "fall",
    "king",
    "queen",
    "war",
    "love",
    "time",
    "lost",
    "found",
    "road",
    "home",
    "sea",
    "star",
    "dream",
    "fire",
    "ice",
    "stone",
    "glass",
    "iron",
    "silver",
    "golden",
    "shadow",
    "garden",
    "winter",
    "summer",
]
BYTES_PER_MOVIE = 7_750
"""About what one movie adds to the database (measured on the 10.11 schema)."""

BROWSE_COUNT = (
    'SELECT count(*) FROM "BaseItems" AS b WHERE b."Type" = ? AND b."IsVirtualItem" = 0'
    ' AND EXISTS (SELECT 1 FROM "ItemValuesMap" AS m JOIN "ItemValues" AS v'
    ' ON v."ItemValueId" = m."ItemValueId" WHERE m."ItemId" = b."Id" AND v."Type" = 2'
    ' AND v."CleanValue" = ?)'
    ' AND EXISTS (SELECT 1 FROM "AncestorIds" AS a WHERE a."ItemId" = b."Id"'
    ' AND a."ParentItemId" = ?)'
)
BROWSE_PAGE = (
    'SELECT b.*, u."PlaybackPositionTicks", u."Played", i."Path" AS "ImagePath"'
    ' FROM "BaseItems" AS b'
    ' LEFT JOIN "UserData" AS u ON u."ItemId" = b."Id" AND u."UserId" = ?'
    ' LEFT JOIN "BaseItemImageInfos" AS i ON i."ItemId" = b."Id" AND i."ImageType" = 0'
    ' WHERE b."Type" = ? AND b."IsVirtualItem" = 0'
    ' AND EXISTS (SELECT 1 FROM "ItemValuesMap" AS m JOIN "ItemValues" AS v'
    ' ON v."ItemValueId" = m."ItemValueId" WHERE m."ItemId" = b."Id" AND v."Type" = 2'
    ' AND v."CleanValue" = ?)'
    ' AND EXISTS (SELECT 1 FROM "AncestorIds" AS a WHERE a."ItemId" = b."Id"'
    ' AND a."ParentItemId" = ?)'
    ' ORDER BY b."SortName" LIMIT 100 OFFSET ?'
)


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128))).upper()


def jellyfin_date(rng: random.Random) -> str:
    moment = datetime(2015, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(300_000_000))
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{rng.randrange(10**7):07d}"


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@dataclass(frozen=True)
class Library:
    """The fixed rows every movie refers to: the library folder, the genres, a user."""

    folder_id: str
    user_id: str
    genre_ids: dict[str, str]

    @classmethod
    def create(cls, conn: sqlite3.Connection, rng: random.Random) -> Library:
        folder_id, user_id = guid(rng), guid(rng)
        conn.execute(
            'INSERT INTO "BaseItems" ("Id", "Type", "Name", "SortName", "IsFolder",'
            ' "IsInMixedFolder", "IsLocked", "IsMovie", "IsRepeat", "IsSeries",'
            " \"IsVirtualItem\", \"DateCreated\") VALUES (?, ?, 'Movies', 'movies', 1, 0, 0, 0,"
            " 0, 0, 0, ?)",
            (folder_id, FOLDER, jellyfin_date(rng)),
        )
        genre_ids = {}
        for genre in GENRES:
            genre_ids[genre] = guid(rng)
            conn.execute(
                'INSERT INTO "ItemValues" ("ItemValueId", "Type", "Value", "CleanValue")'
                " VALUES (?, 2, ?, ?)",
                (genre_ids[genre], genre, genre.lower()),
            )
        return cls(folder_id, user_id, genre_ids)

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> Library:
        folder_id = conn.execute(
            'SELECT "Id" FROM "BaseItems" WHERE "Type" = ?', (FOLDER,)
        ).fetchone()[0]
        user = conn.execute('SELECT "UserId" FROM "UserData" LIMIT 1').fetchone()
        genres = dict(conn.execute('SELECT "Value", "ItemValueId" FROM "ItemValues"'))
        return cls(folder_id, user[0] if user else "NO-USER", genres)


def movie_json(rng: random.Random, item_id: str, size: int) -> str:
    """A BaseItems.Data value: the item serialised as JSON."""
    data = {
        "Id": item_id,
        "Overview": words(rng, max(3, size // 7)),
        "ProviderIds": {"Tmdb": str(rng.randrange(10**6)), "Imdb": f"tt{rng.randrange(10**7)}"},
        "Studios": [words(rng, 2).title()],
        "Taglines": [words(rng, 5)],
    }
    return json.dumps(data, separators=(",", ":"))[: max(100, size)]


def add_movie(conn: sqlite3.Connection, rng: random.Random, library: Library) -> str:
    """One movie's rows (the statements of one library-scan item); returns its Id."""
    item = guid(rng)
    name = words(rng, rng.randrange(1, 5)).title()
    genres = rng.sample(GENRES, rng.randrange(1, 4))
    conn.execute(
        'INSERT INTO "BaseItems" ("Id", "Type", "Name", "SortName", "Path", "Data",'
        ' "DateCreated", "DateModified", "ProductionYear", "CommunityRating", "OfficialRating",'
        ' "Genres", "ParentId", "TopParentId", "PresentationUniqueKey", "MediaType",'
        ' "RunTimeTicks", "IsFolder", "IsInMixedFolder", "IsLocked", "IsMovie", "IsRepeat",'
        ' "IsSeries", "IsVirtualItem") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,'
        " 'Video', ?, 0, 0, 0, 1, 0, 0, 0)",
        (
            item,
            MOVIE,
            name,
            name.lower(),
            f"/media/movies/{name.replace(' ', '_')}/{item[:8]}.mkv",
            movie_json(rng, item, rng.randrange(100, 5000)),
            jellyfin_date(rng),
            jellyfin_date(rng),
            rng.randrange(1920, 2025),
            round(rng.uniform(1, 10), 1),
            rng.choice(["G", "PG", "PG-13", "R"]),
            "|".join(genres),
            library.folder_id,
            library.folder_id,
            item.lower().replace("-", ""),
            rng.randrange(10**10, 10**11),
        ),
    )
    providers = (("Tmdb", str(rng.randrange(10**6))), ("Imdb", f"tt{rng.randrange(10**7)}"))
    for provider, value in providers:
        conn.execute(
            'INSERT INTO "BaseItemProviders" ("ItemId", "ProviderId", "ProviderValue")'
            " VALUES (?, ?, ?)",
            (item, provider, value),
        )
    conn.execute(
        'INSERT INTO "BaseItemImageInfos" ("Id", "Blurhash", "DateModified", "Height",'
        ' "ImageType", "ItemId", "Path", "Width") VALUES (?, ?, ?, 1500, 0, ?, ?, 1000)',
        (guid(rng), rng.randbytes(28), jellyfin_date(rng), item, f"/config/metadata/{item}.jpg"),
    )
    for genre in genres:
        conn.execute(
            'INSERT INTO "ItemValuesMap" ("ItemId", "ItemValueId") VALUES (?, ?)',
            (item, library.genre_ids[genre]),
        )
    conn.execute(
        'INSERT INTO "AncestorIds" ("ItemId", "ParentItemId") VALUES (?, ?)',
        (item, library.folder_id),
    )
    for index in range(rng.randrange(1, 7)):
        conn.execute(
            'INSERT INTO "MediaStreamInfos" ("ItemId", "StreamIndex", "Codec", "Language",'
            ' "IsDefault", "IsExternal", "IsForced", "StreamType", "BitRate", "Channels")'
            " VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
            (
                item,
                index,
                rng.choice(["h264", "hevc", "aac", "ac3", "subrip"]),
                rng.choice(["eng", "fre", "ger", "spa"]),
                int(index == 0),
                min(index, 2),
                rng.randrange(10**5, 10**7),
                rng.choice([2, 6, None]),
            ),
        )
    for chapter in range(rng.randrange(0, 13)):
        conn.execute(
            'INSERT INTO "Chapters" ("ItemId", "ChapterIndex", "StartPositionTicks", "Name")'
            " VALUES (?, ?, ?, ?)",
            (item, chapter, chapter * 3_000_000_000, f"Chapter {chapter + 1}"),
        )
    return item


def play(conn: sqlite3.Connection, rng: random.Random, library: Library, item: str) -> None:
    """A playback progress update: one UserData row upserted (a single-row commit)."""
    conn.execute(
        'INSERT INTO "UserData" ("ItemId", "UserId", "CustomDataKey", "IsFavorite",'
        ' "PlayCount", "PlaybackPositionTicks", "Played", "LastPlayedDate")'
        ' VALUES (?, ?, ?, 0, 1, ?, 0, ?) ON CONFLICT ("ItemId", "UserId", "CustomDataKey")'
        " DO UPDATE SET"
        ' "PlaybackPositionTicks" = excluded."PlaybackPositionTicks",'
        ' "LastPlayedDate" = excluded."LastPlayedDate"',
        (item, library.user_id, item.lower(), rng.randrange(10**10), jellyfin_date(rng)),
    )


def build_library(
    path: Path, schema: Path, *, megabytes: float = 10, seed: int = 1, batch: int = 500
) -> Path:
    """A Jellyfin 10.11 database of about `megabytes` MB (WAL, checkpointed)."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(schema.read_text())
    conn.execute("BEGIN")
    library = Library.create(conn, rng)
    movies = max(1, int(megabytes * 1_000_000 / BYTES_PER_MOVIE))
    items = []
    for number in range(movies):
        items.append(add_movie(conn, rng, library))
        if number % 3 == 0:
            play(conn, rng, library, items[-1])
        if number % batch == batch - 1:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path
