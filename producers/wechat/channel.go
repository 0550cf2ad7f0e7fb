package wechat

import (
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// format is how the official account's pushes are read: XML, see the
// package doc.
var format = wxpush.Format{
	Mapping:  &mapping,
	Read:     wxpush.Reader(readPush),
	Envelope: encryptElement,
	App:      "WeChat",
}

// New returns the channel of the official account cred names, served at
// /ingest/wechat. cred.Token signs the pushes; cred.AppID scopes the
// openids. With either empty, Authenticate refuses every request. With
// cred.EncodingAESKey set, only encrypted pushes are taken (see the
// package doc). The options are wxpush's: MaxClockSkew, Clock, AccountID.
func New(cred ingest.WeChatCredential, opts ...wxpush.Option) *wxpush.Channel {
	return wxpush.NewChannel(format, cred, opts...)
}

// Sign returns the signature WeChat puts in the signature query parameter
// of a push, the official account's and the mini-program's alike (see
// wxpush.Sign), for those outside package producers that send pushes: the
// demo traffic, end-to-end tests.
func Sign(token, timestamp, nonce string) string { return wxpush.Sign(token, timestamp, nonce) }
