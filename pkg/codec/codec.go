// Package codec encodes omnisync's records (package events) as Avro in the
// Confluent wire format and decodes them back, whatever version of the
// schema wrote them.
//
// Encoding uses the current schema from package schemas, registered under
// its TopicNameStrategy subject. Decoding looks the writer's schema up by the
// ID in the header, decodes with goavro, resolves the writer's fields onto
// the current schema by name (filling defaults) and fills the Go type.
// Compiled codecs and resolutions are cached per schema ID.
//
// The conversions between the Go types and goavro's native values are
// generated from the schemas and the Go types (native_gen.go, written by
// internal/tools/avrogen with `go generate`), not done by reflection: a
// change to a schema or to package events needs `go generate ./pkg/codec`,
// and TestGeneratedCodeIsCurrent fails until it is run.
package codec

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/registry"
	"github.com/omnisync/omnisync/schemas"
)

// Limits on what goavro allocates for one array or map block and one bytes
// or string value, so hostile input cannot make the decoder allocate
// gigabytes before it finds the body truncated. They are process-wide:
// goavro keeps them in package variables. Every record fits in a Kafka
// message (1 MiB by default), and no omnisync list or map needs 65536
// entries.
const (
	maxBlockCount = 1 << 16
	maxBlockSize  = 32 << 20
)

func init() {
	goavro.MaxBlockCount = maxBlockCount
	goavro.MaxBlockSize = maxBlockSize
}

// Registry is what a Serde needs of a schema registry; *registry.Client is one.
// SchemaByID must wrap registry.ErrNotFound for an ID the registry does not have.
type Registry interface {
	Register(ctx context.Context, subject, schema string) (int, error)
	SchemaByID(ctx context.Context, id int) (string, error)
}

// Serde encodes and decodes the records of package events. It is safe for
// concurrent use.
type Serde struct {
	reg     Registry
	current map[schemas.Name]*writerSchema

	mu      sync.RWMutex
	readers map[readerKey]*readerPlan
}

type writerSchema struct {
	id     int
	codec  *goavro.Codec
	schema *avro.Schema
}

type readerKey struct {
	id   int
	name schemas.Name
}

type readerPlan struct {
	codec    *goavro.Codec
	resolver *avro.Resolver // nil when the writer schema is the current one
	err      error          // permanent failure, e.g. incompatible schemas
}

// New registers the current version of every schema of package schemas with
// reg and returns a Serde that writes with them.
func New(ctx context.Context, reg Registry) (*Serde, error) {
	s := &Serde{reg: reg, current: map[schemas.Name]*writerSchema{}, readers: map[readerKey]*readerPlan{}}
	for _, name := range schemas.All {
		text := schemas.Current(name)
		codec, err := goavro.NewCodec(text)
		if err != nil {
			return nil, fmt.Errorf("compiling schema %s: %w", name, err)
		}
		parsed, err := avro.Parse(text)
		if err != nil {
			return nil, fmt.Errorf("parsing schema %s: %w", name, err)
		}
		id, err := reg.Register(ctx, name.Subject(), text)
		if err != nil {
			return nil, fmt.Errorf("registering schema %s: %w", name, err)
		}
		s.current[name] = &writerSchema{id: id, codec: codec, schema: parsed}
	}
	return s, nil
}

// SchemaID returns the registry ID of the current schema of name.
func (s *Serde) SchemaID(name schemas.Name) int { return s.current[name].id }

// Encode returns v, a pointer to a record of package events, in the wire format.
func (s *Serde) Encode(v any) ([]byte, error) { return s.AppendEncode(nil, v) }

// AppendEncode appends v in the wire format to dst.
func (s *Serde) AppendEncode(dst []byte, v any) ([]byte, error) {
	name, err := nameOf(v)
	if err != nil {
		return nil, err
	}
	w := s.current[name]
	if out, ok, err := appendBinary(AppendHeader(dst, w.id), v); ok {
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", name, err)
		}
		return out, nil
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	native, err := toNative(sc, v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", name, err)
	}
	out, err := w.codec.BinaryFromNative(AppendHeader(dst, w.id), native)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", name, err)
	}
	return out, nil
}

