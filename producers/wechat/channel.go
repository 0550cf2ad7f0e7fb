package wechat

import (
	"fmt"
	"net/http"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// Channel is the WeChat official-account message push, in plain-text or
// safe (encrypted) mode. It is safe for concurrent use; its only state is
// the replay check's memory of recent nonces.
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
// clock; default DefaultMaxClockSkew (5 minutes). Zero or less disables the
// check (the signature is still required).
func MaxClockSkew(d time.Duration) Option { return func(c *Channel) { c.maxSkew = d } }

// Clock sets the clock the timestamp window and the CreateTime bound are
// checked against; default time.Now.
func Clock(now func() time.Time) Option { return func(c *Channel) { c.now = now } }

// AccountID makes Parse refuse pushes whose ToUserName is not id, the
// account's original ID (gh_…). By default any non-empty ToUserName is
// accepted: the credential knows the app ID, not the original ID.
func AccountID(id string) Option { return func(c *Channel) { c.account = id } }

// New returns the channel of the official account cred names. cred.Token
// signs the pushes; cred.AppID scopes the openids. With either empty,
// Authenticate refuses every request. With cred.EncodingAESKey set, only
// encrypted pushes are taken (see the package doc).
func New(cred ingest.WeChatCredential, opts ...Option) *Channel {
	c := &Channel{cred: cred, maxSkew: DefaultMaxClockSkew, now: time.Now}
	for _, opt := range opts {
		opt(c)
	}
	c.recv = wxpush.NewReceiver(cred, ReplayWindow(c.maxSkew))
	return c
}

// ReplayWindow is how long a push's nonce is remembered for a timestamp
// window of maxSkew: maxSkew, or DefaultMaxClockSkew when the timestamp
// check is off.
func ReplayWindow(maxSkew time.Duration) time.Duration {
	if maxSkew <= 0 {
		return DefaultMaxClockSkew
	}
	return maxSkew
}

// Channel returns events.ChannelWeChat.
func (c *Channel) Channel() events.Channel { return events.ChannelWeChat }

// Authenticate checks the WeChat signature and the timestamp window (see
// VerifySignature). Errors wrap httpauth.ErrUnauthorized. The body is
// checked by Parse: msg_signature and the nonce.
func (c *Channel) Authenticate(r *http.Request) error {
	if c.cred.AppID == "" {
		return fmt.Errorf("%w: no WeChat app ID configured", httpauth.ErrUnauthorized)
	}
	if err := c.recv.KeyError(); err != nil {
		return err
	}
	return VerifySignature(r, c.cred.Token, c.now(), c.maxSkew)
}

// Handshake answers WeChat's server verification (a signed GET) with the
// echostr query parameter, verbatim, as text/plain; without one it answers
// 400.
func (c *Channel) Handshake(w http.ResponseWriter, r *http.Request) { Echo(w, r) }

// Respond answers the plain text "success", which tells WeChat the push
// was taken and not to re-send it.
func (c *Channel) Respond(w http.ResponseWriter, _ *http.Request, _ *ingest.Batch) { Success(w) }

// Echo writes the echostr query parameter of a verified GET verbatim as
// text/plain, or 400 when it is missing. Shared by the WeChat channels.
func Echo(w http.ResponseWriter, r *http.Request) {
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

// Success writes WeChat's acknowledgement of a push: 200 and the plain
// text "success". Shared by the WeChat channels.
func Success(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("success"))
}
