package wxpush

import (
	"fmt"
	"net/http"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Format is what a push channel does its own way: how it reads its body
// and maps its message types.
type Format struct {
	Mapping *Mapping
	// Read decodes a push: the body in plain-text mode, the decrypted
	// message in safe mode. Errors are *normalize.ValidationError.
	Read func(body []byte) (Push, error)
	// Envelope reads a safe-mode body's Encrypt field.
	Envelope Envelope
	// App names the app in "no <App> app ID configured": "WeChat".
	App string
}

// Reader adapts a format's reader that returns its own push type to
// Format.Read.
func Reader[P Push](read func(body []byte) (P, error)) func(body []byte) (Push, error) {
	return func(body []byte) (Push, error) {
		p, err := read(body)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// Channel is a WeChat message push channel, in plain-text or safe
// (encrypted) mode: the official account's (package wechat) and the
// mini-program's (package miniprogram), which differ only in their Format.
// It is safe for concurrent use; its only state is the replay check's
// memory of recent nonces.
type Channel struct {
	format  Format
	cred    ingest.WeChatCredential
	maxSkew time.Duration
	now     func() time.Time
	account string
	recv    *Receiver
}

var (
	_ ingest.Channel    = (*Channel)(nil)
	_ ingest.Handshaker = (*Channel)(nil)
	_ ingest.Responder  = (*Channel)(nil)
)

// An Option configures a Channel.
type Option func(*Channel)

// MaxClockSkew sets how far the timestamp query parameter may be from the
// clock; default DefaultMaxClockSkew (5 minutes). Zero or less disables the
// check (the signature is still required).
func MaxClockSkew(d time.Duration) Option { return func(c *Channel) { c.maxSkew = d } }

// Clock sets the clock the timestamp window and the CreateTime bound are
// checked against; default time.Now.
func Clock(now func() time.Time) Option { return func(c *Channel) { c.now = now } }

// AccountID makes Parse refuse pushes whose ToUserName is not id, the
// account's or mini-program's original ID (gh_…). By default any
// non-empty ToUserName is accepted: the credential knows the app ID, not
// the original ID.
func AccountID(id string) Option { return func(c *Channel) { c.account = id } }

// NewChannel returns the channel of the account cred names, reading its
// pushes with f. cred.Token signs the pushes; cred.AppID scopes the
// openids. With either empty, Authenticate refuses every request. With
// cred.EncodingAESKey set, only encrypted pushes are taken.
func NewChannel(f Format, cred ingest.WeChatCredential, opts ...Option) *Channel {
	c := &Channel{format: f, cred: cred, maxSkew: DefaultMaxClockSkew, now: time.Now}
	for _, opt := range opts {
		opt(c)
	}
	c.recv = NewReceiver(cred, replayWindow(c.maxSkew))
	return c
}

// replayWindow is how long a push's nonce is remembered for a timestamp
// window of maxSkew: maxSkew, or DefaultMaxClockSkew when the timestamp
// check is off.
func replayWindow(maxSkew time.Duration) time.Duration {
	if maxSkew <= 0 {
		return DefaultMaxClockSkew
	}
	return maxSkew
}

// Channel returns the channel the Format's Mapping names.
func (c *Channel) Channel() events.Channel { return c.format.Mapping.Channel }

// Authenticate checks the WeChat signature and the timestamp window (see
// VerifySignature). Errors wrap httpauth.ErrUnauthorized. The body is
// checked by Parse: msg_signature and the nonce.
func (c *Channel) Authenticate(r *http.Request) error {
	if c.cred.AppID == "" {
		return fmt.Errorf("%w: no %s app ID configured", httpauth.ErrUnauthorized, c.format.App)
	}
	if err := c.recv.KeyError(); err != nil {
		return err
	}
	return VerifySignature(r, c.cred.Token, c.now(), c.maxSkew)
}

// Parse turns one push into one inbound message from the customer: the
// body in plain-text mode, the decrypted Encrypt field in safe mode, both
// read by the Format. A replayed nonce or an encrypted push that does not
// verify or decrypt is an error wrapping httpauth.ErrUnauthorized; any bad
// input is a *normalize.ValidationError whose Field names the push's field
// (empty for the body as a whole).
func (c *Channel) Parse(r *http.Request, body []byte) (*ingest.Batch, error) {
	msg, err := c.recv.Open(r, body, c.now(), c.format.Envelope)
	if err != nil {
		return nil, err
	}
	p, err := c.format.Read(msg)
	if err != nil {
		return nil, err
	}
	return c.format.Mapping.Parse(p, Recipient{AppID: c.cred.AppID, ID: c.account}, c.now())
}

// Handshake answers the server verification (a signed GET) with the
// echostr query parameter, verbatim, as text/plain; without one it answers
// 400.
func (c *Channel) Handshake(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	echo := r.URL.Query().Get("echostr")
	if echo == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("missing echostr query parameter\n"))
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(echo))
}

// Respond answers the plain text "success", which tells WeChat the push
// was taken and not to re-send it.
func (c *Channel) Respond(w http.ResponseWriter, _ *http.Request, _ *ingest.Batch) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("success"))
}
