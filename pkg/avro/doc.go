// Package avro adds to goavro what omnisync needs and goavro lacks: a parsed
// model of a schema, Avro's reader/writer schema resolution, and the mapping
// between goavro's native values and Go structs.
//
// Resolution follows the Avro specification ("Schema Resolution"): fields are
// matched by name (or reader alias), missing reader fields take their
// defaults, extra writer fields are skipped, numbers are promoted
// (int→long→float→double), string and bytes interchange, and enum symbols the
// reader lacks fall back to the reader's enum default. Compile builds the
// resolution once for a pair of schemas and fails, naming the path, when the
// reader cannot read what the writer writes; that same check is the
// registry's compatibility test, so what the registry accepts the decoder can
// read.
//
// Go structs map onto records by the `avro:"name"` tag. A union of null and
// one other type maps to a pointer, or to a nil-able slice or map; enums map
// to string types; timestamp-millis and date map to time.Time. Package codec
// converts omnisync's records (package events) with code generated to these
// same rules (internal/avrogen), which is several times faster; this
// reflective mapping serves other Go types and the tests that check the
// generated code against it.
package avro
