package devregistry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/linkedin/goavro/v2"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/avro"
)

const contentType = "application/vnd.schemaregistry.v1+json"

// apiError is an error answered as Confluent does: an HTTP status and a body
// {"error_code": code, "message": msg}.
type apiError struct {
	status, code int
	msg          string
}

func (e *apiError) Error() string { return e.msg }

func errSubjectNotFound(s string) error {
	return &apiError{http.StatusNotFound, 40401, fmt.Sprintf("Subject '%s' not found.", s)}
}

func errVersionNotFound(v int) error {
	return &apiError{http.StatusNotFound, 40402, fmt.Sprintf("Version %d not found.", v)}
}

func errSchemaNotFound(id string) error {
	if id == "" {
		return &apiError{http.StatusNotFound, 40403, "Schema not found"}
	}
	return &apiError{http.StatusNotFound, 40403, fmt.Sprintf("Schema %s not found", id)}
}

func errInvalidSchema(format string, args ...any) error {
	return &apiError{http.StatusUnprocessableEntity, 42201, fmt.Sprintf(format, args...)}
}

func errInvalidVersion(v string) error {
	return &apiError{http.StatusUnprocessableEntity, 42202, fmt.Sprintf(`The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`, v)}
}

var errInvalidLevel = &apiError{http.StatusUnprocessableEntity, 42203,
	"Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"}

// rawSchema is a response body written as is: a schema's own text.
type rawSchema string

type versionResponse struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
}

type subjectVersion struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

type levelResponse struct {
	Level string `json:"compatibilityLevel"`
}

type levelRequest struct {
	Level string `json:"compatibility"`
}

// schemaRequest is the body of register, lookup and compatibility requests.
type schemaRequest struct {
	Schema     string            `json:"schema"`
	SchemaType string            `json:"schemaType"`
	References []json.RawMessage `json:"references"`
	ID         int               `json:"id"`
	Version    int               `json:"version"`
}

func (r *Registry) routes() *http.ServeMux {
	m := http.NewServeMux()
	handle := func(pattern string, fn func(*http.Request) (any, error)) { m.Handle(pattern, r.endpoint(fn)) }
	handle("GET /subjects", r.listSubjects)
	handle("POST /subjects/{subject}", r.lookup)
	handle("DELETE /subjects/{subject}", r.deleteSubject)
	handle("GET /subjects/{subject}/versions", r.listVersions)
	handle("POST /subjects/{subject}/versions", r.register)
	handle("GET /subjects/{subject}/versions/{version}", r.getVersion)
	handle("GET /subjects/{subject}/versions/{version}/schema", r.getVersionSchema)
	handle("DELETE /subjects/{subject}/versions/{version}", r.deleteVersion)
	handle("GET /schemas/types", func(*http.Request) (any, error) { return []string{"AVRO"}, nil })
	handle("GET /schemas/ids/{id}", r.schemaByID)
	handle("GET /schemas/ids/{id}/schema", r.rawSchemaByID)
	handle("GET /schemas/ids/{id}/versions", r.schemaVersions)
	handle("GET /schemas/ids/{id}/subjects", r.schemaSubjects)
	handle("GET /config", r.getConfig)
	handle("PUT /config", r.putConfig)
	handle("DELETE /config", r.deleteConfig)
	handle("GET /config/{subject}", r.getConfig)
	handle("PUT /config/{subject}", r.putConfig)
	handle("DELETE /config/{subject}", r.deleteConfig)
	handle("POST /compatibility/subjects/{subject}/versions", r.checkCompatibility)
	handle("POST /compatibility/subjects/{subject}/versions/{version}", r.checkCompatibility)
	handle("GET /mode", func(*http.Request) (any, error) { return map[string]string{"mode": "READWRITE"}, nil })
	handle("/", func(*http.Request) (any, error) {
		return nil, &apiError{http.StatusNotFound, http.StatusNotFound, "HTTP 404 Not Found"}
	})
	return m
}

