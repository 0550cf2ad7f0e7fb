package merge_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

const (
	crm    = events.ChannelCRM
	app    = events.ChannelApp
	web    = events.ChannelWeb
	wechat = events.ChannelWeChat
	phone  = events.ChannelPhone
	agent  = events.ChannelAgent
	day    = 24 * time.Hour
)

func mustPolicy(t testing.TB, yaml string) *merge.Policy {
	t.Helper()
	if yaml == "" {
		return merge.DefaultPolicy()
	}
	p, err := merge.ParsePolicy([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestApplyWrites covers the write rules: staleness, last writer wins on
// non-key fields, and every branch of the key-field rules.
func TestApplyWrites(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		given  []*events.CustomerEvent
		when   *events.CustomerEvent
		want   merge.Outcome
		field  string
		// wantValue and wantChannel describe field's register afterwards;
		// wantValue "" means the record has no register for field.
		wantValue   string
		wantChannel events.Channel
		wantOpen    int
	}{
		{
			name:      "first write sets the field",
			when:      upsert("e1", 0, wechat, set("name", "Li Lei")),
			want:      merge.Outcome{Changed: true},
			field:     "name",
			wantValue: `"Li Lei"`, wantChannel: wechat,
		},
		{
			name:      "non-key field: newer write wins whatever its channel",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("name", "Li Lei"))},
			when:      upsert("e2", time.Minute, phone, set("name", "Lei Li")),
			want:      merge.Outcome{Changed: true},
			field:     "name",
			wantValue: `"Lei Li"`, wantChannel: phone,
		},
		{
			name:      "older write is stale",
			given:     []*events.CustomerEvent{upsert("e2", time.Minute, web, set("name", "new"))},
			when:      upsert("e1", 0, crm, set("name", "old")),
			want:      merge.Outcome{Stale: 1},
			field:     "name",
			wantValue: `"new"`, wantChannel: web,
		},
		{
			name:      "same time: the higher event ID is newer",
			given:     []*events.CustomerEvent{upsert("e1", 0, web, set("name", "a"))},
			when:      upsert("e2", 0, web, set("name", "b")),
			want:      merge.Outcome{Changed: true},
			field:     "name",
			wantValue: `"b"`,
		},
		{
			name:      "same time: the lower event ID is stale",
			given:     []*events.CustomerEvent{upsert("e2", 0, web, set("name", "b"))},
			when:      upsert("e1", 0, web, set("name", "a")),
			want:      merge.Outcome{Stale: 1},
			field:     "name",
			wantValue: `"b"`,
		},
		{
			name:      "duplicate event is a no-op",
			given:     []*events.CustomerEvent{upsert("e1", 0, web, set("name", "a"), set("phone", "+1"))},
			when:      upsert("e1", 0, web, set("name", "a"), set("phone", "+1")),
			want:      merge.Outcome{Stale: 2},
			field:     "phone",
			wantValue: `"+1"`,
		},
		{
			name:      "clear keeps a null register",
			given:     []*events.CustomerEvent{upsert("e1", 0, web, set("name", "a"))},
			when:      upsert("e2", time.Minute, app, cleared("name")),
			want:      merge.Outcome{Changed: true},
			field:     "name",
			wantValue: "null", wantChannel: app,
		},
		{
			name:      "older write after a clear cannot resurrect the value",
			given:     []*events.CustomerEvent{upsert("e2", time.Minute, app, cleared("name"))},
			when:      upsert("e1", 0, crm, set("name", "a")),
			want:      merge.Outcome{Stale: 1},
			field:     "name",
			wantValue: "null",
		},
		{
			name:      "a value beats a clear of the same field in one event",
			when:      upsert("e1", 0, web, set("attributes.color", "red"), cleared("attributes.color")),
			want:      merge.Outcome{Changed: true},
			field:     "attributes.color",
			wantValue: `"red"`,
		},
		{
			name:  "clears naming no field are counted and skipped",
			when:  upsert("e1", 0, web, cleared("nmae", "attributes.")),
			want:  merge.Outcome{UnknownFields: 2},
			field: "name",
		},
		{
			name:      "key field: same value from a lower channel takes the newer stamp",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("phone", "+1"))},
			when:      upsert("e2", time.Minute, wechat, set("phone", "+1")),
			want:      merge.Outcome{Changed: true},
			field:     "phone",
			wantValue: `"+1"`, wantChannel: wechat,
		},
		{
			name:      "key field: a cleared value is set by any channel",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("phone", "+1")), upsert("e2", time.Minute, crm, cleared("phone"))},
			when:      upsert("e3", 2*time.Minute, phone, set("phone", "+2")),
			want:      merge.Outcome{Changed: true},
			field:     "phone",
			wantValue: `"+2"`, wantChannel: phone,
		},
		{
			name:      "key field: the same source overwrites",
			given:     []*events.CustomerEvent{upsert("e1", 0, wechat, set("phone", "+1"))},
			when:      upsert("e2", time.Minute, wechat, set("phone", "+2")),
			want:      merge.Outcome{Changed: true},
			field:     "phone",
			wantValue: `"+2"`, wantChannel: wechat,
		},
		{
			name:      "key field: a higher-authority channel overwrites",
			given:     []*events.CustomerEvent{upsert("e1", 0, wechat, set("phone", "+1"))},
			when:      upsert("e2", time.Minute, crm, set("phone", "+2")),
			want:      merge.Outcome{Changed: true},
			field:     "phone",
			wantValue: `"+2"`, wantChannel: crm,
		},
		{
			name:      "key field: a lower-authority channel opens a conflict",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("phone", "+1"))},
			when:      upsert("e2", 3*day, wechat, set("phone", "+2")),
			want:      merge.Outcome{Changed: true, ConflictsOpened: 1},
			field:     "phone",
			wantValue: `"+1"`, wantChannel: crm, wantOpen: 1,
		},
		{
			name:      "key field: equal authority within the window opens a conflict",
			given:     []*events.CustomerEvent{upsert("e1", 0, app, from("ios"), set("email", "a@x.cn"))},
			when:      upsert("e2", day-time.Millisecond, app, from("android"), set("email", "b@x.cn")),
			want:      merge.Outcome{Changed: true, ConflictsOpened: 1},
			field:     "email",
			wantValue: `"a@x.cn"`, wantOpen: 1,
		},
		{
			name:      "key field: equal authority at the window's end overwrites",
			given:     []*events.CustomerEvent{upsert("e1", 0, app, from("ios"), set("email", "a@x.cn"))},
			when:      upsert("e2", day, app, from("android"), set("email", "b@x.cn")),
			want:      merge.Outcome{Changed: true},
			field:     "email",
			wantValue: `"b@x.cn"`,
		},
		{
			name:      "key field: window 0 lets equal authority overwrite",
			policy:    "conflict_window: 0s",
			given:     []*events.CustomerEvent{upsert("e1", 0, app, from("ios"), set("email", "a@x.cn"))},
			when:      upsert("e2", 0, app, from("android"), set("email", "b@x.cn")),
			want:      merge.Outcome{Changed: true},
			field:     "email",
			wantValue: `"b@x.cn"`,
		},
		{
			name:      "key field: an older conflicting write is stale, not a conflict",
			given:     []*events.CustomerEvent{upsert("e2", time.Minute, crm, set("phone", "+1"))},
			when:      upsert("e1", 0, wechat, set("phone", "+2")),
			want:      merge.Outcome{Stale: 1},
			field:     "phone",
			wantValue: `"+1"`,
		},
		{
			name:      "key field: a clear from a lower channel opens a conflict",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("phone", "+1"))},
			when:      upsert("e2", time.Minute, web, cleared("phone")),
			want:      merge.Outcome{Changed: true, ConflictsOpened: 1},
			field:     "phone",
			wantValue: `"+1"`, wantOpen: 1,
		},
		{
			name:      "key field: a re-delivered candidate opens no second conflict",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("phone", "+1")), upsert("e2", time.Minute, wechat, set("phone", "+2"))},
			when:      upsert("e2", time.Minute, wechat, set("phone", "+2")),
			want:      merge.Outcome{},
			field:     "phone",
			wantValue: `"+1"`, wantOpen: 1,
		},
		{
			name:      "key field: a new event proposing the same candidate opens no second conflict",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("phone", "+1")), upsert("e2", time.Minute, wechat, set("phone", "+2"))},
			when:      upsert("e3", 2*time.Minute, phone, set("phone", "+2")),
			want:      merge.Outcome{},
			field:     "phone",
			wantValue: `"+1"`, wantOpen: 1,
		},
		{
			name:      "key field: attributes.order_no is a key field by default",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("attributes.order_no", "A1"))},
			when:      upsert("e2", time.Minute, web, set("attributes.order_no", "B2")),
			want:      merge.Outcome{Changed: true, ConflictsOpened: 1},
			field:     "attributes.order_no",
			wantValue: `"A1"`, wantOpen: 1,
		},
		{
			name:      "key field: a per-field authority order replaces the default",
			policy:    "field_authority:\n  email: [APP, CRM]\n",
			given:     []*events.CustomerEvent{upsert("e1", 0, app, set("email", "a@x.cn"))},
			when:      upsert("e2", time.Minute, crm, set("email", "b@x.cn")),
			want:      merge.Outcome{Changed: true, ConflictsOpened: 1},
			field:     "email",
			wantValue: `"a@x.cn"`, wantOpen: 1,
		},
		{
			name:      "key field: channels missing from the order rank equal",
			policy:    "field_authority:\n  email: [APP, CRM]\n",
			given:     []*events.CustomerEvent{upsert("e1", 0, wechat, set("email", "a@x.cn"))},
			when:      upsert("e2", time.Minute, web, set("email", "b@x.cn")),
			want:      merge.Outcome{Changed: true, ConflictsOpened: 1},
			field:     "email",
			wantValue: `"a@x.cn"`, wantOpen: 1,
		},
		{
			name:      "a field that is not a key field under the policy is plain LWW",
			policy:    "key_fields: [email]",
			given:     []*events.CustomerEvent{upsert("e1", 0, crm, set("phone", "+1"))},
			when:      upsert("e2", time.Minute, wechat, set("phone", "+2")),
			want:      merge.Outcome{Changed: true},
			field:     "phone",
			wantValue: `"+2"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.policy)
			r := applyAll(t, p, tt.given...)
			r, out := checkApply(t, r, tt.when, p)
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			g, ok := r.Fields[tt.field]
			switch {
			case tt.wantValue == "" && ok:
				t.Errorf("field %s = %s, want no register", tt.field, g.Value)
			case tt.wantValue != "" && g.Value != tt.wantValue:
				t.Errorf("field %s = %q, want %q", tt.field, g.Value, tt.wantValue)
			case tt.wantChannel != "" && g.Channel != tt.wantChannel:
				t.Errorf("field %s channel = %s, want %s", tt.field, g.Channel, tt.wantChannel)
			}
			if n := openConflicts(r); n != tt.wantOpen {
				t.Errorf("%d open conflicts, want %d: %+v", n, tt.wantOpen, r.Conflicts)
			}
		})
	}
}

func TestApplyConflictRecord(t *testing.T) {
	r := applyAll(t, nil,
		upsert("e1", 0, crm, from("crm-main"), set("phone", "+1")),
		upsert("e2", time.Hour, wechat, from("wx-oa"), set("phone", "+2")),
	)
	want := []merge.Conflict{{
		ID: merge.ConflictID(cust, "phone", "e2"), Field: "phone", Current: `"+1"`, Candidate: `"+2"`,
		CandidateEventID: "e2", CandidateChannel: wechat, CandidateSource: "wx-oa",
		DetectedAt: t0.Add(time.Hour), Status: events.ConflictOpen,
	}}
	if diff := cmp.Diff(want, r.Conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	if !r.NeedsReview || r.Version != 2 || !r.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("NeedsReview=%v Version=%d UpdatedAt=%v, want true 2 %v", r.NeedsReview, r.Version, r.UpdatedAt, t0.Add(time.Hour))
	}
	if merge.ConflictID(cust, "phone", "e2") == merge.ConflictID(cust, "email", "e2") {
		t.Error("conflict IDs of two fields collide")
	}
}

// TestApplyResolve covers RESOLVE events. Every case starts from a CRM
// phone +1 and two open conflicts: WECHAT's +2 (event c1) and PHONE's +3
// (event c2).
func TestApplyResolve(t *testing.T) {
	given := []*events.CustomerEvent{
		upsert("e1", 0, crm, set("phone", "+1")),
		upsert("c1", time.Hour, wechat, set("phone", "+2")),
		upsert("c2", 2*time.Hour, phone, set("phone", "+3")),
	}
	tests := []struct {
		name       string
		when       *events.CustomerEvent
		want       merge.Outcome
		wantValue  string
		wantSource string
		wantStatus events.ConflictStatus // of c1's conflict
	}{
		{
			name:      "keep current closes the conflict",
			when:      resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceKeepCurrent, nil),
			want:      merge.Outcome{Changed: true, ConflictsResolved: 1},
			wantValue: `"+1"`, wantSource: "crm-1", wantStatus: events.ConflictKeptCurrent,
		},
		{
			name:      "take candidate writes it with the resolve event's stamp",
			when:      resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceTakeCandidate, nil),
			want:      merge.Outcome{Changed: true, ConflictsResolved: 1},
			wantValue: `"+2"`, wantSource: "console", wantStatus: events.ConflictTookCandidate,
		},
		{
			name:      "set value writes the resolution's value",
			when:      resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceSetValue, ptr("+4")),
			want:      merge.Outcome{Changed: true, ConflictsResolved: 1},
			wantValue: `"+4"`, wantSource: "console", wantStatus: events.ConflictSetValue,
		},
		{
			name:      "set value without a value clears the field",
			when:      resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceSetValue, nil),
			want:      merge.Outcome{Changed: true, ConflictsResolved: 1},
			wantValue: "null", wantSource: "console", wantStatus: events.ConflictSetValue,
		},
		{
			name:      "unknown conflict changes nothing",
			when:      resolve("r1", 3*time.Hour, "phone", "nope", events.ChoiceKeepCurrent, nil),
			want:      merge.Outcome{Ignored: merge.ReasonUnknownConflict},
			wantValue: `"+1"`, wantSource: "crm-1", wantStatus: events.ConflictOpen,
		},
		{
			name: "resolution naming another field changes nothing",
			when: func() *events.CustomerEvent {
				e := resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceKeepCurrent, nil)
				e.Resolution.Field = "email"
				return e
			}(),
			want:      merge.Outcome{Ignored: merge.ReasonFieldMismatch},
			wantValue: `"+1"`, wantSource: "crm-1", wantStatus: events.ConflictOpen,
		},
		{
			name:      "unknown choice changes nothing",
			when:      resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceUnknown, nil),
			want:      merge.Outcome{Ignored: merge.ReasonUnknownChoice},
			wantValue: `"+1"`, wantSource: "crm-1", wantStatus: events.ConflictOpen,
		},
		{
			name:      "resolution older than the field's value still takes effect",
			when:      resolve("r1", -time.Hour, "phone", "c1", events.ChoiceTakeCandidate, nil),
			want:      merge.Outcome{Changed: true, ConflictsResolved: 1},
			wantValue: `"+2"`, wantSource: "console", wantStatus: events.ConflictTookCandidate,
		},
		{
			name: "resolve without a resolution changes nothing",
			when: func() *events.CustomerEvent {
				e := resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceKeepCurrent, nil)
				e.Resolution = nil
				return e
			}(),
			want:      merge.Outcome{Ignored: merge.ReasonNoResolution},
			wantValue: `"+1"`, wantSource: "crm-1", wantStatus: events.ConflictOpen,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := applyAll(t, nil, given...)
			r, out := checkApply(t, r, tt.when, nil)
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if g := r.Fields["phone"]; g.Value != tt.wantValue || g.Source != tt.wantSource {
				t.Errorf("phone = %s from %s, want %s from %s", g.Value, g.Source, tt.wantValue, tt.wantSource)
			}
			c := conflictOf(t, r, "c1", "phone")
			if c.Status != tt.wantStatus {
				t.Errorf("status = %s, want %s", c.Status, tt.wantStatus)
			}
			if c.Open() != (c.ResolvedBy == "") || c.Open() != c.ResolvedAt.IsZero() {
				t.Errorf("status %s with ResolvedBy %q ResolvedAt %v", c.Status, c.ResolvedBy, c.ResolvedAt)
			}
			if !r.NeedsReview {
				t.Error("c2's conflict is still open but NeedsReview is false")
			}
		})
	}
}

// conflictOf returns the conflict candidate event opened on field.
func conflictOf(t *testing.T, r merge.Record, candidate, field string) merge.Conflict {
	t.Helper()
	for _, c := range r.Conflicts {
		if c.CandidateEventID == candidate && c.Field == field {
			return c
		}
	}
	t.Fatalf("no conflict for candidate %s in %+v", candidate, r.Conflicts)
	return merge.Conflict{}
}

func TestApplyResolveLastConflictClearsReview(t *testing.T) {
	r := applyAll(t, nil,
		upsert("e1", 0, crm, set("phone", "+1")),
		upsert("c1", time.Hour, wechat, set("phone", "+2")),
		resolve("r1", 2*time.Hour, "phone", "c1", events.ChoiceTakeCandidate, nil),
	)
	if r.NeedsReview {
		t.Error("NeedsReview after the only conflict was resolved")
	}
	again := resolve("r2", 3*time.Hour, "phone", "c1", events.ChoiceKeepCurrent, nil)
	if _, out := checkApply(t, r, again, nil); out.Ignored != merge.ReasonConflictClosed {
		t.Errorf("resolving a closed conflict: %+v, want ignored as closed", out)
	}
	// The candidate event re-delivered after its conflict was resolved: absorbed.
	if _, out := checkApply(t, r, upsert("c1", time.Hour, wechat, set("phone", "+2")), nil); out.Changed {
		t.Errorf("re-delivered candidate changed the record: %+v", out)
	}
	// A rejected value proposed again by a new event: no new review.
	r = applyAll(t, nil,
		upsert("e1", 0, crm, set("phone", "+1")),
		upsert("c1", time.Hour, wechat, set("phone", "+2")),
		resolve("r1", 2*time.Hour, "phone", "c1", events.ChoiceKeepCurrent, nil),
	)
	if _, out := checkApply(t, r, upsert("c3", 3*time.Hour, wechat, set("phone", "+2")), nil); out.Changed {
		t.Errorf("a value kept out by an agent opened a new conflict: %+v", out)
	}
}

func TestApplySetValue(t *testing.T) {
	tests := []struct {
		field, text string
		want        string // canonical JSON; "" means invalid
	}{
		{"phone", "+8613800000000", `"+8613800000000"`},
		{"attributes.order_no", `a"b<`, `"a\"b<"`},
		{"gender", "FEMALE", `"FEMALE"`},
		{"gender", "female", ""},
		{"birthday", "1990-07-01", `"1990-07-01"`},
		{"birthday", "1990-7-1", ""},
		{"birthday", "1990-02-30", ""},
		{"vip_level", "3", "3"},
		{"vip_level", "3.5", ""},
		{"vip_level", "99999999999", ""},
		{"tags", `[ "a", "b" ]`, `["a","b"]`},
		{"tags", `[]`, `[]`},
		{"tags", `null`, ""},
		{"tags", `["a"] x`, ""},
		{"address", `{"city":"Shanghai","country":"CN"}`, `{"country":"CN","province":"","city":"Shanghai","district":"","street":"","postal_code":""}`},
		{"address", `{"town":"x"}`, ""},
		{"address", `"x"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.field+"="+tt.text, func(t *testing.T) {
			p := mustPolicy(t, "key_fields: [phone, gender, birthday, vip_level, tags, address, attributes.order_no]")
			// CRM wrote every field, WECHAT disagrees on all: a conflict per key field.
			r := applyAll(t, p,
				upsert("e1", 0, crm, profile(sampleProfile())),
				upsert("c1", time.Hour, wechat, profile(otherProfile())),
			)
			if c := conflictOf(t, r, "c1", tt.field); !c.Open() {
				t.Fatalf("conflict on %s not open: %+v", tt.field, c)
			}
			next, out := checkApply(t, r, resolve("r1", 2*time.Hour, tt.field, "c1", events.ChoiceSetValue, &tt.text), p)
			if tt.want == "" {
				if out.Ignored != merge.ReasonInvalidValue {
					t.Errorf("outcome %+v, want ignored as invalid", out)
				}
				return
			}
			if out.Ignored != "" {
				t.Fatalf("ignored: %s", out.Ignored)
			}
			if got := next.Fields[tt.field].Value; got != tt.want {
				t.Errorf("%s = %s, want %s", tt.field, got, tt.want)
			}
		})
	}
}

