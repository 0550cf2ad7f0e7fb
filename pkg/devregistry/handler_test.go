package devregistry

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/schemas"
)

var (
	userV1 = rec(`{"name":"id","type":"string"}`)
	// userV1 again, as another client might send it: other whitespace and key
	// order, and a primitive type written as an object.
	userV1Reformatted = "{\n  \"namespace\": \"t\", \"type\": \"record\",\n  \"fields\": [{\"type\": {\"type\": \"string\"}, \"name\": \"id\"}],\n  \"name\": \"User\"\n}"
	// userV1WithDefault differs from userV1 only by a default, which Avro's
	// Parsing Canonical Form would drop: it is a new schema all the same.
	userV1WithDefault = rec(`{"name":"id","type":"string","default":""}`)
	userV2            = rec(`{"name":"id","type":"string"},{"name":"age","type":"int","default":0}`)
	userV3            = rec(`{"name":"id","type":"string"},{"name":"age","type":"int","default":0},{"name":"tags","type":{"type":"array","items":"string"},"default":[]}`)
	userBad           = rec(`{"name":"id","type":"string"},{"name":"email","type":"string"}`)
)

func errBody(code int, msg string) string {
	return fmt.Sprintf(`{"error_code":%d,"message":%s}`, code, q(msg))
}

func versionBody(subject string, version, id int, schema string) string {
	return fmt.Sprintf(`{"subject":%s,"version":%d,"id":%d,"schema":%s}`, q(subject), version, id, q(schema))
}

