// Package importer is the bulk producer behind omnisync import: it reads
// profiles from a CSV, JSON Lines or XML file and runs each row through the
// ingest pipeline's validation and produce path as channel IMPORT.
//
// Each row is one customer's profile; its id column is the source's own
// customer ID, which becomes the verified identity crm:<source>:<id> (the
// source system vouches for its IDs, as a CRM does on /ingest/crm), so an
// export of a CRM imported with --source set to the CRM's system name lands
// on the same customers as the CRM's live changes. A row's event ID is
// derived from the source and the row's content (its mapped fields and
// occurred_at), so the same file imported twice produces the same events,
// which downstream absorbs. A row that cannot be read or does not validate
// is reported with its line, field and reason and written to the
// dead-letter topic. Rows are produced in batches (the next one validated
// while Kafka takes one); a row counts as imported only once Kafka
// acknowledged it.
package importer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/chatjson"
	"github.com/omnisync/omnisync/producers/crm"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Formats are the file formats Run reads.
var Formats = map[string]string{"csv": "text/csv", "jsonl": "application/x-ndjson", "xml": "application/xml"}

// DefaultSource is the source of an import without one.
const DefaultSource = "import"

// Options configure Run.
type Options struct {
	Format  string   // csv, jsonl or xml
	Mapping *Mapping // nil: columns are named as the omnisync fields
	// Source names the system the file comes from: the scope of its
	// customer IDs and part of every event ID; default DefaultSource.
	Source string
	// AsOf is the occurred_at of rows without one (no occurred_at column,
	// or an empty cell); default the file's modification time, to the
	// second, so that importing the same file again gives the same event
	// IDs.
	AsOf time.Time
	// BatchSize is how many events (and dead letters) are produced at once;
	// default 500.
	BatchSize int
	// BatchTimeout bounds the wait for Kafka's acknowledgement of a batch;
	// past it the import stops with an error. Default 30 s.
	BatchTimeout time.Duration
	// Progress, when set, is called after each batch with the bytes read
	// so far.
	Progress func(read int64)
	// Now is the clock occurred_at is checked against; default time.Now.
	Now func() time.Time
}

// Rejection is a row that was not imported.
type Rejection struct {
	Line         int    `json:"line"`
	Field        string `json:"field,omitempty"`
	Reason       string `json:"reason"`
	DeadLetterID string `json:"dead_letter_id"`
}

// Summary is what an import did.
type Summary struct {
	Rows       int         `json:"rows"`     // records read
	Imported   int         `json:"imported"` // acknowledged by Kafka
	Rejected   int         `json:"rejected"` // in the dead-letter topic
	Rejections []Rejection `json:"rejections"`
	Unmapped   []string    `json:"unmapped_columns,omitempty"` // CSV columns not imported
}

