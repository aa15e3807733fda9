"""The seed's approach, for reference in `make bench-local`: a Kafka consumer that inserts every
message into Cassandra one at a time (kafka-python + cassandra-driver), written here from the
seed's description. Reads registry-framed Avro (fastavro), writes the same columns.

usage: seed_consumer.py BOOTSTRAP TOPIC KEYSPACE TABLE SCHEMA_JSON_FILE COUNT
prints: rows/s
"""
import io
import json
import sys
import time
import uuid
from datetime import datetime, timezone

import fastavro
from cassandra.cluster import Cluster
from kafka import KafkaConsumer


def main():
    bootstrap, topic, keyspace, table, schema_file, count = sys.argv[1:7]
    count = int(count)
    schema = fastavro.parse_schema(json.load(open(schema_file)))
    session = Cluster(["127.0.0.1"], port=9042).connect(keyspace)
    insert = session.prepare(
        f"INSERT INTO {table} (id, first_name, last_name, gender, email, username, phone, address, post_code, "
        "dob, registered_date, picture, \"timestamp\", nationality, produced_at, processed_at, engine) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=f"seed-{uuid.uuid4()}", enable_auto_commit=True)
    done, start = 0, None
    for message in consumer:
        if start is None:
            start = time.monotonic()
        e = fastavro.schemaless_reader(io.BytesIO(message.value[5:]), schema)
        address = ", ".join(p for p in [f"{e.get('street_number') or ''} {e.get('street_name') or ''}".strip(),
                                        e.get("city"), e.get("state"), e.get("country")] if p)
        session.execute(insert, (
            uuid.UUID(str(e["id"])), e["first_name"], e["last_name"], e.get("gender"), e["email"], e["username"],
            e.get("phone"), address, e.get("post_code"), e.get("dob"), e.get("registered_date"), e.get("picture"),
            e["fetched_at"], (e.get("nat") or "").upper(), e["produced_at"], datetime.now(timezone.utc), "python-seed",
        ))
        done += 1
        if done >= count:
            break
    print(f"{done / (time.monotonic() - start):.0f}")


if __name__ == "__main__":
    main()
