package importer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
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

// Converter turns one source's records (column → text) into customer
// events through the checks every channel's profile updates pass: omnisync
// import, and the back-office sources (omnisync source poll and postgres).
// Each record's id is the source's customer ID, the verified identity
// crm:<Source>:<id>.
type Converter struct {
	Pipeline *ingest.Pipeline
	Mapping  *Mapping // nil: columns are named as the omnisync fields
	Source   string   // the system's name
	Channel  events.Channel
	Now      func() time.Time // default time.Now
}

// NewConverter checks the source's name and fills in the defaults.
func NewConverter(p *ingest.Pipeline, m *Mapping, source string, ch events.Channel) (*Converter, error) {
	if _, err := normalize.ID("source", source); err != nil {
		return nil, err
	}
	if m == nil {
		m = &Mapping{}
		_ = m.defaults() // no time zone to load: cannot fail
	}
	return &Converter{Pipeline: p, Mapping: m, Source: source, Channel: ch, Now: time.Now}, nil
}

// Fields picks a record's mapped fields (trimmed, empty ones left out) and
// returns them with the record's id. nested names the members that held
// objects; they reject the record only when mapped. Without a mapping,
// columns named as an omnisync field are that field, unless byName is
// false (CSV, whose identity mapping is made from its header).
func (c *Converter) Fields(cells map[string]string, nested []string, byName bool) (map[string]string, string, *normalize.ValidationError) {
	m := c.Mapping
	fields := map[string]string{}
	for col, v := range cells {
		f, ok := m.Columns[col]
		if !ok {
			if !byName || len(m.Columns) > 0 || !knownField(col) {
				continue // not imported
			}
			f = col
		}
		if !utf8.ValidString(v) {
			return nil, "", normalize.Invalid(f, "%s is not valid UTF-8 (byte %d; is the file in another encoding? save it as UTF-8)", c.column(f), invalidAt(v))
		}
		if v = strings.TrimSpace(v); v != "" {
			fields[f] = v
		}
	}
	for _, col := range nested {
		f, ok := m.Columns[col]
		if !ok && len(m.Columns) == 0 && knownField(col) {
			f, ok = col, true
		}
		if ok {
			return nil, "", normalize.Invalid(f, "%s: want a string, a number, a boolean or an array of strings", c.column(f))
		}
	}
	id, ok := fields["id"]
	if !ok {
		return nil, "", normalize.Invalid("id", "%s is empty; every row needs the source's customer ID", c.column("id"))
	}
	if _, err := normalize.ID("id", id); err != nil {
		return nil, "", asInvalid(err)
	}
	return fields, id, nil
}

// ID is a record's id (trimmed; "" when it has none), as Fields would
// read it.
func (c *Converter) ID(cells map[string]string, byName bool) string {
	col := columnOf(c.Mapping, "id")
	if _, mapped := c.Mapping.Columns[col]; !mapped && (!byName || len(c.Mapping.Columns) > 0) {
		return ""
	}
	return strings.TrimSpace(cells[col])
}

// Event validates a record's fields into a completed upsert with
// sourceID that also clears the fields in clear (see Absent); asOf is its
// occurred_at unless a field holds one.
func (c *Converter) Event(fields map[string]string, clear []string, sourceID string, asOf time.Time) (*events.CustomerEvent, *normalize.ValidationError) {
	at := asOf
	if s, ok := fields["occurred_at"]; ok {
		t, err := c.timestamp(s)
		if err != nil {
			return nil, err
		}
		at = t
	}
	if _, err := chatjson.Timestamp("occurred_at", at.Format(time.RFC3339Nano), c.Now()); err != nil {
		return nil, asInvalid(err)
	}
	p, invalid := c.profile(fields)
	if invalid != nil {
		return nil, invalid
	}
	ev, err := chatjson.ProfileEvent("", chatjson.Event{Profile: p, Clear: clear}, chatjson.Context{Identities: c.owner(fields["id"]), Now: c.Now()})
	if err != nil {
		invalid := asInvalid(err)
		invalid.Field = strings.TrimPrefix(invalid.Field, ".profile.")
		return nil, invalid
	}
	return c.complete(ev, sourceID, at)
}

// Absent returns the profile fields the mapping names that fields lacks (a
// NULL column of a table): a source that always sends whole records clears
// them. Address parts are cleared together, when all are absent.
func (c *Converter) Absent(fields map[string]string) []string {
	var out []string
	address, anyAddress := false, false
	for _, f := range c.Mapping.Columns {
		_, set := fields[f]
		if strings.HasPrefix(f, "address.") {
			address, anyAddress = true, anyAddress || set
			continue
		}
		if !set && f != "id" && f != "occurred_at" {
			out = append(out, f)
		}
	}
	if address && !anyAddress {
		out = append(out, "address")
	}
	slices.Sort(out)
	return out
}

// Delete is the completed delete of the source's customer id.
func (c *Converter) Delete(id, sourceID string, at time.Time) (*events.CustomerEvent, *normalize.ValidationError) {
	if _, err := normalize.ID("id", id); err != nil {
		return nil, asInvalid(err)
	}
	return c.complete(&events.CustomerEvent{Op: events.OpDelete, Identities: c.owner(id), Clears: []string{}}, sourceID, at)
}

func (c *Converter) owner(id string) []events.Identity {
	return []events.Identity{{Kind: crm.IdentityKind, Scope: c.Source, Value: id, Verified: true}}
}

func (c *Converter) complete(ev *events.CustomerEvent, sourceID string, at time.Time) (*events.CustomerEvent, *normalize.ValidationError) {
	ev.SourceEventID, ev.OccurredAt = &sourceID, at.UTC().Truncate(time.Millisecond)
	ev.Source = ingest.SystemSource(c.Channel, c.Source)
	if invalid := c.Pipeline.Complete(c.Channel, &ingest.Batch{Customers: []*events.CustomerEvent{ev}}); invalid != nil {
		return nil, invalid
	}
	return ev, nil
}

// profile turns a record's fields into the profile update channels post.
func (c *Converter) profile(fields map[string]string) (*chatjson.Profile, *normalize.ValidationError) {
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
				return nil, normalize.Invalid(f, "%s: %q is not a whole number", c.column(f), v)
			}
			level := int32(n)
			p.VIPLevel = &level
		case f == "tags":
			for _, t := range strings.Split(v, c.Mapping.TagSeparator) {
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
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006/01/02 15:04:05", "2006-01-02"}

func (c *Converter) timestamp(s string) (time.Time, *normalize.ValidationError) {
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, c.Mapping.location); err == nil {
			return t, nil
		}
	}
	return time.Time{}, normalize.Invalid("occurred_at", "%s: %q is not a time (want RFC 3339, 2006-01-02 15:04:05 or 2006-01-02)", c.column("occurred_at"), s)
}

// column names the column that holds field f, for messages.
func (c *Converter) column(f string) string {
	return fmt.Sprintf("column %q", columnOf(c.Mapping, f))
}

// ContentHash identifies a record by its mapped fields, whatever the order
// of the source's columns.
func ContentHash(fields map[string]string) string {
	h := sha256.New()
	for _, k := range sortedKeys(fields) {
		for _, part := range []string{k, fields[k]} {
			_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
			h.Write([]byte(part))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func columnOf(m *Mapping, f string) string {
	for col, field := range m.Columns {
		if field == f {
			return col
		}
	}
	return f
}
