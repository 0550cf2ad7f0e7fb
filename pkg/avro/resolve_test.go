package avro

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func rec(fields string) string {
	return `{"type":"record","name":"R","namespace":"t","fields":[` + fields + `]}`
}

func TestCanRead(t *testing.T) {
	tests := []struct {
		name           string
		reader, writer string
		wantErr        string // substring; empty: compatible
	}{
		{"same", rec(`{"name":"a","type":"string"}`), rec(`{"name":"a","type":"string"}`), ""},
		{"reader adds field with default", rec(`{"name":"a","type":"string"},{"name":"b","type":"int","default":7}`), rec(`{"name":"a","type":"string"}`), ""},
		{"reader adds field without default", rec(`{"name":"a","type":"string"},{"name":"b","type":"int"}`), rec(`{"name":"a","type":"string"}`), "R.b: reader field b is missing from the writer and has no default"},
		{"reader drops field", rec(`{"name":"a","type":"string"}`), rec(`{"name":"a","type":"string"},{"name":"b","type":"int"}`), ""},
		{"int promotes to long", rec(`{"name":"a","type":"long"}`), rec(`{"name":"a","type":"int"}`), ""},
		{"long does not demote to int", rec(`{"name":"a","type":"int"}`), rec(`{"name":"a","type":"long"}`), "writer type long cannot be read as int"},
		{"float promotes to double", rec(`{"name":"a","type":"double"}`), rec(`{"name":"a","type":"float"}`), ""},
		{"string reads bytes", rec(`{"name":"a","type":"string"}`), rec(`{"name":"a","type":"bytes"}`), ""},
		{"string is not int", rec(`{"name":"a","type":"int"}`), rec(`{"name":"a","type":"string"}`), "R.a"},
		{"field renamed with alias", rec(`{"name":"b","aliases":["a"],"type":"string"}`), rec(`{"name":"a","type":"string"}`), ""},
		{"record renamed", `{"type":"record","name":"S","fields":[]}`, `{"type":"record","name":"R","fields":[]}`, "record R cannot be read as record S"},
		{"record renamed with alias", `{"type":"record","name":"S","aliases":["R"],"fields":[]}`, `{"type":"record","name":"R","fields":[]}`, ""},
		{"enum symbol added", rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}`), rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}`), ""},
		{"enum symbol removed, no default", rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}`), rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}`), "writer symbol B is unknown"},
		{"enum symbol removed, default", rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A"],"default":"A"}}`), rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}`), ""},
		{"value made nullable", rec(`{"name":"a","type":["null","string"],"default":null}`), rec(`{"name":"a","type":"string"}`), ""},
		{"nullable read as plain", rec(`{"name":"a","type":"string"}`), rec(`{"name":"a","type":["null","string"]}`), "writer type null cannot be read as string"},
		{"union widened", rec(`{"name":"a","type":["null","string","long"]}`), rec(`{"name":"a","type":["null","string"]}`), ""},
		{"union narrowed", rec(`{"name":"a","type":["null","string"]}`), rec(`{"name":"a","type":["null","string","long"]}`), "no branch for writer type long"},
		{"int into union via promotion", rec(`{"name":"a","type":["null","double"]}`), rec(`{"name":"a","type":"int"}`), ""},
		{"array items promote", rec(`{"name":"a","type":{"type":"array","items":"long"}}`), rec(`{"name":"a","type":{"type":"array","items":"int"}}`), ""},
		{"map values incompatible", rec(`{"name":"a","type":{"type":"map","values":"int"}}`), rec(`{"name":"a","type":{"type":"map","values":"string"}}`), "R.a{}"},
		{"fixed size changed", rec(`{"name":"a","type":{"type":"fixed","name":"F","size":4}}`), rec(`{"name":"a","type":{"type":"fixed","name":"F","size":8}}`), "fixed"},
		{"nested record field", rec(`{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"x","type":"int"},{"name":"y","type":"int"}]}}`), rec(`{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"x","type":"int"}]}}`), "R.n.y"},
		{"recursive list", `{"type":"record","name":"L","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","L"]}]}`, `{"type":"record","name":"L","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","L"]}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CanRead(tt.reader, tt.writer)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("want compatible, got %v", err)
				}
				return
			}
			var ie *IncompatibleError
			if !errors.As(err, &ie) {
				t.Fatalf("want *IncompatibleError containing %q, got %v", tt.wantErr, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolveValues(t *testing.T) {
	writer := mustParse(t, rec(`{"name":"a","type":"int"},{"name":"gone","type":"string"},{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},{"name":"u","type":["null","string"]},{"name":"t","type":"long"}`))
	reader := mustParse(t, rec(`{"name":"a","type":"double"},{"name":"e","type":{"type":"enum","name":"E","symbols":["A"],"default":"A"}},{"name":"u","type":["null","bytes","string"]},{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"added","type":{"type":"map","values":"int"},"default":{"k":1}}`))
	r, err := Compile(writer, reader)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Resolve(map[string]any{"a": int32(3), "gone": "x", "e": "B", "u": map[string]any{"string": "hi"}, "t": int64(1700000000123)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a":     float64(3),
		"e":     "A",
		"u":     map[string]any{"string": "hi"},
		"t":     time.UnixMilli(1700000000123).UTC(),
		"added": map[string]any{"k": int64(1)},
	}
	// Int defaults are parsed as int32 for int fields.
	want["added"] = map[string]any{"k": int32(1)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("resolved\n got %#v\nwant %#v", got, want)
	}
}

func mustParse(t testing.TB, text string) *Schema {
	t.Helper()
	s, err := Parse(text)
	if err != nil {
		t.Fatalf("parsing %s: %v", text, err)
	}
	return s
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{
		`{`,
		`"nosuchtype"`,
		`{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}`,
		`{"type":"enum","name":"E","symbols":["A"],"default":"B"}`,
		`["null","null"]`,
		`{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}`,
		`{"type":"record","name":"R","fields":[{"name":"a","type":["string","null"],"default":null}]}`,
	} {
		if _, err := Parse(text); err == nil {
			t.Errorf("Parse(%s) succeeded, want an error", text)
		}
	}
}

// Parts of a record the versions share pass through resolution as they are;
// the parts that differ are rebuilt.
func TestResolvePassesUnchangedPartsThrough(t *testing.T) {
	inner := `{"name":"p","type":{"type":"record","name":"P","fields":[{"name":"x","type":"string"}]}}`
	enum := func(symbols string) string {
		return `{"name":"e","type":{"type":"enum","name":"E","symbols":[` + symbols + `],"default":"A"}}`
	}
	w, err := Parse(rec(inner + `,` + enum(`"A","B"`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		reader      string
		same, sameP bool   // the record, and its field p, pass through
		e           string // what the writer's symbol B reads as
	}{
		{rec(inner + `,` + enum(`"A","B"`)), true, true, "B"},
		{rec(inner + `,` + enum(`"A","B","C"`)), true, true, "B"}, // the reader knows every writer symbol
		{rec(inner + `,` + enum(`"A"`)), false, true, "A"},        // B becomes the default
		{rec(inner + `,` + enum(`"A","B"`) + `,{"name":"n","type":"int","default":1}`), false, true, "B"},
	} {
		r, err := Parse(tc.reader)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Compile(w, r)
		if err != nil {
			t.Fatal(err)
		}
		native := map[string]any{"p": map[string]any{"x": "y"}, "e": "B"}
		out, err := res.Resolve(native)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(map[string]any)
		if same := reflect.ValueOf(got).Pointer() == reflect.ValueOf(native).Pointer(); same != tc.same {
			t.Errorf("reader %s: record passed through %v, want %v", tc.reader, same, tc.same)
		}
		if same := reflect.ValueOf(got["p"]).Pointer() == reflect.ValueOf(native["p"]).Pointer(); same != tc.sameP {
			t.Errorf("reader %s: unchanged field passed through %v, want %v", tc.reader, same, tc.sameP)
		}
		if got["e"] != tc.e {
			t.Errorf("reader %s: enum %v, want %v", tc.reader, got["e"], tc.e)
		}
	}
}
