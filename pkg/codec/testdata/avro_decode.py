"""Decode omnisync wire-format records with Apache Avro's reference
implementation, fetching each writer schema from the registry by its ID.

stdin: JSON list of hex-encoded records; argv[1]: registry base URL.
stdout: JSON list of the decoded records (timestamps as epoch millis,
dates as ISO strings, bytes as hex).
"""
import datetime
import io
import json
import struct
import sys
import urllib.request

import avro.io
import avro.schema


def schema_by_id(url, cache, schema_id):
    if schema_id not in cache:
        with urllib.request.urlopen(f"{url}/schemas/ids/{schema_id}") as resp:
            cache[schema_id] = avro.schema.parse(json.load(resp)["schema"])
    return cache[schema_id]


def plain(v):
    if isinstance(v, datetime.datetime):
        return int(v.timestamp() * 1000)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def main():
    url = sys.argv[1]
    cache = {}
    out = []
    for record in json.load(sys.stdin):
        raw = bytes.fromhex(record)
        magic, schema_id = struct.unpack(">bI", raw[:5])
        if magic != 0:
            raise SystemExit(f"bad magic byte {magic}")
        schema = schema_by_id(url, cache, schema_id)
        body = io.BytesIO(raw[5:])
        value = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(body))
        if body.tell() != len(raw) - 5:
            raise SystemExit(f"{len(raw) - 5 - body.tell()} bytes left after the record")
        out.append({"schema_id": schema_id, "schema_name": schema.fullname, "value": plain(value)})
    json.dump(out, sys.stdout, ensure_ascii=False)


main()
