// Package registry is omnisync's client for a schema registry with the
// Confluent REST API (Confluent Schema Registry, Apicurio's ccompat API,
// Redpanda, or omnisync's embedded dev registry), built on franz-go's sr.
//
// A Client caches what never changes: the schema text behind an ID and the
// ID a subject gave a schema. It is safe for concurrent use.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"
)

// ErrNotFound is returned (wrapped) when the registry has no such schema ID
// or subject; it is permanent, unlike a registry that cannot be reached.
var ErrNotFound = errors.New("not found in schema registry")

// IncompatibleError is returned when a schema breaks its subject's
// compatibility level.
type IncompatibleError struct {
	Subject  string
	Messages []string
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("schema is incompatible with subject %s: %s", e.Subject, strings.Join(e.Messages, "; "))
}

// Client talks to one registry.
type Client struct {
	sr *sr.Client

	mu   sync.RWMutex
	byID map[int]string
	ids  map[[2]string]int // subject, schema text → ID
}

// New returns a client for the registry at the given base URLs, e.g.
// http://127.0.0.1:8081. Further sr options (basic auth, TLS via
// sr.HTTPClient, user agent) pass through.
func New(urls []string, opts ...sr.ClientOpt) (*Client, error) {
	cl, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(urls...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating schema registry client: %w", err)
	}
	return &Client{sr: cl, byID: map[int]string{}, ids: map[[2]string]int{}}, nil
}

// SR returns the underlying franz-go client for calls this package does not wrap.
func (c *Client) SR() *sr.Client { return c.sr }

// Register registers an Avro schema under subject, or finds it if it is
// already there, and returns its global ID.
func (c *Client) Register(ctx context.Context, subject, schema string) (int, error) {
	key := [2]string{subject, schema}
	c.mu.RLock()
	cached, ok := c.ids[key]
	c.mu.RUnlock()
	if ok {
		return cached, nil
	}
	id, err := c.sr.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.ErrorCode == http.StatusConflict {
			return 0, &IncompatibleError{Subject: subject, Messages: []string{re.Message}}
		}
		return 0, fmt.Errorf("registering schema under %s: %w", subject, err)
	}
	c.mu.Lock()
	c.ids[key] = id
	c.byID[id] = schema
	c.mu.Unlock()
	return id, nil
}

// SchemaByID returns the schema text registered under id. An unknown ID
// gives an error wrapping ErrNotFound.
func (c *Client) SchemaByID(ctx context.Context, id int) (string, error) {
	c.mu.RLock()
	text, ok := c.byID[id]
	c.mu.RUnlock()
	if ok {
		return text, nil
	}
	s, err := c.sr.SchemaByID(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return "", fmt.Errorf("schema ID %d: %w", id, ErrNotFound)
		}
		return "", fmt.Errorf("looking up schema ID %d: %w", id, err)
	}
	c.mu.Lock()
	c.byID[id] = s.Schema
	c.mu.Unlock()
	return s.Schema, nil
}

// CheckCompatibility asks the registry whether schema may be registered
// under subject at the subject's compatibility level: nil when it may, an
// *IncompatibleError with the registry's reasons when it may not. A subject
// that does not exist yet accepts any schema.
func (c *Client) CheckCompatibility(ctx context.Context, subject, schema string) error {
	res, err := c.sr.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subject, -1, sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("checking compatibility with %s: %w", subject, err)
	}
	if !res.Is {
		return &IncompatibleError{Subject: subject, Messages: res.Messages}
	}
	return nil
}

// SetCompatibility sets the compatibility level of subjects (or the global
// level when none are given), e.g. sr.CompatFull.
func (c *Client) SetCompatibility(ctx context.Context, level sr.CompatibilityLevel, subjects ...string) error {
	for _, r := range c.sr.SetCompatibility(ctx, sr.SetCompatibility{Level: level}, subjects...) {
		if r.Err != nil {
			return fmt.Errorf("setting compatibility of %q to %s: %w", r.Subject, level, r.Err)
		}
	}
	return nil
}

func isNotFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}
