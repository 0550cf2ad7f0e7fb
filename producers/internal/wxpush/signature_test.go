package wxpush_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// testNow is the clock of the signature tests.
var testNow = time.Unix(1763800060, 0)

const testToken = "omnisyncToken2026"

func TestSign(t *testing.T) {
	// Computed independently:
	//   printf '%s\n' token 1409304348 xxxxxx | LC_ALL=C sort | tr -d '\n' | sha1sum
	// sorted: "1409304348", "token", "xxxxxx".
	if got, want := wxpush.Sign("token", "1409304348", "xxxxxx"), "f43b4a6571a6552356f482636e5a77e7fa33dcc9"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	// Order of the arguments does not matter: they are sorted.
	a := wxpush.Sign("b", "a", "c")
	for _, p := range [][3]string{{"a", "b", "c"}, {"c", "b", "a"}, {"a", "c", "b"}} {
		if got := wxpush.Sign(p[0], p[1], p[2]); got != a {
			t.Errorf("Sign%v = %s, want %s (same sorted parts)", p, got, a)
		}
	}
}

func ExampleSign() {
	fmt.Println(wxpush.Sign("token", "1409304348", "xxxxxx"))
	// Output: f43b4a6571a6552356f482636e5a77e7fa33dcc9
}

func TestVerifySignature(t *testing.T) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	good := wxpush.Sign(testToken, ts, "1597231240")
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return "/ingest/wechat?" + v.Encode()
	}
	at := func(d time.Duration) string {
		s := strconv.FormatInt(testNow.Add(d).Unix(), 10)
		return q("signature", wxpush.Sign(testToken, s, "n"), "timestamp", s, "nonce", "n")
	}
	tests := []struct {
		name    string
		target  string
		token   string
		maxSkew time.Duration
		wantErr string // "" means accepted
	}{
		{"valid", q("signature", good, "timestamp", ts, "nonce", "1597231240"), testToken, wxpush.DefaultMaxClockSkew, ""},
		{"upper-case hex", q("signature", strings.ToUpper(good), "timestamp", ts, "nonce", "1597231240"), testToken, wxpush.DefaultMaxClockSkew, ""},
		{"with echostr and openid", q("signature", good, "timestamp", ts, "nonce", "1597231240", "echostr", "x", "openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"), testToken, wxpush.DefaultMaxClockSkew, ""},
		{"wrong token", q("signature", wxpush.Sign("otherToken", ts, "1597231240"), "timestamp", ts, "nonce", "1597231240"), testToken, wxpush.DefaultMaxClockSkew, "does not match"},
		{"tampered nonce", q("signature", good, "timestamp", ts, "nonce", "1597231241"), testToken, wxpush.DefaultMaxClockSkew, "does not match"},
		{"tampered timestamp", q("signature", good, "timestamp", strconv.FormatInt(testNow.Unix()+1, 10), "nonce", "1597231240"), testToken, wxpush.DefaultMaxClockSkew, "does not match"},
		{"truncated signature", q("signature", good[:39], "timestamp", ts, "nonce", "1597231240"), testToken, wxpush.DefaultMaxClockSkew, "does not match"},
		{"missing signature", q("timestamp", ts, "nonce", "1597231240"), testToken, wxpush.DefaultMaxClockSkew, "missing signature"},
		{"missing timestamp", q("signature", good, "nonce", "1597231240"), testToken, wxpush.DefaultMaxClockSkew, "missing timestamp"},
		{"missing nonce", q("signature", good, "timestamp", ts), testToken, wxpush.DefaultMaxClockSkew, "missing nonce"},
		{"no query", "/ingest/wechat", testToken, wxpush.DefaultMaxClockSkew, "missing signature"},
		{"no token configured", q("signature", wxpush.Sign("", ts, "1597231240"), "timestamp", ts, "nonce", "1597231240"), "", wxpush.DefaultMaxClockSkew, "no WeChat token"},
		{"WeChat re-send 15 s later", at(-15 * time.Second), testToken, wxpush.DefaultMaxClockSkew, ""},
		{"4m59s old", at(-299 * time.Second), testToken, wxpush.DefaultMaxClockSkew, ""},
		{"6 minutes old", at(-6 * time.Minute), testToken, wxpush.DefaultMaxClockSkew, "off the clock"},
		{"6 minutes ahead", at(6 * time.Minute), testToken, wxpush.DefaultMaxClockSkew, "off the clock"},
		{"a day old, window disabled", at(-24 * time.Hour), testToken, 0, ""},
		{"non-numeric timestamp", q("signature", wxpush.Sign(testToken, "soon", "n"), "timestamp", "soon", "nonce", "n"), testToken, wxpush.DefaultMaxClockSkew, "not Unix seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.target, nil)
			err := wxpush.VerifySignature(r, tc.token, testNow, tc.maxSkew)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", tc.wantErr)
			}
			if !errors.Is(err, httpauth.ErrUnauthorized) {
				t.Errorf("error %v does not wrap httpauth.ErrUnauthorized", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}
