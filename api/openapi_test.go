package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The parts of an OpenAPI 3.0 document these tests read.
type oaDoc struct {
	Paths      map[string]oaPathItem `yaml:"paths"`
	Components struct {
		SecuritySchemes map[string]struct {
			Type   string `yaml:"type"`
			Scheme string `yaml:"scheme"`
		} `yaml:"securitySchemes"`
		Responses  map[string]*oaResponse `yaml:"responses"`
		Parameters map[string]*oaParam    `yaml:"parameters"`
		Schemas    map[string]*oaSchema   `yaml:"schemas"`
	} `yaml:"components"`
}

type oaPathItem struct {
	Get    *oaOperation `yaml:"get"`
	Post   *oaOperation `yaml:"post"`
	Put    *oaOperation `yaml:"put"`
	Patch  *oaOperation `yaml:"patch"`
	Delete *oaOperation `yaml:"delete"`
}

// operations returns the item's operations by HTTP method.
func (p oaPathItem) operations() map[string]*oaOperation {
	out := map[string]*oaOperation{}
	for method, op := range map[string]*oaOperation{
		http.MethodGet: p.Get, http.MethodPost: p.Post, http.MethodPut: p.Put, http.MethodPatch: p.Patch, http.MethodDelete: p.Delete,
	} {
		if op != nil {
			out[method] = op
		}
	}
	return out
}

type oaOperation struct {
	Security    []map[string][]string  `yaml:"security"`
	Parameters  []*oaParam             `yaml:"parameters"`
	RequestBody *oaBody                `yaml:"requestBody"`
	Responses   map[string]*oaResponse `yaml:"responses"`
}

type oaParam struct {
	Ref    string    `yaml:"$ref"`
	Name   string    `yaml:"name"`
	In     string    `yaml:"in"`
	Schema *oaSchema `yaml:"schema"`
}

type oaBody struct {
	Content map[string]oaMedia `yaml:"content"`
}

type oaResponse struct {
	Ref     string             `yaml:"$ref"`
	Headers map[string]any     `yaml:"headers"`
	Content map[string]oaMedia `yaml:"content"`
}

type oaMedia struct {
	Schema   *oaSchema `yaml:"schema"`
	Example  any       `yaml:"example"`
	Examples map[string]struct {
		Value any `yaml:"value"`
	} `yaml:"examples"`
}

// examples returns the media's examples by name.
func (m oaMedia) examples() map[string]any {
	out := map[string]any{}
	if m.Example != nil {
		out["example"] = m.Example
	}
	for name, e := range m.Examples {
		out[name] = e.Value
	}
	return out
}

type oaSchema struct {
	Ref                  string               `yaml:"$ref"`
	Type                 string               `yaml:"type"`
	Format               string               `yaml:"format"`
	Nullable             bool                 `yaml:"nullable"`
	Required             []string             `yaml:"required"`
	Properties           map[string]*oaSchema `yaml:"properties"`
	AdditionalProperties *oaAdditional        `yaml:"additionalProperties"`
	Items                *oaSchema            `yaml:"items"`
	AllOf                []*oaSchema          `yaml:"allOf"`
	Enum                 []any                `yaml:"enum"`
	Minimum              *float64             `yaml:"minimum"`
	Maximum              *float64             `yaml:"maximum"`
	Default              any                  `yaml:"default"`
	Description          string               `yaml:"description"`
	Example              any                  `yaml:"example"`
}

// oaAdditional is additionalProperties: false, or a schema.
type oaAdditional struct {
	Forbidden bool
	Schema    *oaSchema
}

func (a *oaAdditional) UnmarshalYAML(n *yaml.Node) error {
	var allowed bool
	if n.Kind == yaml.ScalarNode && n.Decode(&allowed) == nil {
		a.Forbidden = !allowed
		return nil
	}
	return n.Decode(&a.Schema)
}

func loadOpenAPI(t *testing.T) oaDoc {
	t.Helper()
	var doc oaDoc
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("api/openapi.yaml does not parse: %v", err)
	}
	return doc
}

