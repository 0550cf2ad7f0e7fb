package avro

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
)

// ToNative converts a Go value to the goavro native value of schema s.
// Records map from structs by their `avro` tags; a schema field the struct
// lacks takes its default.
func ToNative(s *Schema, v any) (any, error) {
	return wrapRoot(toNative(s, reflect.ValueOf(v)))
}

// FromNative stores a goavro native value of schema s into the Go value
// out points to. Schema fields the Go type lacks are ignored.
func FromNative(s *Schema, native any, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("avro: FromNative needs a non-nil pointer, got %T", out)
	}
	_, err := wrapRoot(nil, fromNative(s, native, rv.Elem()))
	return err
}

var fieldIndexes sync.Map // reflect.Type → map[string]int

func structFields(t reflect.Type) map[string]int {
	if m, ok := fieldIndexes.Load(t); ok {
		return m.(map[string]int)
	}
	m := map[string]int{}
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("avro")
		if name, _, _ := strings.Cut(tag, ","); name != "" && name != "-" {
			m[name] = i
		}
	}
	fieldIndexes.Store(t, m)
	return m
}

var timeType = reflect.TypeFor[time.Time]()

// nullable returns the non-null branch of a [null, T] union, or an error
// for unions Go types cannot express.
func nullable(s *Schema) (*Schema, error) {
	var other *Schema
	hasNull := false
	for _, b := range s.Branches {
		if b.Kind == Null {
			hasNull = true
		} else if other == nil {
			other = b
		} else {
			return nil, fmt.Errorf("union %s has more than one non-null branch; Go mapping supports [null, T] only", unionNames(s))
		}
	}
	if !hasNull || other == nil {
		return nil, fmt.Errorf("union %s must be [null, T] for Go mapping", unionNames(s))
	}
	return other, nil
}

func toNative(s *Schema, rv reflect.Value) (any, error) {
	if s.Kind == Union {
		inner, err := nullable(s)
		if err != nil {
			return nil, err
		}
		switch rv.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			if rv.IsNil() {
				return nil, nil
			}
		case reflect.Invalid:
			return nil, nil
		}
		if rv.Kind() == reflect.Pointer {
			rv = rv.Elem()
		}
		v, err := toNative(inner, rv)
		if err != nil {
			return nil, err
		}
		return map[string]any{inner.UnionName(): v}, nil
	}
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return nil, fmt.Errorf("nil value for non-null type %s", typeName(s))
		}
		rv = rv.Elem()
	}
	switch s.Kind {
	case Null:
		return nil, nil
	case Boolean:
		if rv.Kind() == reflect.Bool {
			return rv.Bool(), nil
		}
	case Int, Long:
		if rv.Type() == timeType && s.isTime() {
			return rv.Interface(), nil
		}
		var i int64
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			i = rv.Int()
		case reflect.Uint8, reflect.Uint16, reflect.Uint32:
			i = int64(rv.Uint())
		default:
			return nil, mismatch(s, rv)
		}
		if s.Kind == Int {
			if int64(int32(i)) != i {
				return nil, fmt.Errorf("%d overflows int", i)
			}
			return int32(i), nil
		}
		return i, nil
	case Float, Double:
		if rv.Kind() == reflect.Float32 || rv.Kind() == reflect.Float64 {
			if s.Kind == Float {
				return float32(rv.Float()), nil
			}
			return rv.Float(), nil
		}
	case String:
		if rv.Kind() == reflect.String {
			return rv.String(), nil
		}
	case Bytes, Fixed:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			return rv.Bytes(), nil
		}
	case Enum:
		if rv.Kind() == reflect.String {
			sym := rv.String()
			if sym == "" && s.Default != nil {
				return *s.Default, nil
			}
			if !contains(s.Symbols, sym) {
				return nil, fmt.Errorf("%q is not a symbol of enum %s", sym, s.Name)
			}
			return sym, nil
		}
	case Array:
		if rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
			out := make([]any, rv.Len())
			for i := range out {
				v, err := toNative(s.Items, rv.Index(i))
				if err != nil {
					return nil, at(fmt.Sprintf("[%d]", i), err)
				}
				out[i] = v
			}
			return out, nil
		}
	case Map:
		if rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String {
			out := make(map[string]any, rv.Len())
			for it := rv.MapRange(); it.Next(); {
				v, err := toNative(s.Values, it.Value())
				if err != nil {
					return nil, at("["+it.Key().String()+"]", err)
				}
				out[it.Key().String()] = v
			}
			return out, nil
		}
	case Record:
		if rv.Kind() == reflect.Struct {
			fields := structFields(rv.Type())
			out := make(map[string]any, len(s.Fields))
			for _, f := range s.Fields {
				i, ok := fields[f.Name]
				if !ok {
					if !f.HasDefault {
						return nil, fmt.Errorf("the Go type %s has no field for %s, which has no default", rv.Type(), f.Name)
					}
					out[f.Name] = copyNative(f.Default)
					continue
				}
				v, err := toNative(f.Type, rv.Field(i))
				if err != nil {
					return nil, at("."+f.Name, err)
				}
				out[f.Name] = v
			}
			return out, nil
		}
	}
	return nil, mismatch(s, rv)
}

