package miniprogram_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/miniprogram"
	"github.com/omnisync/omnisync/producers/wechat"
)

const (
	testToken   = "miniToken2026"
	testAppID   = "wx5b7c9d1e3f5a7b9c"
	testAccount = "gh_7c2f1e9d3a4b"
	testOpenID  = "oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7"
)

// testNow is the clock of every test: a minute after the pushes' CreateTime.
var testNow = time.Unix(1763800060, 0)

func clock() time.Time { return testNow }

func newChannel(opts ...miniprogram.Option) *miniprogram.Channel {
	return miniprogram.New(ingest.WeChatCredential{AppID: testAppID, Token: testToken},
		append([]miniprogram.Option{miniprogram.Clock(clock)}, opts...)...)
}

// target returns a push URL with the given query parameters.
func target(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return "/ingest/miniprogram?" + q.Encode()
}

// signedURL returns a push URL signed with token at ts; extra query
// parameters are added as given.
func signedURL(token string, ts time.Time, nonce string, extra ...string) string {
	timestamp := strconv.FormatInt(ts.Unix(), 10)
	return target(append([]string{"signature", miniprogram.Sign(token, timestamp, nonce), "timestamp", timestamp, "nonce", nonce}, extra...)...)
}

func TestSign(t *testing.T) {
	// printf '1409304348tokenxxxxxx' | sha1sum
	if got, want := miniprogram.Sign("token", "1409304348", "xxxxxx"), "f43b4a6571a6552356f482636e5a77e7fa33dcc9"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if miniprogram.Sign("a", "b", "c") != wechat.Sign("a", "b", "c") {
		t.Error("the mini-program and the official account sign differently")
	}
}

func ExampleSign() {
	fmt.Println(miniprogram.Sign("token", "1409304348", "xxxxxx"))
	// Output: f43b4a6571a6552356f482636e5a77e7fa33dcc9
}

func TestChannel(t *testing.T) {
	if got := newChannel().Channel(); got != events.ChannelMiniProgram {
		t.Errorf("Channel() = %s", got)
	}
}

func TestAuthenticate(t *testing.T) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	good := miniprogram.Sign(testToken, ts, "372817")
	tests := []struct {
		name    string
		ch      *miniprogram.Channel
		target  string
		wantErr string // "" means accepted
	}{
		{"signed", newChannel(), signedURL(testToken, testNow, "372817"), ""},
		{"signed, with echostr", newChannel(), signedURL(testToken, testNow, "372817", "echostr", "4470254127335370232"), ""},
		{"wrong token", newChannel(), signedURL("otherToken", testNow, "372817"), "does not match"},
		{"tampered nonce", newChannel(), target("signature", good, "timestamp", ts, "nonce", "372818"), "does not match"},
		{"tampered timestamp", newChannel(), target("signature", good, "timestamp", strconv.FormatInt(testNow.Unix()-1, 10), "nonce", "372817"), "does not match"},
		{"missing signature", newChannel(), target("timestamp", ts, "nonce", "372817"), "missing signature"},
		{"missing timestamp", newChannel(), target("signature", good, "nonce", "372817"), "missing timestamp"},
		{"missing nonce", newChannel(), target("signature", good, "timestamp", ts), "missing nonce"},
		{"re-send 15 s later", newChannel(miniprogram.Clock(func() time.Time { return testNow.Add(15 * time.Second) })), signedURL(testToken, testNow, "372817"), ""},
		{"stale", newChannel(), signedURL(testToken, testNow.Add(-10*time.Minute), "372817"), "off the clock"},
		{"ahead", newChannel(), signedURL(testToken, testNow.Add(10*time.Minute), "372817"), "off the clock"},
		{"stale, window disabled", newChannel(miniprogram.MaxClockSkew(0)), signedURL(testToken, testNow.Add(-48*time.Hour), "372817"), ""},
		{"stale, window widened", newChannel(miniprogram.MaxClockSkew(time.Hour)), signedURL(testToken, testNow.Add(-10*time.Minute), "372817"), ""},
		{"no app ID configured", miniprogram.New(ingest.WeChatCredential{Token: testToken}, miniprogram.Clock(clock)), signedURL(testToken, testNow, "1"), "no mini-program app ID"},
		{"no token configured", miniprogram.New(ingest.WeChatCredential{AppID: testAppID}, miniprogram.Clock(clock)), signedURL("", testNow, "1"), "no WeChat token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				err := tc.ch.Authenticate(httptest.NewRequest(method, tc.target, nil))
				switch {
				case tc.wantErr == "" && err != nil:
					t.Fatalf("%s refused: %v", method, err)
				case tc.wantErr == "":
				case err == nil:
					t.Fatalf("%s accepted, want an error containing %q", method, tc.wantErr)
				case !errors.Is(err, httpauth.ErrUnauthorized):
					t.Errorf("%s: %v does not wrap httpauth.ErrUnauthorized", method, err)
				case !strings.Contains(err.Error(), tc.wantErr):
					t.Errorf("%s: %q does not contain %q", method, err, tc.wantErr)
				}
			}
		})
	}
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name     string
		extra    []string
		wantCode int
		wantBody string
	}{
		{"echoes echostr verbatim", []string{"echostr", "4470254127335370232"}, http.StatusOK, "4470254127335370232"},
		{"missing echostr", nil, http.StatusBadRequest, "missing echostr query parameter\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := newChannel()
			r := httptest.NewRequest(http.MethodGet, signedURL(testToken, testNow, "372817", tc.extra...), nil)
			if err := ch.Authenticate(r); err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			ch.Handshake(w, r)
			if w.Code != tc.wantCode || w.Body.String() != tc.wantBody || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
				t.Errorf("answer %d %q (%s), want %d %q text/plain", w.Code, w.Body.String(), w.Header().Get("Content-Type"), tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestRespond(t *testing.T) {
	w := httptest.NewRecorder()
	newChannel().Respond(w, httptest.NewRequest(http.MethodPost, "/ingest/miniprogram", nil), &ingest.Batch{})
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || string(body) != "success" {
		t.Errorf("answer %d %q, want 200 \"success\"", res.StatusCode, body)
	}
}