// Run imports the file at path through p (whose directory must be ready)
// and returns what it did. An error means the import stopped: the rows it
// had counted as imported or rejected are in Kafka, and running the same
// import again is safe.
func Run(ctx context.Context, p *ingest.Pipeline, path string, o Options) (Summary, error) {
	var sum Summary
	contentType, ok := Formats[o.Format]
	if !ok {
		return sum, fmt.Errorf("format %q: want csv, jsonl or xml", o.Format)
	}
	if o.Source == "" {
		o.Source = DefaultSource
	}
	if _, err := normalize.ID("source", o.Source); err != nil {
		return sum, err
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	if o.AsOf.IsZero() {
		fi, err := f.Stat()
		if err != nil {
			return sum, err
		}
		o.AsOf = fi.ModTime().UTC().Truncate(time.Second)
	}
	counted := &countingReader{r: f}
	in := bufio.NewReaderSize(counted, 64<<10)
	m := o.Mapping
	var rs rows
	switch o.Format {
	case "csv":
		c, err := newCSVRows(in, f)
		if err != nil {
			return sum, err
		}
		if m == nil {
			m = identity(c.header)
		}
		for _, col := range sortedKeys(m.Columns) {
			if !slices.Contains(c.header, col) {
				return sum, fmt.Errorf("the mapping's column %q is not in the header %q", col, c.header)
			}
		}
		if !slices.Contains(c.header, columnOf(m, "id")) {
			return sum, fmt.Errorf("no column holds id, the source's customer ID: name one id or map one to it (--mapping)")
		}
		for _, h := range c.header {
			if _, ok := m.Columns[h]; !ok {
				sum.Unmapped = append(sum.Unmapped, h)
			}
		}
		rs = c
	case "jsonl":
		if m == nil {
			m = &Mapping{}
			_ = m.defaults() // no time zone to load: cannot fail
		}
		rs = &jsonlRows{r: in, sep: m.TagSeparator}
	case "xml":
		if m == nil {
			m = &Mapping{}
			_ = m.defaults() // no time zone to load: cannot fail
		}
		rs = &xmlRows{d: xml.NewDecoder(in), src: f}
	}
	im := &run{p: p, o: o, m: m, file: filepath.Base(path), contentType: contentType, sum: &sum,
		byContent: map[string]int{}, byID: map[string]int{}}
	err = im.read(ctx, rs, func() int64 { return counted.n - int64(in.Buffered()) })
	if werr := im.wait(); err == nil {
		err = werr
	}
	if err == nil && o.Progress != nil {
		o.Progress(counted.n)
	}
	return sum, err
}

// read validates every row, handing a batch to Kafka whenever one is full
// and at the end.
func (im *run) read(ctx context.Context, rs rows, read func() int64) error {
	for {
		r, err := rs.next()
		if errors.Is(err, io.EOF) {
			return im.flush(ctx)
		}
		if err != nil {
			return err
		}
		im.sum.Rows++
		im.add(r)
		if len(im.events.Customers) >= im.o.BatchSize || len(im.letters) >= im.o.BatchSize {
			if err := im.flush(ctx); err != nil {
				return err
			}
			if im.o.Progress != nil {
				im.o.Progress(read())
			}
		}
	}
}

// run is one import under way.
type run struct {
	p           *ingest.Pipeline
	o           Options
	m           *Mapping
	file        string
	contentType string
	sum         *Summary

	byContent map[string]int // content hash → line of the first accepted row
	byID      map[string]int // customer ID of the source → line of its accepted row

	events   ingest.Batch
	letters  []events.DeadLetter
	rejected []Rejection // of the next batch, waiting for their dead letters' acknowledgement
	inflight *batch      // handed to Kafka, not yet acknowledged
}

// add validates a row into the next batch's events, or its dead letters.
func (im *run) add(r row) {
	invalid := r.err
	if invalid == nil {
		var ev *events.CustomerEvent
		if ev, invalid = im.event(r); invalid == nil {
			im.events.Customers = append(im.events.Customers, ev)
			return
		}
	}
	im.rejected = append(im.rejected, Rejection{Line: r.line, Field: invalid.Field, Reason: invalid.Reason})
	dl := events.DeadLetter{Stage: "ingest", Component: "producer/import", Reason: invalid.Reason, ContentType: im.contentType,
		Payload: r.raw, Headers: map[string]string{"file": im.file, "line": strconv.Itoa(r.line), "source": im.o.Source, "format": im.o.Format}}
	if invalid.Field != "" {
		dl.Field = &invalid.Field
	}
	im.letters = append(im.letters, dl)
}

// batch is what one flush hands to Kafka: the dead letters of rejected
// rows, then the events of accepted ones.
type batch struct {
	events   ingest.Batch
	letters  []events.DeadLetter
	rejected []Rejection
	kept     bool // Kafka acknowledged the dead letters
	done     chan error
}

func (b *batch) produce(ctx context.Context, p *ingest.Pipeline, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if len(b.letters) > 0 {
		written, err := p.DeadLetters(ctx, "import", b.letters)
		if err != nil {
			return fmt.Errorf("Kafka did not take the dead letters of %d rejected rows: %w", len(b.letters), err)
		}
		for i, dl := range written {
			b.rejected[i].DeadLetterID = dl.ID
		}
		b.kept = true
	}
	if n := len(b.events.Customers); n > 0 {
		if err := p.Produce(ctx, events.ChannelImport, &b.events); err != nil {
			return fmt.Errorf("Kafka did not take a batch of %d rows: %w", n, err)
		}
	}
	return nil
}

// flush waits for the batch in flight, then hands the rows read since to
// Kafka, validating the next rows while Kafka takes them.
func (im *run) flush(ctx context.Context) error {
	if err := im.wait(); err != nil {
		return err
	}
	if len(im.events.Customers) == 0 && len(im.letters) == 0 {
		return nil
	}
	b := &batch{events: im.events, letters: im.letters, rejected: im.rejected, done: make(chan error, 1)}
	im.events, im.letters, im.rejected = ingest.Batch{}, nil, nil
	im.inflight = b
	go func() { b.done <- b.produce(ctx, im.p, im.o.BatchTimeout) }()
	return nil
}

// wait waits for the batch in flight and counts what Kafka acknowledged.
func (im *run) wait() error {
	b := im.inflight
	if b == nil {
		return nil
	}
	im.inflight = nil
	err := <-b.done
	if b.kept {
		im.sum.Rejections = append(im.sum.Rejections, b.rejected...)
		im.sum.Rejected += len(b.rejected)
	}
	if err == nil {
		im.sum.Imported += len(b.events.Customers)
	}
	return err
}

// event validates a row into a customer event, through the checks every
// channel's profile updates pass (chatjson.ProfileEvent) and the
// pipeline's (Pipeline.Complete).
func (im *run) event(r row) (*events.CustomerEvent, *normalize.ValidationError) {
	fields := map[string]string{}
	for col, v := range r.cells {
		f, ok := im.m.Columns[col]
		if !ok {
			if im.o.Format == "csv" || len(im.m.Columns) > 0 || !knownField(col) {
				continue // not imported
			}
			f = col // JSON Lines and XML without a mapping: members named as the fields
		}
		if !utf8.ValidString(v) {
			return nil, normalize.Invalid(f, "%s is not valid UTF-8 (byte %d; is the file in another encoding? save it as UTF-8)", im.column(f), invalidAt(v))
		}
		if v = strings.TrimSpace(v); v != "" {
			fields[f] = v
		}
	}
	for _, col := range r.nested {
		f, ok := im.m.Columns[col]
		if !ok && len(im.m.Columns) == 0 && knownField(col) {
			f, ok = col, true
		}
		if ok {
			return nil, normalize.Invalid(f, "%s: want a string, a number, a boolean or an array of strings", im.column(f))
		}
	}
	id, ok := fields["id"]
	if !ok {
		return nil, normalize.Invalid("id", "%s is empty; every row needs the source's customer ID", im.column("id"))
	}
	if _, err := normalize.ID("id", id); err != nil {
		return nil, asInvalid(err)
	}
	hash := contentHash(fields)
	if line, dup := im.byContent[hash]; dup {
		return nil, normalize.Invalid("", "duplicate of line %d", line)
	}
	if line, dup := im.byID[id]; dup {
		return nil, normalize.Invalid("id", "%q is also on line %d with other values; a file holds one row per customer", id, line)
	}
	at := im.o.AsOf
	if s, ok := fields["occurred_at"]; ok {
		t, err := im.timestamp(s)
		if err != nil {
			return nil, err
		}
		at = t
	}
	if _, err := chatjson.Timestamp("occurred_at", at.Format(time.RFC3339Nano), im.o.Now()); err != nil {
		return nil, asInvalid(err)
	}
	p, invalid := im.profile(fields)
	if invalid != nil {
		return nil, invalid
	}
	owner := []events.Identity{{Kind: crm.IdentityKind, Scope: im.o.Source, Value: id, Verified: true}}
	ev, err := chatjson.ProfileEvent("", chatjson.Event{Profile: p}, chatjson.Context{Identities: owner, Now: im.o.Now()})
	if err != nil {
		invalid := asInvalid(err)
		invalid.Field = strings.TrimPrefix(invalid.Field, ".profile.")
		return nil, invalid
	}
	sourceID := "row:" + hash
	ev.SourceEventID, ev.OccurredAt = &sourceID, at.UTC().Truncate(time.Millisecond)
	if invalid := im.p.Complete(events.ChannelImport, &ingest.Batch{Customers: []*events.CustomerEvent{ev}}); invalid != nil {
		return nil, invalid
	}
	im.byContent[hash], im.byID[id] = r.line, r.line
	return ev, nil
}

// profile turns a row's fields into the profile update channels post.
func (im *run) profile(fields map[string]string) (*chatjson.Profile, *normalize.ValidationError) {
	p := &chatjson.Profile{Attributes: map[string]string{}}
	for f, v := range fields {
		switch {
		case f == "name":
			p.Name = &v
		case f == "phone":
			p.Phone = &v
		case f == "email":
			p.Email = &v
		case f == "gender":
			g := strings.ToLower(v)
			p.Gender = &g
		case f == "birthday":
			p.Birthday = &v
		case f == "id_number":
			p.IDNumber = &v
		case f == "vip_level":
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				return nil, normalize.Invalid(f, "%s: %q is not a whole number", im.column(f), v)
			}
			level := int32(n)
			p.VIPLevel = &level
		case f == "tags":
			for _, t := range strings.Split(v, im.m.TagSeparator) {
				if t = strings.TrimSpace(t); t != "" {
					p.Tags = append(p.Tags, t)
				}
			}
		case strings.HasPrefix(f, "address."):
			if p.Address == nil {
				p.Address = &events.Address{}
			}
			part := map[string]*string{"country": &p.Address.Country, "province": &p.Address.Province, "city": &p.Address.City,
				"district": &p.Address.District, "street": &p.Address.Street, "postal_code": &p.Address.PostalCode}
			*part[strings.TrimPrefix(f, "address.")] = v
		case strings.HasPrefix(f, "attributes."):
			p.Attributes[strings.TrimPrefix(f, "attributes.")] = v
		}
	}
	return p, nil
}

