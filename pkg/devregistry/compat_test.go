package devregistry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/schemas"
)

// Evolutions of one record, named by what changed from base.
var (
	base          = rec(`{"name":"id","type":"string"},{"name":"n","type":"int"},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}`)
	addDefaulted  = rec(`{"name":"id","type":"string"},{"name":"n","type":"int"},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},{"name":"note","type":["null","string"],"default":null}`)
	addRequired   = rec(`{"name":"id","type":"string"},{"name":"n","type":"int"},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},{"name":"note","type":"string"}`)
	dropRequired  = rec(`{"name":"id","type":"string"},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}`)
	intToLong     = rec(`{"name":"id","type":"string"},{"name":"n","type":"long"},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}`)
	intToString   = rec(`{"name":"id","type":"string"},{"name":"n","type":"string"},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}`)
	symbolAdded   = rec(`{"name":"id","type":"string"},{"name":"n","type":"int"},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B","C"]}}`)
	symbolRemoved = rec(`{"name":"id","type":"string"},{"name":"n","type":"int"},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A"]}}`)
	recordRenamed = strings.Replace(base, `"name":"User"`, `"name":"Person"`, 1)
	// A chain where each step is compatible with the one before but the
	// last is not with the first: a field gains a default, then goes.
	withB        = rec(`{"name":"id","type":"string"},{"name":"b","type":"int"}`)
	withBDefault = rec(`{"name":"id","type":"string"},{"name":"b","type":"int","default":0}`)
	withoutB     = rec(`{"name":"id","type":"string"}`)
	// And the mirror chain: a field is added with a default, then loses it.
	addB     = rec(`{"name":"id","type":"string"},{"name":"b","type":"int","default":0}`)
	requireB = rec(`{"name":"id","type":"string"},{"name":"b","type":"int"}`)
	idOnly   = withoutB
)

func TestCompatibilityLevels(t *testing.T) {
	tests := []struct {
		level   string
		history []string // registered in order, each must be accepted
		next    string
		wantErr string // substring of the 409 message; "" if accepted
	}{
		{"BACKWARD", []string{base}, addDefaulted, ""},
		{"BACKWARD", []string{base}, addRequired, "reader field note is missing from the writer and has no default"},
		{"BACKWARD", []string{base}, dropRequired, ""},
		{"BACKWARD", []string{base}, intToLong, ""},
		{"BACKWARD", []string{intToLong}, base, "writer type long cannot be read as int"},
		{"BACKWARD", []string{base}, intToString, "User.n"},
		{"BACKWARD", []string{base}, symbolAdded, ""},
		{"BACKWARD", []string{base}, symbolRemoved, "writer symbol B is unknown"},
		{"BACKWARD", []string{base}, recordRenamed, "record t.User cannot be read as record t.Person"},
		{"FORWARD", []string{base}, addRequired, ""},
		{"FORWARD", []string{base}, dropRequired, "FORWARD: version 1 cannot read data written with the new schema"},
		{"FORWARD", []string{base}, intToLong, "writer type long cannot be read as int"},
		{"FORWARD", []string{base}, symbolAdded, "writer symbol C is unknown"},
		{"FORWARD", []string{base}, symbolRemoved, ""},
		{"FULL", []string{base}, addDefaulted, ""},
		{"FULL", []string{base}, addRequired, "FULL (backward): the new schema cannot read"},
		{"FULL", []string{base}, dropRequired, "FULL (forward): version 1 cannot read"},
		{"FULL", []string{base}, intToLong, "long cannot be read as int"},
		{"NONE", []string{base}, intToString, ""},
		{"NONE", []string{base}, recordRenamed, ""},
		// Transitive levels check every live version, the others the latest.
		{"BACKWARD", []string{idOnly, addB}, requireB, ""},
		{"BACKWARD_TRANSITIVE", []string{idOnly, addB}, requireB, "BACKWARD_TRANSITIVE: the new schema cannot read data written with version 1"},
		{"FORWARD", []string{withB, withBDefault}, withoutB, ""},
		{"FORWARD_TRANSITIVE", []string{withB, withBDefault}, withoutB, "FORWARD_TRANSITIVE: version 1 cannot read"},
		{"FULL", []string{withB, withBDefault}, withoutB, ""},
		{"FULL_TRANSITIVE", []string{withB, withBDefault}, withoutB, "version 1"},
	}
	_, a := serve(t, testCluster(t))
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.level, i), func(t *testing.T) {
			a := &api{t, a.url}
			subject := fmt.Sprintf("compat-%d", i)
			a.must("PUT", "/config/"+subject, `{"compatibility":"`+tt.level+`"}`)
			for _, s := range tt.history {
				a.register(subject, s)
			}
			check := a.must("POST", "/compatibility/subjects/"+subject+"/versions?verbose=true", schemaBody(tt.next))
			status, got := a.do("POST", "/subjects/"+subject+"/versions", schemaBody(tt.next))
			if tt.wantErr == "" {
				if status != http.StatusOK {
					t.Fatalf("want accepted, got %d: %s", status, got)
				}
				if !sameJSON(check, `{"is_compatible":true,"messages":[]}`) {
					t.Errorf("compatibility check disagrees with registration: %s", check)
				}
				return
			}
			if status != http.StatusConflict || !strings.Contains(got, `"error_code":409`) {
				t.Fatalf("want 409, got %d: %s", status, got)
			}
			for _, body := range []string{got, check} {
				if !strings.Contains(body, tt.wantErr) || !strings.Contains(body, tt.level) {
					t.Errorf("%s does not name the level %s and %q", body, tt.level, tt.wantErr)
				}
			}
			if !strings.Contains(check, `"is_compatible":false`) {
				t.Errorf("compatibility check disagrees with registration: %s", check)
			}
		})
	}
}