// endpoint adapts fn to HTTP: its result is answered as JSON, an *apiError
// as Confluent's error body, and any other error as a store error.
func (r *Registry) endpoint(fn func(*http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.Body = http.MaxBytesReader(w, req.Body, 8<<20)
		body, err := fn(req)
		status := http.StatusOK
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				r.log.Error("schema registry request failed", zap.String("method", req.Method), zap.String("path", req.URL.Path), zap.Error(err))
				ae = &apiError{http.StatusInternalServerError, 50001, "Error in the backend data store: " + err.Error()}
			}
			status = ae.status
			body = struct {
				Code    int    `json:"error_code"`
				Message string `json:"message"`
			}{ae.code, ae.msg}
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		if raw, ok := body.(rawSchema); ok {
			_, _ = io.WriteString(w, string(raw))
			return
		}
		_, _ = w.Write(append(marshal(body), '\n'))
	})
}

func decodeBody(req *http.Request, into any) error {
	if err := json.NewDecoder(req.Body).Decode(into); err != nil {
		return &apiError{http.StatusBadRequest, http.StatusBadRequest, "Invalid JSON body: " + err.Error()}
	}
	return nil
}

// flag reads a boolean query parameter as Confluent does: "true" in any case.
func flag(req *http.Request, name string) bool {
	return strings.EqualFold(req.URL.Query().Get(name), "true")
}

// parseVersion parses a version reference: a number from 1, or "latest"
// (also -1), given as -1.
func parseVersion(ref string) (int, error) {
	if strings.EqualFold(strings.TrimSpace(ref), "latest") {
		return -1, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(ref), 10, 32)
	if err != nil || n == 0 || n < -1 {
		return 0, errInvalidVersion(ref)
	}
	return int(n), nil
}

// parseSchema validates an Avro schema request and returns its text and
// canonical form.
func parseSchema(body schemaRequest) (text, canon string, err error) {
	if body.SchemaType != "" && !strings.EqualFold(body.SchemaType, "AVRO") {
		return "", "", errInvalidSchema("Invalid schema type %s", body.SchemaType)
	}
	if len(body.References) > 0 {
		return "", "", errInvalidSchema("Invalid schema: schema references are not supported by omnisync's dev registry")
	}
	if strings.TrimSpace(body.Schema) == "" {
		return "", "", errInvalidSchema("Empty schema")
	}
	if _, err := avro.Parse(body.Schema); err != nil {
		return "", "", errInvalidSchema("Invalid schema, details: %v", err)
	}
	if _, err := goavro.NewCodec(body.Schema); err != nil {
		return "", "", errInvalidSchema("Invalid schema, details: %v", err)
	}
	canon, err = canonical(body.Schema)
	if err != nil {
		return "", "", errInvalidSchema("Invalid schema, details: %v", err)
	}
	return body.Schema, canon, nil
}

// find resolves a version reference of subject among its live versions, or
// all of them when deleted is set.
func (s *state) find(subject, ref string, deleted bool) (int, *version, error) {
	n, err := parseVersion(ref)
	if err != nil {
		return 0, nil, err
	}
	visible := s.versions(subject, deleted)
	if len(visible) == 0 {
		return 0, nil, errSubjectNotFound(subject)
	}
	if n == -1 {
		n = visible[len(visible)-1]
	}
	v := s.subjects[subject][n]
	if v == nil || v.deleted && !deleted {
		return 0, nil, errVersionNotFound(n)
	}
	return n, v, nil
}

