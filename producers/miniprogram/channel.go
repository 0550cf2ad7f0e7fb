package miniprogram

import (
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// format is how the mini-program's pushes are read: JSON, see the package
// doc.
var format = wxpush.Format{
	Mapping:  &mapping,
	Read:     wxpush.Reader(readPush),
	Envelope: encryptKey,
	App:      "mini-program",
}

// New returns the channel of the mini-program cred names, served at
// /ingest/miniprogram. cred.Token signs the pushes; cred.AppID scopes the
// openids. With either empty, Authenticate refuses every request. With
// cred.EncodingAESKey set, only encrypted pushes are taken (see the
// package doc). The options are wxpush's: MaxClockSkew, Clock, AccountID.
func New(cred ingest.WeChatCredential, opts ...wxpush.Option) *wxpush.Channel {
	return wxpush.NewChannel(format, cred, opts...)
}
