package merge_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// The model-based test: random event streams for a few customers, applied
// by the package and by refModel, a separate and deliberately plain
// implementation of the contract, must agree; and replays, re-deliveries
// and reloads of the record must not change a single byte.

// item is one entry of a generated log: a customer event or a message.
type item struct {
	ev  *events.CustomerEvent
	msg *events.MessageEvent
}

func (it item) customer() string {
	if it.ev != nil {
		return it.ev.CustomerID
	}
	return it.msg.CustomerID
}

func (it item) String() string {
	if it.msg != nil {
		return fmt.Sprintf("MESSAGE %s %s at %s", it.msg.MessageID, it.msg.Channel, it.msg.OccurredAt.Format(time.DateTime))
	}
	e := it.ev
	s := fmt.Sprintf("%s %s %s/%s at %s", e.Op, e.EventID, e.Channel, e.Source, e.OccurredAt.Format(time.DateTime))
	if e.Profile != nil {
		b, _ := json.Marshal(e.Profile)
		s += " " + string(b)
	}
	if len(e.Clears) > 0 {
		s += fmt.Sprintf(" clears %v", e.Clears)
	}
	if e.Resolution != nil {
		s += fmt.Sprintf(" %s %.8s", e.Resolution.Choice, e.Resolution.ConflictID)
		if v := e.Resolution.Value; v != nil {
			s += fmt.Sprintf(" value=%q", *v)
		}
	}
	return s
}

// apply applies it to r.
func (it item) apply(r merge.Record, p *merge.Policy) (merge.Record, merge.Outcome) {
	if it.ev != nil {
		return merge.Apply(r, it.ev, p)
	}
	return merge.ApplyMessage(r, it.msg, p)
}

// The generator's vocabulary: five channels of distinct authority, two
// sources on some, key and non-key fields with small value pools so that
// equal values, conflicts and settled candidates happen often.
var (
	genSources = map[events.Channel][]string{
		events.ChannelCRM:    {"crm-main"},
		events.ChannelApp:    {"app-ios", "app-android"},
		events.ChannelWeb:    {"web-widget"},
		events.ChannelWeChat: {"wx-oa", "wx-mp"},
		events.ChannelPhone:  {"ivr"},
	}
	genChannels = []events.Channel{events.ChannelCRM, events.ChannelApp, events.ChannelWeb, events.ChannelWeChat, events.ChannelPhone}
	genFields   = map[string][]string{
		"phone":               {"+8613800000001", "+8613800000002", "+8613800000003"},
		"email":               {"a@x.cn", "b@x.cn"},
		"attributes.order_no": {"A-1", "B-2", "C-3"},
		"name":                {"Li Lei", "Han Meimei", "Lily"},
		"attributes.color":    {"red", "blue"},
		"vip_level":           {"1", "2", "3"},
		"tags":                {"a", "b"}, // one tag, or none
	}
	genFieldNames = sortedFieldNames()
	genIdentities = []events.Identity{
		{Kind: "phone", Value: "+8613800000001"}, {Kind: "phone", Value: "+8613800000001", Verified: true},
		{Kind: "wechat_openid", Scope: "wx1", Value: "o1", Verified: true},
		{Kind: "app_user", Value: "u1"}, {Kind: "app_user", Value: "u1", Verified: true},
		{Kind: "web_visitor", Value: "v1"}, {Kind: "crm", Value: "42", Verified: true},
	}
)

func sortedFieldNames() []string {
	var names []string
	for f := range genFields {
		names = append(names, f)
	}
	slices.Sort(names)
	return names
}

// generator writes a random log for a few customers.
type generator struct {
	rng       *rand.Rand
	customers []string
	seq       int
	records   map[string]merge.Record // the package's records, to pick conflicts to resolve
	deletes   int                     // percent of the items that are DELETEs
	messages  int                     // percent of the items that are messages
	past      map[string][]item       // each customer's log so far, to re-send from
	times     []time.Time             // every occurred_at so far
}

// genStream returns a log of n items for customers, seeded by seed: 1 %
// DELETEs and 10 % messages.
func genStream(seed uint64, customers []string, n int) []item {
	return genMix(seed, customers, n, 1, 10)
}

