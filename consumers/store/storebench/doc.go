// Package storebench holds the store benchmarks (make bench): batches of
// folded events applied to SQLite and PostgreSQL beside plain pgx upserts
// of the same rows, and the replay of a million events into an empty
// store. It has no code of its own; see bench_test.go.
package storebench
