package chatjson

import (
	"net/http"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/producers/ingest"
)

// KeyChannel is a channel whose clients post a JSON body, a T, with the
// channel's bearer key: the web widget, the mobile app, the call centre's
// ASR system. It checks the key and decodes the body with Decode; the
// channel's Parser checks the T and builds the batch.
type KeyChannel[T any] struct {
	channel events.Channel
	cred    ingest.KeyCredential
	parse   Parser[T]
	now     func() time.Time
}

// Parser turns a decoded body into a batch. identitySecret verifies
// logins (Login.Verify); now is the clock timestamps are checked against.
type Parser[T any] func(req *T, identitySecret string, now time.Time) (*ingest.Batch, error)

// NewKeyChannel returns the channel ch, authenticating with cred's bearer
// key and parsing with parse.
func NewKeyChannel[T any](ch events.Channel, cred ingest.KeyCredential, parse Parser[T]) *KeyChannel[T] {
	return &KeyChannel[T]{channel: ch, cred: cred, parse: parse, now: time.Now}
}

// Channel names the channel.
func (c *KeyChannel[T]) Channel() events.Channel { return c.channel }

// Authenticate checks the bearer key.
func (c *KeyChannel[T]) Authenticate(r *http.Request) error {
	return httpauth.CheckBearer(r, c.cred.Key)
}

// Parse decodes the body into a T and parses it.
func (c *KeyChannel[T]) Parse(_ *http.Request, body []byte) (*ingest.Batch, error) {
	var req T
	if err := Decode(body, &req); err != nil {
		return nil, err
	}
	return c.parse(&req, c.cred.IdentitySecret, c.now())
}