// genMix returns a log of n items for customers, seeded by seed, of which
// about deletes percent are DELETEs and messages percent messages.
func genMix(seed uint64, customers []string, n, deletes, messages int) []item {
	g := &generator{
		rng:       rand.New(rand.NewPCG(seed, 0x6d65726765)),
		customers: customers,
		records:   map[string]merge.Record{},
		past:      map[string][]item{},
		deletes:   deletes,
		messages:  messages,
	}
	var log []item
	for range n {
		it := g.next()
		c := it.customer()
		g.records[c], _ = it.apply(g.records[c], nil)
		g.past[c] = append(g.past[c], it)
		log = append(log, it)
	}
	return log
}

func (g *generator) next() item {
	c := g.customers[g.rng.IntN(len(g.customers))]
	switch x := g.rng.IntN(100); {
	case x < 10 && len(g.past[c]) > 0: // a duplicate: the same event re-sent, maybe much later
		return g.past[c][g.rng.IntN(len(g.past[c]))]
	case x < 20:
		return g.resolution(c)
	case x < 20+g.deletes:
		return item{ev: g.event(events.OpDelete, c)}
	case x < 20+g.deletes+g.messages:
		return item{msg: g.message(c)}
	default:
		return item{ev: g.upsert(c)}
	}
}

// at returns a random occurred_at within three days, on a minute grid so
// that equal times (ordered by ID) occur; events arrive out of time order.
// Now and then it is an earlier time, or exactly the conflict window (or a
// minute less) after one, to hit the window's edge.
func (g *generator) at() time.Time {
	t := t0.Add(time.Duration(g.rng.IntN(3*24*60)) * time.Minute)
	if len(g.times) > 0 && g.rng.IntN(5) == 0 {
		t = g.times[g.rng.IntN(len(g.times))].Add([]time.Duration{0, refWindow, refWindow - time.Minute}[g.rng.IntN(3)])
	}
	g.times = append(g.times, t)
	return t
}

// id returns a fresh event ID whose order is unrelated to the log's.
func (g *generator) id() string {
	g.seq++
	return fmt.Sprintf("%04x-%05d", g.rng.IntN(1<<16), g.seq)
}

func (g *generator) event(op events.Op, c string) *events.CustomerEvent {
	ch := genChannels[g.rng.IntN(len(genChannels))]
	src := genSources[ch]
	e := &events.CustomerEvent{
		EventID: g.id(), CustomerID: c, Channel: ch, Source: src[g.rng.IntN(len(src))],
		Op: op, OccurredAt: g.at(),
	}
	e.IngestedAt = e.OccurredAt
	return e
}

func (g *generator) upsert(c string) *events.CustomerEvent {
	e := g.event(events.OpUpsert, c)
	if f := genFieldNames[g.rng.IntN(len(genFieldNames))]; refKeyFields[f] && g.rng.IntN(4) == 0 {
		// Aim at the conflict window's edge: another source of the
		// channel that wrote f, about a window later.
		if cur, ok := g.records[c].Fields[f]; ok && len(genSources[cur.Channel]) > 1 {
			e.Channel = cur.Channel
			e.Source = genSources[cur.Channel][g.rng.IntN(2)]
			e.OccurredAt = cur.Stamp.At.Add(refWindow + time.Duration(g.rng.IntN(3)-1)*time.Millisecond)
			e.IngestedAt = e.OccurredAt
		}
	}
	for _, f := range genFieldNames {
		switch x := g.rng.IntN(10); {
		case x < 3:
			pool := genFields[f]
			setField(e, f, pool[g.rng.IntN(len(pool))])
		case x < 4:
			e.Clears = append(e.Clears, f)
		}
	}
	for range g.rng.IntN(3) {
		e.Identities = append(e.Identities, genIdentities[g.rng.IntN(len(genIdentities))])
	}
	return e
}

