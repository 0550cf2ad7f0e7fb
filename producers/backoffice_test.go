package producers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/schemas"
)

// since returns the records written to topic after from, decoded into T
// when keep says they belong to the test (other tests share the topics).
func since[T any](t *testing.T, e *env, topic string, from map[int32]kgo.Offset, keep func(T) bool) []T {
	t.Helper()
	ctx := context.Background()
	ends, err := kadm.NewClient(e.cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset - from[o.Partition].EpochOffset().Offset })
	c, err := kafka.NewClient(e.k.Config(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []T
	for read := int64(0); read < total; {
		if pctx.Err() != nil {
			t.Fatalf("read %d of the %d records of %s", read, total, topic)
		}
		c.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			read++
			var v T
			if e.serde.Decode(ctx, r.Value, &v) == nil && keep(v) {
				out = append(out, v)
			}
		})
	}
	return out
}

func hasIdentity(ids []events.Identity, kind, scope string) bool {
	return slices.ContainsFunc(ids, func(id events.Identity) bool { return id.Kind == kind && id.Scope == scope })
}

// A CRM's upsert, link and delete land on the customer its ID resolves
// to; the link's identities are in the identity directory; a change sent
// again has the same event ID; another system's key scopes the same CRM ID
// to another customer; bad changes get 400 naming the field and a dead
// letter.
func TestCRMChangesEndToEnd(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		creds := testCredentials()
		creds.Channels.CRM = map[string]ingest.KeyCredential{"main": {Key: "crm-main-key"}, "erp": {Key: "crm-erp-key"}}
		e := startWith(t, k, creds)
		from := testenv.EndOffsets(t, e.cl, schemas.CustomerEventsTopic, schemas.IdentitiesTopic)
		u := testenv.UniqueName(t, "c")
		crmID, gone, user := "C-"+u, "C-gone-"+u, "u-"+u
		body := fmt.Sprintf(`{"changes":[
			{"change_id":"chg-1","type":"upsert","crm_id":%q,"occurred_at":"2026-11-22T09:00:00+08:00","profile":{"name":"李娜","phone":"138 0013 8000","vip_level":4}},
			{"change_id":"chg-2","type":"link","crm_id":%q,"occurred_at":"2026-11-22T09:00:01+08:00","identities":[{"kind":"app_user","value":%q}]},
			{"change_id":"chg-3","type":"delete","crm_id":%q,"occurred_at":"2026-11-22T09:05:00+08:00"}]}`, crmID, crmID, user, gone)
		code, first := postJSON(t, e.url+"/ingest/crm", "crm-main-key", body)
		if code != http.StatusOK {
			t.Fatalf("CRM batch: %d %s", code, first)
		}
		if code, again := postJSON(t, e.url+"/ingest/crm", "crm-main-key", body); code != http.StatusOK || again != first {
			t.Fatalf("the same changes sent again: %d %s, want the same event IDs as %s", code, again, first)
		}
		if code, body := postJSON(t, e.url+"/ingest/crm", "crm-erp-key", fmt.Sprintf(`{"changes":[{"change_id":"chg-1","type":"upsert","crm_id":%q,"occurred_at":"2026-11-22T09:00:00+08:00","profile":{"name":"ERP"}}]}`, crmID)); code != http.StatusOK {
			t.Fatalf("erp: %d %s", code, body)
		}
		if code, _ := postJSON(t, e.url+"/ingest/crm", "web-key", body); code != http.StatusUnauthorized {
			t.Fatalf("the web key on the CRM endpoint: %d, want 401", code)
		}
		code, refused := postJSON(t, e.url+"/ingest/crm", "crm-main-key", fmt.Sprintf(`{"changes":[{"change_id":"chg-9","type":"upsert","crm_id":%q,"occurred_at":"2026-11-22T09:00:00+08:00","profile":{"phone":"12"}}]}`, crmID))
		var r refusal
		_ = json.Unmarshal([]byte(refused), &r)
		if code != http.StatusBadRequest || r.Field != "changes[0].profile.phone" || r.DeadLetterID == "" {
			t.Fatalf("a bad phone: %d %s", code, refused)
		}
		if dl, ok := e.deadLetters(t)[r.DeadLetterID]; !ok || dl.Component != "producer/crm" || !strings.Contains(string(dl.Payload), `"chg-9"`) {
			t.Fatalf("dead letter %s: %+v (found %v)", r.DeadLetterID, dl, ok)
		}

		owner := events.Identity{Kind: "crm", Scope: "main", Value: crmID, Verified: true}
		customer := ingest.CustomerIDFor(owner)
		evs := since(t, e, schemas.CustomerEventsTopic, from[schemas.CustomerEventsTopic], func(ev events.CustomerEvent) bool {
			return slices.ContainsFunc(ev.Identities, func(id events.Identity) bool { return id.Kind == "crm" && strings.HasSuffix(id.Value, u) })
		})
		byChange := map[string][]events.CustomerEvent{}
		for _, ev := range evs {
			byChange[ev.Identities[0].Scope+"/"+*ev.SourceEventID] = append(byChange[ev.Identities[0].Scope+"/"+*ev.SourceEventID], ev)
			if ev.Channel != events.ChannelCRM || !strings.HasPrefix(ev.Source, "producer/crm/"+ev.Identities[0].Scope+"@") {
				t.Errorf("event %s: channel %s source %s", ev.EventID, ev.Channel, ev.Source)
			}
		}
		up, link, del, erp := byChange["main/chg-1"], byChange["main/chg-2"], byChange["main/chg-3"], byChange["erp/chg-1"]
		if len(up) != 1 || up[0].CustomerID != customer || up[0].Op != events.OpUpsert || *up[0].Profile.Phone != "+8613800138000" || *up[0].Profile.VIPLevel != 4 {
			t.Fatalf("upsert events %+v (the re-sent batch is absorbed by the producer)", up)
		}
		if len(link) != 1 || link[0].CustomerID != customer || !slices.Contains(link[0].Identities, events.Identity{Kind: "app_user", Value: user, Verified: true}) {
			t.Fatalf("link events %+v", link)
		}
		if len(del) != 1 || del[0].Op != events.OpDelete || del[0].CustomerID != ingest.CustomerIDFor(events.Identity{Kind: "crm", Scope: "main", Value: gone, Verified: true}) {
			t.Fatalf("delete events %+v", del)
		}
		if len(erp) != 1 || erp[0].CustomerID == customer || erp[0].EventID == up[0].EventID {
			t.Fatalf("the erp system's change of the same CRM ID and change ID: %+v, want another customer and event", erp)
		}
		links := since(t, e, schemas.IdentitiesTopic, from[schemas.IdentitiesTopic], func(l events.IdentityLink) bool {
			return strings.HasSuffix(l.Identity.Value, u)
		})
		got := map[string]string{}
		for _, l := range links {
			got[ingest.IdentityKey(l.Identity)] = l.CustomerID
		}
		if got[ingest.IdentityKey(owner)] != customer || got["app_user::"+user] != customer {
			t.Fatalf("identity links %v, want the CRM ID and the linked app user on %s", got, customer)
		}
	})
}

