package wechat_test

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
	"github.com/omnisync/omnisync/producers/wechat"
)

const (
	testToken   = "omnisyncToken2026"
	testAppID   = "wx8f3a2b1c4d5e6f70"
	testAccount = "gh_3d8a9f3a2b1c"
	testOpenID  = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
)

// testNow is the clock of every test: a minute after the pushes' CreateTime.
var testNow = time.Unix(1763800060, 0)

func clock() time.Time { return testNow }

// signedURL returns a push URL with the query WeChat sends, signed with
// token; extra query parameters are added as given.
func signedURL(token string, ts time.Time, nonce string, extra ...string) string {
	q := url.Values{}
	timestamp := strconv.FormatInt(ts.Unix(), 10)
	q.Set("signature", wechat.Sign(token, timestamp, nonce))
	q.Set("timestamp", timestamp)
	q.Set("nonce", nonce)
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return "/ingest/wechat?" + q.Encode()
}

func TestSign(t *testing.T) {
	// Computed independently:
	//   printf '%s\n' token 1409304348 xxxxxx | LC_ALL=C sort | tr -d '\n' | sha1sum
	// sorted: "1409304348", "token", "xxxxxx".
	if got, want := wechat.Sign("token", "1409304348", "xxxxxx"), "f43b4a6571a6552356f482636e5a77e7fa33dcc9"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	// Order of the arguments does not matter: they are sorted.
	a := wechat.Sign("b", "a", "c")
	for _, p := range [][3]string{{"a", "b", "c"}, {"c", "b", "a"}, {"a", "c", "b"}} {
		if got := wechat.Sign(p[0], p[1], p[2]); got != a {
			t.Errorf("Sign%v = %s, want %s (same sorted parts)", p, got, a)
		}
	}
}

func ExampleSign() {
	fmt.Println(wechat.Sign("token", "1409304348", "xxxxxx"))
	// Output: f43b4a6571a6552356f482636e5a77e7fa33dcc9
}

func TestVerifySignature(t *testing.T) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	good := wechat.Sign(testToken, ts, "1597231240")
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return "/ingest/wechat?" + v.Encode()
	}
	at := func(d time.Duration) string {
		s := strconv.FormatInt(testNow.Add(d).Unix(), 10)
		return q("signature", wechat.Sign(testToken, s, "n"), "timestamp", s, "nonce", "n")
	}
	tests := []struct {
		name    string
		target  string
		token   string
		maxSkew time.Duration
		wantErr string // "" means accepted
	}{
		{"valid", q("signature", good, "timestamp", ts, "nonce", "1597231240"), testToken, wechat.DefaultMaxClockSkew, ""},
		{"upper-case hex", q("signature", strings.ToUpper(good), "timestamp", ts, "nonce", "1597231240"), testToken, wechat.DefaultMaxClockSkew, ""},
		{"with echostr and openid", q("signature", good, "timestamp", ts, "nonce", "1597231240", "echostr", "x", "openid", testOpenID), testToken, wechat.DefaultMaxClockSkew, ""},
		{"wrong token", q("signature", wechat.Sign("otherToken", ts, "1597231240"), "timestamp", ts, "nonce", "1597231240"), testToken, wechat.DefaultMaxClockSkew, "does not match"},
		{"tampered nonce", q("signature", good, "timestamp", ts, "nonce", "1597231241"), testToken, wechat.DefaultMaxClockSkew, "does not match"},
		{"tampered timestamp", q("signature", good, "timestamp", strconv.FormatInt(testNow.Unix()+1, 10), "nonce", "1597231240"), testToken, wechat.DefaultMaxClockSkew, "does not match"},
		{"truncated signature", q("signature", good[:39], "timestamp", ts, "nonce", "1597231240"), testToken, wechat.DefaultMaxClockSkew, "does not match"},
		{"missing signature", q("timestamp", ts, "nonce", "1597231240"), testToken, wechat.DefaultMaxClockSkew, "missing signature"},
		{"missing timestamp", q("signature", good, "nonce", "1597231240"), testToken, wechat.DefaultMaxClockSkew, "missing timestamp"},
		{"missing nonce", q("signature", good, "timestamp", ts), testToken, wechat.DefaultMaxClockSkew, "missing nonce"},
		{"no query", "/ingest/wechat", testToken, wechat.DefaultMaxClockSkew, "missing signature"},
		{"no token configured", q("signature", wechat.Sign("", ts, "1597231240"), "timestamp", ts, "nonce", "1597231240"), "", wechat.DefaultMaxClockSkew, "no WeChat token"},
		{"WeChat re-send 15 s later", at(-15 * time.Second), testToken, wechat.DefaultMaxClockSkew, ""},
		{"4m59s old", at(-299 * time.Second), testToken, wechat.DefaultMaxClockSkew, ""},
		{"6 minutes old", at(-6 * time.Minute), testToken, wechat.DefaultMaxClockSkew, "off the clock"},
		{"6 minutes ahead", at(6 * time.Minute), testToken, wechat.DefaultMaxClockSkew, "off the clock"},
		{"a day old, window disabled", at(-24 * time.Hour), testToken, 0, ""},
		{"non-numeric timestamp", q("signature", wechat.Sign(testToken, "soon", "n"), "timestamp", "soon", "nonce", "n"), testToken, wechat.DefaultMaxClockSkew, "not Unix seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.target, nil)
			err := wechat.VerifySignature(r, tc.token, testNow, tc.maxSkew)
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