// setField sets field f of e's profile from its text form.
func setField(e *events.CustomerEvent, f, v string) {
	switch f {
	case "vip_level":
		if e.Profile == nil {
			e.Profile = &events.Profile{}
		}
		var n int32
		fmt.Sscan(v, &n)
		e.Profile.VIPLevel = &n
	case "tags":
		if e.Profile == nil {
			e.Profile = &events.Profile{}
		}
		e.Profile.Tags = []string{v}
		if v == "b" {
			e.Profile.Tags = []string{}
		}
	default:
		set(f, v)(e)
	}
}

// resolution resolves one of c's open conflicts, now and then a closed or
// unknown one.
func (g *generator) resolution(c string) item {
	e := g.event(events.OpResolve, c)
	e.Channel, e.Source = events.ChannelAgent, "console"
	var open []merge.Conflict
	for _, cf := range g.records[c].Conflicts {
		if cf.Open() || g.rng.IntN(10) == 0 {
			open = append(open, cf)
		}
	}
	res := &events.Resolution{ResolvedBy: "agent-1", ConflictID: "no-such-conflict", Choice: events.ChoiceKeepCurrent}
	if len(open) > 0 {
		cf := open[g.rng.IntN(len(open))]
		res.ConflictID, res.Field = cf.ID, cf.Field
		res.Choice = []events.ResolutionChoice{events.ChoiceKeepCurrent, events.ChoiceTakeCandidate, events.ChoiceSetValue}[g.rng.IntN(3)]
		if res.Choice == events.ChoiceSetValue && g.rng.IntN(5) > 0 {
			pool := genFields[cf.Field]
			res.Value = ptr(pool[g.rng.IntN(len(pool))])
		}
		// Agents act after the conflict appeared, mostly.
		e.OccurredAt = cf.DetectedAt.Add(time.Duration(g.rng.IntN(48*60)-60) * time.Minute)
	}
	e.Resolution = res
	return item{ev: e}
}

func (g *generator) message(c string) *events.MessageEvent {
	ch := genChannels[g.rng.IntN(len(genChannels))]
	m := &events.MessageEvent{
		MessageID: g.id(), CustomerID: c, ConversationID: "conv", Channel: ch, Source: "src",
		Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
		OccurredAt: g.at(),
	}
	if g.rng.IntN(2) == 0 {
		m.Identities = []events.Identity{genIdentities[g.rng.IntN(len(genIdentities))]}
	}
	return m
}

// refModel is the reference implementation, for the default policy. It
// keeps every write accepted since the last delete and computes a non-key
// field as the newest of them; key fields, whose writes may be held back,
// are simulated one write at a time from the rules as docs/design.md states them.
type refModel struct {
	customer   string
	tombstone  *merge.Stamp
	writes     []refWrite          // non-key writes since the last delete
	keys       map[string]refWrite // key-field registers
	conflicts  map[string]*refConflict
	identities map[events.Identity]bool // of events, without its trust → seen verified
	messages   []*events.MessageEvent   // every message newer than the tombstone
	version    int64
	updatedAt  time.Time
}

type refWrite struct {
	field, value string // value as canonical JSON
	stamp        merge.Stamp
	channel      events.Channel
	source       string
}

type refConflict struct {
	field, current, candidate string
	candidateEvent            string
	status                    events.ConflictStatus
}

// The default policy, written out again.
var (
	refKeyFields = map[string]bool{"phone": true, "email": true, "id_number": true, "attributes.order_no": true}
	refRank      = map[events.Channel]int{"CRM": 0, "AGENT": 1, "IMPORT": 2, "APP": 3, "WEB": 4, "MINIPROGRAM": 5, "WECHAT": 6, "PHONE": 7, "UNKNOWN": 8}
	refWindow    = 24 * time.Hour
)

func newRefModel(customer string) *refModel {
	m := &refModel{customer: customer}
	m.reset()
	return m
}

func (m *refModel) reset() {
	m.writes, m.keys, m.conflicts, m.identities = nil, map[string]refWrite{}, map[string]*refConflict{}, map[events.Identity]bool{}
}

