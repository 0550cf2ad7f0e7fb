package wxpushtest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/pkg/wxcrypt"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// TestKey is the EncodingAESKey of the tests, 43 characters as WeChat's
// console makes them.
const TestKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

// Pusher is a push channel as the shared safe-mode and replay checks
// drive it.
type Pusher struct {
	New      func(cred ingest.WeChatCredential) ingest.Channel // at Now
	Cred     ingest.WeChatCredential                           // app ID and token; the checks add the key
	Path     string                                            // e.g. /ingest/wechat
	Now      time.Time
	Push     func(content string) []byte         // a plain text push of content
	Envelope func(toUser, encrypt string) []byte // a safe-mode body carrying encrypt
}

// Request is a push request as WeChat sends it: signed with token, and in
// safe mode (encrypt non-empty) with encrypt_type=aes and msg_signature.
func (p Pusher) Request(token, nonce, encrypt string, body []byte) *http.Request {
	ts := strconv.FormatInt(p.Now.Unix(), 10)
	q := url.Values{"signature": {wxpush.Sign(token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}, "openid": {"o"}}
	if encrypt != "" {
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", wxcrypt.MsgSignature(token, ts, nonce, encrypt))
	}
	return httptest.NewRequest(http.MethodPost, p.Path+"?"+q.Encode(), strings.NewReader(string(body)))
}

// Serve runs r through ch as the pipeline does: Authenticate, then Parse.
func Serve(ch ingest.Channel, r *http.Request, body []byte) (*ingest.Batch, error) {
	if err := ch.Authenticate(r); err != nil {
		return nil, err
	}
	return ch.Parse(r, body)
}

func (p Pusher) keyed(key string) ingest.Channel {
	cred := p.Cred
	cred.EncodingAESKey = key
	return p.New(cred)
}

// SafeMode checks a channel with an EncodingAESKey: an encrypted push is
// read as its plain text would be; everything that does not verify or
// decrypt, and every plain-text push, is refused with an error wrapping
// httpauth.ErrUnauthorized (401); a decrypted push that is bad input is a
// *normalize.ValidationError, as in plain-text mode.
func SafeMode(t *testing.T, p Pusher) {
	plainCh := p.New(p.Cred)
	ch := p.keyed(TestKey)
	c, err := wxcrypt.New(TestKey, p.Cred.AppID)
	if err != nil {
		t.Fatal(err)
	}
	push := p.Push("加密的消息")
	want, err := Serve(plainCh, p.Request(p.Cred.Token, "plain", "", push), push)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("encrypted push", func(t *testing.T) {
		enc := c.Encrypt(push)
		body := p.Envelope("gh_x", enc)
		got, err := Serve(ch, p.Request(p.Cred.Token, "n-ok", enc, body), body)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("encrypted push read otherwise than its plain text (-plain +encrypted):\n%s", diff)
		}
	})
	other, err := wxcrypt.New(TestKey, "wx-another-app")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := wxcrypt.New(wxcrypt.NewKey(), p.Cred.AppID)
	if err != nil {
		t.Fatal(err)
	}
	enc, forOther, withOtherKey := c.Encrypt(push), other.Encrypt(push), otherKey.Encrypt(push)
	tampered := enc[:10] + "A" + enc[11:]
	if tampered == enc {
		tampered = enc[:10] + "B" + enc[11:]
	}
	refused := []struct {
		name   string
		r      *http.Request
		body   []byte
		wantIn string
	}{
		{"plain-text push", p.Request(p.Cred.Token, "n1", "", push), push, "must be encrypted"},
		{"plain-text copy beside a ciphertext, no encrypt_type", p.Request(p.Cred.Token, "n2", "", p.Envelope("gh_x", enc)), p.Envelope("gh_x", enc), "must be encrypted"},
		{"missing msg_signature", dropQuery(p.Request(p.Cred.Token, "n3", enc, p.Envelope("gh_x", enc)), "msg_signature"), p.Envelope("gh_x", enc), "missing msg_signature"},
		{"msg_signature of another ciphertext", withQuery(p.Request(p.Cred.Token, "n4", enc, nil), "msg_signature", wxcrypt.MsgSignature(p.Cred.Token, strconv.FormatInt(p.Now.Unix(), 10), "n4", enc+"x")), p.Envelope("gh_x", enc), "msg_signature does not match"},
		{"tampered ciphertext", p.Request(p.Cred.Token, "n5", enc, nil), p.Envelope("gh_x", tampered), "msg_signature does not match"},
		{"signed with another token", p.Request("wrong", "n6", enc, nil), p.Envelope("gh_x", enc), "signature does not match"},
		{"no Encrypt", p.Request(p.Cred.Token, "n7", "x", nil), p.Envelope("gh_x", ""), "no Encrypt"},
		{"for another app ID", p.Request(p.Cred.Token, "n8", forOther, nil), p.Envelope("gh_x", forOther), `app ID "wx-another-app"`},
		{"another key", p.Request(p.Cred.Token, "n9", withOtherKey, nil), p.Envelope("gh_x", withOtherKey), "decrypting"},
		{"not base64", p.Request(p.Cred.Token, "n10", "***", nil), p.Envelope("gh_x", "***"), "base64"},
		{"body not an envelope", p.Request(p.Cred.Token, "n11", "x", nil), []byte("garbage"), "reading the encrypted push"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Serve(ch, tc.r, tc.body)
			if !errors.Is(err, httpauth.ErrUnauthorized) {
				t.Fatalf("got %v, %v; want an error wrapping httpauth.ErrUnauthorized", b, err)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not contain %q", err, tc.wantIn)
			}
		})
	}
	t.Run("decrypted bad input", func(t *testing.T) {
		enc := c.Encrypt([]byte("  "))
		body := p.Envelope("gh_x", enc)
		_, err := Serve(ch, p.Request(p.Cred.Token, "n-bad", enc, body), body)
		var invalid *normalize.ValidationError
		if !errors.As(err, &invalid) || !strings.Contains(invalid.Reason, "empty") {
			t.Fatalf("an encrypted empty push: %v, want a *normalize.ValidationError saying the body is empty", err)
		}
	})
	t.Run("unusable key refuses everything, handshake included", func(t *testing.T) {
		bad := p.keyed("too-short")
		r := p.Request(p.Cred.Token, "n-key", "", nil)
		r.Method = http.MethodGet
		if err := bad.Authenticate(r); !errors.Is(err, httpauth.ErrUnauthorized) || !strings.Contains(err.Error(), "encoding_aes_key") {
			t.Fatalf("Authenticate with an unusable key: %v", err)
		}
	})
	t.Run("handshake with a key", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, p.Request(p.Cred.Token, "n-get", "", nil).URL.String()+"&echostr=42", nil)
		if err := ch.Authenticate(r); err != nil {
			t.Fatal(err)
		}
		h, ok := ch.(ingest.Handshaker)
		if !ok {
			t.Fatal("not a Handshaker")
		}
		w := httptest.NewRecorder()
		h.Handshake(w, r)
		if w.Code != http.StatusOK || w.Body.String() != "42" {
			t.Errorf("handshake: %d %q, want echostr echoed", w.Code, w.Body.String())
		}
	})
}

