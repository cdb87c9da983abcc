"""Generated order records (a few % invalid) and their schema."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

ORDER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id", "customer", "items", "total", "currency", "status", "created_at"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^ord_[0-9a-f]{12}$"},
        "customer": {
            "type": "object",
            "required": ["id", "email"],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "email": {"type": "string", "format": "email"},
                "name": {"type": "string", "maxLength": 80},
            },
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["sku", "qty", "price"],
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "price": {"type": "number", "exclusiveMinimum": 0},
                },
            },
        },
        "total": {"type": "number", "minimum": 0},
        "currency": {"enum": ["EUR", "USD", "GBP", "CHF"]},
        "status": {"enum": ["new", "paid", "shipped", "cancelled"]},
        "created_at": {"type": "string", "format": "date-time"},
        "shipping": {
            "type": "object",
            "properties": {
                "country": {"type": "string", "minLength": 2, "maxLength": 2},
                "zip": {"type": "string"},
                "street": {"type": "string"},
            },
        },
        "note": {"type": ["string", "null"]},
    },
}

NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson")
# One way each invalid record is broken, chosen in turn.
BREAKAGES = ("qty", "email", "missing", "currency", "sku")


def order(rng: random.Random, n: int) -> dict[str, Any]:
    items = [
        {
            "sku": f"{rng.choice(('ABC', 'XYZ', 'QRS'))}-{rng.randrange(10_000):04d}",
            "qty": rng.randrange(1, 20),
            "price": round(rng.uniform(1, 300), 2),
        }
        for _ in range(rng.randrange(1, 5))
    ]
    return {
        "id": f"ord_{n:012x}",
        "customer": {"id": 1 + n % 50_000, "email": f"buyer{n % 50_000}@example.com", "name": rng.choice(NAMES)},
        "items": items,
        "total": round(sum(item["qty"] * item["price"] for item in items), 2),
        "currency": rng.choice(("EUR", "USD", "GBP", "CHF")),
        "status": rng.choice(("new", "paid", "shipped")),
        "created_at": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
        "shipping": {"country": "DE", "zip": f"{10_000 + n % 89_999}", "street": f"Hauptstrasse {1 + n % 200}"},
        "note": None if n % 3 else "leave at the door",
    }


def break_record(record: dict[str, Any], kind: str) -> None:
    if kind == "qty":
        record["items"][0]["qty"] = 0
    elif kind == "email":
        record["customer"]["email"] = "not-an-email"
    elif kind == "missing":
        del record["total"]
    elif kind == "currency":
        record["currency"] = "DOGE"
    else:
        record["items"][-1]["sku"] = "bad sku"


def generate(path: Path, *, records: int, min_bytes: int, invalid_rate: float, seed: int = 4) -> tuple[int, int]:
    """Write at least ``records`` records and ``min_bytes`` bytes of NDJSON to
    ``path``; return (records, invalid records)."""
    rng = random.Random(seed)
    written = invalid = size = 0
    with path.open("wb") as out:
        while written < records or size < min_bytes:
            record = order(rng, written)
            if rng.random() < invalid_rate:
                break_record(record, BREAKAGES[invalid % len(BREAKAGES)])
                invalid += 1
            line = orjson.dumps(record) + b"\n"
            out.write(line)
            size += len(line)
            written += 1
    return written, invalid
