package ingest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/producers/ingest"
)

func TestLoadCredentialsEncodingAESKey(t *testing.T) {
	const key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	path := filepath.Join(t.TempDir(), "credentials.json")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A file without keys keeps working: plain-text mode.
	write(`{"channels": {"wechat": {"app_id": "wx1", "token": "t"}}}`)
	c, err := ingest.LoadCredentials(path)
	if err != nil || c.Channels.WeChat.EncodingAESKey != "" {
		t.Fatalf("%+v, %v", c.Channels.WeChat, err)
	}
	write(`{"channels": {"wechat": {"app_id": "wx1", "token": "t", "encoding_aes_key": "` + key + `"}}}`)
	if c, err = ingest.LoadCredentials(path); err != nil || c.Channels.WeChat.EncodingAESKey != key {
		t.Fatalf("%+v, %v", c.Channels.WeChat, err)
	}
	other := strings.Repeat("B", 43)
	t.Setenv("OMNISYNC_WECHAT_AES_KEY", other)
	t.Setenv("OMNISYNC_MINIPROGRAM_AES_KEY", key)
	if c, err = ingest.LoadCredentials(path); err != nil || c.Channels.WeChat.EncodingAESKey != other || c.Channels.MiniProgram.EncodingAESKey != key {
		t.Fatalf("environment overrides: %+v, %+v, %v", c.Channels.WeChat, c.Channels.MiniProgram, err)
	}
	t.Setenv("OMNISYNC_MINIPROGRAM_AES_KEY", "too-short")
	if _, err = ingest.LoadCredentials(path); err == nil || !strings.Contains(err.Error(), "miniprogram.encoding_aes_key") {
		t.Fatalf("a 9-character key: %v, want an error naming it", err)
	}
}