// TestEndpoints walks every endpoint through one registry's life, in order:
// each step depends on the ones before it.
func TestEndpoints(t *testing.T) {
	ownSubject := schemas.CustomerEvent.Subject()
	steps := []struct {
		method, path, body string
		status             int
		want               string   // the body, compared as JSON (raw text for .../schema); "" skips
		contains           []string // substrings of the body
	}{
		// An empty registry.
		{"GET", "/subjects", "", 200, `[]`, nil},
		{"GET", "/schemas/types", "", 200, `["AVRO"]`, nil},
		{"GET", "/config", "", 200, `{"compatibilityLevel":"BACKWARD"}`, nil},
		{"GET", "/mode", "", 200, `{"mode":"READWRITE"}`, nil},
		{"GET", "/subjects/s/versions", "", 404, errBody(40401, "Subject 's' not found."), nil},
		{"GET", "/subjects/s/versions/1", "", 404, errBody(40401, "Subject 's' not found."), nil},
		{"GET", "/subjects/s/versions/latest", "", 404, errBody(40401, "Subject 's' not found."), nil},
		{"GET", "/subjects/s/versions/abc", "", 422, errBody(42202, `The specified version 'abc' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`), nil},
		{"GET", "/subjects/s/versions/0", "", 422, "", []string{`"error_code":42202`}},
		{"GET", "/subjects/s/versions/-2", "", 422, "", []string{`"error_code":42202`}},
		{"GET", "/nowhere", "", 404, errBody(404, "HTTP 404 Not Found"), nil},

		// Registering.
		{"POST", "/subjects/s/versions", schemaBody(userV1), 200, `{"id":1}`, nil},
		{"POST", "/subjects/s/versions", schemaBody(userV1), 200, `{"id":1}`, nil},
		{"POST", "/subjects/s/versions", schemaBody(userV1Reformatted), 200, `{"id":1}`, nil},
		{"POST", "/subjects/s/versions", `{"schema":` + q(userV1) + `,"schemaType":"AVRO","references":[]}`, 200, `{"id":1}`, nil},
		{"GET", "/subjects/s/versions", "", 200, `[1]`, nil},
		{"GET", "/subjects/s/versions/1", "", 200, versionBody("s", 1, 1, userV1), nil},
		{"GET", "/subjects/s/versions/latest", "", 200, versionBody("s", 1, 1, userV1), nil},
		{"GET", "/subjects/s/versions/-1", "", 200, versionBody("s", 1, 1, userV1), nil},
		{"GET", "/subjects/s/versions/2", "", 404, errBody(40402, "Version 2 not found."), nil},
		{"GET", "/subjects/s/versions/1/schema", "", 200, userV1, nil},
		{"POST", "/subjects/s/versions", schemaBody(userV2), 200, `{"id":2}`, nil},
		{"POST", "/subjects/s/versions", schemaBody(userBad), 409, "", []string{
			`"error_code":409`, `incompatible with an earlier schema for subject \"s\"`,
			"BACKWARD: the new schema cannot read data written with version 2", "reader field email is missing from the writer and has no default"}},
		{"POST", "/subjects/s/versions", schemaBody(`{"type":"record","name":"R"}`), 422, "", []string{`"error_code":42201`, "no fields"}},
		{"POST", "/subjects/s/versions", schemaBody(`nope`), 422, "", []string{`"error_code":42201`, "Invalid schema"}},
		{"POST", "/subjects/s/versions", schemaBody(`{"type":"strin"}`), 422, "", []string{`"error_code":42201`}},
		{"POST", "/subjects/s/versions", `{"schema":"{}","schemaType":"JSON"}`, 422, errBody(42201, "Invalid schema type JSON"), nil},
		{"POST", "/subjects/s/versions", `{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}`, 422, errBody(42201, "Invalid schema type PROTOBUF"), nil},
		{"POST", "/subjects/s/versions", `{"schema":` + q(userV1) + `,"references":[{"name":"x","subject":"y","version":1}]}`, 422, "", []string{`"error_code":42201`, "references"}},
		{"POST", "/subjects/s/versions", `{"schema":""}`, 422, errBody(42201, "Empty schema"), nil},
		{"POST", "/subjects/s/versions", `{"schema":` + q(userV1) + `,"id":7}`, 422, "", []string{`"error_code":42205`}},
		{"POST", "/subjects/s/versions", `{not json`, 400, "", []string{`"error_code":400`}},
		{"POST", "/subjects/s/versions", schemaBody(userV1WithDefault), 200, `{"id":3}`, nil},
		{"GET", "/subjects/s/versions", "", 200, `[1,2,3]`, nil},

		// Looking up.
		{"POST", "/subjects/s", schemaBody(userV1Reformatted), 200, versionBody("s", 1, 1, userV1), nil},
		{"POST", "/subjects/s", schemaBody(userV2), 200, versionBody("s", 2, 2, userV2), nil},
		{"POST", "/subjects/s", schemaBody(userBad), 404, errBody(40403, "Schema not found"), nil},
		{"POST", "/subjects/nobody", schemaBody(userV1), 404, errBody(40401, "Subject 'nobody' not found."), nil},
		{"POST", "/subjects/s", schemaBody(`{"type":"record"}`), 422, "", []string{`"error_code":42201`}},

		// Schemas by ID; the same schema in another subject shares its ID.
		{"GET", "/schemas/ids/1", "", 200, `{"schema":` + q(userV1) + `}`, nil},
		{"GET", "/schemas/ids/1/schema", "", 200, userV1, nil},
		{"GET", "/schemas/ids/99", "", 404, errBody(40403, "Schema 99 not found"), nil},
		{"GET", "/schemas/ids/x", "", 404, errBody(40403, "Schema x not found"), nil},
		{"POST", "/subjects/other/versions", schemaBody(userV1Reformatted), 200, `{"id":1}`, nil},
		{"GET", "/subjects/other/versions/1", "", 200, versionBody("other", 1, 1, userV1), nil},
		{"GET", "/schemas/ids/1/versions", "", 200, `[{"subject":"other","version":1},{"subject":"s","version":1}]`, nil},
		{"GET", "/schemas/ids/1/subjects", "", 200, `["other","s"]`, nil},
		{"GET", "/schemas/ids/99/versions", "", 404, errBody(40403, "Schema 99 not found"), nil},
		{"GET", "/subjects", "", 200, `["other","s"]`, nil},
		{"GET", "/subjects?subjectPrefix=o", "", 200, `["other"]`, nil},

		// Compatibility configuration.
		{"GET", "/config/s", "", 404, errBody(40408, "Subject 's' does not have subject-level compatibility configured"), nil},
		{"GET", "/config/s?defaultToGlobal=true", "", 200, `{"compatibilityLevel":"BACKWARD"}`, nil},
		{"PUT", "/config/s", `{"compatibility":"full"}`, 200, `{"compatibility":"FULL"}`, nil},
		{"GET", "/config/s", "", 200, `{"compatibilityLevel":"FULL"}`, nil},
		{"PUT", "/config/s", `{"compatibility":"SIDEWAYS"}`, 422, errBody(42203, "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"), nil},
		{"PUT", "/config/s", `{}`, 422, "", []string{`"error_code":42203`}},
		{"PUT", "/config", `{"compatibility":"NONE"}`, 200, `{"compatibility":"NONE"}`, nil},
		{"GET", "/config", "", 200, `{"compatibilityLevel":"NONE"}`, nil},
		{"GET", "/config/x?defaultToGlobal=true", "", 200, `{"compatibilityLevel":"NONE"}`, nil},
		{"GET", "/config/s", "", 200, `{"compatibilityLevel":"FULL"}`, nil},
		{"DELETE", "/config/s", "", 200, `{"compatibilityLevel":"FULL"}`, nil},
		{"DELETE", "/config/s", "", 404, errBody(40401, "Subject 's' not found."), nil},
		{"GET", "/config/s", "", 404, "", []string{`"error_code":40408`}},
		{"DELETE", "/config", "", 200, `{"compatibilityLevel":"NONE"}`, nil},
		{"GET", "/config", "", 200, `{"compatibilityLevel":"BACKWARD"}`, nil},
		// omnisync's own subjects are FULL unless configured otherwise.
		{"GET", "/config/" + ownSubject, "", 200, `{"compatibilityLevel":"FULL"}`, nil},
		{"PUT", "/config/" + ownSubject, `{"compatibility":"FULL_TRANSITIVE"}`, 200, `{"compatibility":"FULL_TRANSITIVE"}`, nil},
		{"GET", "/config/" + ownSubject, "", 200, `{"compatibilityLevel":"FULL_TRANSITIVE"}`, nil},
		{"DELETE", "/config/" + ownSubject, "", 200, `{"compatibilityLevel":"FULL_TRANSITIVE"}`, nil},
		{"GET", "/config/" + ownSubject, "", 200, `{"compatibilityLevel":"FULL"}`, nil},

		// Compatibility checks.
		{"POST", "/compatibility/subjects/s/versions/latest", schemaBody(userV3), 200, `{"is_compatible":true}`, nil},
		{"POST", "/compatibility/subjects/s/versions/latest?verbose=true", schemaBody(userV3), 200, `{"is_compatible":true,"messages":[]}`, nil},
		{"POST", "/compatibility/subjects/s/versions/latest", schemaBody(userBad), 200, `{"is_compatible":false}`, nil},
		{"POST", "/compatibility/subjects/s/versions/latest?verbose=True", schemaBody(userBad), 200, "", []string{
			`"is_compatible":false`, `"messages":["BACKWARD: the new schema cannot read data written with version 3`, "email"}},
		{"POST", "/compatibility/subjects/s/versions/1", schemaBody(userV2), 200, `{"is_compatible":true}`, nil},
		{"POST", "/compatibility/subjects/s/versions", schemaBody(userV3), 200, `{"is_compatible":true}`, nil},
		{"POST", "/compatibility/subjects/s/versions/9", schemaBody(userV2), 404, errBody(40402, "Version 9 not found."), nil},
		{"POST", "/compatibility/subjects/s/versions/x", schemaBody(userV2), 422, "", []string{`"error_code":42202`}},
		{"POST", "/compatibility/subjects/nobody/versions/latest", schemaBody(userV2), 200, `{"is_compatible":true}`, nil},
		{"POST", "/compatibility/subjects/nobody/versions/1", schemaBody(userV2), 404, errBody(40401, "Subject 'nobody' not found."), nil},
		{"POST", "/compatibility/subjects/s/versions/latest", schemaBody(`{"type":"record"}`), 422, "", []string{`"error_code":42201`}},
		{"POST", "/compatibility/subjects/s/versions/latest?verbose=true", schemaBody(`{"type":"record"}`), 200, "", []string{`"is_compatible":false`, "Invalid schema"}},

		// Deleting versions: soft first, then permanently.
		{"DELETE", "/subjects/s/versions/1?permanent=true", "", 404, errBody(40407, "Subject 's' Version 1 was not deleted first before being permanently deleted"), nil},
		{"DELETE", "/subjects/s/versions/1", "", 200, `1`, nil},
		{"DELETE", "/subjects/s/versions/1", "", 404, errBody(40406, "Subject 's' Version 1 was soft deleted. Set permanent=true to delete permanently"), nil},
		{"GET", "/subjects/s/versions", "", 200, `[2,3]`, nil},
		{"GET", "/subjects/s/versions?deleted=true", "", 200, `[1,2,3]`, nil},
		{"GET", "/subjects/s/versions/1", "", 404, errBody(40402, "Version 1 not found."), nil},
		{"GET", "/subjects/s/versions/1?deleted=true", "", 200, versionBody("s", 1, 1, userV1), nil},
		{"POST", "/subjects/s", schemaBody(userV1), 404, errBody(40403, "Schema not found"), nil},
		{"POST", "/subjects/s?deleted=true", schemaBody(userV1), 200, versionBody("s", 1, 1, userV1), nil},
		{"GET", "/schemas/ids/1/versions", "", 200, `[{"subject":"other","version":1}]`, nil},
		{"GET", "/schemas/ids/1/versions?deleted=true", "", 200, `[{"subject":"other","version":1},{"subject":"s","version":1}]`, nil},
		{"DELETE", "/subjects/s/versions/1?permanent=true", "", 200, `1`, nil},
		{"GET", "/subjects/s/versions?deleted=true", "", 200, `[2,3]`, nil},
		{"DELETE", "/subjects/s/versions/7", "", 404, errBody(40402, "Version 7 not found."), nil},
		{"DELETE", "/subjects/s/versions/abc", "", 422, "", []string{`"error_code":42202`}},
		{"DELETE", "/subjects/s/versions/latest", "", 200, `3`, nil},
		{"GET", "/subjects/s/versions/latest", "", 200, versionBody("s", 2, 2, userV2), nil},

		// Deleting subjects.
		{"DELETE", "/subjects/s?permanent=true", "", 404, errBody(40405, "Subject 's' was not deleted first before being permanently deleted"), nil},
		{"DELETE", "/subjects/s", "", 200, `[2]`, nil},
		{"DELETE", "/subjects/s", "", 404, errBody(40404, "Subject 's' was soft deleted. Set permanent=true to delete permanently"), nil},
		{"DELETE", "/subjects/nobody", "", 404, errBody(40401, "Subject 'nobody' not found."), nil},
		{"GET", "/subjects", "", 200, `["other"]`, nil},
		{"GET", "/subjects?deleted=true", "", 200, `["other","s"]`, nil},
		{"GET", "/subjects/s/versions", "", 404, errBody(40401, "Subject 's' not found."), nil},
		{"GET", "/subjects/s/versions/latest", "", 404, errBody(40401, "Subject 's' not found."), nil},
		{"GET", "/schemas/ids/2", "", 200, `{"schema":` + q(userV2) + `}`, nil}, // soft-deleted schemas stay readable
		// Registering a soft-deleted schema again makes a new version with its old ID.
		{"POST", "/subjects/s/versions", schemaBody(userV2), 200, `{"id":2}`, nil},
		{"GET", "/subjects/s/versions", "", 200, `[4]`, nil},
		{"GET", "/subjects/s/versions?deleted=true", "", 200, `[2,3,4]`, nil},
		// A permanent delete forgets the subject, its config and, once no
		// version uses them, its schemas.
		{"PUT", "/config/other", `{"compatibility":"NONE"}`, 200, `{"compatibility":"NONE"}`, nil},
		{"DELETE", "/subjects/other", "", 200, `[1]`, nil},
		{"DELETE", "/subjects/other?permanent=true", "", 200, `[1]`, nil},
		{"GET", "/subjects?deleted=true", "", 200, `["s"]`, nil},
		{"GET", "/config/other", "", 404, "", []string{`"error_code":40408`}},
		{"GET", "/schemas/ids/1", "", 404, errBody(40403, "Schema 1 not found"), nil},
		// IDs are never reused: the forgotten schema gets a new one.
		{"POST", "/subjects/other/versions", schemaBody(userV1), 200, `{"id":4}`, nil},
		{"GET", "/subjects/other/versions", "", 200, `[1]`, nil},
	}
	_, a := serve(t, testCluster(t))
	for i, s := range steps {
		status, got := a.do(s.method, s.path, s.body)
		where := fmt.Sprintf("step %d: %s %s", i, s.method, s.path)
		if status != s.status {
			t.Fatalf("%s: status %d, want %d; body %s", where, status, s.status, got)
		}
		raw := strings.HasSuffix(strings.Split(s.path, "?")[0], "/schema")
		switch {
		case s.want == "":
		case raw && got != s.want:
			t.Fatalf("%s: body\n%s\nwant\n%s", where, got, s.want)
		case !raw && !sameJSON(got, s.want):
			t.Fatalf("%s: body\n%s\nwant\n%s", where, got, s.want)
		}
		for _, sub := range s.contains {
			if !strings.Contains(got, sub) {
				t.Fatalf("%s: body %s does not contain %q", where, got, sub)
			}
		}
	}
}

func TestSubjectNamesAreEscaped(t *testing.T) {
	_, a := serve(t, testCluster(t))
	for _, subject := range []string{"a/b", "with space", "ünïcode-value", "q?x=1"} {
		esc := strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(subject, "?", "%3F"), "/", "%2F"), " ", "%20")
		id := a.register(esc, userV1)
		if got := a.must("GET", "/subjects/"+esc+"/versions/1", ""); !sameJSON(got, versionBody(subject, 1, id, userV1)) {
			t.Errorf("subject %q: got %s", subject, got)
		}
	}
	if got, want := a.must("GET", "/subjects", ""), `["a/b","q?x=1","with space","ünïcode-value"]`; !sameJSON(got, want) {
		t.Errorf("subjects: got %s, want %s", got, want)
	}
	if status, _ := a.do("GET", "/subjects/a/b/versions", ""); status != http.StatusNotFound {
		t.Errorf("unescaped slash: status %d, want 404", status)
	}
}