// Decode decodes a record in the wire format into out, a pointer to a record
// of package events. Errors that will never go away (malformed bytes, unknown
// schema ID, incompatible writer schema) are a *DecodeError wrapping one of
// the sentinel errors; any other error (the registry unreachable) is
// transient and worth a retry.
func (s *Serde) Decode(ctx context.Context, b []byte, out any) error {
	name, err := nameOf(out)
	if err != nil {
		return err
	}
	id, body, err := ParseHeader(b)
	if err != nil {
		return err
	}
	plan, err := s.plan(ctx, id, name)
	if err != nil {
		return err
	}
	native, rest, err := decodeBody(plan.codec, body)
	if err != nil {
		return &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: %v", ErrTruncated, err)}
	}
	if len(rest) > 0 {
		return &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: %d bytes", ErrTrailingBytes, len(rest))}
	}
	if plan.resolver != nil {
		if native, err = plan.resolver.Resolve(native); err != nil {
			return &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: %v", ErrIncompatible, err)}
		}
	}
	if err := fromNative(native, out); err != nil {
		return &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: %v", ErrIncompatible, err)}
	}
	return nil
}

// decodeBody runs goavro, turning a panic on hostile input into an error.
func decodeBody(c *goavro.Codec, body []byte) (native any, rest []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder panic: %v", r)
		}
	}()
	return c.NativeFromBinary(body)
}

func (s *Serde) plan(ctx context.Context, id int, name schemas.Name) (*readerPlan, error) {
	key := readerKey{id, name}
	s.mu.RLock()
	p, ok := s.readers[key]
	s.mu.RUnlock()
	if !ok {
		var err error
		if p, err = s.buildPlan(ctx, id, name); err != nil {
			return nil, err // unknown or transient: not cached
		}
		s.mu.Lock()
		s.readers[key] = p
		s.mu.Unlock()
	}
	if p.err != nil {
		return nil, &DecodeError{SchemaID: id, Err: p.err}
	}
	return p, nil
}

// buildPlan returns a plan, possibly carrying a permanent error, or a
// transient error that must not be cached.
func (s *Serde) buildPlan(ctx context.Context, id int, name schemas.Name) (*readerPlan, error) {
	cur := s.current[name]
	if id == cur.id {
		return &readerPlan{codec: cur.codec}, nil
	}
	text, err := s.reg.SchemaByID(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		// Not cached: a registry replica may learn the ID later.
		return nil, &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: %v", ErrUnknownSchema, err)}
	}
	if err != nil {
		return nil, err
	}
	codec, err := goavro.NewCodec(text)
	if err != nil {
		return &readerPlan{err: fmt.Errorf("%w: writer schema does not compile: %v", ErrIncompatible, err)}, nil
	}
	writer, err := avro.Parse(text)
	if err != nil {
		return &readerPlan{err: fmt.Errorf("%w: writer schema does not parse: %v", ErrIncompatible, err)}, nil
	}
	resolver, err := avro.Compile(writer, cur.schema)
	if err != nil {
		return &readerPlan{err: fmt.Errorf("%w: %v", ErrIncompatible, err)}, nil
	}
	return &readerPlan{codec: codec, resolver: resolver}, nil
}

// Native returns v, a pointer to a record of package events, as the goavro
// native value of its current schema (schemas.Current), for writers of
// plain Avro such as goavro's object container files. The value is v's own:
// it stays valid after later calls.
func Native(v any) (any, error) {
	name, err := nameOf(v)
	if err != nil {
		return nil, err
	}
	native, err := toNative(new(scratch), v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", name, err)
	}
	return native, nil
}
