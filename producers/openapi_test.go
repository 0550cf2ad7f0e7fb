package producers_test

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/producers"
	"github.com/omnisync/omnisync/producers/app"
	"github.com/omnisync/omnisync/producers/chatjson"
	"github.com/omnisync/omnisync/producers/crm"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/phone"
	"github.com/omnisync/omnisync/producers/web"
)

type spec struct {
	Paths map[string]struct {
		Post struct {
			RequestBody struct {
				Content map[string]struct {
					Example any `yaml:"example"`
				} `yaml:"content"`
			} `yaml:"requestBody"`
		} `yaml:"post"`
	} `yaml:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]any `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

func loadSpec(t *testing.T) spec {
	t.Helper()
	var s spec
	if err := yaml.Unmarshal(api.OpenAPI, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(v any) []string {
	var out []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// The spec documents exactly the channels the server mounts, every example
// request in it is accepted by the real channel, and every request schema
// lists exactly the fields the handler's Go type decodes.
func TestOpenAPIMatchesHandlers(t *testing.T) {
	s := loadSpec(t)
	var paths, mounted []string
	for p := range s.Paths {
		if strings.HasPrefix(p, "/ingest/") { // the agent API is checked in package api
			paths = append(paths, p)
		}
	}
	for _, n := range producers.Names() {
		mounted = append(mounted, producers.Path(n))
	}
	slices.Sort(paths)
	if !slices.Equal(paths, mounted) {
		t.Fatalf("spec paths %v, mounted %v", paths, mounted)
	}
	for _, p := range []string{web.Path, app.Path, phone.Path} {
		if _, ok := s.Paths[p]; !ok {
			t.Errorf("channel path %s is not in the spec", p)
		}
	}

	creds := ingest.KeyCredential{Key: "k"}
	for path, ch := range map[string]ingest.Channel{web.Path: web.New(creds), app.Path: app.New(creds), phone.Path: phone.New(creds),
		crm.Path: crm.New(map[string]ingest.KeyCredential{"main": creds})} {
		example := s.Paths[path].Post.RequestBody.Content["application/json"].Example
		if example == nil {
			t.Errorf("%s has no example request", path)
			continue
		}
		body, err := json.Marshal(example)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("POST", path, nil)
		req.Header.Set("Authorization", "Bearer k")
		if _, err := ch.Parse(req, body); err != nil {
			t.Errorf("%s: the spec's example is refused: %v", path, err)
		}
	}

	for schema, v := range map[string]any{
		"WebRequest": web.Request{}, "AppRequest": app.Request{}, "Event": chatjson.Event{}, "Profile": chatjson.Profile{},
		"Sender": chatjson.Sender{}, "Attachment": chatjson.Attachment{}, "Transcript": phone.Transcript{}, "Segment": phone.Segment{},
		"Accepted": ingest.Accepted{}, "Error": ingest.Error{},
		"CRMRequest": crm.Request{}, "CRMChange": crm.Change{}, "CRMIdentity": crm.Identity{},
	} {
		var documented []string
		for name := range s.Components.Schemas[schema].Properties {
			documented = append(documented, name)
		}
		slices.Sort(documented)
		if got := jsonFields(v); !slices.Equal(documented, got) {
			t.Errorf("schema %s documents %v; the Go type decodes %v", schema, documented, got)
		}
	}
}
