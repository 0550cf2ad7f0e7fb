// Package testenv is the harness every integration test uses to reach real
// services: a Kafka cluster, a PostgreSQL server, and independent clients
// (kcat, Python's avro and confluent-kafka). It picks what is available,
// logs which backend a test ran on, and skips loudly — never silently —
// what the machine cannot provide.
package testenv
