"""Drives omnisync's dev schema registry with Confluent's own Python client.

Run by TestConfluentPythonClient. Reads a JSON request on stdin:
  url          the registry's base URL
  topic        the topic whose value subject (<topic>-value) the script uses
  v1, v2, bad  schema texts: v1 is registered already by the Go test, v2 is a
               BACKWARD-compatible evolution of v1, bad an incompatible one
  other        a second subject to register v1 under (to share its ID)
  go_payload   hex of a Confluent-framed Avro record the Go test wrote with v1
and prints one JSON object of what the client saw, for the Go test to check.
"""
import json
import sys

import confluent_kafka
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext


def error_of(fn):
    """Calls fn, which must fail, and returns the registry error it raised."""
    try:
        fn()
    except SchemaRegistryError as e:
        return {"status": e.http_status_code, "code": e.error_code, "message": e.error_message}
    raise AssertionError("expected a SchemaRegistryError")


def main():
    req = json.load(sys.stdin)
    subject = req["topic"] + "-value"
    client = SchemaRegistryClient({"url": req["url"]})
    version = confluent_kafka.version()  # (str, int) in 1.x, str in 2.x
    out = {"client_version": version[0] if isinstance(version, tuple) else version}

    out["registered_id"] = client.register_schema(subject, Schema(req["v1"], "AVRO"))
    fetched = client.get_schema(out["registered_id"])
    out["fetched_schema"] = fetched.schema_str
    out["fetched_type"] = fetched.schema_type

    found = client.lookup_schema(subject, Schema(req["v1"], "AVRO"))
    out["lookup"] = {"id": found.schema_id, "version": found.version, "subject": found.subject}

    out["compatible_v2"] = client.test_compatibility(subject, Schema(req["v2"], "AVRO"))
    out["compatible_bad"] = client.test_compatibility(subject, Schema(req["bad"], "AVRO"))

    out["subject_level_error"] = error_of(lambda: client.get_compatibility(subject))
    client.set_compatibility(subject_name=subject, level="full")
    out["subject_level"] = client.get_compatibility(subject)
    out["global_level"] = client.get_compatibility()

    out["incompatible_error"] = error_of(lambda: client.register_schema(subject, Schema(req["bad"], "AVRO")))
    out["missing_version_error"] = error_of(lambda: client.get_version(subject, 404))
    out["missing_schema_error"] = error_of(lambda: client.get_schema(987654))

    out["other_id"] = client.register_schema(req["other"], Schema(req["v1"], "AVRO"))

    # Serialize with v2: the serializer registers it (auto.register.schemas)
    # and frames the record with its ID, as any Confluent producer would.
    ctx = SerializationContext(req["topic"], MessageField.VALUE)
    serializer = AvroSerializer(schema_registry_client=client, schema_str=req["v2"],
                                conf={"auto.register.schemas": True})
    record = {"id": "c-42", "name": "Zoë", "age": 31}
    out["sent"] = record
    out["python_payload"] = serializer(record, ctx).hex()

    latest = client.get_latest_version(subject)
    out["latest"] = {"id": latest.schema_id, "version": latest.version}

    # Deserialize what Go wrote with v1: the deserializer fetches the
    # writer's schema by the ID in the frame.
    deserializer = AvroDeserializer(schema_registry_client=client)
    out["go_record"] = deserializer(bytes.fromhex(req["go_payload"]), ctx)

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
