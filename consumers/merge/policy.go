package merge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/omnisync/omnisync/pkg/events"
)

// The defaults of a Policy.
var (
	// defaultKeyFields are the fields guarded by conflict detection.
	defaultKeyFields = []string{"phone", "email", "id_number", "attributes.order_no"}
	// defaultAuthority ranks every channel, highest authority first.
	defaultAuthority = []events.Channel{
		events.ChannelCRM, events.ChannelAgent, events.ChannelImport, events.ChannelApp, events.ChannelWeb,
		events.ChannelMiniProgram, events.ChannelWeChat, events.ChannelPhone, events.ChannelUnknown,
	}
)

// MergeAction is what an identity shown by two customers does to them.
type MergeAction string

// The merge actions.
const (
	// MergeAuto: the customers are merged without review.
	MergeAuto MergeAction = "auto"
	// MergeSuggest: a merge suggestion awaits an agent's confirmation.
	MergeSuggest MergeAction = "suggest"
	// MergeNever: the identity never merges customers.
	MergeNever MergeAction = "never"
)

// defaultMergeIdentities is the default merge section: identity kinds by
// the action they take. Kinds not listed never merge.
var defaultMergeIdentities = map[MergeAction][]string{
	MergeAuto:    {"app_user", "crm", "wechat_unionid"},
	MergeSuggest: {"email", "id_number", "miniprogram_openid", "phone", "wechat_openid"},
	MergeNever:   {"device", "web_visitor"},
}

// DefaultConflictWindow is how close in time two writes of equal authority
// to a key field must be to conflict rather than the newer one winning.
const DefaultConflictWindow = 24 * time.Hour

// policyFormat names the canonical form Policy.Hash digests; change it when
// the meaning of a policy changes without its YAML changing. The merge
// section joined the form without a new name: it is digested only when it
// differs from the default (see digest).
const policyFormat = "omnisync.merge.policy.v1"

// Policy is the versioned configuration of the merge contract: which fields
// are key fields, how channels rank in authority (overall and per key field)
// and the conflict window. A Policy is immutable and safe for concurrent
// use. Build one with ParsePolicy, LoadPolicy or DefaultPolicy.
//
// The YAML form, every key optional (an absent key takes its default):
//
//	key_fields: [phone, email, id_number, attributes.order_no]
//	authority: [CRM, AGENT, IMPORT, APP, WEB, MINIPROGRAM, WECHAT, PHONE, UNKNOWN]
//	field_authority:          # per key field, replaces authority for it
//	  email: [CRM, APP, AGENT, IMPORT, WEB, MINIPROGRAM, WECHAT, PHONE, UNKNOWN]
//	conflict_window: 24h      # a Go duration, >= 0
//	merge_identities:         # identity kinds by what they do to two customers showing them;
//	                          # a section replaces the default whole (a list left out is empty)
//	  auto: [app_user, crm, wechat_unionid]     # merged without review
//	  suggest: [email, id_number, miniprogram_openid, phone, wechat_openid]  # an agent confirms
//	  never: [device, web_visitor]              # kinds not listed never merge either
//
// In an authority list the first channel ranks highest; channels it does not
// name rank below every named one and equal to each other. A write of equal
// authority conflicts when it is less than conflict_window after the current
// value, so a window of 0 lets the newer write of equal authority win always.
type Policy struct {
	keyFields      []string // sorted
	authority      []events.Channel
	fieldAuthority map[string][]events.Channel // key field → its own order; only those differing from authority
	window         time.Duration
	mergeKinds     map[string]MergeAction // identity kind → action; unlisted kinds never merge
	hash           string
}

// policyDoc is the YAML form of a Policy. Pointers tell an absent key (take
// the default) from an empty one.
type policyDoc struct {
	KeyFields       *[]string           `yaml:"key_fields"`
	Authority       *[]string           `yaml:"authority"`
	FieldAuthority  map[string][]string `yaml:"field_authority"`
	ConflictWindow  *string             `yaml:"conflict_window"`
	MergeIdentities *mergeDoc           `yaml:"merge_identities"`
}

// mergeDoc is the YAML form of the merge section. A section replaces the
// default whole: a list it does not name is empty.
type mergeDoc struct {
	Auto    *[]string `yaml:"auto"`
	Suggest *[]string `yaml:"suggest"`
	Never   *[]string `yaml:"never"`
}

