package avro

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Kind is the type of a schema node.
type Kind int

// The Avro types.
const (
	Null Kind = iota
	Boolean
	Int
	Long
	Float
	Double
	Bytes
	String
	Record
	Enum
	Array
	Map
	Union
	Fixed
)

var kindNames = [...]string{"null", "boolean", "int", "long", "float", "double", "bytes", "string", "record", "enum", "array", "map", "union", "fixed"}

func (k Kind) String() string { return kindNames[k] }

// Schema is a parsed Avro schema node. Named types (records, enums, fixed)
// referenced twice are the same *Schema.
type Schema struct {
	Kind    Kind
	Name    string // full name of a named type
	Aliases []string
	Logical string // logicalType, e.g. timestamp-millis, date

	Fields   []*Field  // Record
	Symbols  []string  // Enum
	Default  *string   // Enum: the reader's fallback symbol
	Items    *Schema   // Array
	Values   *Schema   // Map
	Branches []*Schema // Union
	Size     int       // Fixed
}

// Field is a record field.
type Field struct {
	Name       string
	Aliases    []string
	Type       *Schema
	HasDefault bool
	Default    any // the default as a goavro native value
}

// Field returns the record field named name, or nil.
func (s *Schema) Field(name string) *Field {
	for _, f := range s.Fields {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// UnionName is the key goavro uses for a value of this type inside a union:
// the full name of a named type, the type name of a primitive, and
// "<type>.<logicalType>" for the logical types goavro knows.
func (s *Schema) UnionName() string {
	switch s.Kind {
	case Record, Enum, Fixed:
		return s.Name
	}
	if s.Logical != "" && goavroLogical[s.Kind.String()+"."+s.Logical] {
		return s.Kind.String() + "." + s.Logical
	}
	return s.Kind.String()
}

// The logical types goavro converts to and from time.Time.
var goavroLogical = map[string]bool{
	"long.timestamp-millis": true,
	"long.timestamp-micros": true,
	"int.date":              true,
	"int.time-millis":       true,
	"long.time-micros":      true,
}

func (s *Schema) isTime() bool {
	return s.Logical != "" && goavroLogical[s.Kind.String()+"."+s.Logical] &&
		(s.Logical == "timestamp-millis" || s.Logical == "timestamp-micros" || s.Logical == "date")
}

// Parse parses a schema in Avro's JSON form.
func Parse(text string) (*Schema, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("parsing schema JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("parsing schema JSON: trailing data")
	}
	p := parser{named: map[string]*Schema{}}
	return p.parse(v, "")
}

type parser struct {
	named map[string]*Schema
}

var primitives = map[string]Kind{
	"null": Null, "boolean": Boolean, "int": Int, "long": Long, "float": Float,
	"double": Double, "bytes": Bytes, "string": String,
}

func fullName(name, namespace string) string {
	if strings.Contains(name, ".") || namespace == "" {
		return name
	}
	return namespace + "." + name
}

func (p *parser) parse(v any, namespace string) (*Schema, error) {
	switch v := v.(type) {
	case string:
		if k, ok := primitives[v]; ok {
			return &Schema{Kind: k}, nil
		}
		if s, ok := p.named[fullName(v, namespace)]; ok {
			return s, nil
		}
		if s, ok := p.named[v]; ok {
			return s, nil
		}
		return nil, fmt.Errorf("unknown type %q", v)
	case []any:
		u := &Schema{Kind: Union}
		seen := map[string]bool{}
		for i, b := range v {
			s, err := p.parse(b, namespace)
			if err != nil {
				return nil, fmt.Errorf("union branch %d: %w", i, err)
			}
			if s.Kind == Union {
				return nil, fmt.Errorf("union branch %d: unions may not contain unions", i)
			}
			if seen[s.UnionName()] {
				return nil, fmt.Errorf("union branch %d: duplicate type %s", i, s.UnionName())
			}
			seen[s.UnionName()] = true
			u.Branches = append(u.Branches, s)
		}
		return u, nil
	case map[string]any:
		return p.parseObject(v, namespace)
	}
	return nil, fmt.Errorf("invalid schema %v", v)
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func strs(m map[string]any, key string) []string {
	list, _ := m[key].([]any)
	out := make([]string, 0, len(list))
	for _, v := range list {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) parseObject(m map[string]any, namespace string) (*Schema, error) {
	typ, ok := m["type"].(string)
	if !ok {
		// {"type": {...}} or {"type": [...]}: a wrapped schema.
		if inner, ok := m["type"]; ok {
			return p.parse(inner, namespace)
		}
		return nil, fmt.Errorf("schema object without type")
	}
	logical := str(m, "logicalType")
	if k, ok := primitives[typ]; ok {
		return &Schema{Kind: k, Logical: logical}, nil
	}
	switch typ {
	case "array":
		items, err := p.parse(m["items"], namespace)
		if err != nil {
			return nil, fmt.Errorf("array items: %w", err)
		}
		return &Schema{Kind: Array, Items: items}, nil
	case "map":
		values, err := p.parse(m["values"], namespace)
		if err != nil {
			return nil, fmt.Errorf("map values: %w", err)
		}
		return &Schema{Kind: Map, Values: values}, nil
	case "record", "error", "enum", "fixed":
	default:
		return p.parse(typ, namespace)
	}

	name := str(m, "name")
	if name == "" {
		return nil, fmt.Errorf("%s without a name", typ)
	}
	if ns := str(m, "namespace"); ns != "" && !strings.Contains(name, ".") {
		namespace = ns
	}
	full := fullName(name, namespace)
	if i := strings.LastIndex(full, "."); i >= 0 {
		namespace = full[:i]
	}
	if _, dup := p.named[full]; dup {
		return nil, fmt.Errorf("type %s defined twice", full)
	}
	s := &Schema{Name: full, Logical: logical}
	for _, a := range strs(m, "aliases") {
		s.Aliases = append(s.Aliases, fullName(a, namespace))
	}
	p.named[full] = s

	switch typ {
	case "enum":
		s.Kind = Enum
		s.Symbols = strs(m, "symbols")
		if len(s.Symbols) == 0 {
			return nil, fmt.Errorf("enum %s has no symbols", full)
		}
		if d, ok := m["default"].(string); ok {
			if !contains(s.Symbols, d) {
				return nil, fmt.Errorf("enum %s: default %q is not a symbol", full, d)
			}
			s.Default = &d
		}
	case "fixed":
		s.Kind = Fixed
		n, ok := m["size"].(json.Number)
		size, err := n.Int64()
		if !ok || err != nil || size < 0 {
			return nil, fmt.Errorf("fixed %s: invalid size", full)
		}
		s.Size = int(size)
	default:
		s.Kind = Record
		fields, ok := m["fields"].([]any)
		if !ok {
			return nil, fmt.Errorf("record %s has no fields array", full)
		}
		for i, fv := range fields {
			fm, ok := fv.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("record %s field %d is not an object", full, i)
			}
			f := &Field{Name: str(fm, "name"), Aliases: strs(fm, "aliases")}
			if f.Name == "" {
				return nil, fmt.Errorf("record %s field %d has no name", full, i)
			}
			if s.Field(f.Name) != nil {
				return nil, fmt.Errorf("record %s: field %s defined twice", full, f.Name)
			}
			t, err := p.parse(fm["type"], namespace)
			if err != nil {
				return nil, fmt.Errorf("record %s field %s: %w", full, f.Name, err)
			}
			f.Type = t
			if d, ok := fm["default"]; ok {
				native, err := defaultNative(t, d)
				if err != nil {
					return nil, fmt.Errorf("record %s field %s: default: %w", full, f.Name, err)
				}
				f.HasDefault, f.Default = true, native
			}
			s.Fields = append(s.Fields, f)
		}
	}
	return s, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// defaultNative converts a field default, given in the schema's JSON, to the
// goavro native value of type s. A union's default belongs to its first branch.
func defaultNative(s *Schema, d any) (any, error) {
	switch s.Kind {
	case Null:
		if d != nil {
			return nil, fmt.Errorf("null default must be null")
		}
		return nil, nil
	case Boolean:
		b, ok := d.(bool)
		if !ok {
			return nil, fmt.Errorf("want boolean, got %v", d)
		}
		return b, nil
	case Int, Long:
		n, ok := d.(json.Number)
		if !ok {
			return nil, fmt.Errorf("want integer, got %v", d)
		}
		i, err := n.Int64()
		if err != nil {
			return nil, fmt.Errorf("want integer, got %v", d)
		}
		return convertNumber(i, &Schema{Kind: Long}, s)
	case Float, Double:
		n, ok := d.(json.Number)
		if !ok {
			return nil, fmt.Errorf("want number, got %v", d)
		}
		f, err := n.Float64()
		if err != nil {
			return nil, err
		}
		if s.Kind == Float {
			return float32(f), nil
		}
		return f, nil
	case String, Bytes, Fixed:
		t, ok := d.(string)
		if !ok {
			return nil, fmt.Errorf("want string, got %v", d)
		}
		if s.Kind == String {
			return t, nil
		}
		// Avro encodes bytes defaults as strings of code points 0-255.
		var b bytes.Buffer
		for _, r := range t {
			if r > 255 {
				return nil, fmt.Errorf("bytes default has code point %U above 255", r)
			}
			b.WriteByte(byte(r))
		}
		return b.Bytes(), nil
	case Enum:
		t, ok := d.(string)
		if !ok || !contains(s.Symbols, t) {
			return nil, fmt.Errorf("want one of %v, got %v", s.Symbols, d)
		}
		return t, nil
	case Array:
		list, ok := d.([]any)
		if !ok {
			return nil, fmt.Errorf("want array, got %v", d)
		}
		out := make([]any, len(list))
		for i, v := range list {
			n, err := defaultNative(s.Items, v)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case Map:
		m, ok := d.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("want object, got %v", d)
		}
		out := make(map[string]any, len(m))
		for k, v := range m {
			n, err := defaultNative(s.Values, v)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case Record:
		m, ok := d.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("want object, got %v", d)
		}
		out := make(map[string]any, len(s.Fields))
		for _, f := range s.Fields {
			v, ok := m[f.Name]
			switch {
			case ok:
				n, err := defaultNative(f.Type, v)
				if err != nil {
					return nil, fmt.Errorf("field %s: %w", f.Name, err)
				}
				out[f.Name] = n
			case f.HasDefault:
				out[f.Name] = f.Default
			default:
				return nil, fmt.Errorf("field %s missing from record default", f.Name)
			}
		}
		return out, nil
	case Union:
		first := s.Branches[0]
		n, err := defaultNative(first, d)
		if err != nil {
			return nil, fmt.Errorf("union default must match its first branch %s: %w", first.UnionName(), err)
		}
		if first.Kind == Null {
			return nil, nil
		}
		return map[string]any{first.UnionName(): n}, nil
	}
	return nil, fmt.Errorf("unsupported default for %s", s.Kind)
}
