package devregistry

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/omnisync/omnisync/pkg/registry"
)

// wantCode fails the test unless err is a registry response with code.
func wantCode(t *testing.T, what string, err error, code int) {
	t.Helper()
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != code {
		t.Errorf("%s: got error %v, want error code %d", what, err, code)
	}
}

// TestFranzGoClient drives the registry with franz-go's sr client.
func TestFranzGoClient(t *testing.T) {
	_, a := serve(t, testCluster(t))
	ctx := testContext(t)
	cl, err := sr.NewClient(sr.URLs(a.url))
	if err != nil {
		t.Fatal(err)
	}
	const subject = "orders-value"

	ss, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: userV1})
	if err != nil {
		t.Fatalf("CreateSchema: %v", err)
	}
	if ss.ID != 1 || ss.Version != 1 || ss.Subject != subject || ss.Schema.Schema != userV1 || ss.Type != sr.TypeAvro {
		t.Errorf("CreateSchema: got %+v", ss)
	}
	if _, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: userBad}); err == nil {
		t.Error("CreateSchema of an incompatible schema succeeded")
	} else {
		wantCode(t, "CreateSchema incompatible", err, sr.ErrIncompatibleSchema.Code)
	}
	_, err = cl.CreateSchema(ctx, subject, sr.Schema{Schema: "{}", Type: sr.TypeJSON})
	wantCode(t, "CreateSchema JSON", err, sr.ErrInvalidSchema.Code)

	s, err := cl.SchemaByID(ctx, ss.ID)
	if err != nil || s.Schema != userV1 || s.Type != sr.TypeAvro {
		t.Errorf("SchemaByID: %+v, %v", s, err)
	}
	_, err = cl.SchemaByID(ctx, 999)
	wantCode(t, "SchemaByID unknown", err, sr.ErrSchemaNotFound.Code)

	found, err := cl.LookupSchema(ctx, subject, sr.Schema{Schema: userV1Reformatted})
	if err != nil || found.ID != 1 || found.Version != 1 || found.Subject != subject {
		t.Errorf("LookupSchema: %+v, %v", found, err)
	}
	_, err = cl.LookupSchema(ctx, subject, sr.Schema{Schema: userV2})
	wantCode(t, "LookupSchema unknown", err, sr.ErrSchemaNotFound.Code)
	_, err = cl.LookupSchema(ctx, "nobody", sr.Schema{Schema: userV2})
	wantCode(t, "LookupSchema no subject", err, sr.ErrSubjectNotFound.Code)

	verbose := sr.WithParams(ctx, sr.Verbose)
	for _, c := range []struct {
		version int
		schema  string
		want    bool
	}{{-1, userV2, true}, {-1, userBad, false}, {1, userV2, true}, {-2, userV3, true}, {-2, userBad, false}} {
		res, err := cl.CheckCompatibility(verbose, subject, c.version, sr.Schema{Schema: c.schema})
		if err != nil || res.Is != c.want || res.Is != (len(res.Messages) == 0) {
			t.Errorf("CheckCompatibility(%d, %s): %+v, %v; want %v", c.version, c.schema, res, err, c.want)
		}
	}

	for _, r := range cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}, subject) {
		if r.Err != nil || r.Level != sr.CompatFull {
			t.Errorf("SetCompatibility: %+v", r)
		}
	}
	res := cl.Compatibility(ctx, subject, "", "nobody")
	if res[0].Err != nil || res[0].Level != sr.CompatFull {
		t.Errorf("Compatibility(%s): %+v", subject, res[0])
	}
	if res[1].Err != nil || res[1].Level != sr.CompatBackward {
		t.Errorf("Compatibility(global): %+v", res[1])
	}
	wantCode(t, "Compatibility of a subject without config", res[2].Err, sr.ErrSubjectLevelCompatibilityNotConfigured.Code)
	if r := cl.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), "nobody")[0]; r.Err != nil || r.Level != sr.CompatBackward {
		t.Errorf("Compatibility with DefaultToGlobal: %+v", r)
	}
	// userV2 adds a defaulted field: FULL compatible.
	if ss, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: userV2}); err != nil || ss.ID != 2 || ss.Version != 2 {
		t.Errorf("CreateSchema under FULL: %+v, %v", ss, err)
	}

	// omnisync's own client, on top of sr.
	oc, err := registry.New([]string{a.url})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := oc.Register(ctx, "shared-value", userV1); err != nil || id != 1 {
		t.Errorf("registry.Register: %d, %v; want the shared ID 1", id, err)
	}
	if text, err := oc.SchemaByID(ctx, 2); err != nil || text != userV2 {
		t.Errorf("registry.SchemaByID: %q, %v", text, err)
	}
	if _, err := oc.SchemaByID(ctx, 999); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("registry.SchemaByID unknown: %v, want ErrNotFound", err)
	}
	var incompatible *registry.IncompatibleError
	if err := oc.CheckCompatibility(ctx, subject, userBad); !errors.As(err, &incompatible) || len(incompatible.Messages) == 0 {
		t.Errorf("registry.CheckCompatibility: %v, want an IncompatibleError with messages", err)
	}
	if _, err := oc.Register(ctx, subject, userBad); !errors.As(err, &incompatible) || !strings.Contains(err.Error(), "FULL") {
		t.Errorf("registry.Register incompatible: %v, want an IncompatibleError naming FULL", err)
	}
}

