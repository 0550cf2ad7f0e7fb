package devregistry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// recordKey is the key of a record in the schemas topic, in Confluent's
// format. Field order matters: compaction needs the same key bytes that
// Confluent's registry writes.
type recordKey struct {
	KeyType string  `json:"keytype"`
	Subject *string `json:"subject"`
	Version int     `json:"version,omitempty"` // SCHEMA keys only
	Magic   int     `json:"magic"`
}

type schemaValue struct {
	Subject    string            `json:"subject"`
	Version    int               `json:"version"`
	ID         int               `json:"id"`
	SchemaType string            `json:"schemaType,omitempty"`
	References []json.RawMessage `json:"references,omitempty"`
	Schema     string            `json:"schema"`
	Deleted    bool              `json:"deleted"`
}

type configValue struct {
	CompatibilityLevel string `json:"compatibilityLevel"`
}

type deleteSubjectValue struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// record is a key and value to write to the schemas topic; a nil value is a
// tombstone.
type record struct {
	key, value []byte
}

// marshal encodes v as compact JSON without escaping <, > and &, as Jackson
// (and so Confluent's registry) does.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("devregistry: encoding " + fmt.Sprintf("%T", v) + ": " + err.Error()) // only our own types are encoded
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func subjectKey(keyType, subject string, magic int) recordKey {
	k := recordKey{KeyType: keyType, Magic: magic}
	if subject != "" {
		k.Subject = &subject
	}
	return k
}

func schemaRecord(v schemaValue) record {
	k := subjectKey("SCHEMA", v.Subject, 1)
	k.Version = v.Version
	return record{marshal(k), marshal(v)}
}

func schemaTombstone(subject string, version int) record {
	k := subjectKey("SCHEMA", subject, 1)
	k.Version = version
	return record{key: marshal(k)}
}

// configRecord sets the level of subject, or the global level when subject
// is empty; an empty level is a tombstone.
func configRecord(subject, level string) record {
	r := record{key: marshal(subjectKey("CONFIG", subject, 0))}
	if level != "" {
		r.value = marshal(configValue{level})
	}
	return r
}

func deleteSubjectRecord(subject string, upTo int) record {
	return record{marshal(subjectKey("DELETE_SUBJECT", subject, 0)), marshal(deleteSubjectValue{subject, upTo})}
}

// version is one version of a subject.
type version struct {
	id      int
	deleted bool // soft-deleted
}

// state is what the schemas topic says, rebuilt by applying its records in
// order. It does no locking: the Registry guards it.
type state struct {
	subjects map[string]map[int]*version // versions by subject and number
	texts    map[int]string              // schema text by ID
	ids      map[string]int              // ID by canonical form
	configs  map[string]string           // level by subject; "" is the global level
	builtin  map[string]string           // level of a subject without a config
	nextID   int
}

func newState(builtin map[string]string) state {
	return state{
		subjects: map[string]map[int]*version{},
		texts:    map[int]string{},
		ids:      map[string]int{},
		configs:  map[string]string{},
		builtin:  builtin,
		nextID:   1,
	}
}