// schema resolves a $ref (or a single allOf) to the component schema and
// its name; s itself (and "") otherwise.
func (d oaDoc) schema(t *testing.T, s *oaSchema) (*oaSchema, string) {
	t.Helper()
	switch {
	case s == nil:
		t.Fatal("missing schema")
	case s.Ref != "":
		name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
		target := d.Components.Schemas[name]
		if !ok || target == nil {
			t.Fatalf("$ref %s names no component schema", s.Ref)
		}
		return target, name
	case len(s.AllOf) == 1:
		return d.schema(t, s.AllOf[0])
	}
	return s, ""
}

// The document parses, is OpenAPI 3.0, and every $ref in it points at
// something that exists.
func TestOpenAPIParsesAndRefsResolve(t *testing.T) {
	var raw map[string]any
	if err := yaml.Unmarshal(OpenAPI, &raw); err != nil {
		t.Fatalf("api/openapi.yaml does not parse: %v", err)
	}
	if v, _ := raw["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		t.Errorf("openapi: %q, want 3.0.x", v)
	}
	refs := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				refs++
				var at any = raw
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := at.(map[string]any)
					at = m[part]
				}
				if at == nil {
					t.Errorf("$ref %s points at nothing", ref)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(raw)
	if refs < 50 {
		t.Errorf("only %d $refs found; is the walk broken?", refs)
	}
}

// Every route of Handler is documented, with the admin token, and every
// documented /api/ operation is a route of Handler.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	if s := doc.Components.SecuritySchemes["adminBearer"]; s.Type != "http" || s.Scheme != "bearer" {
		t.Errorf("security scheme adminBearer is %+v, want http bearer", s)
	}
	routed := map[string]bool{}
	for _, rt := range routes {
		method, path, ok := strings.Cut(rt.pattern, " ")
		if !ok {
			t.Fatalf("route %q has no method", rt.pattern)
		}
		routed[rt.pattern] = true
		op := doc.Paths[path].operations()[method]
		if op == nil {
			t.Errorf("route %s is not documented", rt.pattern)
			continue
		}
		if !slices.ContainsFunc(op.Security, func(s map[string][]string) bool { _, ok := s["adminBearer"]; return ok }) {
			t.Errorf("%s: security does not name adminBearer", rt.pattern)
		}
		for _, code := range []string{"401"} {
			if op.Responses[code] == nil {
				t.Errorf("%s: response %s is not documented", rt.pattern, code)
			}
		}
	}
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/api/") {
			continue
		}
		for method := range item.operations() {
			if !routed[method+" "+path] {
				t.Errorf("%s %s is documented but Handler has no such route", method, path)
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if doc.Paths[path].Get == nil {
			t.Errorf("GET %s is not documented", path)
		}
	}
}

