package devregistry

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/omnisync/omnisync/schemas"
)

// snapshot returns what the registry answers on its read endpoints, to
// compare two registries.
func snapshot(a *api, subjects []string, ids int) map[string]string {
	out := map[string]string{}
	get := func(path string) {
		_, body := a.do("GET", path, "")
		out[path] = body
	}
	get("/subjects")
	get("/subjects?deleted=true")
	get("/config")
	for _, s := range subjects {
		get("/subjects/" + s + "/versions")
		get("/subjects/" + s + "/versions?deleted=true")
		get("/subjects/" + s + "/versions/latest")
		get("/subjects/" + s + "/versions/1?deleted=true")
		get("/config/" + s)
	}
	for id := 1; id <= ids; id++ {
		get(fmt.Sprintf("/schemas/ids/%d", id))
		get(fmt.Sprintf("/schemas/ids/%d/versions?deleted=true", id))
	}
	return out
}

func TestRestartKeepsIDsVersionsAndConfig(t *testing.T) {
	c := testCluster(t)
	_, a := serve(t, c)
	own := schemas.CustomerEvent.Subject()
	history, err := schemas.History(schemas.CustomerEvent)
	if err != nil {
		t.Fatal(err)
	}
	maxID := a.register(own, history[0])
	maxID = max(maxID, a.register(own, schemas.Current(schemas.CustomerEvent)))
	idA1 := a.register("a", userV1)
	idA2 := a.register("a", userV2)
	if id := a.register("b", userV1Reformatted); id != idA1 {
		t.Fatalf("same schema in b got ID %d, want %d", id, idA1)
	}
	maxID = max(maxID, idA1, idA2, a.register("gone", userV3))
	a.must("PUT", "/config", `{"compatibility":"FORWARD"}`)
	a.must("PUT", "/config/b", `{"compatibility":"NONE"}`)
	a.must("DELETE", "/subjects/a/versions/1", "")
	a.must("DELETE", "/subjects/gone", "")
	a.must("DELETE", "/subjects/gone?permanent=true", "")
	subjects := []string{own, "a", "b", "gone"}
	before := snapshot(a, subjects, 6)

	// A second registry on the same cluster reads the topic back.
	_, b := serve(t, c)
	after := snapshot(b, subjects, 6)
	for path, want := range before {
		if after[path] != want {
			t.Errorf("after restart GET %s = %s, want %s", path, after[path], want)
		}
	}
	// It goes on where the first stopped: known schemas keep their IDs, a
	// new one gets the next ID, and versions continue.
	if id := b.register("b", userV1); id != idA1 {
		t.Errorf("re-registering: ID %d, want %d", id, idA1)
	}
	if id := b.register("c", userV2); id != idA2 {
		t.Errorf("userV2 in a new subject: ID %d, want %d", id, idA2)
	}
	next := b.register("a", rec(`{"name":"id","type":"string"},{"name":"age","type":"int","default":0},{"name":"x","type":"long","default":1}`))
	if next != maxID+1 {
		t.Errorf("new schema got ID %d, want %d", next, maxID+1)
	}
	if got := b.must("GET", "/subjects/a/versions/latest", ""); !strings.Contains(got, `"version":3`) {
		t.Errorf("next version of a: %s, want version 3", got)
	}
	// FORWARD (the global level read back) is applied: a reader of the
	// latest version must read the new schema's data.
	if status, got := b.do("POST", "/subjects/a/versions", schemaBody(rec(`{"name":"id","type":"string"}`))); status != http.StatusOK {
		t.Errorf("dropping defaulted fields under FORWARD: %d %s", status, got)
	}
	if status, got := b.do("POST", "/subjects/a/versions", schemaBody(rec(`{"name":"other","type":"string"}`))); status != http.StatusConflict {
		t.Errorf("dropping a required field under FORWARD: %d %s, want 409", status, got)
	}
}

