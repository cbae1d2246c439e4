"""Decodes one Avro single-object-encoded snapshot with fastavro, a third-party decoder,
checking the header's schema fingerprint, and prints the record as JSON.

usage: avro_decode.py SCHEMA.avsc MESSAGE.bin
"""
import io
import json
import sys

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

schema_path, message_path = sys.argv[1], sys.argv[2]
with open(schema_path) as f:
    schema = parse_schema(json.load(f))
data = open(message_path, "rb").read()

if data[:2] != b"\xc3\x01":
    sys.exit(f"not Avro single-object encoding: header {data[:2].hex()}")
# The header carries the schema's CRC-64-AVRO (Rabin) fingerprint, little-endian.
expected = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
if data[2:10] != expected:
    sys.exit(f"fingerprint {data[2:10].hex()} is not the schema's {expected.hex()}")
record = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema)
print(json.dumps(record, default=str))