func mismatch(s *Schema, rv reflect.Value) error {
	return fmt.Errorf("the Go type %s cannot hold %s", rv.Type(), typeName(s))
}

func fromNative(s *Schema, native any, rv reflect.Value) error {
	if s.Kind == Union {
		if native == nil {
			rv.SetZero()
			return nil
		}
		m, ok := native.(map[string]any)
		if !ok || len(m) != 1 {
			return fmt.Errorf("malformed union value %T", native)
		}
		for name, v := range m {
			for _, b := range s.Branches {
				if b.UnionName() != name {
					continue
				}
				if rv.Kind() == reflect.Pointer {
					p := reflect.New(rv.Type().Elem())
					if err := fromNative(b, v, p.Elem()); err != nil {
						return err
					}
					rv.Set(p)
					return nil
				}
				return fromNative(b, v, rv)
			}
			return fmt.Errorf("union has no branch %s", name)
		}
	}
	if rv.Kind() == reflect.Pointer {
		p := reflect.New(rv.Type().Elem())
		if err := fromNative(s, native, p.Elem()); err != nil {
			return err
		}
		rv.Set(p)
		return nil
	}
	bad := func() error {
		return fmt.Errorf("cannot store %T (%s) in Go type %s", native, typeName(s), rv.Type())
	}
	switch x := native.(type) {
	case nil:
		rv.SetZero()
	case bool:
		if rv.Kind() != reflect.Bool {
			return bad()
		}
		rv.SetBool(x)
	case int32, int64:
		i := reflect.ValueOf(x).Int()
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if rv.OverflowInt(i) {
				return fmt.Errorf("%d overflows %s", i, rv.Type())
			}
			rv.SetInt(i)
		default:
			return bad()
		}
	case float32, float64:
		if rv.Kind() != reflect.Float32 && rv.Kind() != reflect.Float64 {
			return bad()
		}
		rv.SetFloat(reflect.ValueOf(x).Float())
	case string:
		if rv.Kind() != reflect.String {
			return bad()
		}
		rv.SetString(x)
	case []byte:
		if rv.Kind() != reflect.Slice || rv.Type().Elem().Kind() != reflect.Uint8 {
			return bad()
		}
		rv.SetBytes(bytes.Clone(x))
	case time.Time:
		if rv.Type() != timeType {
			return bad()
		}
		rv.Set(reflect.ValueOf(x))
	case []any:
		if s.Kind != Array || rv.Kind() != reflect.Slice {
			return bad()
		}
		out := reflect.MakeSlice(rv.Type(), len(x), len(x))
		for i, v := range x {
			if err := fromNative(s.Items, v, out.Index(i)); err != nil {
				return at(fmt.Sprintf("[%d]", i), err)
			}
		}
		rv.Set(out)
	case map[string]any:
		switch {
		case s.Kind == Map && rv.Kind() == reflect.Map:
			out := reflect.MakeMapWithSize(rv.Type(), len(x))
			elem := reflect.New(rv.Type().Elem()).Elem()
			for k, v := range x {
				elem.SetZero()
				if err := fromNative(s.Values, v, elem); err != nil {
					return at("["+k+"]", err)
				}
				out.SetMapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()), elem)
			}
			rv.Set(out)
		case s.Kind == Record && rv.Kind() == reflect.Struct:
			fields := structFields(rv.Type())
			for _, f := range s.Fields {
				i, ok := fields[f.Name]
				if !ok {
					continue
				}
				if err := fromNative(f.Type, x[f.Name], rv.Field(i)); err != nil {
					return at("."+f.Name, err)
				}
			}
		default:
			return bad()
		}
	default:
		return bad()
	}
	return nil
}

// PathError is a mapping error and where in the record it happened.
type PathError struct {
	Path string // e.g. .profile.tags[2]
	Err  error
}

func (e *PathError) Error() string {
	return "avro: " + strings.TrimPrefix(e.Path, ".") + ": " + e.Err.Error()
}

func (e *PathError) Unwrap() error { return e.Err }

// at prefixes the path of err with elem; paths are built only on failure.
func at(elem string, err error) error {
	if pe, ok := err.(*PathError); ok {
		return &PathError{Path: elem + pe.Path, Err: pe.Err}
	}
	return &PathError{Path: elem, Err: err}
}

func wrapRoot(v any, err error) (any, error) {
	if err == nil {
		return v, nil
	}
	if _, ok := err.(*PathError); ok {
		return nil, err
	}
	return nil, fmt.Errorf("avro: %w", err)
}
