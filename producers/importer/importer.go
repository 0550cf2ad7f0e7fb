// Package importer is the bulk producer behind omnisync import: it reads
// profiles from a CSV, JSON Lines or XML file and runs each row through the
// ingest pipeline's validation and produce path as channel IMPORT.
//
// Each row is one customer's profile; its id column is the source's own
// customer ID, which becomes the verified identity crm:<source>:<id> (the
// source system vouches for its IDs, as a CRM does on /ingest/crm), so an
// export of a CRM imported with --source set to the CRM's system name lands
// on the same customers as the CRM's live changes. With the source's
// hashes (Options.Hashes, package hashes) a row already imported with the
// same content is not produced again, so the same file imported twice adds
// nothing; a row's event ID is derived from the source and the row's
// content (its mapped fields and occurred_at), so a row produced twice is
// absorbed downstream. A row that cannot be read or does not validate
// is reported with its line, field and reason and written to the
// dead-letter topic. Rows are produced in batches (the next one validated
// while Kafka takes one); a row counts as imported only once Kafka
// acknowledged it.
package importer

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/hashes"
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
	// Hashes, when set, is the source's record hashes (package hashes): a
	// row whose content it holds for the row's id is unchanged and not
	// produced, and each imported row's hash is saved once Kafka
	// acknowledged its event, so importing the same file again adds
	// nothing. It must hold this Source's rows only (omnisync import opens
	// import:<source>).
	Hashes *hashes.Store
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
	Rows       int         `json:"rows"`      // records read
	Imported   int         `json:"imported"`  // acknowledged by Kafka
	Unchanged  int         `json:"unchanged"` // already imported with the same content (Options.Hashes)
	Rejected   int         `json:"rejected"`  // in the dead-letter topic
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
	conv, err := NewConverter(p, m, o.Source, events.ChannelImport)
	if err != nil {
		return sum, err
	}
	conv.Now = o.Now
	im := &run{p: p, o: o, conv: conv, file: filepath.Base(path), contentType: contentType, sum: &sum,
		byContent: map[string]int{}, byID: map[string]int{}, hashes: map[string]string{}}
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
	conv        *Converter
	file        string
	contentType string
	sum         *Summary

	byContent map[string]int    // content hash → line of the first accepted row
	byID      map[string]int    // customer ID of the source → line of its accepted row
	hashes    map[string]string // of the rows of the next batch: id → content hash

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
			if ev == nil {
				im.sum.Unchanged++
				return
			}
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
	hashes   map[string]string // to save once Kafka acknowledged the events
	kept     bool              // Kafka acknowledged the dead letters
	done     chan error
}

func (b *batch) produce(ctx context.Context, p *ingest.Pipeline, store *hashes.Store, timeout time.Duration) error {
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
	if store != nil {
		return store.Save(ctx, b.hashes)
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
	b := &batch{events: im.events, letters: im.letters, rejected: im.rejected, hashes: im.hashes, done: make(chan error, 1)}
	im.events, im.letters, im.rejected, im.hashes = ingest.Batch{}, nil, nil, map[string]string{}
	im.inflight = b
	go func() { b.done <- b.produce(ctx, im.p, im.o.Hashes, im.o.BatchTimeout) }()
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
// pipeline's (Pipeline.Complete). A row whose content the hash store
// already holds for its id returns nil, nil: it is unchanged.
func (im *run) event(r row) (*events.CustomerEvent, *normalize.ValidationError) {
	fields, id, invalid := im.conv.Fields(r.cells, r.nested, im.o.Format != "csv")
	if invalid != nil {
		return nil, invalid
	}
	hash := ContentHash(fields)
	if line, dup := im.byContent[hash]; dup {
		return nil, normalize.Invalid("", "duplicate of line %d", line)
	}
	if line, dup := im.byID[id]; dup {
		return nil, normalize.Invalid("id", "%q is also on line %d with other values; a file holds one row per customer", id, line)
	}
	if im.o.Hashes != nil && !im.o.Hashes.Changed(id, hash) {
		im.byContent[hash], im.byID[id] = r.line, r.line
		return nil, nil
	}
	ev, invalid := im.conv.Event(fields, nil, "row:"+hash, im.o.AsOf)
	if invalid != nil {
		return nil, invalid
	}
	im.byContent[hash], im.byID[id] = r.line, r.line
	im.hashes[id] = hash
	return ev, nil
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