// pythonsWithConfluentClient returns the python3 interpreters that can
// import Confluent's Avro serdes: Debian's /usr/bin/python3 (where
// python3-confluent-kafka installs) first, then python3 on PATH when it is
// another interpreter.
func pythonsWithConfluentClient(t *testing.T) []string {
	var found []string
	seen := map[string]bool{}
	for _, name := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		real, err := filepath.EvalSymlinks(path)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		out, err := exec.Command(path, "-c", "import confluent_kafka.schema_registry.avro").CombinedOutput()
		if err != nil {
			t.Logf("%s cannot import confluent_kafka.schema_registry.avro: %s", path, bytes.TrimSpace(out))
			continue
		}
		found = append(found, path)
	}
	return found
}

// TestConfluentPythonClient drives the registry with Confluent's own Python
// client and Avro serdes (testdata/confluent_client.py), and checks that a
// record either side frames and encodes is read by the other.
func TestConfluentPythonClient(t *testing.T) {
	pythons := pythonsWithConfluentClient(t)
	if len(pythons) == 0 {
		t.Skip("SKIPPED — NOT TESTED: no python3 can import confluent_kafka.schema_registry.avro. " +
			"Install the Debian packages python3-confluent-kafka, python3-requests and python3-avro " +
			"(scripts/test-deps.sh) and the fastavro module, which Debian does not package " +
			"(pip install --break-system-packages fastavro)")
	}
	for _, py := range pythons {
		t.Run(py, func(t *testing.T) {
			_, a := serve(t, testCluster(t))
			const topic = "py"
			v1 := rec(`{"name":"id","type":"string"},{"name":"name","type":"string"}`)
			v2 := rec(`{"name":"id","type":"string"},{"name":"name","type":"string"},{"name":"age","type":["null","int"],"default":null}`)
			bad := rec(`{"name":"id","type":"long"},{"name":"name","type":"string"}`)
			id1 := a.register(topic+"-value", v1)

			// A record Go frames and encodes with v1, for Python to read.
			codec, err := goavro.NewCodec(v1)
			if err != nil {
				t.Fatal(err)
			}
			goPayload, err := codec.BinaryFromNative(binary.BigEndian.AppendUint32([]byte{0}, uint32(id1)), map[string]any{"id": "g-7", "name": "Gō"})
			if err != nil {
				t.Fatal(err)
			}
			in, _ := json.Marshal(map[string]string{
				"url": a.url, "topic": topic, "v1": v1, "v2": v2, "bad": bad,
				"other": "py-other-value", "go_payload": hex.EncodeToString(goPayload),
			})
			cmd := exec.Command(py, filepath.Join("testdata", "confluent_client.py"))
			cmd.Stdin = bytes.NewReader(in)
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s testdata/confluent_client.py: %v\n%s", py, err, out)
			}
			var got struct {
				ClientVersion string `json:"client_version"`
				RegisteredID  int    `json:"registered_id"`
				FetchedSchema string `json:"fetched_schema"`
				FetchedType   string `json:"fetched_type"`
				Lookup        struct {
					ID, Version int
					Subject     string
				}
				CompatibleV2        bool    `json:"compatible_v2"`
				CompatibleBad       bool    `json:"compatible_bad"`
				SubjectLevelError   pyError `json:"subject_level_error"`
				SubjectLevel        string  `json:"subject_level"`
				GlobalLevel         string  `json:"global_level"`
				IncompatibleError   pyError `json:"incompatible_error"`
				MissingVersionError pyError `json:"missing_version_error"`
				MissingSchemaError  pyError `json:"missing_schema_error"`
				OtherID             int     `json:"other_id"`
				Sent                map[string]any
				PythonPayload       string `json:"python_payload"`
				Latest              struct{ ID, Version int }
				GoRecord            map[string]any `json:"go_record"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("decoding the script's output %s: %v", out, err)
			}
			t.Logf("%s: confluent-kafka %s", py, got.ClientVersion)

			check := func(what string, got, want any) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: got %#v, want %#v", what, got, want)
				}
			}
			check("register_schema ID", got.RegisteredID, id1)
			check("get_schema", got.FetchedSchema, v1)
			check("get_schema type", got.FetchedType, "AVRO")
			check("lookup_schema", [3]any{got.Lookup.ID, got.Lookup.Version, got.Lookup.Subject}, [3]any{id1, 1, topic + "-value"})
			check("test_compatibility(v2)", got.CompatibleV2, true)
			check("test_compatibility(bad)", got.CompatibleBad, false)
			check("get_compatibility before any config", [2]int{got.SubjectLevelError.Status, got.SubjectLevelError.Code}, [2]int{404, 40408})
			check("get_compatibility after set_compatibility", got.SubjectLevel, "FULL")
			check("global get_compatibility", got.GlobalLevel, "BACKWARD")
			check("incompatible register", [2]int{got.IncompatibleError.Status, got.IncompatibleError.Code}, [2]int{409, 409})
			if !strings.Contains(got.IncompatibleError.Message, "FULL") || !strings.Contains(got.IncompatibleError.Message, "User.id") {
				t.Errorf("incompatible register: message %q names neither the level nor the field", got.IncompatibleError.Message)
			}
			check("get_version(404)", [2]int{got.MissingVersionError.Status, got.MissingVersionError.Code}, [2]int{404, 40402})
			check("get_schema(987654)", [2]int{got.MissingSchemaError.Status, got.MissingSchemaError.Code}, [2]int{404, 40403})
			check("same schema in another subject", got.OtherID, id1)
			check("Python read Go's record", got.GoRecord, map[string]any{"id": "g-7", "name": "Gō"})

			// Python's AvroSerializer registered v2 and framed the record
			// with its ID: decode it with the schema Go looks up by that ID.
			payload, err := hex.DecodeString(got.PythonPayload)
			if err != nil || len(payload) < 5 || payload[0] != 0 {
				t.Fatalf("Python payload %q is not Confluent-framed", got.PythonPayload)
			}
			id := int(binary.BigEndian.Uint32(payload[1:5]))
			check("latest version is the serializer's", [2]int{got.Latest.ID, got.Latest.Version}, [2]int{id, 2})
			srcl, err := sr.NewClient(sr.URLs(a.url))
			if err != nil {
				t.Fatal(err)
			}
			writer, err := srcl.SchemaByID(testContext(t), id)
			if err != nil {
				t.Fatal(err)
			}
			check("schema behind the payload's ID", writer.Schema, v2)
			wcodec, err := goavro.NewCodec(writer.Schema)
			if err != nil {
				t.Fatal(err)
			}
			native, rest, err := wcodec.NativeFromBinary(payload[5:])
			if err != nil || len(rest) != 0 {
				t.Fatalf("decoding Python's record: %v (%d bytes left)", err, len(rest))
			}
			check("Go read Python's record", native, map[string]any{"id": "c-42", "name": "Zoë", "age": map[string]any{"int": int32(31)}})
			check("what Python sent", got.Sent, map[string]any{"id": "c-42", "name": "Zoë", "age": float64(31)})
		})
	}
}

type pyError struct {
	Status  int    `json:"status"`
	Code    int    `json:"code"`
	Message string `json:"message"`
}
