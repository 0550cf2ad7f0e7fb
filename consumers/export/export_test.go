package export_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/consumers/export"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

var t0 = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// sampleStore holds cus_a (a full profile, a cleared field, a message),
// cus_b (a name), cus_c (deleted) and cus_d (merged into cus_a).
func sampleStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fill(t, st)
	return st
}

func fill(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	p := merge.DefaultPolicy()
	fold := func(id string, evs ...*events.CustomerEvent) merge.Record {
		r := merge.Record{CustomerID: id}
		for i, ev := range evs {
			ev.CustomerID, ev.EventID, ev.Source = id, id+"-e"+string(rune('0'+i)), "crm-main"
			ev.OccurredAt, ev.IngestedAt = t0.Add(time.Duration(i)*time.Minute), t0
			if ev.Channel == "" {
				ev.Channel = events.ChannelCRM
			}
			r, _ = merge.Apply(r, ev, p)
		}
		return r
	}
	a := fold("cus_a", &events.CustomerEvent{Op: events.OpUpsert, Profile: &events.Profile{
		Name: ptr("李娜"), Phone: ptr("+8613800138000"), Email: ptr("li.na@example.com"), Gender: ptr(events.GenderFemale),
		Birthday: ptr(time.Date(1990, 5, 17, 0, 0, 0, 0, time.UTC)), VIPLevel: ptr(int32(3)), Tags: []string{"vip", "北京"},
		IDNumber: ptr("110101199005170022"), Address: &events.Address{Country: "CN", City: "北京", Street: "长安街 1 号"},
		Attributes: map[string]string{"industry": "retail"}}},
		&events.CustomerEvent{Op: events.OpUpsert, Channel: events.ChannelWeChat, Profile: &events.Profile{Name: ptr("Li Na")}},
		&events.CustomerEvent{Op: events.OpUpsert, Clears: []string{"id_number"}})
	text := "hello"
	msg := events.MessageEvent{MessageID: "cus_a-m1", CustomerID: "cus_a", Channel: events.ChannelWeb, Source: "web",
		Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
		Text: &text, OccurredAt: t0.Add(time.Hour), IngestedAt: t0.Add(time.Hour)}
	a, _ = merge.ApplyMessage(a, &msg, p)
	b := fold("cus_b", &events.CustomerEvent{Op: events.OpUpsert, Profile: &events.Profile{Name: ptr("Wang")}})
	c := fold("cus_c", &events.CustomerEvent{Op: events.OpUpsert, Profile: &events.Profile{Name: ptr("Gone")}},
		&events.CustomerEvent{Op: events.OpDelete})
	d := fold("cus_d", &events.CustomerEvent{Op: events.OpUpsert, Profile: &events.Profile{Name: ptr("Absorbed")}})
	dmsg := msg
	dmsg.MessageID, dmsg.CustomerID = "cus_d-m1", "cus_d"
	d, _ = merge.ApplyMessage(d, &dmsg, p)
	d.MergedInto = &merge.MergeRef{MergeID: "m1", CustomerID: "cus_a", At: merge.Stamp{At: t0, EventID: "m1"}}
	if !c.Deleted() {
		t.Fatal("cus_c is not deleted")
	}
	if err := st.Apply(ctx, &store.Batch{Group: "g", PolicyHash: p.Hash(), Records: []merge.Record{a, b, c, d},
		Messages: []events.MessageEvent{msg, dmsg}}); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Both stores export the same bytes (avro aside: its sync marker is random).
func TestPostgresExportsAsSQLite(t *testing.T) {
	pg, err := postgres.Open(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	fill(t, pg)
	lite := sampleStore(t)
	for _, o := range []export.Options{{Format: "csv"}, {Format: "jsonl", WithMessages: true}, {Format: "xml", WithMessages: true}} {
		a, _ := write(t, lite, o)
		b, _ := write(t, pg, o)
		if !bytes.Equal(a, b) {
			t.Errorf("%+v: sqlite\n%s\npostgres\n%s", o, a, b)
		}
	}
}

func write(t *testing.T, st store.Scanner, o export.Options) ([]byte, export.Summary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := export.Write(context.Background(), st, &buf, o)
	if err != nil {
		t.Fatalf("%+v: %v", o, err)
	}
	if sum.Customers != 2 || sum.Deleted != 1 || sum.Merged != 1 {
		t.Fatalf("%+v: summary %+v, want 2 customers, 1 deleted, 1 merged", o, sum)
	}
	return buf.Bytes(), sum
}

func TestCSV(t *testing.T) {
	out, _ := write(t, sampleStore(t), export.Options{Format: "csv"})
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"id", "occurred_at", "name", "phone", "email", "gender", "birthday", "vip_level", "tags", "address.city", "address.country", "address.street", "attributes.industry"},
		{"cus_a", "2026-11-20T10:30:00Z", "Li Na", "+8613800138000", "li.na@example.com", "FEMALE", "1990-05-17", "3", "vip;北京", "北京", "CN", "长安街 1 号", "retail"},
		{"cus_b", "2026-11-20T09:30:00Z", "Wang", "", "", "", "", "", "", "", "", "", ""},
	}
	if got, _ := json.Marshal(rows); string(got) != string(must(json.Marshal(want))) {
		t.Fatalf("csv:\n%s\nwant\n%v", out, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestJSONLWithMessagesAndProvenance(t *testing.T) {
	out, sum := write(t, sampleStore(t), export.Options{Format: "jsonl", WithMessages: true})
	if sum.Messages != 1 || sum.MergedMessages != 1 {
		t.Fatalf("summary %+v, want 1 message written, 1 of the merged customer left out", sum)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["id"] != "cus_a" || lines[1]["id"] != "cus_b" {
		t.Fatalf("jsonl:\n%s", out)
	}
	a := lines[0]
	prov := a["provenance"].(map[string]any)
	name := prov["name"].(map[string]any)
	tags, _ := json.Marshal(a["tags"])
	vip, _ := a["vip_level"].(float64)
	if a["name"] != "Li Na" || name["channel"] != "WECHAT" || name["event_id"] != "cus_a-e1" || name["occurred_at"] != "2026-11-20T09:31:00Z" ||
		prov["phone"].(map[string]any)["channel"] != "CRM" || string(tags) != `["vip","北京"]` || vip != 3 || a["id_number"] != nil || prov["id_number"] != nil {
		t.Fatalf("cus_a: %s", out)
	}
	ms := a["messages"].([]any)
	m := ms[0].(map[string]any)
	if len(ms) != 1 || m["message_id"] != "cus_a-m1" || m["text"].(map[string]any)["string"] != "hello" {
		t.Fatalf("messages of cus_a: %v", ms)
	}
	if _, ok := lines[1]["messages"]; !ok {
		t.Fatalf("cus_b has no messages member: %v", lines[1])
	}
}

func TestXML(t *testing.T) {
	out, sum := write(t, sampleStore(t), export.Options{Format: "xml", WithMessages: true})
	if sum.Messages != 1 {
		t.Fatalf("summary %+v, want 1 message", sum)
	}
	for _, want := range []string{"<customers>", "<customer><id>cus_a</id><occurred_at>2026-11-20T10:30:00Z</occurred_at>",
		"<address.city>北京</address.city>", "<tags>vip;北京</tags>", "<customer><id>cus_b</id>", "</customers>"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("xml lacks %q:\n%s", want, out)
		}
	}
	var doc struct {
		Customers []struct {
			ID       string   `xml:"id"`
			Messages []string `xml:"messages>message"`
		} `xml:"customer"`
	}
	if err := xml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	var m struct {
		MessageID string `json:"message_id"`
	}
	if len(doc.Customers) != 2 || len(doc.Customers[0].Messages) != 1 || len(doc.Customers[1].Messages) != 0 ||
		json.Unmarshal([]byte(doc.Customers[0].Messages[0]), &m) != nil || m.MessageID != "cus_a-m1" {
		t.Fatalf("xml messages: %+v\n%s", doc, out)
	}
}

// The Avro export is an object container file with the CustomerState schema
// embedded, read back by goavro and by Python's avro.
func TestAvro(t *testing.T) {
	out, _ := write(t, sampleStore(t), export.Options{Format: "avro"})
	r, err := goavro.NewOCFReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	current, err := goavro.NewCodec(schemas.Current(schemas.CustomerState))
	if err != nil {
		t.Fatal(err)
	}
	if r.Codec().CanonicalSchema() != current.CanonicalSchema() {
		t.Fatalf("embedded schema %s\nwant %s", r.Codec().Schema(), current.CanonicalSchema())
	}
	var ids []string
	var phone string
	for r.Scan() {
		v, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		rec := v.(map[string]any)
		ids = append(ids, rec["customer_id"].(string))
		if f, ok := rec["fields"].(map[string]any)["phone"]; ok {
			phone = f.(map[string]any)["value_json"].(string)
		}
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	if strings.Join(ids, ",") != "cus_a,cus_b" || phone != `"+8613800138000"` {
		t.Fatalf("avro rows %v, phone %s", ids, phone)
	}

	py := testenv.Python(t, "avro.datafile")
	path := filepath.Join(t.TempDir(), "c.avro")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `import avro.datafile, avro.io, json, sys
r = avro.datafile.DataFileReader(open(sys.argv[1], "rb"), avro.io.DatumReader())
print(json.dumps({"schema": json.loads(r.meta["avro.schema"])["name"], "ids": [d["customer_id"] for d in r],
  "name": None}))`
	got, err := exec.Command(py, "-c", script, path).Output()
	if err != nil {
		t.Fatalf("python avro: %v", err)
	}
	var res struct {
		Schema string   `json:"schema"`
		IDs    []string `json:"ids"`
	}
	if err := json.Unmarshal(got, &res); err != nil || res.Schema != "CustomerState" && res.Schema != "io.omnisync.v1.CustomerState" || strings.Join(res.IDs, ",") != "cus_a,cus_b" {
		t.Fatalf("python avro read %s (%v)", got, err)
	}
}

// With messages, an avro row is a CustomerExport: the state and the
// customer's messages, readable by goavro and by Python's avro.
func TestAvroWithMessages(t *testing.T) {
	out, sum := write(t, sampleStore(t), export.Options{Format: "avro", WithMessages: true})
	if sum.Messages != 1 {
		t.Fatalf("summary %+v, want 1 message", sum)
	}
	r, err := goavro.NewOCFReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	schema, err := export.WithMessagesSchema()
	if err != nil {
		t.Fatal(err)
	}
	want, err := goavro.NewCodec(schema)
	if err != nil {
		t.Fatal(err)
	}
	if r.Codec().CanonicalSchema() != want.CanonicalSchema() {
		t.Fatalf("embedded schema %s", r.Codec().Schema())
	}
	var got []string
	for r.Scan() {
		v, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		row := v.(map[string]any)
		id := row["state"].(map[string]any)["customer_id"].(string)
		for _, m := range row["messages"].([]any) {
			id += " " + m.(map[string]any)["message_id"].(string)
		}
		got = append(got, id)
	}
	if r.Err() != nil || strings.Join(got, ",") != "cus_a cus_a-m1,cus_b" {
		t.Fatalf("rows %q (%v)", got, r.Err())
	}

	py := testenv.Python(t, "avro.datafile")
	path := filepath.Join(t.TempDir(), "c.avro")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `import avro.datafile, avro.io, sys
for d in avro.datafile.DataFileReader(open(sys.argv[1], "rb"), avro.io.DatumReader()):
  print(" ".join([d["state"]["customer_id"]] + [m["message_id"] for m in d["messages"]]))`
	res, err := exec.Command(py, "-c", script, path).CombinedOutput()
	if err != nil || strings.TrimSpace(string(res)) != "cus_a cus_a-m1\ncus_b" {
		t.Fatalf("python avro read %q (%v)", res, err)
	}
}

func TestRefusals(t *testing.T) {
	st := sampleStore(t)
	for _, o := range []export.Options{{Format: "csv", WithMessages: true}, {Format: "parquet"}} {
		if _, err := export.Write(context.Background(), st, &bytes.Buffer{}, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	// A tag holding the separator would come back as two tags.
	ctx := context.Background()
	r, _ := merge.Apply(merge.Record{CustomerID: "cus_e"}, &events.CustomerEvent{EventID: "e", CustomerID: "cus_e", Channel: events.ChannelCRM,
		Op: events.OpUpsert, OccurredAt: t0, IngestedAt: t0, Profile: &events.Profile{Tags: []string{"a;b"}}}, merge.DefaultPolicy())
	if err := st.Apply(ctx, &store.Batch{Group: "g", Records: []merge.Record{r}}); err != nil {
		t.Fatal(err)
	}
	_, err := export.Write(ctx, st, &bytes.Buffer{}, export.Options{Format: "csv"})
	if err == nil || !strings.Contains(err.Error(), `customer cus_e: field tags`) {
		t.Fatalf("tag with ;: %v", err)
	}
}

func TestProfileHash(t *testing.T) {
	r := merge.Record{CustomerID: "x", Version: 3, Fields: map[string]merge.Register{
		"name": {Value: `"A"`, Channel: events.ChannelCRM}, "email": {Value: "null"}}}
	same := merge.Record{CustomerID: "y", Version: 1, Fields: map[string]merge.Register{"name": {Value: `"A"`, Channel: events.ChannelImport}}}
	other := merge.Record{CustomerID: "x", Fields: map[string]merge.Register{"name": {Value: `"B"`}}}
	if export.ProfileHash(r) != export.ProfileHash(same) || export.ProfileHash(r) == export.ProfileHash(other) {
		t.Fatal("ProfileHash: want equal for the same values whatever the provenance and ID, different for other values")
	}
}
