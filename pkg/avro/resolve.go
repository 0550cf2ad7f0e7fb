package avro

import (
	"fmt"
	"strings"
	"time"
)

// Resolver converts values decoded with a writer's schema into values of a
// reader's schema. It is safe for concurrent use.
type Resolver struct {
	convert convertFn
}

type convertFn func(any) (any, error)

// IncompatibleError says why a reader schema cannot read a writer schema.
type IncompatibleError struct {
	Path   string // where in the reader schema, e.g. CustomerEvent.profile.phone
	Reason string
}

func (e *IncompatibleError) Error() string {
	if e.Path == "" {
		return "incompatible schemas: " + e.Reason
	}
	return "incompatible schemas at " + e.Path + ": " + e.Reason
}

// Compile builds the resolution of writer data into reader data, or returns
// an *IncompatibleError when some value the writer can write cannot be read.
func Compile(writer, reader *Schema) (*Resolver, error) {
	c := compiler{memo: map[[2]*Schema]*convertFn{}}
	fn, err := c.compile(writer, reader, "")
	if err != nil {
		return nil, err
	}
	return &Resolver{convert: fn}, nil
}

// Resolve converts a goavro native value of the writer's schema into one of
// the reader's schema.
func (r *Resolver) Resolve(native any) (any, error) { return r.convert(native) }

// CanRead reports whether data written with the writer schema text can be
// read with the reader schema text, as an *IncompatibleError when not.
func CanRead(reader, writer string) error {
	r, err := Parse(reader)
	if err != nil {
		return fmt.Errorf("reader schema: %w", err)
	}
	w, err := Parse(writer)
	if err != nil {
		return fmt.Errorf("writer schema: %w", err)
	}
	_, err = Compile(w, r)
	return err
}

type compiler struct {
	// memo breaks cycles in recursive named types: a pair being compiled
	// resolves to a function that calls the finished one.
	memo map[[2]*Schema]*convertFn
}

