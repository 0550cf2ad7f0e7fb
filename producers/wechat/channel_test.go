package wechat_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/wechat"
)

func TestChannel(t *testing.T) {
	if got := newChannel().Channel(); got != events.ChannelWeChat {
		t.Errorf("Channel() = %s", got)
	}
}

func TestAuthenticate(t *testing.T) {
	tests := []struct {
		name    string
		ch      *wechat.Channel
		target  string
		wantErr bool
	}{
		{"signed", newChannel(), signedURL(testToken, testNow, "1597231240"), false},
		{"signed GET handshake", newChannel(), signedURL(testToken, testNow, "1597231240", "echostr", "5837397749147614549"), false},
		{"wrong token", newChannel(), signedURL("wrong", testNow, "1597231240"), true},
		{"unsigned", newChannel(), "/ingest/wechat?timestamp=1763800060&nonce=1", true},
		{"stale", newChannel(), signedURL(testToken, testNow.Add(-10*time.Minute), "1597231240"), true},
		{"stale, window widened", newChannel(wechat.MaxClockSkew(time.Hour)), signedURL(testToken, testNow.Add(-10*time.Minute), "1597231240"), false},
		{"stale, window disabled", newChannel(wechat.MaxClockSkew(0)), signedURL(testToken, testNow.Add(-48*time.Hour), "1597231240"), false},
		{"no app ID configured", wechat.New(ingest.WeChatCredential{Token: testToken}, wechat.Clock(clock)), signedURL(testToken, testNow, "1"), true},
		{"no token configured", wechat.New(ingest.WeChatCredential{AppID: testAppID}, wechat.Clock(clock)), signedURL("", testNow, "1"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				err := tc.ch.Authenticate(httptest.NewRequest(method, tc.target, nil))
				if (err != nil) != tc.wantErr {
					t.Fatalf("%s: err = %v, want error %v", method, err, tc.wantErr)
				}
				if err != nil && !errors.Is(err, httpauth.ErrUnauthorized) {
					t.Errorf("%s: %v does not wrap httpauth.ErrUnauthorized", method, err)
				}
			}
		})
	}
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name     string
		echostr  string
		wantCode int
		wantBody string
	}{
		{"echoes echostr verbatim", "5837397749147614549", http.StatusOK, "5837397749147614549"},
		{"echoes odd characters verbatim", "a b&c<d>", http.StatusOK, "a b&c<d>"},
		{"missing echostr", "", http.StatusBadRequest, "missing echostr query parameter\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.echostr != "" {
				extra = []string{"echostr", tc.echostr}
			}
			ch := newChannel()
			r := httptest.NewRequest(http.MethodGet, signedURL(testToken, testNow, "1597231240", extra...), nil)
			if err := ch.Authenticate(r); err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			ch.Handshake(w, r)
			if w.Code != tc.wantCode || w.Body.String() != tc.wantBody {
				t.Errorf("answer %d %q, want %d %q", w.Code, w.Body.String(), tc.wantCode, tc.wantBody)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestRespond(t *testing.T) {
	w := httptest.NewRecorder()
	newChannel().Respond(w, httptest.NewRequest(http.MethodPost, "/ingest/wechat", nil), &ingest.Batch{})
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || string(body) != "success" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("answer %d %q (%s), want 200 \"success\" text/plain", res.StatusCode, body, res.Header.Get("Content-Type"))
	}
}
