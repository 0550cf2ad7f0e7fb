package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/omnisync/omnisync/pkg/avro"
)

//go:generate go run ../../internal/tools/avrogen -events ../events -schemas ../../schemas -o native_gen.go

// The generated conversions (native_gen.go) between the records of package
// events and goavro's native values call these helpers. Errors name the
// path in the record as package avro's reflective mapping does.

// at prefixes the path of err with elem.
func at(elem string, err error) error {
	if pe, ok := err.(*avro.PathError); ok {
		return &avro.PathError{Path: elem + pe.Path, Err: pe.Err}
	}
	return &avro.PathError{Path: elem, Err: err}
}

func errNotARecord(v any) error {
	return fmt.Errorf("codec: %T is not a record of package events (pass a pointer)", v)
}

func errNilRecord(v any) error { return fmt.Errorf("avro: nil %T", v) }

func errNilValue(avroType string) error {
	return fmt.Errorf("nil value for non-null type %s", avroType)
}

func errOverflow(i int64, avroType string) error { return fmt.Errorf("%d overflows %s", i, avroType) }

func errNotASymbol(sym, enum string) error {
	return fmt.Errorf("%q is not a symbol of enum %s", sym, enum)
}

func errNative(native any, want string) error {
	return fmt.Errorf("cannot store %T as %s", native, want)
}

func nativeRecord(native any, name string) (map[string]any, error) {
	m, ok := native.(map[string]any)
	if !ok {
		return nil, errNative(native, "record "+name)
	}
	return m, nil
}

// nativeUnion returns the value of a non-null union value of branch name.
func nativeUnion(native any, name string) (any, error) {
	m, ok := native.(map[string]any)
	if !ok || len(m) != 1 {
		return nil, fmt.Errorf("malformed union value %T", native)
	}
	v, ok := m[name]
	if !ok {
		for k := range m {
			return nil, fmt.Errorf("union has no branch %s", k)
		}
	}
	return v, nil
}

func nativeBool(native any) (bool, error) {
	b, ok := native.(bool)
	if !ok {
		return false, errNative(native, "boolean")
	}
	return b, nil
}

// nativeInt returns an int or long that fits in bits.
func nativeInt(native any, bits int) (int64, error) {
	var i int64
	switch x := native.(type) {
	case int32:
		i = int64(x)
	case int64:
		i = x
	default:
		return 0, errNative(native, "int or long")
	}
	if bits < 64 && (i < -1<<(bits-1) || i >= 1<<(bits-1)) {
		return 0, fmt.Errorf("%d overflows int%d", i, bits)
	}
	return i, nil
}

func nativeFloat(native any) (float64, error) {
	switch x := native.(type) {
	case float32:
		return float64(x), nil
	case float64:
		return x, nil
	}
	return 0, errNative(native, "float or double")
}

func nativeString(native any) (string, error) {
	s, ok := native.(string)
	if !ok {
		return "", errNative(native, "string")
	}
	return s, nil
}

func nativeBytes(native any) ([]byte, error) {
	b, ok := native.([]byte)
	if !ok {
		return nil, errNative(native, "bytes")
	}
	return b, nil
}

func nativeTime(native any) (time.Time, error) {
	t, ok := native.(time.Time)
	if !ok {
		return time.Time{}, errNative(native, "a time")
	}
	return t, nil
}

func nativeArray(native any) ([]any, error) {
	a, ok := native.([]any)
	if !ok {
		return nil, errNative(native, "array")
	}
	return a, nil
}

func nativeMap(native any) (map[string]any, error) {
	m, ok := native.(map[string]any)
	if !ok {
		return nil, errNative(native, "map")
	}
	return m, nil
}

// scratch lends the maps and slices an encode builds its native value of:
// goavro takes records, maps and union values only as map[string]any, and
// allocating them anew for each record cost more than goavro's encoding
// (BenchmarkEncode). They go back, emptied, when goavro is done.
type scratch struct {
	maps   []map[string]any
	nmaps  int
	arrays [][]any
	narray int
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Collections that held more than this stay out of the pool, so one huge
// record does not pin its memory.
const maxPooled = 256

// record returns an empty map; size is a hint.
func (sc *scratch) record(size int) map[string]any {
	if sc.nmaps < len(sc.maps) {
		sc.nmaps++
		return sc.maps[sc.nmaps-1]
	}
	m := make(map[string]any, size)
	sc.maps = append(sc.maps, m)
	sc.nmaps++
	return m
}

// union returns the native value of a non-null union: {branch: v}.
func (sc *scratch) union(branch string, v any) map[string]any {
	m := sc.record(1)
	m[branch] = v
	return m
}

// array returns a slice of n nil values.
func (sc *scratch) array(n int) []any {
	if sc.narray < len(sc.arrays) && cap(sc.arrays[sc.narray]) >= n {
		sc.narray++
		return sc.arrays[sc.narray-1][:n]
	}
	a := make([]any, n)
	if sc.narray < len(sc.arrays) {
		sc.arrays[sc.narray] = a
	} else {
		sc.arrays = append(sc.arrays, a)
	}
	sc.narray++
	return a
}

// release empties what sc lent and returns it to the pool.
func (sc *scratch) release() {
	maps := sc.maps[:sc.nmaps]
	for i, m := range maps {
		if len(m) > maxPooled {
			maps[i] = nil
		}
		clear(m)
	}
	arrays := sc.arrays[:sc.narray]
	for i, a := range arrays {
		if cap(a) > maxPooled {
			arrays[i] = nil
		}
		clear(a)
	}
	sc.maps = slices.DeleteFunc(sc.maps, func(m map[string]any) bool { return m == nil })
	sc.arrays = slices.DeleteFunc(sc.arrays, func(a []any) bool { return a == nil })
	sc.nmaps, sc.narray = 0, 0
	scratchPool.Put(sc)
}

// The generated binary encoders (appendBinary) append with these, as
// goavro's BinaryFromNative does: zig-zag varints for int and long (an
// int's encoding is its long's), little-endian IEEE 754 floats, and a
// length before strings and bytes.

func appendLong(b []byte, v int64) []byte { return binary.AppendUvarint(b, uint64(v<<1)^uint64(v>>63)) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendFloat(b []byte, v float32) []byte {
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
}

func appendDouble(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func appendString(b []byte, s string) []byte { return append(appendLong(b, int64(len(s))), s...) }

func appendBytes(b []byte, s []byte) []byte { return append(appendLong(b, int64(len(s))), s...) }

func errFixedSize(n, size int) error { return fmt.Errorf("%d bytes for fixed of size %d", n, size) }
