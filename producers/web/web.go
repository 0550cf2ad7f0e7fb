// Package web is the producer of the web chat widget: POST /ingest/web with
// a JSON batch of profile updates and chat messages, authenticated with the
// channel's bearer key.
package web

import (
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/chatjson"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Path is the channel's endpoint.
const Path = "/ingest/web"

// Request is the body the widget posts. The visitor cookie is an
// unverified session identity; a login counts only when the business's
// backend signed it (user_hash, customer_hash: see ingest.SignClaim).
type Request struct {
	VisitorID    string           `json:"visitor_id"`              // the widget's visitor cookie
	UserID       string           `json:"user_id,omitempty"`       // the business's account ID, when logged in
	UserHash     string           `json:"user_hash,omitempty"`     // the backend's MAC of user_id
	CustomerID   string           `json:"customer_id,omitempty"`   // an omnisync customer ID, when logged in
	CustomerHash string           `json:"customer_hash,omitempty"` // the backend's MAC of customer_id
	Events       []chatjson.Event `json:"events"`
}

// New returns the channel, authenticating with cred's bearer key.
func New(cred ingest.KeyCredential) *chatjson.KeyChannel[Request] {
	return chatjson.NewKeyChannel(events.ChannelWeb, cred, parse)
}

// parse checks a batch: the visitor is an unverified session identity,
// the logged-in user (verified when the backend signed it) another.
func parse(req *Request, identitySecret string, now time.Time) (*ingest.Batch, error) {
	visitor, err := normalize.ID("visitor_id", req.VisitorID)
	if err != nil {
		return nil, err
	}
	ctx := chatjson.Context{Identities: []events.Identity{{Kind: "web_visitor", Value: visitor}}, SenderID: visitor, Now: now}
	login := chatjson.Login{UserID: req.UserID, UserHash: req.UserHash, CustomerID: req.CustomerID, CustomerHash: req.CustomerHash}
	if err := login.Verify(identitySecret, &ctx); err != nil {
		return nil, err
	}
	return chatjson.Build(req.Events, ctx)
}
