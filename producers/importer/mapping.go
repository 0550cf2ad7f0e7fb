package importer

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Mapping says which omnisync field each column of a file holds. Without
// one, columns are named as the fields themselves.
//
//	columns:                 # file column → omnisync field
//	  Contact ID: id         # required: the source's customer ID
//	  Full Name: name
//	  Mobile: phone
//	  Last Modified: occurred_at
//	  City: address.city
//	  Industry: attributes.industry
//	tag_separator: ";"       # between the tags of a tags column; default ;
//	timezone: Asia/Shanghai  # of times without an offset; default UTC
//
// Columns the mapping does not name are not imported; the summary lists
// them.
type Mapping struct {
	Columns      map[string]string `yaml:"columns"`
	TagSeparator string            `yaml:"tag_separator"`
	Timezone     string            `yaml:"timezone"`

	location *time.Location
}

// Fields are the omnisync fields a column may hold, besides address.<part>
// and attributes.<key>.
var Fields = []string{"id", "occurred_at", "name", "phone", "email", "gender", "birthday", "vip_level", "tags", "id_number"}

var addressParts = []string{"country", "province", "city", "district", "street", "postal_code"}

// LoadMapping reads a mapping file (YAML) and checks it.
func LoadMapping(path string) (*Mapping, error) { return load(path, true) }

// LoadTableMapping reads the mapping of a table whose key column is named
// apart (omnisync source postgres --key): it need not map a column to id.
func LoadTableMapping(path string) (*Mapping, error) { return load(path, false) }

func load(path string, needID bool) (*Mapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the mapping: %w", err)
	}
	var m Mapping
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	if err := m.check(needID); err != nil {
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	return &m, nil
}

// defaults fills in the separator and the time zone.
func (m *Mapping) defaults() error {
	if m.TagSeparator == "" {
		m.TagSeparator = ";"
	}
	m.location = time.UTC
	if m.Timezone != "" {
		loc, err := time.LoadLocation(m.Timezone)
		if err != nil {
			return fmt.Errorf("timezone: %w", err)
		}
		m.location = loc
	}
	return nil
}

// check validates the mapping and fills in its defaults.
func (m *Mapping) check(needID bool) error {
	if err := m.defaults(); err != nil {
		return err
	}
	if len(m.Columns) == 0 {
		return fmt.Errorf("columns: empty; map each column to an omnisync field (%s)", fieldList())
	}
	owner := map[string]string{}
	for _, col := range sortedKeys(m.Columns) {
		f := m.Columns[col]
		if !knownField(f) {
			return fmt.Errorf("columns.%s: %q is not an omnisync field (%s)", col, f, fieldList())
		}
		if other, ok := owner[f]; ok {
			return fmt.Errorf("columns.%s: %s is already the field of column %q", col, f, other)
		}
		owner[f] = col
	}
	if _, ok := owner["id"]; !ok && needID {
		return fmt.Errorf("columns: no column is mapped to id, the source's customer ID")
	}
	return nil
}

// ForKey is the mapping of a table whose key column holds the source's
// customer ID: m (nil: every column named as an omnisync field is that
// field) with key mapped to id. It fails when m maps another column to id.
func ForKey(m *Mapping, columns []string, key string) (*Mapping, error) {
	if !slices.Contains(columns, key) {
		return nil, fmt.Errorf("key column %q is not one of the columns %q", key, columns)
	}
	if m == nil {
		m = identity(columns)
		for col, f := range m.Columns {
			if f == "id" && col != key {
				delete(m.Columns, col) // the key is the ID
			}
		}
	}
	out := &Mapping{Columns: map[string]string{key: "id"}, TagSeparator: m.TagSeparator, Timezone: m.Timezone, location: m.location}
	for col, f := range m.Columns {
		if f == "id" && col != key {
			return nil, fmt.Errorf("the mapping maps column %q to id, but the key column is %q: map the key to id or leave it out", col, key)
		}
		if col != key {
			if !slices.Contains(columns, col) {
				return nil, fmt.Errorf("the mapping's column %q is not one of the columns %q", col, columns)
			}
			out.Columns[col] = f
		}
	}
	return out, nil
}

// identity is the mapping of a file without one: every column that is an
// omnisync field is that field.
func identity(header []string) *Mapping {
	m := &Mapping{Columns: map[string]string{}}
	for _, col := range header {
		if knownField(col) {
			m.Columns[col] = col
		}
	}
	_ = m.defaults() // no time zone to load: cannot fail
	return m
}

func knownField(f string) bool {
	if slices.Contains(Fields, f) {
		return true
	}
	if part, ok := strings.CutPrefix(f, "address."); ok {
		return slices.Contains(addressParts, part)
	}
	key, ok := strings.CutPrefix(f, "attributes.")
	return ok && key != "" && len(key) <= 64
}

func fieldList() string {
	return strings.Join(Fields, ", ") + ", address." + strings.Join(addressParts, "|") + " or attributes.<key>"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