// The must-show of the import: a CSV with good and bad rows gives exact
// per-line errors, each rejected row is in the dead-letter topic byte for
// byte, and a second import of the same file changes no customer.
func TestImportReportsEachBadRowAndAddsNothingTwice(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		e := start(t, k)
		from := testenv.EndOffsets(t, e.cl, schemas.CustomerEventsTopic, schemas.IdentitiesTopic)
		source := testenv.UniqueName(t, "crm")
		dir := t.TempDir()
		mapping := filepath.Join(dir, "mapping.yaml")
		write(t, mapping, "columns:\n  Contact ID: id\n  Full Name: name\n  Mobile: phone\n  Street: address.street\n  Level: vip_level\n")
		csv := filepath.Join(dir, "export.csv")
		write(t, csv, "\ufeffContact ID,Full Name,Mobile,Street,Level\r\n"+
			"C-1,李娜,138 0013 8000,南京西路 1266 号,3\r\n"+ // 2: good
			"C-2,Wang Wei,12,建国路 88 号,1\r\n"+ // 3: bad phone
			"C-3,Zh\xffang,13700137000,x,1\r\n"+ // 4: broken UTF-8
			",No ID,13700137001,x,1\r\n"+ // 5: missing ID
			"C-1,李娜,138 0013 8000,南京西路 1266 号,3\r\n"+ // 6: duplicate of line 2
			"C-4,Too,Few,Columns\r\n"+ // 7: wrong column count
			"C-5,Zhang Min,13700137000,\"深南大道\n6008 号\",2\r\n"+ // 8-9: good, a quoted line break
			"C-1,Li Na,13800138000,elsewhere,3\r\n"+ // 10: C-1 again, other values
			"C-6,Chen Jie,13900139000,x,high\r\n") // 11: vip_level not a number
		m, err := importer.LoadMapping(mapping)
		if err != nil {
			t.Fatal(err)
		}
		asOf := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
		run := func() importer.Summary {
			t.Helper()
			sum, err := importer.Run(context.Background(), e.p, csv, importer.Options{Format: "csv", Mapping: m, Source: source, AsOf: asOf, BatchSize: 2})
			if err != nil {
				t.Fatal(err)
			}
			return sum
		}
		first := run()
		want := []importer.Rejection{
			{Line: 3, Field: "phone", Reason: `"12" is not a valid phone number`},
			{Line: 4, Field: "name", Reason: `column "Full Name" is not valid UTF-8 (byte 3; is the file in another encoding? save it as UTF-8)`},
			{Line: 5, Field: "id", Reason: `column "Contact ID" is empty; every row needs the source's customer ID`},
			{Line: 6, Reason: "duplicate of line 2"},
			{Line: 7, Reason: "4 columns, the header has 5"},
			{Line: 10, Field: "id", Reason: `"C-1" is also on line 2 with other values; a file holds one row per customer`},
			{Line: 11, Field: "vip_level", Reason: `column "Level": "high" is not a whole number`},
		}
		var got []importer.Rejection
		for _, r := range first.Rejections {
			if r.DeadLetterID == "" {
				t.Errorf("line %d rejected without a dead letter", r.Line)
			}
			got = append(got, importer.Rejection{Line: r.Line, Field: r.Field, Reason: r.Reason})
		}
		if !slices.Equal(got, want) {
			t.Fatalf("rejections:\n got %+v\nwant %+v", got, want)
		}
		if first.Rows != 9 || first.Imported != 2 || first.Rejected != 7 {
			t.Fatalf("summary %+v, want 9 rows, 2 imported, 7 rejected", first)
		}
		raw := map[int]string{3: "C-2,Wang Wei,12,建国路 88 号,1", 4: "C-3,Zh\xffang,13700137000,x,1", 7: "C-4,Too,Few,Columns"}
		letters := e.deadLetters(t)
		for _, r := range first.Rejections {
			dl, ok := letters[r.DeadLetterID]
			if !ok || dl.Component != "producer/import" || dl.Headers["line"] != fmt.Sprint(r.Line) || dl.Headers["source"] != source || dl.Reason != r.Reason {
				t.Errorf("line %d: dead letter %+v (found %v)", r.Line, dl, ok)
			}
			if want, ok := raw[r.Line]; ok && string(dl.Payload) != want {
				t.Errorf("line %d: dead letter payload %q, want the row's bytes %q", r.Line, dl.Payload, want)
			}
		}

		mine := func(ev events.CustomerEvent) bool { return hasIdentity(ev.Identities, "crm", source) }
		imported := since(t, e, schemas.CustomerEventsTopic, from[schemas.CustomerEventsTopic], mine)
		if len(imported) != 2 {
			t.Fatalf("%d events in Kafka, want the 2 good rows", len(imported))
		}
		records := map[string]merge.Record{}
		for _, ev := range imported {
			crmID := ev.Identities[0].Value
			if ev.Channel != events.ChannelImport || ev.CustomerID != ingest.CustomerIDFor(events.Identity{Kind: "crm", Scope: source, Value: crmID, Verified: true}) || !ev.OccurredAt.Equal(asOf) {
				t.Errorf("event %+v", ev)
			}
			if crmID == "C-5" && ev.Profile.Address.Street != "深南大道\n6008 号" {
				t.Errorf("C-5's street %q", ev.Profile.Address.Street)
			}
			records[ev.CustomerID], _ = merge.Apply(records[ev.CustomerID], &ev, nil)
		}

		second := run()
		if second.Imported != 2 || second.Rejected != 7 {
			t.Fatalf("second import %+v", second)
		}
		all := since(t, e, schemas.CustomerEventsTopic, from[schemas.CustomerEventsTopic], mine)
		ids := map[string]bool{}
		for _, ev := range all {
			ids[ev.EventID] = true
		}
		if len(all) != 4 || len(ids) != 2 {
			t.Fatalf("after two imports: %d events with %d IDs, want the 2 events twice", len(all), len(ids))
		}
		for _, ev := range all[2:] {
			if _, out := merge.Apply(records[ev.CustomerID], &ev, nil); out.Changed {
				t.Errorf("the second import's event %s changed customer %s", ev.EventID, ev.CustomerID)
			}
		}
	})
}