// last returns the newest message's stamp and channel (of two with one
// stamp, the greater channel), nil if none.
func (m *refModel) last() (*merge.Stamp, events.Channel) {
	var last *merge.Stamp
	var ch events.Channel
	for _, msg := range m.messages {
		s := refStamp(msg.OccurredAt, msg.MessageID)
		if last == nil || newer(s, *last) || s == *last && msg.Channel > ch {
			last, ch = &s, msg.Channel
		}
	}
	return last, ch
}

// sightings returns, for every identity the messages carried, the stamps
// of the newest that carried it and of the newest that carried it verified.
func (m *refModel) sightings() map[events.Identity][2]*merge.Stamp {
	out := map[events.Identity][2]*merge.Stamp{}
	for _, msg := range m.messages {
		s := refStamp(msg.OccurredAt, msg.MessageID)
		for _, id := range msg.Identities {
			verified := id.Verified
			id.Verified = false
			x := out[id]
			if x[0] == nil || newer(s, *x[0]) {
				x[0] = &s
			}
			if verified && (x[1] == nil || newer(s, *x[1])) {
				x[1] = &s
			}
			out[id] = x
		}
	}
	return out
}

// allIdentities returns the identities of events and messages, each
// verified when either side has it verified.
func (m *refModel) allIdentities() map[events.Identity]bool {
	out := maps.Clone(m.identities)
	for id, x := range m.sightings() {
		out[id] = out[id] || x[1] != nil
	}
	return out
}

func newer(a, b merge.Stamp) bool {
	return a.At.After(b.At) || (a.At.Equal(b.At) && a.EventID > b.EventID)
}

// fields returns the value of every field, as the package should have it.
func (m *refModel) fields() map[string]refWrite {
	out := map[string]refWrite{}
	for _, w := range m.writes {
		if cur, ok := out[w.field]; !ok || newer(w.stamp, cur.stamp) {
			out[w.field] = w
		}
	}
	for f, w := range m.keys {
		out[f] = w
	}
	return out
}