// TestOmnisyncSchemas registers every released version of omnisync's own
// schemas and the current one under their subjects, which are FULL by
// default, and checks that real breaking changes to them are refused there
// while a BACKWARD subject takes one of them.
func TestOmnisyncSchemas(t *testing.T) {
	_, a := serve(t, testCluster(t))
	for _, n := range schemas.All {
		t.Run(string(n), func(t *testing.T) {
			a := &api{t, a.url}
			history, err := schemas.History(n)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range append(history, schemas.Current(n)) {
				a.register(n.Subject(), s)
			}
			current := schemas.Current(n)
			dropped, required := mutate(t, current, func(fields []any) ([]any, string) {
				for i, f := range fields {
					if _, ok := f.(map[string]any)["default"]; !ok {
						return append(fields[:i:i], fields[i+1:]...), f.(map[string]any)["name"].(string)
					}
				}
				t.Skip("every field has a default")
				return nil, ""
			})
			added, _ := mutate(t, current, func(fields []any) ([]any, string) {
				return append(fields, map[string]any{"name": "added_required", "type": "string"}), ""
			})
			for _, c := range []struct{ name, schema, wantErr string }{
				{"field " + required + " dropped", dropped, "reader field " + required + " is missing from the writer and has no default"},
				{"required field added", added, "reader field added_required is missing from the writer and has no default"},
			} {
				status, got := a.do("POST", "/subjects/"+n.Subject()+"/versions", schemaBody(c.schema))
				if status != http.StatusConflict || !strings.Contains(got, "FULL") || !strings.Contains(got, c.wantErr) {
					t.Errorf("%s: got %d %s, want 409 naming FULL and %q", c.name, status, got, c.wantErr)
				}
			}
			// Under the global BACKWARD level a reader may drop a field.
			other := "backward-" + string(n)
			a.register(other, current)
			a.register(other, dropped)
		})
	}
}

// mutate applies fn to the fields of the record schema text and returns the
// new text and what fn said.
func mutate(t *testing.T, text string, fn func([]any) ([]any, string)) (string, string) {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		t.Fatal(err)
	}
	fields, what := fn(append([]any(nil), s["fields"].([]any)...))
	s["fields"] = fields
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), what
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{userV1, userV1Reformatted, true},
		{`"string"`, `{"type":"string"}`, true},
		{`{"type":"array","items":{"type":"long"}}`, ` { "items" : "long", "type" : "array" } `, true},
		{userV1, userV1WithDefault, false},
		{rec(`{"name":"a","type":"int","default":1}`), rec(`{"name":"a","type":"int","default":2}`), false},
		{rec(`{"name":"a","type":"int"}`), rec(`{"name":"a","type":"int","aliases":["b"]}`), false},
		{rec(`{"name":"a","type":"long"}`), rec(`{"name":"a","type":{"type":"long","logicalType":"timestamp-millis"}}`), false},
		// A default is a value: an object in it is not a schema to simplify.
		{rec(`{"name":"m","type":{"type":"map","values":"string"},"default":{"type":"x"}}`), rec(`{"name":"m","type":{"type":"map","values":"string"},"default":"x"}`), false},
	}
	for _, tt := range tests {
		ca, err := canonical(tt.a)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := canonical(tt.b)
		if err != nil {
			t.Fatal(err)
		}
		if (ca == cb) != tt.same {
			t.Errorf("canonical(%s) = %s\ncanonical(%s) = %s\nwant same: %v", tt.a, ca, tt.b, cb, tt.same)
		}
	}
	if _, err := canonical(`{"type":"int"} {}`); err == nil {
		t.Error("trailing data accepted")
	}
}
