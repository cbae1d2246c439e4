"""Subscribe to hotline's monthly snapshots, as a report service would: with Python's
confluent-kafka and fastavro, and nothing from hotline but its schema files.

    pip install confluent-kafka fastavro
    python3 examples/subscribe.py --brokers 127.0.0.1:9092 --topic hotline.snapshots \
        --schema schemas/snapshot.avsc --schema schemas/snapshot.v4.avsc --schema schemas/snapshot.v3.avsc \
        --schema schemas/snapshot.v2.avsc --schema schemas/snapshot.v1.avsc \
        [--month 2022-04] [--city 222400 | --province]

Reads the topic from the beginning to its end (committed transactions only: hotline writes
snapshots in transactions) and prints the latest revision of each month as one JSON object per
line, in the shape of `hotline snapshot show --format json` (rates taken from the counts, null
where there is nothing to measure: the Avro carries 0 then); with --month, only that month's.
Snapshots are keyed by month, or by a city's division code and the month (222400/2022-04) for
a city other than the deployment's default: --city picks that city's. In province mode the
province's snapshots are keyed province/2022-04, and --province picks them: their `province`
field carries a row per city.

Each message is Avro single-object encoding, hotline's default: C3 01, the writer schema's
CRC-64-AVRO fingerprint (8 bytes, little-endian), then the datum. The first --schema is the
one read into; give every released version (schemas/snapshot.v*.avsc) to read what older
builds wrote. (With `snapshot.schema_registry_url` set, hotline writes the Confluent wire
format instead; read that with the registry's own deserializer.)
"""
import argparse
import datetime
import io
import json
import sys
import uuid

import fastavro
from confluent_kafka import Consumer, KafkaError
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form


def load(path):
    with open(path) as f:
        schema = parse_schema(json.load(f))
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")), schema


def decode(data, writers, reader):
    if data[:2] != b"\xc3\x01":
        raise ValueError(f"not Avro single-object encoding: header {data[:2].hex()}")
    writer = writers.get(data[2:10])
    if writer is None:
        raise ValueError(f"written with a schema not given (fingerprint {data[2:10].hex()})")
    return fastavro.schemaless_reader(io.BytesIO(data[10:]), writer, reader)


def ratio(part, whole):
    return part / whole if whole else None


def with_rates(d):
    """A department's rates, taken from its counts as hotline takes them: null when there is
    nothing to measure (the Avro carries 0 then), and for rates older schemas lack."""
    closed = d["closed_on_time"] + d["closed_late"]
    rated = d["satisfied"] + d["basically_satisfied"] + d["dissatisfied"]
    d["on_time_rate"] = ratio(d["closed_on_time"], closed)
    d["sign_for_rate"] = ratio(d["accepted_on_time"], d["accepted_on_time"] + d["accepted_late"])
    d["return_rate"] = ratio(d["returned"], d["assigned"] + d["returned"])
    d["reopen_rate"] = ratio(d["reopened"], closed)
    d["satisfaction_rate"] = ratio(d["satisfied"] + d["basically_satisfied"], rated)


def rates_from_counts(snapshot):
    def totals(t):
        t["closure_rate"] = ratio(t["closed"], t["received"])

    totals(snapshot["totals"])
    for d in snapshot["by_department"].values():
        with_rates(d)
    with_rates(snapshot["all_departments"])
    for row in (snapshot.get("province") or {}).get("cities", []):
        totals(row["totals"])
        with_rates(row["departments"])
    return snapshot


def rfc3339(value):
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", default="hotline.snapshots")
    parser.add_argument("--schema", action="append", required=True, help="the first is read into")
    parser.add_argument("--month", help="YYYY-MM: print only this month")
    whose = parser.add_mutually_exclusive_group()
    whose.add_argument("--city", help="a division code: that city's snapshots instead of the default city's")
    whose.add_argument("--province", action="store_true", help="the province's snapshots (province mode)")
    args = parser.parse_args()
    prefix = "province" if args.province else args.city or ""

    schemas = [load(path) for path in args.schema]
    reader = schemas[0][1]
    writers = dict(schemas)

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"subscribe-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })
    partitions = consumer.list_topics(args.topic, timeout=30).topics[args.topic].partitions
    if not partitions:
        sys.exit(f"topic {args.topic} does not exist")
    consumer.subscribe([args.topic])
    latest = {}
    at_end = set()
    while len(at_end) < len(partitions):
        message = consumer.poll(30)
        if message is None:
            sys.exit("no message or end of partition in 30 s")
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
                continue
            sys.exit(f"reading {args.topic}: {message.error()}")
        key = message.key().decode() if message.key() else ""
        city, _, month = key.rpartition("/")
        if message.value() is None or (args.month and month != args.month) or city != prefix:
            continue
        snapshot = rates_from_counts(decode(message.value(), writers, reader))
        if month not in latest or snapshot["revision"] > latest[month]["revision"]:
            latest[month] = snapshot
    consumer.close()

    for month in sorted(latest):
        snapshot = {key: rfc3339(value) for key, value in latest[month].items() if key not in ("city", "province") or value}
        print(json.dumps(snapshot, ensure_ascii=False))


if __name__ == "__main__":
    main()