func incompatible(path, format string, args ...any) error {
	return &IncompatibleError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func shortName(full string) string { return full[strings.LastIndex(full, ".")+1:] }

// namesMatch follows the specification: the unqualified names agree, or the
// reader lists the writer's name as an alias.
func namesMatch(w, r *Schema) bool {
	if shortName(w.Name) == shortName(r.Name) {
		return true
	}
	for _, a := range r.Aliases {
		if a == w.Name || shortName(a) == shortName(w.Name) {
			return true
		}
	}
	return false
}

func (c *compiler) compile(w, r *Schema, path string) (convertFn, error) {
	key := [2]*Schema{w, r}
	if p, ok := c.memo[key]; ok {
		return func(v any) (any, error) { return (*p)(v) }, nil
	}
	if sameShape(w, r, map[[2]*Schema]bool{}) {
		// Writer values already are reader values: no copy.
		return identity, nil
	}
	var slot convertFn
	c.memo[key] = &slot
	fn, err := c.compileNew(w, r, path)
	if err != nil {
		delete(c.memo, key)
		return nil, err
	}
	slot = fn
	return fn, nil
}

func identity(v any) (any, error) { return v, nil }

// sameShape reports whether every native value of writer type w already is
// the native value of reader type r that resolution would make: the same
// types, names, field names and union branches, and enum symbols the reader
// has. Then resolution passes values through instead of rebuilding them,
// which matters when only a few fields changed between versions. seen
// holds the pairs being compared, assumed alike, so recursive types end.
func sameShape(w, r *Schema, seen map[[2]*Schema]bool) bool {
	key := [2]*Schema{w, r}
	if seen[key] {
		return true
	}
	seen[key] = true
	if w.Kind != r.Kind {
		return false
	}
	switch w.Kind {
	case Null, Boolean, Bytes, String:
		return true
	case Int, Long, Float, Double:
		return w.isTime() == r.isTime() // as compileNew: identity for either time unit
	case Fixed:
		return namesMatch(w, r) && w.Size == r.Size
	case Enum:
		if !namesMatch(w, r) {
			return false
		}
		for _, sym := range w.Symbols {
			if !contains(r.Symbols, sym) {
				return false
			}
		}
		return true
	case Array:
		return sameShape(w.Items, r.Items, seen)
	case Map:
		return sameShape(w.Values, r.Values, seen)
	case Record:
		if !namesMatch(w, r) || len(w.Fields) != len(r.Fields) {
			return false
		}
		for _, rf := range r.Fields {
			wf := w.Field(rf.Name)
			if wf == nil || !sameShape(wf.Type, rf.Type, seen) {
				return false
			}
		}
		return true
	case Union:
		// Branch by branch, and with no two reader branches of one kind, so
		// that resolution would pick the same branch.
		if len(w.Branches) != len(r.Branches) {
			return false
		}
		kinds := map[Kind]bool{}
		for i, rb := range r.Branches {
			wb := w.Branches[i]
			if kinds[rb.Kind] || wb.UnionName() != rb.UnionName() || !sameShape(wb, rb, seen) {
				return false
			}
			kinds[rb.Kind] = true
		}
		return true
	}
	return false
}

func (c *compiler) compileNew(w, r *Schema, path string) (convertFn, error) {
	if w.Kind == Union {
		return c.compileWriterUnion(w, r, path)
	}
	if r.Kind == Union {
		// The first reader branch of the writer's type wins; failing that,
		// the first one the writer's type promotes to.
		for _, exact := range []bool{true, false} {
			for _, b := range r.Branches {
				if (b.Kind == w.Kind) != exact || (!exact && !promotable(w, b)) {
					continue
				}
				fn, err := c.compile(w, b, path)
				if err != nil {
					continue
				}
				if b.Kind == Null {
					return fn, nil
				}
				name := b.UnionName()
				return func(v any) (any, error) {
					out, err := fn(v)
					if err != nil {
						return nil, err
					}
					return map[string]any{name: out}, nil
				}, nil
			}
		}
		return nil, incompatible(path, "reader union %s has no branch for writer type %s", unionNames(r), typeName(w))
	}

	switch {
	case w.Kind == r.Kind && w.Kind <= Double && w.Kind >= Int:
		if (w.isTime() && r.isTime() && w.Kind == r.Kind) || (!w.isTime() && !r.isTime()) {
			return identity, nil // goavro encodes time.Time for either unit
		}
		return func(v any) (any, error) { return convertNumber(v, w, r) }, nil
	case w.Kind == r.Kind && w.Kind <= String:
		return identity, nil
	case promotable(w, r):
		switch r.Kind {
		case String:
			return func(v any) (any, error) { return string(v.([]byte)), nil }, nil
		case Bytes:
			return func(v any) (any, error) { return []byte(v.(string)), nil }, nil
		}
		return func(v any) (any, error) { return convertNumber(v, w, r) }, nil
	case w.Kind != r.Kind:
		return nil, incompatible(path, "writer type %s cannot be read as %s", typeName(w), typeName(r))
	}

	switch r.Kind {
	case Array:
		items, err := c.compile(w.Items, r.Items, path+"[]")
		if err != nil {
			return nil, err
		}
		return func(v any) (any, error) {
			in := v.([]any)
			out := make([]any, len(in))
			for i, x := range in {
				y, err := items(x)
				if err != nil {
					return nil, err
				}
				out[i] = y
			}
			return out, nil
		}, nil
	case Map:
		values, err := c.compile(w.Values, r.Values, path+"{}")
		if err != nil {
			return nil, err
		}
		return func(v any) (any, error) {
			in := v.(map[string]any)
			out := make(map[string]any, len(in))
			for k, x := range in {
				y, err := values(x)
				if err != nil {
					return nil, err
				}
				out[k] = y
			}
			return out, nil
		}, nil
	case Fixed:
		if !namesMatch(w, r) || w.Size != r.Size {
			return nil, incompatible(path, "fixed %s(%d) cannot be read as fixed %s(%d)", w.Name, w.Size, r.Name, r.Size)
		}
		return identity, nil
	case Enum:
		return compileEnum(w, r, path)
	case Record:
		return c.compileRecord(w, r, path)
	}
	return nil, incompatible(path, "unsupported type %s", r.Kind)
}

func compileEnum(w, r *Schema, path string) (convertFn, error) {
	if !namesMatch(w, r) {
		return nil, incompatible(path, "enum %s cannot be read as enum %s", w.Name, r.Name)
	}
	mapped := make(map[string]string, len(w.Symbols))
	for _, s := range w.Symbols {
		switch {
		case contains(r.Symbols, s):
			mapped[s] = s
		case r.Default != nil:
			mapped[s] = *r.Default
		default:
			return nil, incompatible(path, "enum %s: writer symbol %s is unknown to the reader, which has no default", r.Name, s)
		}
	}
	return func(v any) (any, error) {
		out, ok := mapped[v.(string)]
		if !ok {
			return nil, fmt.Errorf("enum %s: symbol %v not in writer schema", r.Name, v)
		}
		return out, nil
	}, nil
}

func (c *compiler) compileRecord(w, r *Schema, path string) (convertFn, error) {
	if !namesMatch(w, r) {
		return nil, incompatible(path, "record %s cannot be read as record %s", w.Name, r.Name)
	}
	if path == "" {
		path = shortName(r.Name)
	}
	type fieldPlan struct {
		name, from string
		convert    convertFn
		def        any
	}
	plans := make([]fieldPlan, 0, len(r.Fields))
	for _, rf := range r.Fields {
		wf := w.Field(rf.Name)
		for _, a := range rf.Aliases {
			if wf == nil {
				wf = w.Field(a)
			}
		}
		fpath := join(path, rf.Name)
		if wf == nil {
			if !rf.HasDefault {
				return nil, incompatible(fpath, "reader field %s is missing from the writer and has no default", rf.Name)
			}
			plans = append(plans, fieldPlan{name: rf.Name, def: rf.Default})
			continue
		}
		fn, err := c.compile(wf.Type, rf.Type, fpath)
		if err != nil {
			return nil, err
		}
		plans = append(plans, fieldPlan{name: rf.Name, from: wf.Name, convert: fn})
	}
	return func(v any) (any, error) {
		in := v.(map[string]any)
		out := make(map[string]any, len(plans))
		for _, p := range plans {
			if p.convert == nil {
				out[p.name] = copyNative(p.def)
				continue
			}
			y, err := p.convert(in[p.from])
			if err != nil {
				return nil, err
			}
			out[p.name] = y
		}
		return out, nil
	}, nil
}

func (c *compiler) compileWriterUnion(w, r *Schema, path string) (convertFn, error) {
	branches := make(map[string]convertFn, len(w.Branches))
	var null convertFn
	for _, b := range w.Branches {
		fn, err := c.compile(b, r, path)
		if err != nil {
			return nil, err
		}
		if b.Kind == Null {
			null = fn
			continue
		}
		branches[b.UnionName()] = fn
	}
	return func(v any) (any, error) {
		if v == nil {
			return null(nil)
		}
		for name, x := range v.(map[string]any) {
			fn, ok := branches[name]
			if !ok {
				return nil, fmt.Errorf("union value of type %s not in writer schema", name)
			}
			return fn(x)
		}
		return nil, fmt.Errorf("empty union value")
	}, nil
}

// promotable reports the writer-to-reader promotions of the specification.
func promotable(w, r *Schema) bool {
	switch w.Kind {
	case Int:
		return r.Kind == Long || r.Kind == Float || r.Kind == Double
	case Long:
		return r.Kind == Float || r.Kind == Double
	case Float:
		return r.Kind == Double
	case String:
		return r.Kind == Bytes
	case Bytes:
		return r.Kind == String
	}
	return false
}

// convertNumber converts a native number (or time.Time of a logical type) of
// writer type w into the native form of reader type r.
func convertNumber(v any, w, r *Schema) (any, error) {
	var i int64
	var f float64
	isFloat := false
	switch x := v.(type) {
	case int32:
		i = int64(x)
	case int64:
		i = x
	case int:
		i = int64(x)
	case float32:
		f, isFloat = float64(x), true
	case float64:
		f, isFloat = x, true
	case time.Time:
		switch w.Logical {
		case "timestamp-micros":
			i = x.UnixMicro()
		case "date":
			i = int64(x.Unix() / 86400)
		default:
			i = x.UnixMilli()
		}
	default:
		return nil, fmt.Errorf("cannot convert %T to %s", v, r.Kind)
	}
	switch r.Kind {
	case Float:
		if isFloat {
			return float32(f), nil
		}
		return float32(i), nil
	case Double:
		if isFloat {
			return f, nil
		}
		return float64(i), nil
	case Int:
		if r.Logical == "date" {
			return time.Unix(i*86400, 0).UTC(), nil
		}
		return int32(i), nil
	case Long:
		switch r.Logical {
		case "timestamp-millis":
			return time.UnixMilli(i).UTC(), nil
		case "timestamp-micros":
			return time.UnixMicro(i).UTC(), nil
		}
		return i, nil
	}
	return nil, fmt.Errorf("cannot convert number to %s", r.Kind)
}

// copyNative copies a default so callers cannot alias the schema's value.
func copyNative(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, y := range x {
			out[i] = copyNative(y)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, y := range x {
			out[k] = copyNative(y)
		}
		return out
	case []byte:
		return append([]byte(nil), x...)
	}
	return v
}

func typeName(s *Schema) string {
	switch s.Kind {
	case Record, Enum, Fixed:
		return s.Kind.String() + " " + s.Name
	case Union:
		return "union " + unionNames(s)
	}
	return s.UnionName()
}

func unionNames(s *Schema) string {
	names := make([]string, len(s.Branches))
	for i, b := range s.Branches {
		names[i] = b.UnionName()
	}
	return "[" + strings.Join(names, ", ") + "]"
}