// apply applies one record of the schemas topic. Records of kinds the
// registry does not keep (modes, contexts, no-ops) are ignored; an error
// means the record was malformed or unsupported and changed nothing, except
// that its schema ID is never handed out again.
func (s *state) apply(key, value []byte) error {
	var k recordKey
	if err := json.Unmarshal(key, &k); err != nil {
		return fmt.Errorf("decoding key %q: %w", key, err)
	}
	subject := ""
	if k.Subject != nil {
		subject = *k.Subject
	}
	switch k.KeyType {
	case "SCHEMA":
		if value == nil {
			s.dropVersion(subject, k.Version)
			return nil
		}
		var v schemaValue
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decoding schema %s version %d: %w", subject, k.Version, err)
		}
		s.nextID = max(s.nextID, v.ID+1)
		if v.SchemaType != "" && !strings.EqualFold(v.SchemaType, "AVRO") || len(v.References) > 0 {
			return fmt.Errorf("schema %s version %d: %s schemas and references are not supported", subject, k.Version, v.SchemaType)
		}
		canon, err := canonical(v.Schema)
		if err != nil {
			return fmt.Errorf("schema %s version %d: %w", subject, k.Version, err)
		}
		if _, ok := s.texts[v.ID]; !ok {
			s.texts[v.ID] = v.Schema
		}
		if _, ok := s.ids[canon]; !ok {
			s.ids[canon] = v.ID
		}
		vs := s.subjects[subject]
		if vs == nil {
			vs = map[int]*version{}
			s.subjects[subject] = vs
		}
		old := vs[k.Version]
		vs[k.Version] = &version{id: v.ID, deleted: v.Deleted}
		if old != nil && old.id != v.ID {
			s.forgetUnused(old.id)
		}
	case "CONFIG":
		if value == nil {
			delete(s.configs, subject)
			return nil
		}
		var v configValue
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decoding config of %q: %w", subject, err)
		}
		level, ok := parseLevel(v.CompatibilityLevel)
		if !ok {
			return fmt.Errorf("config of %q: unknown compatibility level %q", subject, v.CompatibilityLevel)
		}
		s.configs[subject] = level
	case "DELETE_SUBJECT":
		if value == nil {
			return nil
		}
		var v deleteSubjectValue
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decoding subject deletion of %s: %w", subject, err)
		}
		for n, ver := range s.subjects[v.Subject] {
			if n <= v.Version {
				ver.deleted = true
			}
		}
	case "CLEAR_SUBJECT":
		if value == nil {
			return nil
		}
		var v struct{ Subject string }
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decoding subject clearing of %s: %w", subject, err)
		}
		for n := range s.subjects[v.Subject] {
			s.dropVersion(v.Subject, n)
		}
	}
	return nil
}

// dropVersion forgets a version for good (a hard delete).
func (s *state) dropVersion(subject string, n int) {
	vs := s.subjects[subject]
	v := vs[n]
	if v == nil {
		return
	}
	delete(vs, n)
	if len(vs) == 0 {
		delete(s.subjects, subject)
	}
	s.forgetUnused(v.id)
}

// forgetUnused forgets the schema behind id once no version, live or
// soft-deleted, uses it.
func (s *state) forgetUnused(id int) {
	for _, vs := range s.subjects {
		for _, v := range vs {
			if v.id == id {
				return
			}
		}
	}
	delete(s.texts, id)
	for canon, i := range s.ids {
		if i == id {
			delete(s.ids, canon)
		}
	}
}

// versions returns the version numbers of subject in ascending order: the
// live ones, or all of them when deleted is set.
func (s *state) versions(subject string, deleted bool) []int {
	var out []int
	for n, v := range s.subjects[subject] {
		if deleted || !v.deleted {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// prior returns the live versions of subject, oldest first.
func (s *state) prior(subject string) []priorSchema {
	var out []priorSchema
	for _, n := range s.versions(subject, false) {
		out = append(out, priorSchema{n, s.texts[s.subjects[subject][n].id]})
	}
	return out
}

// level returns the compatibility level that applies to subject: its own
// config, else its built-in default, else the global level. An empty
// subject asks for the global level.
func (s *state) level(subject string) string {
	if l, ok := s.subjectLevel(subject); ok {
		return l
	}
	if l, ok := s.configs[""]; ok {
		return l
	}
	return levelBackward
}

// subjectLevel returns the subject-level config of subject: its own config
// or else its built-in default.
func (s *state) subjectLevel(subject string) (string, bool) {
	if subject == "" {
		return "", false
	}
	if l, ok := s.configs[subject]; ok {
		return l, true
	}
	l, ok := s.builtin[subject]
	return l, ok
}

// canonical returns the form two texts of the same schema share: compact
// JSON with sorted keys, and {"type":T} written as T. It keeps every
// attribute, defaults included, since they change what a schema means.
func canonical(text string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("parsing schema JSON: %w", err)
	}
	if dec.More() {
		return "", errors.New("parsing schema JSON: trailing data")
	}
	return string(marshal(simplify(v))), nil
}

func simplify(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k != "default" { // a default is a value, not a schema
				v[k] = simplify(x)
			}
		}
		if t, ok := v["type"].(string); ok && len(v) == 1 {
			return t
		}
	case []any:
		for i, x := range v {
			v[i] = simplify(x)
		}
	}
	return v
}
