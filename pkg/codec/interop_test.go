package codec_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/schemas"
)

// Apache Avro's reference implementation (Python) reads what omnisync
// writes, with the writer schema fetched from the registry by the ID in the
// wire header.
func TestPythonAvroDecodesOurRecords(t *testing.T) {
	py := testenv.Python(t, "avro.io")
	s, _, url := newSerde(t)
	var records []string
	for _, v := range []any{sampleCustomerEvent(), sampleMessageEvent(), sampleState(), sampleDeadLetter()} {
		b, err := s.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, hex.EncodeToString(b))
	}
	in, _ := json.Marshal(records)
	cmd := exec.Command(py, "testdata/avro_decode.py", url)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python avro: %v\n%s", err, stderr.String())
	}
	var got []struct {
		SchemaID   int            `json:"schema_id"`
		SchemaName string         `json:"schema_name"`
		Value      map[string]any `json:"value"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python output %s: %v", out, err)
	}
	if len(got) != 4 {
		t.Fatalf("python decoded %d records, want 4", len(got))
	}
	ce, me, st, dl := got[0].Value, got[1].Value, got[2].Value, got[3].Value
	checks := []struct {
		what      string
		got, want any
	}{
		{"schema name", got[0].SchemaName, "io.omnisync.v1.CustomerEvent"},
		{"event customer_id", ce["customer_id"], "cus_01"},
		{"event channel", ce["channel"], "APP"},
		{"event occurred_at", ce["occurred_at"], float64(t0.UnixMilli())},
		{"event source_event_id", ce["source_event_id"], "app-change-77"},
		{"profile name", ce["profile"].(map[string]any)["name"], "王小明"},
		{"profile birthday", ce["profile"].(map[string]any)["birthday"], "1990-05-17"},
		{"profile vip", ce["profile"].(map[string]any)["vip_level"], float64(3)},
		{"profile city", ce["profile"].(map[string]any)["address"].(map[string]any)["city"], "深圳"},
		{"identity scope", ce["identities"].([]any)[1].(map[string]any)["scope"], "wx8f3a"},
		{"message content type", me["content_type"], "TRANSCRIPT"},
		{"message text", me["text"], "我想查询一下订单"},
		{"segment end", me["transcript"].(map[string]any)["end_ms"], float64(15500)},
		{"attachment size", me["attachments"].([]any)[0].(map[string]any)["size_bytes"], float64(88200)},
		{"state version", st["version"], float64(7)},
		{"state register", st["fields"].(map[string]any)["phone"].(map[string]any)["value_json"], `"+8613800138000"`},
		{"conflict status", st["conflicts"].([]any)[0].(map[string]any)["status"], "OPEN"},
		{"dead letter payload", dl["payload"], hex.EncodeToString([]byte(`{"phone":"12"}`))},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: python read %v (%T), want %v", c.what, c.got, c.got, c.want)
		}
	}
	if got[0].SchemaID != s.SchemaID(schemas.CustomerEvent) {
		t.Errorf("python saw schema ID %d, Serde wrote %d", got[0].SchemaID, s.SchemaID(schemas.CustomerEvent))
	}
}