// DefaultPolicy returns the policy with every default.
func DefaultPolicy() *Policy {
	p, err := newPolicy(policyDoc{})
	if err != nil {
		panic("merge: default policy is invalid: " + err.Error())
	}
	return p
}

// defaultPolicy serves Apply and ApplyMessage when given a nil policy.
var defaultPolicy = DefaultPolicy()

// LoadPolicy reads and parses the YAML policy file at path.
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading merge policy: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("loading merge policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses a YAML policy (see Policy for the form). Unknown keys,
// unknown field or channel names, a channel listed twice, an empty
// authority list, a field_authority for a field that is not a key field and
// a negative or unparsable conflict window are errors; the error lists
// every problem found. An empty document is the default policy.
func ParsePolicy(b []byte) (*Policy, error) {
	var doc policyDoc
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing merge policy: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parsing merge policy: more than one YAML document")
	}
	p, err := newPolicy(doc)
	if err != nil {
		return nil, fmt.Errorf("invalid merge policy: %w", err)
	}
	return p, nil
}

// newPolicy validates doc, fills defaults and computes the hash.
func newPolicy(doc policyDoc) (*Policy, error) {
	var errs []error
	p := &Policy{window: DefaultConflictWindow, fieldAuthority: map[string][]events.Channel{}}

	p.keyFields = slices.Clone(defaultKeyFields)
	if doc.KeyFields != nil {
		p.keyFields = nil
		for i, f := range *doc.KeyFields {
			switch {
			case !validField(f):
				errs = append(errs, fmt.Errorf("key_fields[%d]: unknown field %q (want one of %v or attributes.<key>)", i, f, typedFields))
			case slices.Contains(p.keyFields, f):
				errs = append(errs, fmt.Errorf("key_fields[%d]: %q listed twice", i, f))
			default:
				p.keyFields = append(p.keyFields, f)
			}
		}
	}
	slices.Sort(p.keyFields)

	p.authority = slices.Clone(defaultAuthority)
	if doc.Authority != nil {
		order, err := parseAuthority("authority", *doc.Authority)
		errs = append(errs, err...)
		p.authority = order
	}

	for _, f := range sortedKeys(doc.FieldAuthority) {
		where := "field_authority." + f
		if !validField(f) {
			errs = append(errs, fmt.Errorf("%s: unknown field %q", where, f))
			continue
		}
		if !p.IsKeyField(f) {
			errs = append(errs, fmt.Errorf("%s: %q is not a key field; authority only decides key fields", where, f))
			continue
		}
		order, err := parseAuthority(where, doc.FieldAuthority[f])
		errs = append(errs, err...)
		if len(err) == 0 && !slices.Equal(order, p.authority) {
			p.fieldAuthority[f] = order
		}
	}

	if doc.ConflictWindow != nil {
		d, err := time.ParseDuration(*doc.ConflictWindow)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("conflict_window: %q is not a duration such as 24h or 90m", *doc.ConflictWindow))
		case d < 0:
			errs = append(errs, fmt.Errorf("conflict_window: %s is negative", d))
		default:
			p.window = d
		}
	}

	var merges mergeDoc
	if doc.MergeIdentities != nil {
		merges = *doc.MergeIdentities
	}
	p.mergeKinds = map[string]MergeAction{}
	for _, l := range []struct {
		action MergeAction
		kinds  *[]string
	}{{MergeAuto, merges.Auto}, {MergeSuggest, merges.Suggest}, {MergeNever, merges.Never}} {
		kinds := defaultMergeIdentities[l.action]
		if doc.MergeIdentities != nil {
			kinds = nil // a merge section replaces the default whole
			if l.kinds != nil {
				kinds = *l.kinds
			}
		}
		for i, k := range kinds {
			where := fmt.Sprintf("merge_identities.%s[%d]", l.action, i)
			switch prev, dup := p.mergeKinds[k]; {
			case !validKind(k):
				errs = append(errs, fmt.Errorf("%s: %q is not an identity kind (lower-case letters, digits and _)", where, k))
			case dup && prev == l.action:
				errs = append(errs, fmt.Errorf("%s: %q listed twice", where, k))
			case dup:
				errs = append(errs, fmt.Errorf("%s: %q is already listed under %s", where, k, prev))
			default:
				p.mergeKinds[k] = l.action
			}
		}
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.hash = p.digest()
	return p, nil
}

