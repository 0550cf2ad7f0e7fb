package miniprogram_test

import (
	"testing"

	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
	"github.com/omnisync/omnisync/producers/internal/wxpush/wxpushtest"
	"github.com/omnisync/omnisync/producers/miniprogram"
)

// envelope is the body of a safe-mode push in the JSON data format.
func envelope(toUser, encrypt string) []byte {
	return []byte(`{"ToUserName":` + str(toUser) + `,"Encrypt":` + str(encrypt) + `}`)
}

var pusher = wxpushtest.Pusher{
	New: func(cred ingest.WeChatCredential) ingest.Channel {
		return miniprogram.New(cred, wxpush.Clock(clock))
	},
	Cred:     ingest.WeChatCredential{AppID: testAppID, Token: testToken},
	Path:     "/ingest/miniprogram",
	Now:      testNow,
	Push:     func(content string) []byte { return []byte(body("Content", str(content))) },
	Envelope: envelope,
}

func TestSafeMode(t *testing.T) { wxpushtest.SafeMode(t, pusher) }

func TestReplay(t *testing.T) { wxpushtest.Replay(t, pusher) }

// The decrypted push is read by the same reader as a plain one: its
// checks (duplicate keys here) name the key.
func TestSafeModeDecryptedChecked(t *testing.T) {
	wxpushtest.DecryptedChecked(t, pusher, []byte(`{"ToUserName":"gh_x","Content":"a","Content":"b"}`), "Content")
}