// snapshot renders everything customer events put in the record, to tell
// whether an event changed it.
func (m *refModel) snapshot() string {
	var b strings.Builder
	fields := m.fields()
	for _, f := range sortedKeys(fields) {
		w := fields[f]
		fmt.Fprintf(&b, "%s=%s@%v/%s/%s/%s;", f, w.value, w.stamp.At.UnixMilli(), w.stamp.EventID, w.channel, w.source)
	}
	for _, id := range sortedKeys(m.conflicts) {
		fmt.Fprintf(&b, "c%s=%+v;", id, *m.conflicts[id])
	}
	var ids []string
	for id, verified := range m.identities {
		ids = append(ids, fmt.Sprint(id, verified))
	}
	slices.Sort(ids)
	fmt.Fprintf(&b, "%v;%v", ids, m.tombstone)
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// apply applies it. Every message counts in the version, an event when
// it changed what events put in the record.
func (m *refModel) apply(it item) {
	before := m.snapshot()
	var at time.Time
	if it.msg != nil {
		at = m.message(it.msg)
	} else {
		at = m.event(it.ev)
	}
	if it.msg != nil || m.snapshot() != before {
		if m.version == 0 || at.After(m.updatedAt) {
			m.updatedAt = at
		}
		m.version++
	}
}

func refStamp(t time.Time, id string) merge.Stamp {
	return merge.Stamp{At: time.UnixMilli(t.UnixMilli()).UTC(), EventID: id}
}

func (m *refModel) admitted(s merge.Stamp) bool {
	return m.tombstone == nil || newer(s, *m.tombstone)
}

func (m *refModel) message(msg *events.MessageEvent) time.Time {
	s := refStamp(msg.OccurredAt, msg.MessageID)
	if m.admitted(s) {
		m.messages = append(m.messages, msg)
	}
	return s.At
}

func (m *refModel) event(e *events.CustomerEvent) time.Time {
	s := refStamp(e.OccurredAt, e.EventID)
	if !m.admitted(s) {
		return s.At
	}
	switch e.Op {
	case events.OpDelete:
		m.reset()
		m.tombstone = &s
		m.messages = slices.DeleteFunc(m.messages, func(msg *events.MessageEvent) bool {
			return !newer(refStamp(msg.OccurredAt, msg.MessageID), s)
		})
	case events.OpUpsert:
		m.addIdentities(e.Identities)
		for f, v := range refProfileValues(e) {
			w := refWrite{field: f, value: v, stamp: s, channel: e.Channel, source: e.Source}
			if refKeyFields[f] {
				m.keyWrite(w)
			} else {
				m.writes = append(m.writes, w)
			}
		}
	case events.OpResolve:
		m.resolve(e, s)
	}
	return s.At
}

// refProfileValues returns the JSON value of every field e writes.
func refProfileValues(e *events.CustomerEvent) map[string]string {
	out := map[string]string{}
	for _, f := range e.Clears {
		out[f] = "null"
	}
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	if p := e.Profile; p != nil {
		if p.Name != nil {
			out["name"] = str(*p.Name)
		}
		if p.Phone != nil {
			out["phone"] = str(*p.Phone)
		}
		if p.Email != nil {
			out["email"] = str(*p.Email)
		}
		if p.VIPLevel != nil {
			out["vip_level"] = fmt.Sprint(*p.VIPLevel)
		}
		if p.Tags != nil {
			b, _ := json.Marshal(p.Tags)
			out["tags"] = string(b)
		}
		for k, v := range p.Attributes {
			out["attributes."+k] = str(v)
		}
	}
	return out
}

func (m *refModel) keyWrite(w refWrite) {
	cur, ok := m.keys[w.field]
	if !ok {
		m.keys[w.field] = w
		return
	}
	if !newer(w.stamp, cur.stamp) {
		return
	}
	id := merge.ConflictID(m.customer, w.field, w.stamp.EventID)
	if m.conflicts[id] != nil {
		return
	}
	if refWins(cur, w) {
		m.keys[w.field] = w
		return
	}
	if m.settled(w.field, cur.value, w.value) {
		return
	}
	m.conflicts[id] = &refConflict{w.field, cur.value, w.value, w.stamp.EventID, events.ConflictOpen}
}

// refWins reports whether newer write w to a key field replaces cur.
func refWins(cur, w refWrite) bool {
	switch {
	case cur.value == "null" || cur.value == w.value:
		return true
	case cur.channel == w.channel && cur.source == w.source:
		return true
	case refRank[w.channel] != refRank[cur.channel]:
		return refRank[w.channel] < refRank[cur.channel]
	}
	return w.stamp.At.Sub(cur.stamp.At) >= refWindow
}

// settled reports whether a conflict of candidate over current on field
// awaits review or was decided for current.
func (m *refModel) settled(field, current, candidate string) bool {
	for _, c := range m.conflicts {
		if c.field == field && c.current == current && c.candidate == candidate &&
			(c.status == events.ConflictOpen || c.status == events.ConflictKeptCurrent) {
			return true
		}
	}
	return false
}

func (m *refModel) resolve(e *events.CustomerEvent, s merge.Stamp) {
	c := m.conflicts[e.Resolution.ConflictID]
	if c == nil || c.status != events.ConflictOpen {
		return
	}
	var value string
	var status events.ConflictStatus
	switch e.Resolution.Choice {
	case events.ChoiceKeepCurrent:
		c.status = events.ConflictKeptCurrent
		m.addIdentities(e.Identities)
		return
	case events.ChoiceTakeCandidate:
		value, status = c.candidate, events.ConflictTookCandidate
	case events.ChoiceSetValue:
		value, status = "null", events.ConflictSetValue
		if v := e.Resolution.Value; v != nil {
			b, _ := json.Marshal(*v)
			value = string(b)
		}
	}
	if cur, ok := m.keys[c.field]; ok && !newer(s, cur.stamp) {
		// A resolution always takes effect: just after the register.
		s = merge.Stamp{At: cur.stamp.At.Add(time.Millisecond), EventID: s.EventID}
	}
	m.keys[c.field] = refWrite{field: c.field, value: value, stamp: s, channel: e.Channel, source: e.Source}
	c.status = status
	m.addIdentities(e.Identities)
}

// addIdentities adds ids to the set; an identity once seen verified stays
// verified.
func (m *refModel) addIdentities(ids []events.Identity) {
	for _, id := range ids {
		verified := id.Verified
		id.Verified = false
		m.identities[id] = m.identities[id] || verified
	}
}

// compare reports how the package's record differs from the model.
func (m *refModel) compare(r merge.Record) error {
	errs := m.contentErrs(r)
	if r.Version != m.version {
		errs = append(errs, fmt.Sprintf("version %d, model %d", r.Version, m.version))
	}
	if !r.UpdatedAt.Equal(m.updatedAt) {
		errs = append(errs, fmt.Sprintf("updated at %v, model %v", r.UpdatedAt, m.updatedAt))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// contentErrs lists how the content of the package's record (all but its
// version and update time) differs from the model.
func (m *refModel) contentErrs(r merge.Record) []string {
	var errs []string
	want := m.fields()
	for f, w := range want {
		g, ok := r.Fields[f]
		if !ok || g.Value != w.value || g.Stamp != w.stamp || g.Channel != w.channel || g.Source != w.source {
			errs = append(errs, fmt.Sprintf("field %s = %+v, model %+v", f, g, w))
		}
	}
	for f := range r.Fields {
		if _, ok := want[f]; !ok {
			errs = append(errs, fmt.Sprintf("field %s = %+v, model has none", f, r.Fields[f]))
		}
	}
	if len(r.Conflicts) != len(m.conflicts) {
		errs = append(errs, fmt.Sprintf("%d conflicts, model %d", len(r.Conflicts), len(m.conflicts)))
	}
	open := false
	for _, c := range r.Conflicts {
		mc := m.conflicts[c.ID]
		if mc == nil || mc.field != c.Field || mc.current != c.Current || mc.candidate != c.Candidate ||
			mc.candidateEvent != c.CandidateEventID || mc.status != c.Status {
			errs = append(errs, fmt.Sprintf("conflict %+v, model %+v", c, mc))
		}
		open = open || c.Open()
	}
	if r.NeedsReview != open {
		errs = append(errs, fmt.Sprintf("NeedsReview %v with open conflicts %v", r.NeedsReview, open))
	}
	for _, c := range []struct {
		name  string
		got   []events.Identity
		model map[events.Identity]bool
	}{{"identities", r.Identities, m.identities}, {"all identities", r.AllIdentities(), m.allIdentities()}} {
		if len(c.got) != len(c.model) {
			errs = append(errs, fmt.Sprintf("%s %v, model %v", c.name, c.got, c.model))
		}
		for _, id := range c.got {
			key := id
			key.Verified = false
			if verified, ok := c.model[key]; !ok || verified != id.Verified {
				errs = append(errs, fmt.Sprintf("%s: %v not in the model", c.name, id))
			}
		}
	}
	sightings := m.sightings()
	if len(r.Sightings) != len(sightings) {
		errs = append(errs, fmt.Sprintf("sightings %v, model %v", r.Sightings, sightings))
	}
	for _, x := range r.Sightings {
		want, ok := sightings[events.Identity{Kind: x.Kind, Scope: x.Scope, Value: x.Value}]
		if !ok || x.Seen != *want[0] || fmt.Sprint(x.Verified) != fmt.Sprint(want[1]) {
			errs = append(errs, fmt.Sprintf("sighting %+v, model %v", x, want))
		}
	}
	if !slices.IsSortedFunc(r.Identities, func(a, b events.Identity) int {
		return strings.Compare(a.Kind+"\x00"+a.Scope+"\x00"+a.Value, b.Kind+"\x00"+b.Scope+"\x00"+b.Value)
	}) {
		errs = append(errs, fmt.Sprintf("identities not sorted: %v", r.Identities))
	}
	if fmt.Sprint(r.Tombstone) != fmt.Sprint(m.tombstone) {
		errs = append(errs, fmt.Sprintf("tombstone %v, model %v", r.Tombstone, m.tombstone))
	}
	if last, ch := m.last(); fmt.Sprint(r.LastContact) != fmt.Sprint(last) || r.LastContactChannel != ch {
		errs = append(errs, fmt.Sprintf("last contact %v %s, model %v %s", r.LastContact, r.LastContactChannel, last, ch))
	}
	return errs
}

// modelSeeds is how many random logs TestModel checks.
const modelSeeds = 120

func TestModel(t *testing.T) {
	customers := []string{"cus_a", "cus_b", "cus_c"}
	var stats struct{ items, conflicts, resolved, deletes, stale, ignored int }
	for seed := range uint64(modelSeeds) {
		log := genStream(seed, customers, 200)

		// 1. In order, against the model, checking every step.
		live := map[string]merge.Record{}
		models := map[string]*refModel{}
		type kept struct {
			rec  merge.Record
			hash string
		}
		var history []kept
		for i, it := range log {
			c := it.customer()
			if models[c] == nil {
				models[c] = newRefModel(c)
			}
			prev := live[c]
			next, out := it.apply(prev, nil)
			checkInvariants(t, prev, next, out, it.msg != nil)
			models[c].apply(it)
			if err := models[c].compare(next); err != nil {
				t.Fatalf("seed %d, item %d (%s): record and model differ:\n%v\nlog of %s:\n%s", seed, i, it, err, c, logOf(log[:i+1], c))
			}
			history = append(history, kept{prev, prev.CanonicalHash()})
			live[c] = next
			stats.items++
			stats.conflicts += out.ConflictsOpened
			stats.resolved += out.ConflictsResolved
			stats.stale += out.Stale
			if out.Ignored != "" {
				stats.ignored++
			}
			if it.ev != nil && it.ev.Op == events.OpDelete && out.Changed {
				stats.deletes++
			}
		}
		for i, k := range history {
			if k.rec.CanonicalHash() != k.hash {
				t.Fatalf("seed %d: the record before item %d was modified by a later Apply", seed, i)
			}
		}

		// 2. A replay into fresh records; 3. every item re-delivered right
		// after itself; 4. the record persisted and reloaded between items.
		replay, doubled, reloaded := map[string]merge.Record{}, map[string]merge.Record{}, map[string]merge.Record{}
		for i, it := range log {
			c := it.customer()
			replay[c], _ = it.apply(replay[c], nil)

			doubled[c], _ = it.apply(doubled[c], nil)
			once := doubled[c]
			if doubled[c], _ = it.apply(doubled[c], nil); doubled[c].ContentHash() != once.ContentHash() ||
				it.msg == nil && doubled[c].Version != once.Version {
				// A message counts in the version each time it is folded;
				// the materializer folds each log record once.
				t.Fatalf("seed %d, item %d (%s): re-delivery right after itself changed the record", seed, i, it)
			}

			b, err := reloaded[c].MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var r merge.Record
			if err := r.UnmarshalJSON(b); err != nil {
				t.Fatal(err)
			}
			reloaded[c], _ = it.apply(r, nil)
		}
		for _, c := range customers {
			want := live[c].CanonicalHash()
			for name, got := range map[string]merge.Record{"replay": replay[c], "reloaded": reloaded[c]} {
				if got.CanonicalHash() != want {
					t.Errorf("seed %d, customer %s: %s record hash %s, live %s", seed, c, name, got.CanonicalHash(), want)
				}
			}
			if doubled[c].ContentHash() != live[c].ContentHash() {
				t.Errorf("seed %d, customer %s: re-delivered record content differs from live", seed, c)
			}
		}
	}
	t.Logf("%d seeds, %d items: %d conflicts opened, %d resolved, %d deletes, %d stale writes, %d items ignored",
		modelSeeds, stats.items, stats.conflicts, stats.resolved, stats.deletes, stats.stale, stats.ignored)
	if stats.conflicts == 0 || stats.resolved == 0 || stats.deletes == 0 || stats.stale == 0 || stats.ignored == 0 {
		t.Error("the generator does not exercise every rule")
	}
}

// logOf renders customer c's part of log.
func logOf(log []item, c string) string {
	var b strings.Builder
	for i, it := range log {
		if it.customer() == c {
			fmt.Fprintf(&b, "  %3d %s\n", i, it)
		}
	}
	return b.String()
}