// sampleProfile sets every typed field and the attribute order_no.
func sampleProfile() events.Profile {
	return events.Profile{
		Name: ptr("Li Lei"), Phone: ptr("+8613800000000"), Email: ptr("li@example.cn"),
		Gender: ptr(events.GenderMale), Birthday: ptr(time.Date(1990, 7, 1, 0, 0, 0, 0, time.UTC)),
		Address:  &events.Address{Country: "CN", City: "Shanghai", Street: "1 Nanjing Rd <East>"},
		VIPLevel: ptr(int32(2)), Tags: []string{"vip", "b&b"}, IDNumber: ptr("110101199007010011"),
		Attributes: map[string]string{"order_no": "A-1", "color": "red"},
	}
}

// otherProfile differs from sampleProfile in every field.
func otherProfile() events.Profile {
	return events.Profile{
		Name: ptr("Han Meimei"), Phone: ptr("+8613900000000"), Email: ptr("han@example.cn"),
		Gender: ptr(events.GenderFemale), Birthday: ptr(time.Date(1991, 1, 2, 0, 0, 0, 0, time.UTC)),
		Address:  &events.Address{Country: "CN", City: "Beijing"},
		VIPLevel: ptr(int32(5)), Tags: []string{}, IDNumber: ptr("110101199101020022"),
		Attributes: map[string]string{"order_no": "B-2", "color": "blue"},
	}
}

