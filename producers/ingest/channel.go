package ingest

import (
	"net/http"

	"github.com/omnisync/omnisync/pkg/events"
)

// Channel is one customer-service channel's native input.
type Channel interface {
	// Channel names the channel the events come from.
	Channel() events.Channel
	// Authenticate checks the request's credentials (a bearer key, a
	// WeChat signature); an error means 401.
	Authenticate(r *http.Request) error
	// Parse turns an authenticated request's body into events. A
	// *normalize.ValidationError means 400 and a dead letter; an error
	// wrapping httpauth.ErrUnauthorized means 401, for credentials in the
	// body (an encrypted push's signature, a replayed nonce). Parsers must
	// not panic on any input.
	Parse(r *http.Request, body []byte) (*Batch, error)
}

// Handshaker answers a channel's GET verification request after it was
// authenticated (WeChat echoes echostr).
type Handshaker interface {
	Handshake(w http.ResponseWriter, r *http.Request)
}

// Responder writes the channel's answer once every event is in Kafka
// (WeChat wants the plain text "success"). Without one, the pipeline
// answers JSON with the accepted event IDs.
type Responder interface {
	Respond(w http.ResponseWriter, r *http.Request, accepted *Batch)
}

// Batch is what one request carries. Parsers fill in what the payload says:
// CustomerID when the payload names the customer, Identities, the source's
// own IDs (SourceEventID, SourceMessageID), OccurredAt and the content. The
// pipeline fills in the rest: Channel, Source, IngestedAt, the event and
// message IDs, and the customer ID when the payload has none.
type Batch struct {
	Customers []*events.CustomerEvent
	Messages  []*events.MessageEvent
}

// Len is the number of events in the batch.
func (b *Batch) Len() int { return len(b.Customers) + len(b.Messages) }
