// Package app is the producer of the mobile SDK: POST /ingest/app with a
// JSON batch of profile updates and chat messages plus the device and app
// context, authenticated with the channel's bearer key.
package app

import (
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/chatjson"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Path is the channel's endpoint.
const Path = "/ingest/app"

// Request is the body the SDK posts.
type Request struct {
	DeviceID     string `json:"device_id"`               // an unverified session identity
	UserID       string `json:"user_id,omitempty"`       // the app account, when logged in
	UserHash     string `json:"user_hash,omitempty"`     // the backend's MAC of user_id (ingest.SignClaim)
	CustomerID   string `json:"customer_id,omitempty"`   // an omnisync customer ID, when logged in
	CustomerHash string `json:"customer_hash,omitempty"` // the backend's MAC of customer_id
	// Phone is the number the backend verified at login (an SMS code);
	// taken only with PhoneHash, the backend's MAC of it in E.164.
	Phone     string `json:"phone,omitempty"`
	PhoneHash string `json:"phone_hash,omitempty"`
	// UnionID is the WeChat unionid of a WeChat login; taken only with
	// UnionIDHash, the backend's MAC of it.
	UnionID     string           `json:"wechat_unionid,omitempty"`
	UnionIDHash string           `json:"wechat_unionid_hash,omitempty"`
	AppVersion  string           `json:"app_version"`
	Platform    string           `json:"platform"` // ios, android or harmony
	Events      []chatjson.Event `json:"events"`
}

// New returns the channel, authenticating with cred's bearer key.
func New(cred ingest.KeyCredential) *chatjson.KeyChannel[Request] {
	return chatjson.NewKeyChannel(events.ChannelApp, cred, parse)
}

// parse checks a batch. The device (unverified) and the logged-in user
// (verified when the backend signed it) are identities; the app version
// and platform go into every message's metadata and, as last_app_version
// and last_platform, every profile update's attributes.
func parse(req *Request, identitySecret string, now time.Time) (*ingest.Batch, error) {
	device, err := normalize.ID("device_id", req.DeviceID)
	if err != nil {
		return nil, err
	}
	version, err := normalize.ID("app_version", req.AppVersion)
	if err != nil {
		return nil, err
	}
	switch req.Platform {
	case "ios", "android", "harmony":
	default:
		return nil, normalize.Invalid("platform", "%q: want ios, android or harmony", req.Platform)
	}
	ctx := chatjson.Context{
		Identities: []events.Identity{{Kind: "device", Value: device}},
		SenderID:   device,
		Metadata:   map[string]string{"app_version": version, "platform": req.Platform},
		Attributes: map[string]string{"last_app_version": version, "last_platform": req.Platform},
		Now:        now,
	}
	login := chatjson.Login{UserID: req.UserID, UserHash: req.UserHash, CustomerID: req.CustomerID, CustomerHash: req.CustomerHash,
		Phone: req.Phone, PhoneHash: req.PhoneHash, UnionID: req.UnionID, UnionIDHash: req.UnionIDHash}
	if err := login.Verify(identitySecret, &ctx); err != nil {
		return nil, err
	}
	return chatjson.Build(req.Events, ctx)
}