// Paging and the error answers are documented as the handlers behave.
func TestOpenAPIDocumentsPagingAndErrors(t *testing.T) {
	doc := loadOpenAPI(t)
	limit := doc.Components.Parameters["Limit"]
	if limit == nil || limit.Name != "limit" || limit.In != "query" {
		t.Fatalf("parameter Limit is %+v", limit)
	}
	if s := limit.Schema; s.Minimum == nil || *s.Minimum != 1 || s.Maximum == nil || *s.Maximum != MaxLimit || s.Default != DefaultLimit {
		t.Errorf("limit is documented as %v..%v default %v; the handlers take 1..%d default %d",
			deref(s.Minimum), deref(s.Maximum), s.Default, MaxLimit, DefaultLimit)
	}
	for _, pattern := range []string{"GET /api/v1/customers", "GET /api/v1/customers/{id}/timeline", "GET /api/v1/conflicts"} {
		_, path, _ := strings.Cut(pattern, " ")
		op := doc.Paths[path].Get
		var refs []string
		for _, p := range op.Parameters {
			refs = append(refs, p.Ref)
		}
		for _, want := range []string{"#/components/parameters/Limit", "#/components/parameters/Cursor"} {
			if !slices.Contains(refs, want) {
				t.Errorf("%s does not take %s", pattern, want)
			}
		}
		if op.Responses["400"] == nil {
			t.Errorf("%s: a bad limit or cursor gets 400, which is not documented", pattern)
		}
	}
	for _, name := range []string{"StoreUnavailable"} {
		if r := doc.Components.Responses[name]; r == nil || r.Headers["Retry-After"] == nil {
			t.Errorf("response %s does not document Retry-After", name)
		}
	}
	if r := doc.Components.Responses["Unauthorized"]; r == nil || r.Headers["WWW-Authenticate"] == nil {
		t.Errorf("response Unauthorized does not document WWW-Authenticate")
	}
	for _, path := range []string{"/api/v1/conflicts/{id}/resolve", "/api/v1/merges", "/api/v1/customers/{id}/unmerge"} {
		op := doc.Paths[path].Post
		for _, code := range []string{"202", "400", "401", "404", "409", "413", "503"} {
			if op.Responses[code] == nil {
				t.Errorf("POST %s: response %s is not documented", path, code)
			}
		}
		if r := op.Responses["503"]; r == nil || r.Headers["Retry-After"] == nil {
			t.Errorf("POST %s: 503 does not document Retry-After", path)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// schemaTypes are the Go types of the agent API's component schemas.
var schemaTypes = map[string]reflect.Type{
	"CustomerSummary":   reflect.TypeFor[CustomerSummary](),
	"Customer":          reflect.TypeFor[Customer](),
	"Field":             reflect.TypeFor[Field](),
	"Identity":          reflect.TypeFor[Identity](),
	"Conflict":          reflect.TypeFor[Conflict](),
	"Message":           reflect.TypeFor[Message](),
	"MessageAttachment": reflect.TypeFor[Attachment](),
	"Location":          reflect.TypeFor[Location](),
	"TranscriptSegment": reflect.TypeFor[TranscriptSegment](),
	"CustomerPage":      reflect.TypeFor[Page[CustomerSummary]](),
	"MessagePage":       reflect.TypeFor[Page[Message]](),
	"ConflictPage":      reflect.TypeFor[Page[Conflict]](),
	"ResolveRequest":    reflect.TypeFor[ResolveRequest](),
	"ResolveAccepted":   reflect.TypeFor[ResolveAccepted](),
	"AlsoKnownAs":       reflect.TypeFor[AlsoKnownAs](),
	"MergeRequest":      reflect.TypeFor[MergeRequest](),
	"UnmergeRequest":    reflect.TypeFor[UnmergeRequest](),
	"MergeAccepted":     reflect.TypeFor[MergeAccepted](),
	"ApiError":          reflect.TypeFor[Error](),
	"SyncStatus":        reflect.TypeFor[SyncStatus](),
	"ChannelStatus":     reflect.TypeFor[ChannelStatus](),
	"GroupStatus":       reflect.TypeFor[GroupStatus](),
	"PartitionLag":      reflect.TypeFor[PartitionLag](),
	"Percentiles":       reflect.TypeFor[Percentiles](),
	"Agent":             reflect.TypeFor[Agent](),
	"AgentPage":         reflect.TypeFor[Page[Agent]](),
	"NewAgent":          reflect.TypeFor[NewAgent](),
	"AgentCreated":      reflect.TypeFor[AgentCreated](),
	"TokenCreated":      reflect.TypeFor[TokenCreated](),
	"Token":             reflect.TypeFor[Token](),
	"SignIn":            reflect.TypeFor[SignIn](),
	"Session":           reflect.TypeFor[Session](),
	"Password":          reflect.TypeFor[Password](),
	"AuditEntry":        reflect.TypeFor[AuditEntry](),
	"AuditPage":         reflect.TypeFor[Page[AuditEntry]](),
	"LiveEvent":         reflect.TypeFor[LiveEvent](),
}

// jsonField is a struct field's JSON name and whether it may be omitted.
type jsonField struct {
	name      string
	omitEmpty bool
	field     reflect.StructField
}

func jsonFields(rt reflect.Type) []jsonField {
	var out []jsonField
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, omitEmpty: strings.Contains(opts, "omitempty"), field: f})
	}
	return out
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// Each schema documents exactly the JSON fields of its Go type, with the
// matching type, null where the Go type is a pointer (or raw JSON), and
// every field the encoder always writes as required.
func TestOpenAPISchemasMatchGoTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	var nodes struct {
		Components struct {
			Schemas map[string]yaml.Node `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(OpenAPI, &nodes); err != nil {
		t.Fatal(err)
	}
	for name, rt := range schemaTypes {
		t.Run(name, func(t *testing.T) {
			s := doc.Components.Schemas[name]
			if s == nil {
				t.Fatalf("schema %s is not in the document", name)
			}
			// No key this test does not know, such as half a description
			// cut at a comma of a flow mapping.
			node := nodes.Components.Schemas[name]
			b, err := yaml.Marshal(&node)
			if err != nil {
				t.Fatal(err)
			}
			dec := yaml.NewDecoder(bytes.NewReader(b))
			dec.KnownFields(true)
			if err := dec.Decode(new(oaSchema)); err != nil {
				t.Errorf("schema %s: %v", name, err)
			}
			var documented, fields, required, always []string
			for p := range s.Properties {
				documented = append(documented, p)
			}
			required = slices.Clone(s.Required)
			for _, f := range jsonFields(rt) {
				fields = append(fields, f.name)
				if !f.omitEmpty {
					always = append(always, f.name)
				}
				if p := s.Properties[f.name]; p != nil {
					checkType(t, doc, name+"."+f.name, p, f.field.Type)
				}
			}
			for _, l := range [][]string{documented, fields, required, always} {
				slices.Sort(l)
			}
			if !slices.Equal(documented, fields) {
				t.Errorf("documents properties %v; the Go type %v has %v", documented, rt, fields)
			}
			if name == "ResolveRequest" { // a request: value is optional
				always = slices.DeleteFunc(always, func(f string) bool { return f == "value" })
			}
			if strings.HasSuffix(name, "Request") { // requests: unknown fields refused
				if a := s.AdditionalProperties; a == nil || !a.Forbidden {
					t.Error("the handler refuses unknown fields: want additionalProperties: false")
				}
			}
			if !slices.Equal(required, always) {
				t.Errorf("requires %v; the encoder always writes %v", required, always)
			}
		})
	}
}

// checkType checks that property p (at where) documents values of Go type
// rt.
func checkType(t *testing.T, doc oaDoc, where string, p *oaSchema, rt reflect.Type) {
	t.Helper()
	nullable := rt.Kind() == reflect.Pointer || rt == rawType
	if p.Nullable != nullable {
		t.Errorf("%s: nullable is %v; the Go type is %v", where, p.Nullable, rt)
	}
	if p.Ref != "" && p.Nullable {
		t.Errorf("%s: nullable beside $ref is ignored by OpenAPI 3.0; wrap the $ref in allOf", where)
	}
	if rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	s, ref := doc.schema(t, p)
	want := map[reflect.Kind]string{
		reflect.String: "string", reflect.Bool: "boolean", reflect.Int: "integer", reflect.Int32: "integer",
		reflect.Int64: "integer", reflect.Float32: "number", reflect.Float64: "number",
		reflect.Slice: "array", reflect.Map: "object", reflect.Struct: "object",
	}[rt.Kind()]
	switch {
	case rt == rawType:
		if s.Type != "" {
			t.Errorf("%s: type %s; the value is any JSON value", where, s.Type)
		}
		return
	case rt == timeType:
		if s.Type != "string" || s.Format != "date-time" {
			t.Errorf("%s: type %s format %s, want a date-time string", where, s.Type, s.Format)
		}
		return
	case want == "":
		t.Fatalf("%s: no OpenAPI type for Go type %v", where, rt)
	case s.Type != want:
		t.Errorf("%s: type %q; the Go type %v is a JSON %s", where, s.Type, rt, want)
		return
	}
	switch rt.Kind() {
	case reflect.Struct:
		if ref == "" || schemaTypes[ref] != rt {
			t.Errorf("%s: refers to schema %q; the Go type is %v", where, ref, rt)
		}
	case reflect.Slice:
		if s.Items == nil {
			t.Errorf("%s: array without items", where)
			return
		}
		checkType(t, doc, where+"[]", s.Items, rt.Elem())
	case reflect.Map:
		if s.AdditionalProperties == nil || s.AdditionalProperties.Schema == nil {
			t.Errorf("%s: object without additionalProperties", where)
			return
		}
		checkType(t, doc, where+"{}", s.AdditionalProperties.Schema, rt.Elem())
	}
}

// Every example of the agent API decodes into the Go type of its schema
// (no unknown field) and has every required property with a value of the
// documented type.
func TestOpenAPIExamplesMatchSchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	check := func(where string, m oaMedia) {
		if m.Schema == nil {
			return
		}
		_, name := doc.schema(t, m.Schema)
		rt := schemaTypes[name]
		for ex, v := range m.examples() {
			where := where + " example " + ex
			n++
			validate(t, doc, where, m.Schema, v)
			if rt == nil {
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(reflect.New(rt).Interface()); err != nil {
				t.Errorf("%s does not decode into %v: %v", where, rt, err)
			}
		}
	}
	for path, item := range doc.Paths {
		if strings.HasPrefix(path, "/ingest/") {
			continue // producers/openapi_test.go checks those
		}
		for method, op := range item.operations() {
			if op.RequestBody != nil {
				for ct, m := range op.RequestBody.Content {
					check(fmt.Sprintf("%s %s request %s", method, path, ct), m)
				}
			}
			for code, r := range op.Responses {
				if r.Ref != "" {
					r = doc.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")]
				}
				for ct, m := range r.Content {
					check(fmt.Sprintf("%s %s %s %s", method, path, code, ct), m)
				}
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d examples checked", n)
	}
}

// validate checks example v against schema s: types, nullability,
// required and unknown properties, enums.
func validate(t *testing.T, doc oaDoc, where string, s *oaSchema, v any) {
	t.Helper()
	nullable := s.Nullable
	s, _ = doc.schema(t, s)
	nullable = nullable || s.Nullable
	if v == nil {
		if !nullable {
			t.Errorf("%s: null, but the schema is not nullable", where)
		}
		return
	}
	if len(s.Enum) > 0 && !slices.ContainsFunc(s.Enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		t.Errorf("%s: %v is not one of %v", where, v, s.Enum)
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: %T, want an object", where, v)
			return
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				t.Errorf("%s: required property %s is missing", where, r)
			}
		}
		for k, x := range m {
			switch p := s.Properties[k]; {
			case p != nil:
				validate(t, doc, where+"."+k, p, x)
			case s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil:
				validate(t, doc, where+"."+k, s.AdditionalProperties.Schema, x)
			case s.Properties != nil:
				t.Errorf("%s: unknown property %s", where, k)
			}
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			t.Errorf("%s: %T, want an array", where, v)
			return
		}
		for i, x := range l {
			validate(t, doc, fmt.Sprintf("%s[%d]", where, i), s.Items, x)
		}
	case "string":
		if _, ok := v.(string); !ok {
			t.Errorf("%s: %T %v, want a string", where, v, v)
		} else if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, v.(string)); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
	case "integer":
		if _, ok := v.(int); !ok {
			t.Errorf("%s: %T %v, want an integer", where, v, v)
		}
	case "number":
		switch v.(type) {
		case int, float64:
		default:
			t.Errorf("%s: %T %v, want a number", where, v, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			t.Errorf("%s: %T %v, want a boolean", where, v, v)
		}
	}
}