// TestTopicFormat checks the records the registry writes against
// Confluent's format, and that a topic Confluent's registry wrote is read:
// its soft deletes, tombstones, configs and record kinds the registry skips.
func TestTopicFormat(t *testing.T) {
	c := testCluster(t)
	_, a := serve(t, c)
	a.register("s", userV1)
	a.must("PUT", "/config/s", `{"compatibility":"FULL"}`)
	a.must("PUT", "/config", `{"compatibility":"NONE"}`)
	a.must("DELETE", "/subjects/s", "")

	want := []struct{ key, value string }{
		{`{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}`, `{"subject":"s","version":1,"id":1,"schema":` + q(userV1) + `,"deleted":false}`},
		{`{"keytype":"CONFIG","subject":"s","magic":0}`, `{"compatibilityLevel":"FULL"}`},
		{`{"keytype":"CONFIG","subject":null,"magic":0}`, `{"compatibilityLevel":"NONE"}`},
		{`{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}`, `{"subject":"s","version":1}`},
	}
	got := readTopic(t, c, schemas.RegistryTopic, len(want))
	for i, w := range want {
		if string(got[i].Key) != w.key || string(got[i].Value) != w.value {
			t.Errorf("record %d:\n key %s\n value %s\nwant\n key %s\n value %s", i, got[i].Key, got[i].Value, w.key, w.value)
		}
	}

	// A topic as Confluent's registry leaves it, in another topic.
	const topic = "_confluent_schemas"
	cl := testClient(t, c)
	schemaKey := func(s string, v int) string {
		return fmt.Sprintf(`{"keytype":"SCHEMA","subject":%q,"version":%d,"magic":1}`, s, v)
	}
	schemaVal := func(s string, v, id int, schema string, deleted bool) string {
		return fmt.Sprintf(`{"subject":%q,"version":%d,"id":%d,"schema":%s,"deleted":%v}`, s, v, id, q(schema), deleted)
	}
	records := []struct{ key, value string }{
		{`{"keytype":"NOOP","magic":0}`, `null`},
		{schemaKey("x", 1), schemaVal("x", 1, 11, userV1, false)},
		{schemaKey("x", 2), schemaVal("x", 2, 12, userV2, false)},
		{schemaKey("x", 3), schemaVal("x", 3, 13, userV3, false)},
		{schemaKey("x", 3), ""}, // tombstone: hard-deleted
		{schemaKey("y", 1), schemaVal("y", 1, 11, userV1, false)},
		{schemaKey("y", 2), schemaVal("y", 2, 12, userV2, false)},
		{`{"keytype":"DELETE_SUBJECT","subject":"y","magic":0}`, `{"subject":"y","version":1}`},
		{schemaKey("j", 1), `{"subject":"j","version":1,"id":40,"schemaType":"JSON","schema":"{}","deleted":false}`},
		{`{"keytype":"CONFIG","subject":null,"magic":0}`, `{"compatibilityLevel":"FULL_TRANSITIVE","alias":null,"normalize":null}`},
		{`{"keytype":"CONFIG","subject":"x","magic":0}`, `{"compatibilityLevel":"NONE"}`},
		{`{"keytype":"CONFIG","subject":"x","magic":0}`, ""},
		{`{"keytype":"MODE","subject":null,"magic":0}`, `{"mode":"READWRITE"}`},
		{`not json`, `{}`},
	}
	if _, err := kadm.NewClient(cl).CreateTopic(testContext(t), 1, -1, map[string]*string{"cleanup.policy": ptr("compact")}, topic); err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		rec := &kgo.Record{Topic: topic, Key: []byte(r.key)}
		if r.value != "" {
			rec.Value = []byte(r.value)
		}
		if err := cl.ProduceSync(testContext(t), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	_, b := serve(t, c, Topic(topic))
	for _, check := range []struct{ path, want string }{
		{"/subjects", `["x","y"]`},
		{"/subjects/x/versions", `[1,2]`},
		{"/subjects/y/versions", `[2]`},
		{"/subjects/y/versions?deleted=true", `[1,2]`},
		{"/subjects/x/versions/latest", versionBody("x", 2, 12, userV2)},
		{"/schemas/ids/13", errBody(40403, "Schema 13 not found")},
		{"/schemas/ids/40", errBody(40403, "Schema 40 not found")},
		{"/config", `{"compatibilityLevel":"FULL_TRANSITIVE"}`},
		{"/config/x", errBody(40408, "Subject 'x' does not have subject-level compatibility configured")},
	} {
		if _, got := b.do("GET", check.path, ""); !sameJSON(got, check.want) {
			t.Errorf("GET %s = %s, want %s", check.path, got, check.want)
		}
	}
	// IDs go on after the highest ever seen, the unsupported JSON one too.
	if id := b.register("z", rec(`{"name":"z","type":"int"}`)); id != 41 {
		t.Errorf("next ID %d, want 41", id)
	}
}

func TestStoreFailureAnswers50001AndChangesNothing(t *testing.T) {
	c := testCluster(t)
	_, a := serve(t, c, WriteTimeout(5*time.Second))
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.TopicAuthorizationFailed, Count: -1})
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/subjects/s/versions", schemaBody(userV1)},
		{"PUT", "/config", `{"compatibility":"NONE"}`},
		{"PUT", "/config/s", `{"compatibility":"NONE"}`},
	} {
		status, got := a.do(w.method, w.path, w.body)
		if status != http.StatusInternalServerError || !strings.Contains(got, `"error_code":50001`) || !strings.Contains(got, "TOPIC_AUTHORIZATION_FAILED") {
			t.Errorf("%s %s with Kafka refusing writes: %d %s, want 500 and 50001", w.method, w.path, status, got)
		}
	}
	if got := a.must("GET", "/subjects", ""); got != "[]\n" {
		t.Errorf("subjects after failed write: %s", got)
	}
	if got := a.must("GET", "/config", ""); !sameJSON(got, `{"compatibilityLevel":"BACKWARD"}`) {
		t.Errorf("config after failed write: %s", got)
	}
	fault.Remove()
	// The ID the failed write had reserved is not handed out again: that
	// write might have landed.
	if id := a.register("s", userV1); id != 2 {
		t.Errorf("ID after a failed write: %d, want 2", id)
	}
	// The registry reads back only what was acknowledged.
	_, b := serve(t, c)
	if got := b.must("GET", "/subjects/s/versions", ""); !sameJSON(got, `[1]`) {
		t.Errorf("versions after restart: %s", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := testCluster(t)
	_, a := serve(t, c)
	const writers, each = 8, 10
	ids := make([][]int, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range each {
				// Writers share schemas and subjects pairwise.
				schema := rec(fmt.Sprintf(`{"name":"f%d","type":"int","default":%d}`, i, w%2))
				ids[w] = append(ids[w], a.register(fmt.Sprintf("subject-%d", w/2), schema))
			}
		}()
		go func() { // readers, racing the writers
			defer wg.Done()
			for range each {
				a.do("GET", "/subjects", "")
				a.do("GET", "/schemas/ids/1", "")
				a.do("GET", fmt.Sprintf("/subjects/subject-%d/versions/latest", w/2), "")
			}
		}()
	}
	wg.Wait()
	seen := map[int]string{}
	for w := range writers {
		for i, id := range ids[w] {
			key := fmt.Sprintf("f%d/%d", i, w%2)
			if other, ok := seen[id]; ok && other != key {
				t.Errorf("ID %d given to %s and %s", id, other, key)
			}
			seen[id] = key
		}
	}
	if len(seen) != 2*each {
		t.Errorf("%d distinct IDs, want %d", len(seen), 2*each)
	}
	_, b := serve(t, c)
	for s := range writers / 2 {
		path := fmt.Sprintf("/subjects/subject-%d/versions", s)
		if x, y := a.must("GET", path, ""), b.must("GET", path, ""); x != y {
			t.Errorf("%s: %s before restart, %s after", path, x, y)
		}
	}
}