func TestApplyProfileValues(t *testing.T) {
	r := applyAll(t, nil, upsert("e1", 0, crm, profile(sampleProfile())))
	want := map[string]string{
		"name":                `"Li Lei"`,
		"phone":               `"+8613800000000"`,
		"email":               `"li@example.cn"`,
		"gender":              `"MALE"`,
		"birthday":            `"1990-07-01"`,
		"address":             `{"country":"CN","province":"","city":"Shanghai","district":"","street":"1 Nanjing Rd <East>","postal_code":""}`,
		"vip_level":           `2`,
		"tags":                `["vip","b&b"]`,
		"id_number":           `"110101199007010011"`,
		"attributes.order_no": `"A-1"`,
		"attributes.color":    `"red"`,
	}
	got := map[string]string{}
	for f, g := range r.Fields {
		got[f] = g.Value
		if g.Stamp != (merge.Stamp{At: t0, EventID: "e1"}) || g.Channel != crm || g.Source != "crm-1" {
			t.Errorf("%s: register %+v, want e1's stamp and provenance", f, g)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	// Empty tags are a value, not a clear.
	r = applyAll(t, nil, upsert("e1", 0, crm, profile(events.Profile{Tags: []string{}})))
	if g := r.Fields["tags"]; g.Value != "[]" {
		t.Errorf("empty tags = %s, want []", g.Value)
	}
}

func TestApplyDelete(t *testing.T) {
	given := []*events.CustomerEvent{
		upsert("e1", 0, crm, set("phone", "+1"), set("name", "Li"), ident("crm", "42")),
		upsert("e2", time.Hour, wechat, set("phone", "+2"), ident("wechat_openid", "o1")),
		remove("d1", 2*time.Hour),
	}
	r := applyAll(t, nil, given...)
	if !r.Deleted() || len(r.Fields) != 0 || len(r.Identities) != 0 || len(r.Conflicts) != 0 || r.NeedsReview {
		t.Fatalf("after DELETE: %+v", r)
	}
	if want := (merge.Stamp{At: t0.Add(2 * time.Hour), EventID: "d1"}); r.Tombstone == nil || *r.Tombstone != want {
		t.Fatalf("tombstone %v, want %v", r.Tombstone, want)
	}
	if r.Version != 3 {
		t.Errorf("version %d, want 3", r.Version)
	}
	tests := []struct {
		name        string
		when        *events.CustomerEvent
		want        merge.Outcome
		wantDeleted bool
	}{
		{"late older upsert is ignored", upsert("e0", time.Hour+time.Minute, crm, set("name", "Li")), merge.Outcome{Ignored: merge.ReasonBeforeTombstone}, true},
		{"upsert at the tombstone's time with a lower ID is ignored", upsert("d0", 2*time.Hour, crm, set("name", "Li")), merge.Outcome{Ignored: merge.ReasonBeforeTombstone}, true},
		{"re-delivered delete is ignored", remove("d1", 2*time.Hour), merge.Outcome{Ignored: merge.ReasonBeforeTombstone}, true},
		{"older delete is ignored", remove("d0", time.Hour), merge.Outcome{Ignored: merge.ReasonBeforeTombstone}, true},
		{"older resolve is ignored", resolve("r0", time.Hour, "phone", "e2", events.ChoiceTakeCandidate, nil), merge.Outcome{Ignored: merge.ReasonBeforeTombstone}, true},
		{"newer upsert recreates the customer", upsert("e3", 3*time.Hour, wechat, set("name", "Li")), merge.Outcome{Changed: true}, false},
		{"newer delete moves the tombstone", remove("d2", 3*time.Hour), merge.Outcome{Changed: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, out := checkApply(t, r, tt.when, nil)
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if next.Deleted() != tt.wantDeleted {
				t.Errorf("Deleted() = %v, want %v", next.Deleted(), tt.wantDeleted)
			}
		})
	}
	// A newer message after the delete is new contact; an older one is not.
	if _, out := merge.ApplyMessage(r, message("m0", time.Hour, web), nil); out.Ignored != merge.ReasonBeforeTombstone {
		t.Errorf("older message: %+v, want ignored", out)
	}
	next, out := merge.ApplyMessage(r, message("m1", 3*time.Hour, web), nil)
	if !out.Changed || next.Deleted() || next.LastContact == nil {
		t.Errorf("newer message: %+v, record %+v", out, next)
	}
	// A DELETE erases even what is newer than itself: nothing survives a privacy request.
	r = applyAll(t, nil, upsert("e9", 5*time.Hour, crm, set("name", "Li")), remove("d1", 2*time.Hour))
	if !r.Deleted() {
		t.Errorf("data newer than a late DELETE survived it: %+v", r)
	}
}

func TestApplyIdentities(t *testing.T) {
	r := applyAll(t, nil,
		upsert("e1", 0, wechat, ident("wechat_openid", "o2"), ident("phone", "+1"), ident("wechat_openid", "o2")),
		upsert("e2", -time.Hour, web, ident("web_visitor", "v1"), ident("phone", "+1")), // late, still adds
	)
	want := []events.Identity{{Kind: "phone", Value: "+1"}, {Kind: "web_visitor", Value: "v1"}, {Kind: "wechat_openid", Value: "o2"}}
	if diff := cmp.Diff(want, r.Identities); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}
	if r.Version != 2 {
		t.Errorf("version %d, want 2", r.Version)
	}
	if !r.UpdatedAt.Equal(t0) {
		t.Errorf("UpdatedAt %v, want the newest event's time %v", r.UpdatedAt, t0)
	}
	_, out := checkApply(t, r, upsert("e3", time.Hour, app, ident("phone", "+1")), nil)
	if out.Changed {
		t.Error("an identity already known changed the record")
	}
	scoped := events.Identity{Kind: "wechat_openid", Scope: "wxapp1", Value: "o2"}
	next, _ := merge.ApplyMessage(r, message("m1", time.Hour, wechat, scoped), nil)
	if all := next.AllIdentities(); len(all) != 4 || all[3] != scoped {
		t.Errorf("scoped identity not added in order: %+v", all)
	}
	if len(next.Identities) != 3 || len(next.Sightings) != 1 {
		t.Errorf("a message's identity is not kept apart as a sighting: %+v, %+v", next.Identities, next.Sightings)
	}
}

func TestApplyMessage(t *testing.T) {
	tests := []struct {
		name        string
		given       []*events.MessageEvent
		when        *events.MessageEvent
		wantLast    merge.Stamp
		wantChannel events.Channel
	}{
		{"first message sets the last contact", nil, message("m1", 0, wechat), merge.Stamp{At: t0, EventID: "m1"}, wechat},
		{"newer message moves it", []*events.MessageEvent{message("m1", 0, wechat)}, message("m2", time.Minute, phone), merge.Stamp{At: t0.Add(time.Minute), EventID: "m2"}, phone},
		{"older message leaves it, but counts", []*events.MessageEvent{message("m2", time.Minute, phone)}, message("m1", 0, wechat), merge.Stamp{At: t0.Add(time.Minute), EventID: "m2"}, phone},
		{"same time: higher message ID wins", []*events.MessageEvent{message("m1", 0, phone)}, message("m2", 0, web), merge.Stamp{At: t0, EventID: "m2"}, web},
		{"duplicate message counts, changes nothing else", []*events.MessageEvent{message("m1", 0, phone)}, message("m1", 0, phone), merge.Stamp{At: t0, EventID: "m1"}, phone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r merge.Record
			for _, m := range tt.given {
				r, _ = merge.ApplyMessage(r, m, nil)
			}
			before := r.CanonicalHash()
			next, out := merge.ApplyMessage(r, tt.when, nil)
			if r.CanonicalHash() != before {
				t.Fatal("ApplyMessage modified its input")
			}
			checkInvariants(t, r, next, out, true)
			if !out.Changed || next.Version != r.Version+1 {
				t.Errorf("Changed = %v, version %d → %d: every message counts in the version", out.Changed, r.Version, next.Version)
			}
			if next.LastContact == nil || *next.LastContact != tt.wantLast || next.LastContactChannel != tt.wantChannel {
				t.Errorf("last contact %v on %s, want %v on %s", next.LastContact, next.LastContactChannel, tt.wantLast, tt.wantChannel)
			}
			if len(next.Fields) != 0 {
				t.Errorf("a message wrote fields: %v", next.Fields)
			}
		})
	}
}

