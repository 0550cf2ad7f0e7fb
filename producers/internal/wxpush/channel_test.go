package wxpush_test

import (
	"errors"
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
	"github.com/omnisync/omnisync/producers/internal/wxpush"
	"github.com/omnisync/omnisync/producers/miniprogram"
	"github.com/omnisync/omnisync/producers/wechat"
)

// pushChannel is one WeChat push channel as the shared tests see it.
type pushChannel struct {
	name    events.Channel
	path    string
	appID   string
	noAppID string // how Authenticate refuses a credential without an app ID
	new     func(cred ingest.WeChatCredential, opts ...wxpush.Option) *wxpush.Channel
}

var pushChannels = []pushChannel{
	{events.ChannelWeChat, "/ingest/wechat", "wx8f3a2b1c4d5e6f70", "no WeChat app ID", wechat.New},
	{events.ChannelMiniProgram, "/ingest/miniprogram", "wx5b7c9d1e3f5a7b9c", "no mini-program app ID", miniprogram.New},
}

func clock() time.Time { return testNow }

// channel returns pc's channel with the test credential, on the test clock.
func (pc pushChannel) channel(opts ...wxpush.Option) *wxpush.Channel {
	return pc.new(ingest.WeChatCredential{AppID: pc.appID, Token: testToken}, append([]wxpush.Option{wxpush.Clock(clock)}, opts...)...)
}

// target returns a push URL with the given query parameters.
func (pc pushChannel) target(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return pc.path + "?" + q.Encode()
}

// signedURL returns a push URL signed with token at ts; extra query
// parameters are added as given.
func (pc pushChannel) signedURL(token string, ts time.Time, nonce string, extra ...string) string {
	timestamp := strconv.FormatInt(ts.Unix(), 10)
	return pc.target(append([]string{"signature", wxpush.Sign(token, timestamp, nonce), "timestamp", timestamp, "nonce", nonce}, extra...)...)
}

func TestChannel(t *testing.T) {
	for _, pc := range pushChannels {
		if got := pc.channel().Channel(); got != pc.name {
			t.Errorf("%s: Channel() = %s", pc.name, got)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	good := wxpush.Sign(testToken, ts, "372817")
	for _, pc := range pushChannels {
		tests := []struct {
			name    string
			ch      *wxpush.Channel
			target  string
			wantErr string // "" means accepted
		}{
			{"signed", pc.channel(), pc.signedURL(testToken, testNow, "372817"), ""},
			{"signed GET handshake", pc.channel(), pc.signedURL(testToken, testNow, "372817", "echostr", "4470254127335370232"), ""},
			{"wrong token", pc.channel(), pc.signedURL("otherToken", testNow, "372817"), "does not match"},
			{"unsigned", pc.channel(), pc.target("timestamp", ts, "nonce", "1"), "missing signature"},
			{"tampered nonce", pc.channel(), pc.target("signature", good, "timestamp", ts, "nonce", "372818"), "does not match"},
			{"tampered timestamp", pc.channel(), pc.target("signature", good, "timestamp", strconv.FormatInt(testNow.Unix()-1, 10), "nonce", "372817"), "does not match"},
			{"missing timestamp", pc.channel(), pc.target("signature", good, "nonce", "372817"), "missing timestamp"},
			{"missing nonce", pc.channel(), pc.target("signature", good, "timestamp", ts), "missing nonce"},
			{"re-send 15 s later", pc.channel(wxpush.Clock(func() time.Time { return testNow.Add(15 * time.Second) })), pc.signedURL(testToken, testNow, "372817"), ""},
			{"stale", pc.channel(), pc.signedURL(testToken, testNow.Add(-10*time.Minute), "372817"), "off the clock"},
			{"ahead", pc.channel(), pc.signedURL(testToken, testNow.Add(10*time.Minute), "372817"), "off the clock"},
			{"stale, window widened", pc.channel(wxpush.MaxClockSkew(time.Hour)), pc.signedURL(testToken, testNow.Add(-10*time.Minute), "372817"), ""},
			{"stale, window disabled", pc.channel(wxpush.MaxClockSkew(0)), pc.signedURL(testToken, testNow.Add(-48*time.Hour), "372817"), ""},
			{"no app ID configured", pc.new(ingest.WeChatCredential{Token: testToken}, wxpush.Clock(clock)), pc.signedURL(testToken, testNow, "1"), pc.noAppID},
			{"no token configured", pc.new(ingest.WeChatCredential{AppID: pc.appID}, wxpush.Clock(clock)), pc.signedURL("", testNow, "1"), "no WeChat token"},
		}
		for _, tc := range tests {
			t.Run(string(pc.name)+"/"+tc.name, func(t *testing.T) {
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
	for _, pc := range pushChannels {
		for _, tc := range tests {
			t.Run(string(pc.name)+"/"+tc.name, func(t *testing.T) {
				var extra []string
				if tc.echostr != "" {
					extra = []string{"echostr", tc.echostr}
				}
				ch := pc.channel()
				r := httptest.NewRequest(http.MethodGet, pc.signedURL(testToken, testNow, "1597231240", extra...), nil)
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
}

func TestRespond(t *testing.T) {
	for _, pc := range pushChannels {
		w := httptest.NewRecorder()
		pc.channel().Respond(w, httptest.NewRequest(http.MethodPost, pc.path, nil), &ingest.Batch{})
		res := w.Result()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || string(body) != "success" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s: answer %d %q (%s), want 200 \"success\" text/plain", pc.name, res.StatusCode, body, res.Header.Get("Content-Type"))
		}
	}
}
