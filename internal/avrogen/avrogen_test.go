package avrogen_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/internal/avrogen"
)

// generate runs the generator on a package events of one Go file and a
// schema of name "thing".
func generate(t *testing.T, goSource, schema string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	events, schemas := filepath.Join(dir, "events"), filepath.Join(dir, "schemas")
	for d, src := range map[string]string{
		events:  "package events\n\nimport \"time\"\n\nvar _ time.Time\n\n" + goSource,
		schemas: "package schemas\n\ntype Name string\n\nconst Thing Name = \"thing\"\n",
	} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "x.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := avrogen.Generate(avrogen.Config{Package: "codec", EventsDir: events, SchemasDir: schemas, Command: "test",
		Schemas: []avrogen.Schema{{Name: "thing", Text: schema}}})
	return string(out), err
}

func TestGenerateFollowsSchemaAndTags(t *testing.T) {
	out, err := generate(t, `
type Color string

type Thing struct {
	ID     string            `+"`avro:\"id\"`"+`
	Color  Color             `+"`avro:\"color\"`"+`
	Size   *int64            `+"`avro:\"size\"`"+`
	At     time.Time         `+"`avro:\"at\"`"+`
	Labels map[string]string `+"`avro:\"labels\"`"+`
	Parts  []Thing           `+"`avro:\"parts\"`"+`
	Local  int               // not in the schema
}`, `{"type": "record", "name": "Thing", "namespace": "t", "fields": [
		{"name": "id", "type": "string"},
		{"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "BLUE"], "default": "RED"}},
		{"name": "size", "type": ["null", "long"], "default": null},
		{"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
		{"name": "labels", "type": {"type": "map", "values": "string"}, "default": {}},
		{"name": "parts", "type": {"type": "array", "items": "Thing"}, "default": []},
		{"name": "added", "type": "string", "default": "x"}
	]}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"case *events.Thing:\n\t\treturn schemas.Thing, nil", // dispatch by Go type to the schemas constant
		`func thingToNative(sc *scratch, v *events.Thing) (any, error)`,
		`func thingFromNative(native any, v *events.Thing) error`,
		`sc.union("long", (*v.Size))`,               // [null, T] from a pointer
		"thingToNative(sc, &v.Parts[",               // a recursive record
		`m["added"] = "x"`,                          // a field the Go type lacks takes its default
		`case "":` + "\n\t\t" + `return "RED", nil`, // an empty enum takes its default
	} {
		if !strings.Contains(out, want) {
			t.Errorf("generated code lacks %q", want)
		}
	}
	if strings.Contains(out, "Local") {
		t.Error("a Go field without an avro tag was mapped")
	}
}

func TestGenerateRefusesWhatItCannotMap(t *testing.T) {
	for what, tc := range map[string]struct{ goSource, schema, wantErr string }{
		"schema field without Go field or default": {
			"type Thing struct{ ID string `avro:\"id\"` }",
			`{"type": "record", "name": "Thing", "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "int"}]}`,
			"has no field for Thing.n, which has no default",
		},
		"Go type that cannot hold the schema type": {
			"type Thing struct{ ID int32 `avro:\"id\"` }",
			`{"type": "record", "name": "Thing", "fields": [{"name": "id", "type": "string"}]}`,
			"the Go type int32 cannot hold string",
		},
		"union of two types": {
			"type Thing struct{ ID *string `avro:\"id\"` }",
			`{"type": "record", "name": "Thing", "fields": [{"name": "id", "type": ["null", "string", "long"]}]}`,
			"must be [null, T]",
		},
		"record without Go type": {
			"type Other struct{}",
			`{"type": "record", "name": "Thing", "fields": []}`,
			"package events has no type Thing",
		},
	} {
		_, err := generate(t, tc.goSource, tc.schema)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: got error %v, want one containing %q", what, err, tc.wantErr)
		}
	}
}
