package merge_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// defaultYAML spells out every default.
const defaultYAML = `
key_fields: [phone, email, id_number, attributes.order_no]
authority: [CRM, AGENT, IMPORT, APP, WEB, MINIPROGRAM, WECHAT, PHONE, UNKNOWN]
conflict_window: 24h
merge_identities:
  auto: [wechat_unionid, crm, app_user]
  suggest: [phone, email, wechat_openid, miniprogram_openid, id_number]
  never: [device, web_visitor]
`

func TestDefaultPolicy(t *testing.T) {
	p := merge.DefaultPolicy()
	for _, f := range []string{"phone", "email", "id_number", "attributes.order_no"} {
		if !p.IsKeyField(f) {
			t.Errorf("%s is not a key field", f)
		}
	}
	for _, f := range []string{"name", "tags", "attributes.color", "attributes"} {
		if p.IsKeyField(f) {
			t.Errorf("%s is a key field", f)
		}
	}
	want := []events.Channel{"CRM", "AGENT", "IMPORT", "APP", "WEB", "MINIPROGRAM", "WECHAT", "PHONE", "UNKNOWN"}
	if got := p.Authority("phone"); !slices.Equal(got, want) {
		t.Errorf("authority %v, want %v", got, want)
	}
	if p.ConflictWindow() != 24*time.Hour {
		t.Errorf("window %v, want 24h", p.ConflictWindow())
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name          string
		yaml          string
		wantKey       []string
		wantNotKey    []string
		field         string
		wantAuthority []events.Channel
		wantWindow    time.Duration
	}{
		{
			name: "empty document is the default", yaml: "",
			wantKey: []string{"phone", "attributes.order_no"}, field: "phone",
			wantAuthority: []events.Channel{"CRM", "AGENT", "IMPORT", "APP", "WEB", "MINIPROGRAM", "WECHAT", "PHONE", "UNKNOWN"},
			wantWindow:    24 * time.Hour,
		},
		{
			name: "key fields replace the default", yaml: "key_fields: [email, attributes.member_id]",
			wantKey: []string{"email", "attributes.member_id"}, wantNotKey: []string{"phone", "attributes.order_no"},
			field: "email", wantAuthority: []events.Channel{"CRM", "AGENT", "IMPORT", "APP", "WEB", "MINIPROGRAM", "WECHAT", "PHONE", "UNKNOWN"},
			wantWindow: 24 * time.Hour,
		},
		{
			name: "no key fields", yaml: "key_fields: []",
			wantNotKey: []string{"phone", "email"}, field: "phone",
			wantAuthority: []events.Channel{"CRM", "AGENT", "IMPORT", "APP", "WEB", "MINIPROGRAM", "WECHAT", "PHONE", "UNKNOWN"},
			wantWindow:    24 * time.Hour,
		},
		{
			name:  "authority and window",
			yaml:  "authority: [AGENT, CRM]\nconflict_window: 90m\n",
			field: "phone", wantKey: []string{"phone"},
			wantAuthority: []events.Channel{"AGENT", "CRM"}, wantWindow: 90 * time.Minute,
		},
		{
			name:  "per-field authority",
			yaml:  "field_authority:\n  email: [APP, CRM]\n",
			field: "email", wantKey: []string{"email"},
			wantAuthority: []events.Channel{"APP", "CRM"}, wantWindow: 24 * time.Hour,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := merge.ParsePolicy([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range tt.wantKey {
				if !p.IsKeyField(f) {
					t.Errorf("%s is not a key field", f)
				}
			}
			for _, f := range tt.wantNotKey {
				if p.IsKeyField(f) {
					t.Errorf("%s is a key field", f)
				}
			}
			if got := p.Authority(tt.field); !slices.Equal(got, tt.wantAuthority) {
				t.Errorf("authority of %s = %v, want %v", tt.field, got, tt.wantAuthority)
			}
			if p.ConflictWindow() != tt.wantWindow {
				t.Errorf("window %v, want %v", p.ConflictWindow(), tt.wantWindow)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, all of them
	}{
		{"unknown channel", "authority: [CRM, WEBB]", []string{`authority[1]: unknown channel "WEBB"`}},
		{"lower-case channel", "authority: [crm]", []string{`authority[0]: unknown channel "crm"`}},
		{"channel twice", "authority: [CRM, APP, CRM]", []string{"authority[2]: channel CRM listed twice"}},
		{"empty authority", "authority: []", []string{"authority: empty"}},
		{"negative window", "conflict_window: -1h", []string{"conflict_window: -1h0m0s is negative"}},
		{"window without unit", "conflict_window: 24", []string{`conflict_window: "24" is not a duration`}},
		{"unknown key field", "key_fields: [phnoe]", []string{`key_fields[0]: unknown field "phnoe"`}},
		{"attribute without key", "key_fields: [attributes.]", []string{`key_fields[0]: unknown field "attributes."`}},
		{"key field twice", "key_fields: [phone, phone]", []string{`key_fields[1]: "phone" listed twice`}},
		{"field authority for a non-key field", "field_authority:\n  name: [CRM]", []string{`field_authority.name: "name" is not a key field`}},
		{"field authority with an unknown channel", "field_authority:\n  phone: [CRM, SMS]", []string{`field_authority.phone[1]: unknown channel "SMS"`}},
		{"unknown key", "conflict_windw: 1h", []string{"field conflict_windw not found"}},
		{"not a mapping", "- phone", []string{"parsing merge policy"}},
		{"two documents", "conflict_window: 1h\n---\nconflict_window: 2h\n", []string{"more than one YAML document"}},
		{"every problem at once", "authority: [X]\nconflict_window: -5m\nkey_fields: [y]", []string{
			`authority[0]: unknown channel "X"`, "conflict_window: -5m0s is negative", `key_fields[0]: unknown field "y"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := merge.ParsePolicy([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("parsed into %+v, want an error", p)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestPolicyHash pins the default policy's hash (records store it, so a
// change must be deliberate) and checks that the hash follows the meaning
// of a policy, not its spelling.
func TestPolicyHash(t *testing.T) {
	const defaultHash = "f3215416e37f388b5ccd3c10be96f8780f2b98035d7cb863359e845f4c36d745"
	def := merge.DefaultPolicy().Hash()
	if def != defaultHash {
		t.Errorf("default policy hash %s, want %s: if the policy's meaning changed on purpose, update the pin", def, defaultHash)
	}
	same := []string{
		"",
		defaultYAML,
		"# comment only\n",
		"key_fields: [attributes.order_no, id_number, email, phone]\nconflict_window: 1440m",
		"conflict_window: 86400s\nfield_authority:\n  email: [CRM, AGENT, IMPORT, APP, WEB, MINIPROGRAM, WECHAT, PHONE, UNKNOWN]",
		// never means what unlisted means
		"merge_identities:\n  auto: [app_user, crm, wechat_unionid]\n  suggest: [phone, email, wechat_openid, miniprogram_openid, id_number]",
		"merge_identities:\n  auto: [app_user, crm, wechat_unionid]\n  suggest: [phone, email, wechat_openid, miniprogram_openid, id_number]\n  never: [device, web_visitor, ip_address]",
	}
	for _, y := range same {
		if h := mustPolicy(t, y).Hash(); h != def {
			t.Errorf("policy %q hashes to %s, want the default's %s", y, h, def)
		}
	}
	different := []string{
		"key_fields: [phone, email, id_number]",
		"key_fields: []",
		"authority: [AGENT, CRM, IMPORT, APP, WEB, MINIPROGRAM, WECHAT, PHONE, UNKNOWN]",
		"authority: [CRM, AGENT, IMPORT, APP, WEB, MINIPROGRAM, WECHAT, PHONE]",
		"conflict_window: 23h",
		"conflict_window: 0s",
		"field_authority:\n  email: [APP, CRM]",
		"field_authority:\n  phone: [APP, CRM]",
		"merge_identities:\n  auto: [wechat_unionid, crm, app_user, phone]\n  suggest: [email, wechat_openid, miniprogram_openid, id_number]",
		"merge_identities:\n  suggest: [phone, email]",
		"merge_identities:\n  auto: [app_user, crm, wechat_unionid]",
		"merge_identities: {}",
	}
	seen := map[string]string{def: "default"}
	for _, y := range different {
		h := mustPolicy(t, y).Hash()
		if prev, ok := seen[h]; ok {
			t.Errorf("policy %q hashes like %q", y, prev)
		}
		seen[h] = y
	}
	if h := mustPolicy(t, different[0]).Hash(); h != mustPolicy(t, different[0]).Hash() {
		t.Error("hash differs between two parses")
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(defaultYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := merge.LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Hash() != merge.DefaultPolicy().Hash() {
		t.Error("loaded default policy hashes differently")
	}
	if _, err := merge.LoadPolicy(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("authority: [FAX]"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := merge.LoadPolicy(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `"FAX"`) {
		t.Errorf("bad file: %v, want an error naming the file and the channel", err)
	}
}

func TestMergeAction(t *testing.T) {
	p := merge.DefaultPolicy()
	for _, tt := range []struct {
		id   events.Identity
		want merge.MergeAction
	}{
		{events.Identity{Kind: "wechat_unionid", Value: "u", Verified: true}, merge.MergeAuto},
		{events.Identity{Kind: "crm", Value: "42", Verified: true}, merge.MergeAuto},
		{events.Identity{Kind: "app_user", Value: "u1", Verified: true}, merge.MergeAuto},
		{events.Identity{Kind: "app_user", Value: "u1"}, merge.MergeNever}, // not logged in: a claim
		{events.Identity{Kind: "phone", Value: "+8613800000001", Verified: true}, merge.MergeSuggest},
		{events.Identity{Kind: "email", Value: "a@x.cn", Verified: true}, merge.MergeSuggest},
		{events.Identity{Kind: "wechat_openid", Scope: "wx1", Value: "o1", Verified: true}, merge.MergeSuggest},
		{events.Identity{Kind: "device", Value: "d1", Verified: true}, merge.MergeNever},
		{events.Identity{Kind: "web_visitor", Value: "v1", Verified: true}, merge.MergeNever},
		{events.Identity{Kind: "ip_address", Value: "10.0.0.1", Verified: true}, merge.MergeNever},
	} {
		if got := p.MergeAction(tt.id); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.id, got, tt.want)
		}
	}
	q := mustPolicy(t, "merge_identities:\n  auto: [phone]\n  suggest: [email]\n  never: [crm]")
	for kind, want := range map[string]merge.MergeAction{"phone": merge.MergeAuto, "crm": merge.MergeNever, "email": merge.MergeSuggest, "wechat_unionid": merge.MergeNever} {
		if got := q.MergeAction(events.Identity{Kind: kind, Value: "x", Verified: true}); got != want {
			t.Errorf("custom policy, %s: %s, want %s", kind, got, want)
		}
	}
}

func TestMergeIdentitiesErrors(t *testing.T) {
	for y, want := range map[string]string{
		"merge_identities:\n  auto: [phone, phone]":          `merge_identities.auto[1]: "phone" listed twice`,
		"merge_identities:\n  auto: [Phone]":                 `merge_identities.auto[0]: "Phone" is not an identity kind`,
		"merge_identities:\n  auto: [crm]\n  never: [crm]":   `merge_identities.never[0]: "crm" is already listed under auto`,
		"merge_identities:\n  auto: [crm]\n  suggest: [crm]": `merge_identities.suggest[0]: "crm" is already listed under auto`,
		"merge_identities:\n  sometimes: [crm]":              `field sometimes not found`,
	} {
		_, err := merge.ParsePolicy([]byte(y))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", y, err, want)
		}
	}
}