// JSON Lines and XML files go the same way: a bad line is reported with its
// number, the good ones imported.
func TestImportJSONLinesAndXML(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		e := start(t, k)
		source := testenv.UniqueName(t, "shop")
		dir := t.TempDir()
		jsonl := filepath.Join(dir, "p.jsonl")
		write(t, jsonl, `{"id":"S-1","name":"李娜","tags":["vip","b2b"],"vip_level":3}`+"\n\n"+
			`{"id":"S-2","name":"Bad \xff"}`+"\n"+
			`{"id":"S-3","email":"not-an-email"}`+"\n"+
			`{"id":"S-4","occurred_at":"2026-11-20T10:00:00+08:00"}`+"\n")
		sum, err := importer.Run(context.Background(), e.p, jsonl, importer.Options{Format: "jsonl", Source: source})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Imported != 2 || sum.Rejected != 2 || sum.Rejections[0].Line != 3 || sum.Rejections[1].Line != 4 || sum.Rejections[1].Field != "email" {
			t.Fatalf("JSON Lines: %+v", sum)
		}
		xmlFile := filepath.Join(dir, "p.xml")
		write(t, xmlFile, "<?xml version=\"1.0\"?>\n<customers>\n  <customer><id>X-1</id><name>王伟</name></customer>\n"+
			"  <customer>\n    <id>X-2</id>\n    <phone>12</phone>\n  </customer>\n</customers>\n")
		sum, err = importer.Run(context.Background(), e.p, xmlFile, importer.Options{Format: "xml", Source: source})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Imported != 1 || sum.Rejected != 1 || sum.Rejections[0].Line != 4 || sum.Rejections[0].Field != "phone" {
			t.Fatalf("XML: %+v", sum)
		}
	})
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