func (r *Registry) listSubjects(req *http.Request) (any, error) {
	deleted, prefix := flag(req, "deleted"), req.URL.Query().Get("subjectPrefix")
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []string{}
	for s := range r.st.subjects {
		if strings.HasPrefix(s, prefix) && len(r.st.versions(s, deleted)) > 0 {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (r *Registry) listVersions(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	r.mu.RLock()
	defer r.mu.RUnlock()
	vs := r.st.versions(subject, flag(req, "deleted"))
	if len(vs) == 0 {
		return nil, errSubjectNotFound(subject)
	}
	return vs, nil
}

func (r *Registry) getVersion(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	r.mu.RLock()
	defer r.mu.RUnlock()
	n, v, err := r.st.find(subject, req.PathValue("version"), flag(req, "deleted"))
	if err != nil {
		return nil, err
	}
	return versionResponse{subject, n, v.id, r.st.texts[v.id]}, nil
}

func (r *Registry) getVersionSchema(req *http.Request) (any, error) {
	res, err := r.getVersion(req)
	if err != nil {
		return nil, err
	}
	return rawSchema(res.(versionResponse).Schema), nil
}

// lookup answers POST /subjects/{subject}: the version of subject that holds
// the schema in the body.
func (r *Registry) lookup(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var body schemaRequest
	if err := decodeBody(req, &body); err != nil {
		return nil, err
	}
	_, canon, err := parseSchema(body)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	visible := r.st.versions(subject, flag(req, "deleted"))
	if len(visible) == 0 {
		return nil, errSubjectNotFound(subject)
	}
	if id, ok := r.st.ids[canon]; ok {
		for i := len(visible) - 1; i >= 0; i-- {
			if n := visible[i]; r.st.subjects[subject][n].id == id {
				return versionResponse{subject, n, id, r.st.texts[id]}, nil
			}
		}
	}
	return nil, errSchemaNotFound("")
}

// register answers POST /subjects/{subject}/versions: the schema's ID, after
// adding it as the subject's next version unless it is a live version already.
func (r *Registry) register(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var body schemaRequest
	if err := decodeBody(req, &body); err != nil {
		return nil, err
	}
	if body.ID > 0 || body.Version > 0 {
		return nil, &apiError{http.StatusUnprocessableEntity, 42205, "Registering with a given ID or version (IMPORT mode) is not supported by omnisync's dev registry"}
	}
	text, canon, err := parseSchema(body)
	if err != nil {
		return nil, err
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	st := &r.st
	id, known := st.ids[canon]
	if known {
		for _, n := range st.versions(subject, false) {
			if st.subjects[subject][n].id == id {
				return map[string]int{"id": id}, nil
			}
		}
		text = st.texts[id] // every version of an ID carries the same text
	}
	level := st.level(subject)
	if msgs := incompatibilities(level, text, st.prior(subject)); len(msgs) > 0 {
		return nil, &apiError{http.StatusConflict, http.StatusConflict, fmt.Sprintf(
			"Schema being registered is incompatible with an earlier schema for subject \"%s\", details: [%s]", subject, strings.Join(msgs, ", "))}
	}
	if !known {
		id = st.nextID
	}
	all := st.versions(subject, true)
	n := 1
	if len(all) > 0 {
		n = all[len(all)-1] + 1
	}
	if err := r.write(req.Context(), schemaRecord(schemaValue{Subject: subject, Version: n, ID: id, Schema: text})); err != nil {
		r.mu.Lock()
		st.nextID = max(st.nextID, id+1) // the write may have landed: never hand the ID out again
		r.mu.Unlock()
		return nil, err
	}
	r.log.Info("registered schema", zap.String("subject", subject), zap.Int("version", n), zap.Int("id", id), zap.String("compatibility", level))
	return map[string]int{"id": id}, nil
}

// deleteSubject answers DELETE /subjects/{subject}: the versions deleted.
// A soft delete hides the live versions; a permanent one (permanent=true)
// forgets a soft-deleted subject for good, with its config.
func (r *Registry) deleteSubject(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	permanent := flag(req, "permanent")
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	st := &r.st
	all, live := st.versions(subject, true), st.versions(subject, false)
	switch {
	case len(all) == 0:
		return nil, errSubjectNotFound(subject)
	case !permanent && len(live) == 0:
		return nil, &apiError{http.StatusNotFound, 40404, fmt.Sprintf("Subject '%s' was soft deleted. Set permanent=true to delete permanently", subject)}
	case permanent && len(live) > 0:
		return nil, &apiError{http.StatusNotFound, 40405, fmt.Sprintf("Subject '%s' was not deleted first before being permanently deleted", subject)}
	}
	if !permanent {
		if err := r.write(req.Context(), deleteSubjectRecord(subject, live[len(live)-1])); err != nil {
			return nil, err
		}
		r.log.Info("soft-deleted subject", zap.String("subject", subject), zap.Ints("versions", live))
		return live, nil
	}
	var recs []record
	for i := len(all) - 1; i >= 0; i-- {
		recs = append(recs, schemaTombstone(subject, all[i]))
	}
	if _, ok := st.configs[subject]; ok {
		recs = append(recs, configRecord(subject, ""))
	}
	if err := r.write(req.Context(), recs...); err != nil {
		return nil, err
	}
	r.log.Info("permanently deleted subject", zap.String("subject", subject), zap.Ints("versions", all))
	return all, nil
}

// deleteVersion answers DELETE /subjects/{subject}/versions/{version}: the
// version deleted, softly or, once soft-deleted, permanently.
func (r *Registry) deleteVersion(req *http.Request) (any, error) {
	subject, ref := req.PathValue("subject"), req.PathValue("version")
	permanent := flag(req, "permanent")
	n, err := parseVersion(ref)
	if err != nil {
		return nil, err
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	st := &r.st
	all, live := st.versions(subject, true), st.versions(subject, false)
	switch {
	case len(all) == 0:
		return nil, errSubjectNotFound(subject)
	case n == -1 && !permanent && len(live) > 0:
		n = live[len(live)-1]
	case n == -1:
		n = all[len(all)-1]
	}
	v := st.subjects[subject][n]
	switch {
	case v == nil:
		return nil, errVersionNotFound(n)
	case !permanent && v.deleted:
		return nil, &apiError{http.StatusNotFound, 40406, fmt.Sprintf("Subject '%s' Version %d was soft deleted. Set permanent=true to delete permanently", subject, n)}
	case permanent && !v.deleted:
		return nil, &apiError{http.StatusNotFound, 40407, fmt.Sprintf("Subject '%s' Version %d was not deleted first before being permanently deleted", subject, n)}
	}
	rec := schemaRecord(schemaValue{Subject: subject, Version: n, ID: v.id, Schema: st.texts[v.id], Deleted: true})
	recs := []record{rec}
	if permanent {
		recs = []record{schemaTombstone(subject, n)}
		if _, ok := st.configs[subject]; ok && len(all) == 1 {
			recs = append(recs, configRecord(subject, ""))
		}
	}
	if err := r.write(req.Context(), recs...); err != nil {
		return nil, err
	}
	r.log.Info("deleted schema version", zap.String("subject", subject), zap.Int("version", n), zap.Bool("permanent", permanent))
	return n, nil
}

// schemaText returns the text of the schema ID in the request path.
func (r *Registry) schemaText(req *http.Request) (int, string, error) {
	ref := req.PathValue("id")
	id, err := strconv.Atoi(ref)
	if err != nil {
		return 0, "", errSchemaNotFound(ref)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	text, ok := r.st.texts[id]
	if !ok {
		return 0, "", errSchemaNotFound(ref)
	}
	return id, text, nil
}

func (r *Registry) schemaByID(req *http.Request) (any, error) {
	_, text, err := r.schemaText(req)
	if err != nil {
		return nil, err
	}
	return map[string]string{"schema": text}, nil
}

func (r *Registry) rawSchemaByID(req *http.Request) (any, error) {
	_, text, err := r.schemaText(req)
	return rawSchema(text), err
}

// usages returns the subject versions that use the schema ID in the path,
// sorted: the live ones, or all with deleted=true.
func (r *Registry) usages(req *http.Request) ([]subjectVersion, error) {
	id, _, err := r.schemaText(req)
	if err != nil {
		return nil, err
	}
	deleted := flag(req, "deleted")
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []subjectVersion{}
	for s, vs := range r.st.subjects {
		for n, v := range vs {
			if v.id == id && (deleted || !v.deleted) {
				out = append(out, subjectVersion{s, n})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Subject != out[j].Subject {
			return out[i].Subject < out[j].Subject
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

func (r *Registry) schemaVersions(req *http.Request) (any, error) { return r.usages(req) }

func (r *Registry) schemaSubjects(req *http.Request) (any, error) {
	uses, err := r.usages(req)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, u := range uses {
		if len(out) == 0 || out[len(out)-1] != u.Subject {
			out = append(out, u.Subject)
		}
	}
	return out, nil
}

// getConfig answers GET /config and GET /config/{subject}. A subject without
// a config of its own (nor a built-in default) answers 40408, or the global
// level with defaultToGlobal=true.
func (r *Registry) getConfig(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	r.mu.RLock()
	defer r.mu.RUnlock()
	if subject == "" || flag(req, "defaultToGlobal") {
		return levelResponse{r.st.level(subject)}, nil
	}
	level, ok := r.st.subjectLevel(subject)
	if !ok {
		return nil, &apiError{http.StatusNotFound, 40408, fmt.Sprintf("Subject '%s' does not have subject-level compatibility configured", subject)}
	}
	return levelResponse{level}, nil
}

// putConfig answers PUT /config and PUT /config/{subject}, echoing the
// level set.
func (r *Registry) putConfig(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var body levelRequest
	if err := decodeBody(req, &body); err != nil {
		return nil, err
	}
	level, ok := parseLevel(body.Level)
	if !ok {
		return nil, errInvalidLevel
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if err := r.write(req.Context(), configRecord(subject, level)); err != nil {
		return nil, err
	}
	r.log.Info("set compatibility", zap.String("subject", subject), zap.String("compatibility", level))
	return levelRequest{level}, nil
}

// deleteConfig answers DELETE /config and DELETE /config/{subject} with the
// level the config had; the subject then falls back to its built-in default
// or the global level, and the global level to BACKWARD.
func (r *Registry) deleteConfig(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	old, ok := r.st.configs[subject]
	switch {
	case !ok && subject != "":
		return nil, errSubjectNotFound(subject)
	case !ok:
		return levelResponse{levelBackward}, nil
	}
	if err := r.write(req.Context(), configRecord(subject, "")); err != nil {
		return nil, err
	}
	r.log.Info("reset compatibility", zap.String("subject", subject), zap.String("was", old))
	return levelResponse{old}, nil
}

// checkCompatibility answers POST /compatibility/subjects/{subject}/versions/{version}
// (against that version; "latest" of a subject without versions is
// compatible) and POST /compatibility/subjects/{subject}/versions (against
// what registering would check), with the messages when verbose=true.
func (r *Registry) checkCompatibility(req *http.Request) (any, error) {
	subject, ref := req.PathValue("subject"), req.PathValue("version")
	verbose := flag(req, "verbose")
	n := 0
	if ref != "" {
		var err error
		if n, err = parseVersion(ref); err != nil {
			return nil, err
		}
	}
	var body schemaRequest
	if err := decodeBody(req, &body); err != nil {
		return nil, err
	}
	text, _, parseErr := parseSchema(body)
	r.mu.RLock()
	level, prior := r.st.level(subject), r.st.prior(subject)
	if n > 0 {
		_, v, err := r.st.find(subject, ref, false)
		if err != nil {
			r.mu.RUnlock()
			return nil, err
		}
		prior = []priorSchema{{n, r.st.texts[v.id]}}
	} else if n == -1 && len(prior) > 0 {
		prior = prior[len(prior)-1:]
	}
	r.mu.RUnlock()
	var msgs []string
	switch {
	case parseErr != nil && !verbose:
		return nil, parseErr
	case parseErr != nil:
		msgs = []string{parseErr.Error()}
	default:
		msgs = incompatibilities(level, text, prior)
	}
	if !verbose {
		return map[string]bool{"is_compatible": len(msgs) == 0}, nil
	}
	return struct {
		IsCompatible bool     `json:"is_compatible"`
		Messages     []string `json:"messages"`
	}{len(msgs) == 0, append([]string{}, msgs...)}, nil
}

// apiContentTypes are the request bodies Confluent's REST API takes.
var apiContentTypes = []string{contentType, "application/vnd.schemaregistry+json", "application/json", "application/octet-stream"}

// crossSite refuses a request a browser sent for a page of another origin
// (403), and a write whose Content-Type is none the REST API takes (415): a
// form or no-cors fetch of another site can POST text/plain, form data or
// a body without a type without asking the registry first, but not
// application/json. Clients that are no browser send no Origin and the
// API's content type.
func crossSite(req *http.Request) error {
	if origin := req.Header.Get("Origin"); origin != "" {
		scheme := "http"
		if req.TLS != nil {
			scheme = "https"
		}
		if !strings.EqualFold(origin, scheme+"://"+req.Host) {
			return &apiError{http.StatusForbidden, http.StatusForbidden,
				fmt.Sprintf("Origin %s is not this registry's (%s://%s): requests from web pages of other sites are refused", origin, scheme, req.Host)}
		}
	}
	ct := req.Header.Get("Content-Type")
	switch req.Method {
	case http.MethodPost, http.MethodPut:
	case http.MethodDelete:
		if ct == "" {
			return nil
		}
	default:
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !slices.Contains(apiContentTypes, strings.ToLower(mt)) {
		return &apiError{http.StatusUnsupportedMediaType, http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Type %q is not accepted; send one of %s", ct, strings.Join(apiContentTypes, ", "))}
	}
	return nil
}
