// Package devregistry is omnisync's embedded schema registry for dev mode: an
// http.Handler that speaks the Confluent Schema Registry REST API (v1) for
// Avro schemas and keeps its state in a compacted Kafka topic, so schema IDs
// and versions survive restarts and any Confluent client (franz-go's sr,
// confluent-kafka's SchemaRegistryClient and Avro serdes) works against it.
//
// # Persistence
//
// State lives in the topic _schemas (schemas.RegistryTopic; see [Topic]) in
// Confluent Schema Registry's own record format, so either can read a topic
// the other wrote:
//
//	key {"keytype":"SCHEMA","subject":S,"version":V,"magic":1}
//	    value {"subject":S,"version":V,"id":ID,"schema":TEXT,"deleted":false}
//	key {"keytype":"CONFIG","subject":S or null,"magic":0}
//	    value {"compatibilityLevel":"FULL"}
//	key {"keytype":"DELETE_SUBJECT","subject":S,"magic":0}
//	    value {"subject":S,"version":V}  (soft-deletes versions 1..V)
//
// A null value is a tombstone (a hard delete, or a config reset); records of
// other kinds (NOOP, MODE, ...) are skipped. New creates the topic when it is
// missing (one partition, cleanup.policy=compact) and reads it from the start
// to the high watermark to rebuild its state. Every write (register, config,
// delete) is produced synchronously and acknowledged by all in-sync replicas
// before it is applied in memory and answered: a 200 is never given for
// anything not in Kafka, and a failed write answers 500 with error code 50001
// and changes nothing (see [WriteTimeout]).
//
// The next schema ID is one more than the highest ID seen, and an ID is never
// handed out twice while the registry runs, not even one a failed write had
// reserved. As in Confluent's registry, the ID of a hard-deleted schema can
// come back after a restart once compaction has removed all its records.
//
// # Single writer
//
// The registry assumes it is the only writer of its topic: it reads the
// topic once, in New, and afterwards trusts its memory. Run one instance per
// topic; a second instance, or a Confluent registry writing the same topic,
// would not be seen until a restart, and two writers could hand out the same
// ID. That is what dev mode needs; production uses a real registry.
//
// # API and behaviour
//
// Supported: GET /subjects, GET|POST /subjects/{s}/versions,
// GET /subjects/{s}/versions/{v}[/schema], POST /subjects/{s} (lookup),
// DELETE /subjects/{s}[/versions/{v}] (soft, or hard with permanent=true after
// a soft delete), GET /schemas/ids/{id}[/schema|/versions|/subjects],
// GET /schemas/types, GET|PUT|DELETE /config[/{s}] (defaultToGlobal),
// POST /compatibility/subjects/{s}/versions[/{v}] (verbose), GET /mode.
// Errors carry Confluent's HTTP status, error_code and message, e.g.
// {"error_code":40401,"message":"Subject 'x' not found."}.
//
// Only Avro is supported (schemaType absent or AVRO); other types, schema
// references and explicit IDs or versions are rejected. Two schemas are the
// same schema when their JSON is equal up to whitespace, key order and
// {"type":"int"} written as "int"; unlike Avro's Parsing Canonical Form this
// keeps defaults, aliases, docs and logical types, which change what a
// schema means, so adding a default is a new version as in Confluent's
// registry. The same schema registered in two subjects has one global ID.
//
// Compatibility levels are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD,
// FORWARD_TRANSITIVE, FULL and FULL_TRANSITIVE, checked with Avro's
// reader/writer schema resolution (avro.CanRead): BACKWARD means the new
// schema can read data written with the latest live version, FORWARD the
// reverse, FULL both, and the _TRANSITIVE levels check every live version.
// The global default is BACKWARD; omnisync's own subjects (Subject() of each
// of schemas.All) default to FULL, reported as their subject-level config,
// until a config is set for them.
package devregistry