// parseAuthority checks one authority list, naming problems after where.
func parseAuthority(where string, names []string) ([]events.Channel, []error) {
	if len(names) == 0 {
		return nil, []error{fmt.Errorf("%s: empty; list the channels, highest authority first", where)}
	}
	var errs []error
	var order []events.Channel
	for i, n := range names {
		ch := events.Channel(n)
		switch {
		case !knownChannel(ch):
			errs = append(errs, fmt.Errorf("%s[%d]: unknown channel %q (want one of %v)", where, i, n, defaultAuthority))
		case slices.Contains(order, ch):
			errs = append(errs, fmt.Errorf("%s[%d]: channel %s listed twice", where, i, n))
		default:
			order = append(order, ch)
		}
	}
	return order, errs
}

// knownChannel reports whether ch is one of the channels of package events.
func knownChannel(ch events.Channel) bool {
	return slices.Contains(defaultAuthority, ch)
}

// Hash returns the SHA-256 (hex) of the policy's canonical form: two
// policies with the same meaning have the same hash however their YAML is
// written (key order, list order of key_fields, "24h" or "1440m", a
// field_authority equal to authority). Materializers store it with every
// record they merge.
func (p *Policy) Hash() string { return p.hash }

// IsKeyField reports whether writes to field go through conflict detection.
func (p *Policy) IsKeyField(field string) bool {
	_, ok := slices.BinarySearch(p.keyFields, field)
	return ok
}

// Authority returns the channel order that decides field, highest first.
func (p *Policy) Authority(field string) []events.Channel {
	return slices.Clone(p.order(field))
}

// order is Authority without the copy.
func (p *Policy) order(field string) []events.Channel {
	if order, ok := p.fieldAuthority[field]; ok {
		return order
	}
	return p.authority
}

// MergeAction returns what identity id, shown by two customers, does to
// them: the action of its kind, and MergeNever for an unverified identity
// (a client's mere claim never joins two customers) or a kind the policy
// does not list.
func (p *Policy) MergeAction(id events.Identity) MergeAction {
	if a, ok := p.mergeKinds[id.Kind]; ok && id.Verified {
		return a
	}
	return MergeNever
}

// validKind reports whether k can be an identity kind.
func validKind(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ConflictWindow returns the policy's conflict window.
func (p *Policy) ConflictWindow() time.Duration { return p.window }

// rank returns ch's position in field's authority order: lower is more
// authoritative; unlisted channels share the rank after the last listed.
func (p *Policy) rank(field string, ch events.Channel) int {
	order := p.order(field)
	if i := slices.Index(order, ch); i >= 0 {
		return i
	}
	return len(order)
}

// digest computes Hash.
func (p *Policy) digest() string {
	canonical := struct {
		Format         string                      `json:"format"`
		KeyFields      []string                    `json:"key_fields"`
		Authority      []events.Channel            `json:"authority"`
		FieldAuthority map[string][]events.Channel `json:"field_authority"`
		ConflictWindow string                      `json:"conflict_window"`
		// MergeKinds is left out when it is the default, so the default
		// policy keeps the hash it had before merges existed: no log
		// written then holds a MERGE or UNMERGE, so a store built then is
		// what today's fold builds from the same log (docs/design.md,
		// Customer merge). Stores built under another policy need a replay
		// as for any policy change.
		MergeKinds *map[string]MergeAction `json:"merge_identities,omitempty"`
	}{policyFormat, p.keyFields, p.authority, p.fieldAuthority, p.window.String(), nil}
	if merging := mergingKinds(p.mergeKinds); !maps.Equal(merging, mergingKinds(defaultMergeKinds())) {
		canonical.MergeKinds = &merging
	}
	if canonical.KeyFields == nil {
		canonical.KeyFields = []string{}
	}
	b, err := json.Marshal(canonical)
	if err != nil {
		panic("merge: encoding policy: " + err.Error()) // strings and slices only: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// defaultMergeKinds returns the default merge section by kind.
func defaultMergeKinds() map[string]MergeAction {
	out := map[string]MergeAction{}
	for a, kinds := range defaultMergeIdentities {
		for _, k := range kinds {
			out[k] = a
		}
	}
	return out
}

// mergingKinds returns the kinds of m that merge (auto or suggest): a kind
// listed under never means what an unlisted one does.
func mergingKinds(m map[string]MergeAction) map[string]MergeAction {
	out := map[string]MergeAction{}
	for k, a := range m {
		if a != MergeNever {
			out[k] = a
		}
	}
	return out
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
