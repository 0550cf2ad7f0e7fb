package wechat_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/pkg/wxcrypt"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
	"github.com/omnisync/omnisync/producers/internal/wxpush/wxpushtest"
	"github.com/omnisync/omnisync/producers/wechat"
)

// envelope is the body of a safe-mode push; extra elements (compatible
// mode's plain copy) go before Encrypt.
func envelope(toUser, encrypt string, extra ...string) []byte {
	return []byte(push(append(append([]string{"ToUserName", toUser}, extra...), "Encrypt", encrypt)...))
}

var pusher = wxpushtest.Pusher{
	New: func(cred ingest.WeChatCredential) ingest.Channel {
		return wechat.New(cred, wxpush.Clock(clock))
	},
	Cred:     ingest.WeChatCredential{AppID: testAppID, Token: testToken},
	Path:     "/ingest/wechat",
	Now:      testNow,
	Push:     func(content string) []byte { return []byte(push(base("Content", content)...)) },
	Envelope: func(toUser, encrypt string) []byte { return envelope(toUser, encrypt) },
}

func TestSafeMode(t *testing.T) { wxpushtest.SafeMode(t, pusher) }

func TestReplay(t *testing.T) { wxpushtest.Replay(t, pusher) }

// Compatible mode sends the plain push and its ciphertext in one body,
// with encrypt_type=aes: with a key only the ciphertext is read, without
// one only the plain copy.
func TestCompatibleMode(t *testing.T) {
	c, err := wxcrypt.New(wxpushtest.TestKey, testAppID)
	if err != nil {
		t.Fatal(err)
	}
	enc := c.Encrypt(pusher.Push("from the ciphertext"))
	body := envelope(testAccount, enc, without("ToUserName", base("Content", "from the plain copy"))...)
	cred := pusher.Cred
	cred.EncodingAESKey = wxpushtest.TestKey
	for _, tc := range []struct {
		name string
		ch   ingest.Channel
		want string
	}{
		{"with a key", pusher.New(cred), "from the ciphertext"},
		{"without a key", pusher.New(pusher.Cred), "from the plain copy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := wxpushtest.Serve(tc.ch, pusher.Request(testToken, "n-compat", enc, body), body)
			if err != nil {
				t.Fatal(err)
			}
			if m := b.Messages[0]; *m.Text != tc.want || m.Metadata["encrypt"] != "" {
				t.Errorf("text %q, metadata %v; want %q and no ciphertext kept", *m.Text, m.Metadata, tc.want)
			}
		})
	}
}

// A safe-mode push to a channel without a key is bad input, kept in the
// dead-letter topic: configuring the key lets it be replayed.
func TestSafeModeWithoutKey(t *testing.T) {
	c, err := wxcrypt.New(wxpushtest.TestKey, testAppID)
	if err != nil {
		t.Fatal(err)
	}
	enc := c.Encrypt(pusher.Push("x"))
	body := envelope(testAccount, enc)
	_, err = wxpushtest.Serve(pusher.New(pusher.Cred), pusher.Request(testToken, "n", enc, body), body)
	var invalid *normalize.ValidationError
	if !errors.As(err, &invalid) || invalid.Field != "Encrypt" || !strings.Contains(invalid.Reason, "encoding_aes_key") {
		t.Fatalf("got %v, want a *normalize.ValidationError on Encrypt telling to configure encoding_aes_key", err)
	}
}

// The decrypted push goes through the same checks as a plain one: a
// surrogate character reference is refused naming the element.
func TestSafeModeDecryptedChecked(t *testing.T) {
	wxpushtest.DecryptedChecked(t, pusher, []byte(push(base("<Content>", "a&#xD800;b</Content>")...)), "Content")
}