// Replay checks the nonce rule in plain-text mode and safe mode: a
// re-send of the same push under the same URL is read again (the pipeline
// absorbs it), the URL with another body is refused with an error
// wrapping httpauth.ErrUnauthorized.
func Replay(t *testing.T, p Pusher) {
	c, err := wxcrypt.New(TestKey, p.Cred.AppID)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		ch   ingest.Channel
		seal func(push []byte) (encrypt string, body []byte)
	}{
		{"plain text", p.New(p.Cred), func(push []byte) (string, []byte) { return "", push }},
		{"safe mode", p.keyed(TestKey), func(push []byte) (string, []byte) {
			enc := c.Encrypt(push)
			return enc, p.Envelope("gh_x", enc)
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			enc, body := mode.seal(p.Push("original"))
			first, err := Serve(mode.ch, p.Request(p.Cred.Token, "n-replay", enc, body), body)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 { // WeChat re-sends an unanswered push up to three times, URL and body unchanged
				again, err := Serve(mode.ch, p.Request(p.Cred.Token, "n-replay", enc, body), body)
				if err != nil {
					t.Fatalf("re-send %d: %v", i+1, err)
				}
				if diff := cmp.Diff(first, again); diff != "" {
					t.Fatalf("re-send %d read otherwise:\n%s", i+1, diff)
				}
			}
			forged := p.Push("forged")
			r := p.Request(p.Cred.Token, "n-replay", enc, forged)
			if mode.name == "safe mode" { // the attacker keeps the captured URL, msg_signature included
				_, forged = mode.seal(forged)
			}
			if b, err := Serve(mode.ch, r, forged); !errors.Is(err, httpauth.ErrUnauthorized) {
				t.Fatalf("captured URL with another body: %v, %v; want an error wrapping httpauth.ErrUnauthorized", b, err)
			}
			// Even a body signed anew (only the token's holder can) may not
			// reuse a nonce and timestamp already taken.
			enc3, body3 := mode.seal(p.Push("signed anew"))
			if b, err := Serve(mode.ch, p.Request(p.Cred.Token, "n-replay", enc3, body3), body3); !errors.Is(err, httpauth.ErrUnauthorized) || !strings.Contains(err.Error(), "already used") {
				t.Fatalf("a nonce reused for another, validly signed body: %v, %v; want it refused as a replay", b, err)
			}
			enc2, body2 := mode.seal(p.Push("next"))
			if _, err := Serve(mode.ch, p.Request(p.Cred.Token, "n-next", enc2, body2), body2); err != nil {
				t.Fatalf("the next push, with its own nonce: %v", err)
			}
		})
	}
}

func dropQuery(r *http.Request, key string) *http.Request {
	q := r.URL.Query()
	q.Del(key)
	r.URL.RawQuery = q.Encode()
	return r
}

func withQuery(r *http.Request, key, value string) *http.Request {
	q := r.URL.Query()
	q.Set(key, value)
	r.URL.RawQuery = q.Encode()
	return r
}

// DecryptedChecked checks that a safe-mode push goes through the same
// checks as a plain one once decrypted: plain, encrypted, is refused as
// bad input naming field.
func DecryptedChecked(t *testing.T, p Pusher, plain []byte, field string) {
	t.Helper()
	c, err := wxcrypt.New(TestKey, p.Cred.AppID)
	if err != nil {
		t.Fatal(err)
	}
	enc := c.Encrypt(plain)
	body := p.Envelope("gh_x", enc)
	_, err = Serve(p.keyed(TestKey), p.Request(p.Cred.Token, "n", enc, body), body)
	var invalid *normalize.ValidationError
	if !errors.As(err, &invalid) || invalid.Field != field {
		t.Fatalf("got %v, want a *normalize.ValidationError on %s", err, field)
	}
}
