// Package export is the writer behind omnisync export: it streams a store's
// customers (store.Scanner) into a CSV, JSON Lines, XML or Avro file.
//
// Every format holds one row per customer that is neither deleted nor
// merged into another (the survivor of a merge carries the merged
// profile). csv, jsonl and xml rows are readable by omnisync import with no
// mapping: id is the customer ID, occurred_at the record's last update, and
// each profile value is a column named as the import's fields (name, phone,
// email, gender, birthday, vip_level, tags, id_number, address.<part>,
// attributes.<key>); cleared fields are left out. jsonl adds each field's
// provenance; jsonl and xml add, with messages, the customer's messages in
// the Avro JSON encoding of MessageEvent; avro rows are
// the CustomerState records of the state topic (with messages, the
// CustomerExport records of WithMessagesSchema), in an object container
// file with the schema embedded.
//
// Rows are written as the store is scanned: memory holds one customer (and
// its messages) at a time. CSV scans the store twice, first for its header
// (the attribute keys in use).
package export

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	gohash "hash"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// Formats are the formats Write writes.
var Formats = []string{"csv", "jsonl", "xml", "avro"}

// TagSeparator joins a customer's tags in a csv or xml cell, as omnisync
// import splits them by default.
const TagSeparator = ";"

// avroBlock is how many customers an Avro block holds.
const avroBlock = 256

// Options configure Write.
type Options struct {
	Format string // one of Formats
	// WithMessages adds each customer's messages (not csv).
	WithMessages bool
}

// Summary is what an export wrote and left out.
type Summary struct {
	Customers int `json:"customers"` // rows written
	Messages  int `json:"messages"`  // messages written (--with-messages)
	Deleted   int `json:"deleted"`   // deleted customers left out
	Merged    int `json:"merged"`    // customers merged into another, left out
	// MergedMessages counts the messages of the merged customers, left out
	// with them (--with-messages): the stores keep them under the merged
	// customer's ID.
	MergedMessages int `json:"merged_messages"`
}

// Check reports whether o can be written.
func (o Options) Check() error {
	if !slices.Contains(Formats, o.Format) {
		return fmt.Errorf("format %q: want csv, jsonl, xml or avro", o.Format)
	}
	if o.WithMessages && o.Format == "csv" {
		return errors.New("--with-messages: csv has one flat row a customer, with no place for messages (use --format jsonl, xml or avro)")
	}
	return nil
}