func TestApplyIgnores(t *testing.T) {
	r := applyAll(t, nil, upsert("e1", 0, crm, set("name", "Li")))
	tests := []struct {
		name string
		when *events.CustomerEvent
		want merge.Reason
	}{
		{"unknown op", event(events.OpUnknown, "e2", time.Hour, crm, set("name", "x")), merge.ReasonUnknownOp},
		{"op from a newer schema", event("SPLIT", "e2", time.Hour, crm), merge.ReasonUnknownOp},
		{"merge without its merge record", event(events.OpMerge, "e2", time.Hour, crm), merge.ReasonBadMerge},
		{"no event ID", upsert("", time.Hour, crm, set("name", "x")), merge.ReasonMalformed},
		{"no customer ID", upsert("e2", time.Hour, crm, set("name", "x"), forCustomer("")), merge.ReasonMalformed},
		{"nil event", nil, merge.ReasonMalformed},
		{"another customer", upsert("e2", time.Hour, crm, set("name", "x"), forCustomer("cus_2")), merge.ReasonOtherCustomer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, out := checkApply(t, r, tt.when, nil)
			if !reflect.DeepEqual(out, merge.Outcome{Ignored: tt.want}) {
				t.Errorf("outcome %+v, want ignored: %s", out, tt.want)
			}
			if next.CanonicalHash() != r.CanonicalHash() {
				t.Error("an ignored event changed the record")
			}
		})
	}
	if _, out := merge.ApplyMessage(r, nil, nil); out.Ignored != merge.ReasonMalformed {
		t.Errorf("nil message: %+v", out)
	}
}