// readTopic reads the first n records of topic.
func readTopic(t *testing.T, c *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := testClient(t, c, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	var out []*kgo.Record
	ctx := testContext(t)
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// TestUnsettledWriteWaitsForKafka covers a write Kafka may or may not have
// taken (its answers time out): the request waits until Kafka settles it,
// so the registry never tells a client something its topic does not say,
// and reads go on meanwhile.
func TestUnsettledWriteWaitsForKafka(t *testing.T) {
	c := testCluster(t)
	_, a := serve(t, c, WriteTimeout(200*time.Millisecond))
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: -1})
	type answer struct {
		status int
		body   string
	}
	answered := make(chan answer)
	go func() {
		status, body := a.do("POST", "/subjects/s/versions", schemaBody(userV1))
		answered <- answer{status, body}
	}()
	if err := fault.Wait(testContext(t), 3); err != nil {
		t.Fatal(err)
	}
	if got := a.must("GET", "/subjects", ""); got != "[]\n" {
		t.Errorf("subjects while the write is unsettled: %s", got)
	}
	select {
	case got := <-answered:
		t.Fatalf("answered %d %s before Kafka settled the write", got.status, got.body)
	default:
	}
	fault.Remove()
	if got := <-answered; got.status != http.StatusOK || !sameJSON(got.body, `{"id":1}`) {
		t.Fatalf("settled write: %d %s", got.status, got.body)
	}
	_, b := serve(t, c)
	for _, r := range []*api{a, b} {
		if got := r.must("GET", "/subjects/s/versions", ""); !sameJSON(got, `[1]`) {
			t.Errorf("versions: %s", got)
		}
	}
}

// TestUnreachableKafkaAnswers50001 covers writes that cannot be sent at all:
// they fail after WriteTimeout.
func TestUnreachableKafkaAnswers50001(t *testing.T) {
	c := testCluster(t)
	_, a := serve(t, c, WriteTimeout(300*time.Millisecond))
	c.Close()
	start := time.Now()
	status, got := a.do("POST", "/subjects/s/versions", schemaBody(userV1))
	if status != http.StatusInternalServerError || !strings.Contains(got, `"error_code":50001`) {
		t.Fatalf("write with Kafka gone: %d %s, want 500 and 50001", status, got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("write with Kafka gone took %v", took)
	}
	if got := a.must("GET", "/subjects", ""); got != "[]\n" {
		t.Errorf("subjects after failed write: %s", got)
	}
}