// Write writes every exported customer of sc to w.
func Write(ctx context.Context, sc store.Scanner, w io.Writer, o Options) (Summary, error) {
	var sum Summary
	if err := o.Check(); err != nil {
		return sum, err
	}
	mc, err := goavro.NewCodec(schemas.Current(schemas.MessageEvent))
	if err != nil {
		return sum, err
	}
	var row func(r merge.Record, messages []events.MessageEvent) error
	var finish func() error
	bw := bufio.NewWriterSize(w, 64<<10)
	switch o.Format {
	case "csv":
		columns, err := header(ctx, sc)
		if err != nil {
			return sum, err
		}
		cw := csv.NewWriter(bw)
		if err := cw.Write(columns); err != nil {
			return sum, err
		}
		cells := make([]string, len(columns))
		row = func(r merge.Record, _ []events.MessageEvent) error {
			p, err := flatProfile(r)
			if err != nil {
				return err
			}
			for i, c := range columns {
				cells[i] = p.get(c)
			}
			return cw.Write(cells)
		}
		finish = func() error { cw.Flush(); return cw.Error() }
	case "jsonl":
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		row = func(r merge.Record, messages []events.MessageEvent) error {
			line, err := jsonRow(r)
			if err != nil {
				return err
			}
			if o.WithMessages {
				ms := make([]json.RawMessage, 0, len(messages))
				for i := range messages {
					b, err := messageJSON(mc, r.CustomerID, &messages[i])
					if err != nil {
						return err
					}
					ms = append(ms, b)
				}
				line["messages"] = ms
				sum.Messages += len(ms)
			}
			return enc.Encode(line)
		}
		finish = func() error { return nil }
	case "xml":
		if _, err := io.WriteString(bw, xml.Header+"<customers>\n"); err != nil {
			return sum, err
		}
		enc := xml.NewEncoder(bw)
		row = func(r merge.Record, messages []events.MessageEvent) error {
			p, err := flatProfile(r)
			if err != nil {
				return err
			}
			var ms [][]byte
			if o.WithMessages {
				ms = make([][]byte, 0, len(messages))
				for i := range messages {
					b, err := messageJSON(mc, r.CustomerID, &messages[i])
					if err != nil {
						return err
					}
					ms = append(ms, b)
				}
				sum.Messages += len(ms)
			}
			if err := xmlRow(enc, p, o.WithMessages, ms); err != nil {
				return err
			}
			_, err = io.WriteString(bw, "\n")
			return err
		}
		finish = func() error {
			_, err := io.WriteString(bw, "</customers>\n")
			return err
		}
	case "avro":
		schema := schemas.Current(schemas.CustomerState)
		if o.WithMessages {
			var err error
			if schema, err = WithMessagesSchema(); err != nil {
				return sum, err
			}
		}
		ow, err := goavro.NewOCFWriter(goavro.OCFConfig{W: bw, Schema: schema, CompressionName: goavro.CompressionDeflateLabel})
		if err != nil {
			return sum, err
		}
		// A block per avroBlock customers: each Append is one block,
		// compressed by a new deflate writer.
		block := make([]any, 0, avroBlock)
		flush := func() error {
			err := ow.Append(block)
			clear(block)
			block = block[:0]
			return err
		}
		row = func(r merge.Record, messages []events.MessageEvent) error {
			s := r.State()
			native, err := codec.Native(&s)
			if err != nil {
				return fmt.Errorf("customer %s: %w", r.CustomerID, err)
			}
			if o.WithMessages {
				ms := make([]any, len(messages))
				for i := range messages {
					if ms[i], err = codec.Native(&messages[i]); err != nil {
						return fmt.Errorf("customer %s, message %s: %w", r.CustomerID, messages[i].MessageID, err)
					}
				}
				native = map[string]any{"state": native, "messages": ms}
				sum.Messages += len(ms)
			}
			if block = append(block, native); len(block) == avroBlock {
				return flush()
			}
			return nil
		}
		finish = flush
	}
	err = sc.Scan(ctx, func(r merge.Record, messages []events.MessageEvent) error {
		switch {
		case r.Deleted():
			sum.Deleted++
			return nil
		case r.MergedInto != nil:
			sum.Merged++
			if o.WithMessages {
				sum.MergedMessages += len(messages)
			}
			return nil
		}
		if err := row(r, messages); err != nil {
			return err
		}
		sum.Customers++
		return nil
	})
	if err == nil {
		err = finish()
	}
	if err == nil {
		err = bw.Flush()
	}
	return sum, err
}