func TestApplyNormalises(t *testing.T) {
	// Sub-millisecond times and zones disappear; unknown channels are UNKNOWN.
	e := upsert("e1", 0, "TELEGRAM", set("name", "Li"))
	e.OccurredAt = time.Date(2026, 3, 2, 17, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	r := applyAll(t, nil, e)
	g := r.Fields["name"]
	want := time.Date(2026, 3, 2, 9, 0, 0, 123000000, time.UTC)
	if g.Stamp.At != want || r.UpdatedAt != want {
		t.Errorf("stamp %v, UpdatedAt %v, want %v", g.Stamp.At, r.UpdatedAt, want)
	}
	if g.Channel != events.ChannelUnknown {
		t.Errorf("channel %s, want UNKNOWN", g.Channel)
	}
	if r.PolicyHash != merge.DefaultPolicy().Hash() {
		t.Errorf("PolicyHash %s, want the default policy's", r.PolicyHash)
	}
}

// TestApplyResolveOverFutureValue: a resolution always takes effect, even
// when the field's register carries a stamp ahead of the resolution's (a
// channel whose clock runs ahead rewrote the field after the conflict
// opened). The value is written with the resolution's stamp when that is
// newer, else one millisecond after the register's, with the resolution's
// event ID: the same log always folds to the same record.
func TestApplyResolveOverFutureValue(t *testing.T) {
	ahead := 20 * time.Hour // producers accept occurred_at up to 24 h ahead
	given := []*events.CustomerEvent{
		upsert("e1", 0, crm, set("phone", "+1")),
		upsert("c1", time.Hour, wechat, set("phone", "+2")),
		upsert("e2", ahead, crm, set("phone", "+1")), // the same CRM value again, stamped ahead
	}
	bumped := merge.Stamp{At: t0.Add(ahead + time.Millisecond).UTC(), EventID: "r1"}
	tests := []struct {
		name       string
		when       *events.CustomerEvent
		wantValue  string
		wantStamp  merge.Stamp
		wantStatus events.ConflictStatus
	}{
		{"take candidate older than the register", resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceTakeCandidate, nil),
			`"+2"`, bumped, events.ConflictTookCandidate},
		{"set value older than the register", resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceSetValue, ptr("+4")),
			`"+4"`, bumped, events.ConflictSetValue},
		{"same time, lower event ID", resolve("a0", ahead, "phone", "c1", events.ChoiceTakeCandidate, nil),
			`"+2"`, merge.Stamp{At: bumped.At, EventID: "a0"}, events.ConflictTookCandidate},
		{"newer than the register keeps its own stamp", resolve("r1", ahead+time.Hour, "phone", "c1", events.ChoiceTakeCandidate, nil),
			`"+2"`, merge.Stamp{At: t0.Add(ahead + time.Hour).UTC(), EventID: "r1"}, events.ConflictTookCandidate},
		{"keep current leaves the register", resolve("r1", 3*time.Hour, "phone", "c1", events.ChoiceKeepCurrent, nil),
			`"+1"`, merge.Stamp{At: t0.Add(ahead).UTC(), EventID: "e2"}, events.ConflictKeptCurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := applyAll(t, nil, given...)
			r, out := checkApply(t, r, tt.when, nil)
			want := merge.Outcome{Changed: true, ConflictsResolved: 1}
			if diff := cmp.Diff(want, out); diff != "" {
				t.Fatalf("outcome (-want +got):\n%s", diff)
			}
			g := r.Fields["phone"]
			if g.Value != tt.wantValue || g.Stamp != tt.wantStamp {
				t.Errorf("phone = %s stamped %v, want %s stamped %v", g.Value, g.Stamp, tt.wantValue, tt.wantStamp)
			}
			if c := conflictOf(t, r, "c1", "phone"); c.Status != tt.wantStatus || c.ResolvedAt != tt.when.OccurredAt.UTC() {
				t.Errorf("conflict %s resolved at %v, want %s at the resolve event's %v", c.Status, c.ResolvedAt, tt.wantStatus, tt.when.OccurredAt)
			}
			if r.NeedsReview {
				t.Error("NeedsReview with no conflict open")
			}
			// Replaying the same log gives the same record.
			again := applyAll(t, nil, append(append([]*events.CustomerEvent{}, given...), tt.when)...)
			if again.CanonicalHash() != r.CanonicalHash() {
				t.Error("a replay of the same log gives another record")
			}
			// A write older than the resolution's effective stamp stays stale;
			// a newer one from a higher authority replaces it.
			if _, out := checkApply(t, r, upsert("e3", ahead-time.Hour, crm, set("phone", "+9")), nil); out.Changed || out.Stale != 1 {
				t.Errorf("write older than the resolved value: %+v, want stale", out)
			}
			if r, _ := checkApply(t, r, upsert("e4", ahead+2*time.Hour, crm, set("phone", "+9")), nil); r.Fields["phone"].Value != `"+9"` {
				t.Errorf("newer CRM write after the resolution: phone = %s, want \"+9\"", r.Fields["phone"].Value)
			}
		})
	}
}
