// Package avrotest generates random values of any Avro schema, for
// round-trip, evolution and benchmark tests.
package avrotest

import (
	"math/rand/v2"
	"time"

	"github.com/omnisync/omnisync/pkg/avro"
)

var words = []string{"", "alice", "王小明", "+8613800138000", "li.na@example.com", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "a\"quote", "emoji 🎧", "x"}

// Random returns a random goavro native value of s. Collections have up to
// three elements; strings come from a small pool with non-ASCII text.
func Random(s *avro.Schema, r *rand.Rand) any {
	switch s.Kind {
	case avro.Null:
		return nil
	case avro.Boolean:
		return r.IntN(2) == 1
	case avro.Int:
		if s.Logical == "date" {
			return time.Unix(int64(r.IntN(40000))*86400, 0).UTC()
		}
		return int32(r.Uint32())
	case avro.Long:
		if s.Logical == "timestamp-millis" {
			return time.UnixMilli(r.Int64N(4e12)).UTC()
		}
		return int64(r.Uint64())
	case avro.Float:
		return r.Float32() * 1000
	case avro.Double:
		return r.Float64() * 1000
	case avro.String:
		return words[r.IntN(len(words))]
	case avro.Bytes:
		b := make([]byte, r.IntN(16))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	case avro.Fixed:
		b := make([]byte, s.Size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	case avro.Enum:
		return s.Symbols[r.IntN(len(s.Symbols))]
	case avro.Array:
		out := make([]any, r.IntN(4))
		for i := range out {
			out[i] = Random(s.Items, r)
		}
		return out
	case avro.Map:
		out := map[string]any{}
		for range r.IntN(4) {
			out[words[r.IntN(len(words))]] = Random(s.Values, r)
		}
		return out
	case avro.Union:
		b := s.Branches[r.IntN(len(s.Branches))]
		if b.Kind == avro.Null {
			return nil
		}
		return map[string]any{b.UnionName(): Random(b, r)}
	case avro.Record:
		out := make(map[string]any, len(s.Fields))
		for _, f := range s.Fields {
			out[f.Name] = Random(f.Type, r)
		}
		return out
	}
	panic("avrotest: unknown kind " + s.Kind.String())
}
