package miniprogram

import (
	"fmt"
	"net/http"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
	"github.com/omnisync/omnisync/producers/wechat"
)

// Channel is the WeChat mini-program customer-service message push in the
// JSON data format, in plain-text or safe (encrypted) mode. It is safe for
// concurrent use; its only state is the replay check's memory of recent
// nonces.
type Channel struct {
	cred    ingest.WeChatCredential
	maxSkew time.Duration
	now     func() time.Time
	account string
	recv    *wxpush.Receiver
}

var (
	_ ingest.Channel    = (*Channel)(nil)
	_ ingest.Handshaker = (*Channel)(nil)
	_ ingest.Responder  = (*Channel)(nil)
)

// An Option configures a Channel.
type Option func(*Channel)

// MaxClockSkew sets how far the timestamp query parameter may be from the
// clock; default wechat.DefaultMaxClockSkew (5 minutes). Zero or less
// disables the check (the signature is still required).
func MaxClockSkew(d time.Duration) Option { return func(c *Channel) { c.maxSkew = d } }

// Clock sets the clock the timestamp window and the CreateTime bound are
// checked against; default time.Now.
func Clock(now func() time.Time) Option { return func(c *Channel) { c.now = now } }

// AccountID makes Parse refuse pushes whose ToUserName is not id, the
// mini-program's original ID (gh_…). By default any non-empty ToUserName
// is accepted.
func AccountID(id string) Option { return func(c *Channel) { c.account = id } }

// New returns the channel of the mini-program cred names. cred.Token signs
// the pushes; cred.AppID scopes the openids. With either empty,
// Authenticate refuses every request. With cred.EncodingAESKey set, only
// encrypted pushes are taken (see the package doc).
func New(cred ingest.WeChatCredential, opts ...Option) *Channel {
	c := &Channel{cred: cred, maxSkew: wechat.DefaultMaxClockSkew, now: time.Now}
	for _, opt := range opts {
		opt(c)
	}
	c.recv = wxpush.NewReceiver(cred, wechat.ReplayWindow(c.maxSkew))
	return c
}

// Sign returns the signature of a push, the same as the official
// account's: see wechat.Sign.
func Sign(token, timestamp, nonce string) string { return wechat.Sign(token, timestamp, nonce) }

// Channel returns events.ChannelMiniProgram.
func (c *Channel) Channel() events.Channel { return events.ChannelMiniProgram }

// Authenticate checks the WeChat signature and the timestamp window (see
// wechat.VerifySignature). Errors wrap httpauth.ErrUnauthorized. The body is
// checked by Parse: msg_signature and the nonce.
func (c *Channel) Authenticate(r *http.Request) error {
	if c.cred.AppID == "" {
		return fmt.Errorf("%w: no mini-program app ID configured", httpauth.ErrUnauthorized)
	}
	if err := c.recv.KeyError(); err != nil {
		return err
	}
	return wechat.VerifySignature(r, c.cred.Token, c.now(), c.maxSkew)
}

// Handshake answers the message-push server verification (a signed GET)
// with the echostr query parameter, verbatim, as text/plain; without one
// it answers 400.
func (c *Channel) Handshake(w http.ResponseWriter, r *http.Request) { wechat.Echo(w, r) }

// Respond answers the plain text "success", which tells WeChat the push
// was taken and not to re-send it.
func (c *Channel) Respond(w http.ResponseWriter, _ *http.Request, _ *ingest.Batch) { wechat.Success(w) }
