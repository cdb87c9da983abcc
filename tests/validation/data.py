"""Generated order records with invalid ones at known positions."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson


def order(n: int) -> dict[str, Any]:
    return {"id": n, "qty": 1 + n % 7, "email": f"buyer{n}@example.com", "price": round(9.5 + n % 13, 2)}


def orders(count: int, *, invalid_every: int) -> tuple[list[dict[str, Any]], set[int]]:
    """``count`` orders; every ``invalid_every``-th (0-based index) has qty 0."""
    records, invalid = [], set()
    for n in range(count):
        record = order(n)
        if n % invalid_every == invalid_every - 1:
            record["qty"] = 0
            invalid.add(n)
        records.append(record)
    return records, invalid


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def csv_text(records: list[dict[str, Any]], columns: tuple[str, ...] = ("id", "qty", "email", "price")) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([record.get(column, "") for column in columns])
    return out.getvalue().encode()