// timeLayouts are the forms occurred_at may take; those without an offset
// are in the mapping's timezone.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006/01/02 15:04:05", "2006-01-02"}

func (im *run) timestamp(s string) (time.Time, *normalize.ValidationError) {
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, im.m.location); err == nil {
			return t, nil
		}
	}
	return time.Time{}, normalize.Invalid("occurred_at", "%s: %q is not a time (want RFC 3339, 2006-01-02 15:04:05 or 2006-01-02)", im.column("occurred_at"), s)
}

// column names the column that holds field f, for messages.
func (im *run) column(f string) string {
	return fmt.Sprintf("column %q", columnOf(im.m, f))
}

func columnOf(m *Mapping, f string) string {
	for col, field := range m.Columns {
		if field == f {
			return col
		}
	}
	return f
}

// contentHash identifies a row by its mapped fields, whatever the order of
// the file's columns.
func contentHash(fields map[string]string) string {
	h := sha256.New()
	for _, k := range sortedKeys(fields) {
		for _, part := range []string{k, fields[k]} {
			_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
			h.Write([]byte(part))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func invalidAt(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return i + 1
			}
		}
	}
	return 0
}

func asInvalid(err error) *normalize.ValidationError {
	var invalid *normalize.ValidationError
	if errors.As(err, &invalid) {
		return invalid
	}
	return &normalize.ValidationError{Reason: err.Error()}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