// header scans sc for the csv columns: the typed fields, then the
// address parts and attribute keys some exported customer holds, sorted.
func header(ctx context.Context, sc store.Scanner) ([]string, error) {
	seen := map[string]bool{}
	err := sc.Scan(ctx, func(r merge.Record, _ []events.MessageEvent) error {
		if r.Deleted() || r.MergedInto != nil {
			return nil
		}
		p, err := flatProfile(r)
		if err != nil {
			return err
		}
		for _, c := range p {
			seen[c.name] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	columns := []string{"id", "occurred_at"}
	for _, f := range typedColumns {
		if seen[f] {
			columns = append(columns, f)
		}
	}
	var extra []string
	for c := range seen {
		if !slices.Contains(typedColumns, c) && c != "id" && c != "occurred_at" {
			extra = append(extra, c)
		}
	}
	slices.Sort(extra)
	return append(columns, extra...), nil
}

// typedColumns are the columns of the typed fields, in file order.
var typedColumns = []string{"name", "phone", "email", "gender", "birthday", "vip_level", "tags", "id_number"}

var addressParts = []struct{ name, avro string }{
	{"address.country", "country"}, {"address.province", "province"}, {"address.city", "city"},
	{"address.district", "district"}, {"address.street", "street"}, {"address.postal_code", "postal_code"},
}

// cell is one column of a row.
type cell struct {
	name  string
	value string
	field string   // the record field it comes from
	tags  []string // the tags, for jsonl
}

type row []cell

func (p row) get(name string) string {
	for _, c := range p {
		if c.name == name {
			return c.value
		}
	}
	return ""
}

// flatProfile returns a customer's profile as import columns: id,
// occurred_at, then each value the record holds (cleared fields and
// empty address parts left out).
func flatProfile(r merge.Record) (row, error) {
	p := row{{name: "id", value: r.CustomerID}, {name: "occurred_at", value: r.UpdatedAt.UTC().Format(time.RFC3339Nano)}}
	fields := make([]string, 0, len(r.Fields))
	for f := range r.Fields {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	for _, f := range fields {
		g := r.Fields[f]
		if g.Cleared() {
			continue
		}
		bad := func(err error) error {
			return fmt.Errorf("customer %s: field %s holds %s: %w", r.CustomerID, f, g.Value, err)
		}
		switch f {
		case "vip_level":
			p = append(p, cell{name: f, value: g.Value, field: f})
		case "tags":
			var tags []string
			if err := json.Unmarshal([]byte(g.Value), &tags); err != nil {
				return nil, bad(err)
			}
			for _, t := range tags {
				if strings.Contains(t, TagSeparator) {
					return nil, bad(fmt.Errorf("tag %q holds the separator %q, which omnisync import splits tags on", t, TagSeparator))
				}
			}
			p = append(p, cell{name: f, value: strings.Join(tags, TagSeparator), field: f, tags: tags})
		case "address":
			var a map[string]string
			if err := json.Unmarshal([]byte(g.Value), &a); err != nil {
				return nil, bad(err)
			}
			for _, part := range addressParts {
				if v := a[part.avro]; v != "" {
					p = append(p, cell{name: part.name, value: v, field: f})
				}
			}
		default: // strings: name, phone, email, id_number, birthday, the gender symbol, attributes
			var s string
			if err := json.Unmarshal([]byte(g.Value), &s); err != nil {
				return nil, bad(err)
			}
			p = append(p, cell{name: f, value: s, field: f})
		}
	}
	return p, nil
}

// jsonRow is a customer's jsonl line: the flat profile, tags as an array,
// and provenance: field → channel, source, event_id, occurred_at of the
// write that set it.
func jsonRow(r merge.Record) (map[string]any, error) {
	p, err := flatProfile(r)
	if err != nil {
		return nil, err
	}
	line := make(map[string]any, len(p)+1)
	type origin struct {
		Channel    events.Channel `json:"channel"`
		Source     string         `json:"source"`
		EventID    string         `json:"event_id"`
		OccurredAt string         `json:"occurred_at"`
	}
	provenance := map[string]origin{}
	for _, c := range p {
		switch {
		case c.tags != nil:
			line[c.name] = c.tags
		case c.name == "vip_level":
			line[c.name] = json.RawMessage(c.value)
		default:
			line[c.name] = c.value
		}
		if c.field != "" {
			g := r.Fields[c.field]
			provenance[c.field] = origin{g.Channel, g.Source, g.Stamp.EventID, g.Stamp.At.UTC().Format(time.RFC3339Nano)}
		}
	}
	line["provenance"] = provenance
	return line, nil
}

// messageJSON is a message in the Avro JSON encoding of MessageEvent,
// members sorted (goavro writes them in map order), so an export is the
// same bytes every time.
func messageJSON(mc *goavro.Codec, customerID string, m *events.MessageEvent) ([]byte, error) {
	native, err := codec.Native(m)
	if err == nil {
		var b []byte
		if b, err = mc.TextualFromNative(nil, native); err == nil {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber() // times in milliseconds, kept digit for digit
			var v any
			if err = dec.Decode(&v); err == nil {
				return json.Marshal(v)
			}
		}
	}
	return nil, fmt.Errorf("customer %s, message %s: %w", customerID, m.MessageID, err)
}

// xmlRow writes <customer> with one child element a column and, with
// messages, <messages> holding a <message> a message, its text the
// message's Avro JSON encoding (metadata keys are free text, not XML
// names).
func xmlRow(enc *xml.Encoder, p row, withMessages bool, messages [][]byte) error {
	start := xml.StartElement{Name: xml.Name{Local: "customer"}}
	if err := enc.EncodeToken(start); err != nil {
		return err
	}
	for _, c := range p {
		if !xmlName(c.name) {
			return fmt.Errorf("customer %s: column %q is not an XML element name; export this store as csv or jsonl", p.get("id"), c.name)
		}
		if err := enc.EncodeElement(c.value, xml.StartElement{Name: xml.Name{Local: c.name}}); err != nil {
			return err
		}
	}
	if withMessages {
		list := xml.StartElement{Name: xml.Name{Local: "messages"}}
		if err := enc.EncodeToken(list); err != nil {
			return err
		}
		for _, m := range messages {
			if err := enc.EncodeElement(string(m), xml.StartElement{Name: xml.Name{Local: "message"}}); err != nil {
				return err
			}
		}
		if err := enc.EncodeToken(list.End()); err != nil {
			return err
		}
	}
	if err := enc.EncodeToken(start.End()); err != nil {
		return err
	}
	return enc.Flush()
}

// xmlName reports whether s is a plain XML element name (ASCII letters,
// digits, '_', '-', '.', starting with a letter or '_').
func xmlName(s string) bool {
	if s == "" || strings.HasPrefix(strings.ToLower(s), "xml") {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// WithMessagesSchema is the Avro schema of an avro export with messages:
// a record io.omnisync.v1.CustomerExport of the customer's state
// (CustomerState) and its messages (an array of MessageEvent), the named
// types both schemas hold (Channel, Identity…) defined once, in the state.
func WithMessagesSchema() (string, error) {
	var state, message any
	if err := json.Unmarshal([]byte(schemas.Current(schemas.CustomerState)), &state); err != nil {
		return "", err
	}
	if err := json.Unmarshal([]byte(schemas.Current(schemas.MessageEvent)), &message); err != nil {
		return "", err
	}
	defined := map[string]bool{}
	state = defineOnce(state, defined)
	message = defineOnce(message, defined)
	b, err := json.Marshal(map[string]any{
		"type": "record", "name": "CustomerExport", "namespace": "io.omnisync.v1",
		"doc": "One customer of an omnisync export: its state, as on the state topic, and its messages.",
		"fields": []any{
			map[string]any{"name": "state", "type": state},
			map[string]any{"name": "messages", "type": map[string]any{"type": "array", "items": message}},
		},
	})
	return string(b), err
}

// defineOnce replaces each named type of schema v already in defined by
// its name, and adds the others. Every schema of package schemas is in one
// namespace, so plain names are full names.
func defineOnce(v any, defined map[string]bool) any {
	switch t := v.(type) {
	case map[string]any:
		if kind, _ := t["type"].(string); kind == "record" || kind == "enum" || kind == "fixed" {
			name, _ := t["name"].(string)
			if defined[name] {
				return name
			}
			defined[name] = true
		}
		for _, k := range []string{"fields", "type", "items", "values"} { // in document order
			if x, ok := t[k]; ok {
				t[k] = defineOnce(x, defined)
			}
		}
	case []any:
		for i, x := range t {
			t[i] = defineOnce(x, defined)
		}
	}
	return v
}

// ProfileHash is the SHA-256 (hex) of a customer's profile values: each
// field the record holds a value for (cleared fields left out), sorted,
// with its canonical JSON value. It is what an export followed by an
// import into an empty deployment reproduces: the customer ID, provenance,
// version, identities, conflicts and messages are the new deployment's
// own.
func ProfileHash(r merge.Record) string {
	fields := make([]string, 0, len(r.Fields))
	for f, g := range r.Fields {
		if !g.Cleared() {
			fields = append(fields, f)
		}
	}
	slices.Sort(fields)
	h := newHash()
	for _, f := range fields {
		h.add(f)
		h.add(r.Fields[f].Value)
	}
	return h.sum()
}

// hash writes length-prefixed strings, so no two lists of them collide.
type hash struct{ h gohash.Hash }

func newHash() hash { return hash{sha256.New()} }

func (h hash) add(s string) {
	_ = binary.Write(h.h, binary.BigEndian, uint64(len(s)))
	h.h.Write([]byte(s))
}

func (h hash) sum() string { return hex.EncodeToString(h.h.Sum(nil)) }
