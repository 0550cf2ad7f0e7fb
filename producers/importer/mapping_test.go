package importer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The example mapping loads; a mapping that cannot be right is refused
// naming the column.
func TestLoadMapping(t *testing.T) {
	m, err := LoadMapping("../../docs/examples/crm-mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m.Columns["Contact ID"] != "id" || m.Columns["City"] != "address.city" || m.location.String() != "Asia/Shanghai" {
		t.Fatalf("example mapping %+v", m)
	}
	for yaml, want := range map[string]string{
		"columns: {A: id, B: nickname}":         `columns.B: "nickname" is not an omnisync field`,
		"columns: {A: id, B: id}":               "columns.B: id is already the field of column \"A\"",
		"columns: {A: name}":                    "no column is mapped to id",
		"columns: {A: id}\ntimezone: Mars/Base": "timezone:",
		"columns: {A: id}\nseparator: ','":      "field separator not found",
		"columns: {}":                           "columns: empty",
	} {
		_, err := LoadMapping(writeFile(t, "m.yaml", yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}

// What is wrong with a whole file stops the import before any row.
func TestFileErrors(t *testing.T) {
	m, err := LoadMapping(writeFile(t, "m.yaml", "columns: {Contact ID: id, Mobile: phone}"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, content string
		m             *Mapping
		want          string
	}{
		{"empty.csv", "", nil, "the file is empty"},
		{"noid.csv", "name,phone\nA,1\n", nil, "no column holds id"},
		{"missing.csv", "Contact ID,Phone\n1,2\n", m, `the mapping's column "Mobile" is not in the header`},
		{"twice.csv", "id,id\n1,2\n", nil, `column "id" appears twice`},
		{"gbk.csv", "id,\xd0\xd5\xc3\xfb\n1,2\n", nil, "not valid UTF-8"},
	} {
		_, err := Run(context.Background(), nil, writeFile(t, c.name, c.content), Options{Format: "csv", Mapping: c.m})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
