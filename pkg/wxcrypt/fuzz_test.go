package wxcrypt

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// FuzzDecrypt: Decrypt never panics, on any Encrypt text and on any
// plaintext encrypted with the right key (so the padding, length and app
// ID checks see every shape, not only random noise), and what it returns
// is the framed message.
func FuzzDecrypt(f *testing.F) {
	c := newCipher(f)
	f.Add([]byte(c.Encrypt([]byte("<xml/>"))), false)
	f.Add(framed("hi", testAppID, 32-(20+2+len(testAppID))%32, byte(32-(20+2+len(testAppID))%32)), true)
	f.Add(framedBadPad(), true)
	f.Add([]byte("not base64"), false)
	f.Fuzz(func(t *testing.T, data []byte, asPlaintext bool) {
		enc := string(data)
		if asPlaintext {
			if len(data)%16 != 0 {
				data = append(data, bytes.Repeat([]byte{byte(16 - len(data)%16)}, 16-len(data)%16)...)
			}
			if len(data) == 0 {
				return
			}
			enc = rawEncrypt(t, data)
		}
		msg, err := c.Decrypt(enc)
		if err != nil {
			return
		}
		again := c.Encrypt(msg)
		if back, err := c.Decrypt(again); err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("re-encrypting %q: %q, %v", msg, back, err)
		}
		if asPlaintext && !bytes.Contains(data, append(msg, testAppID...)) {
			t.Fatalf("message %q and app ID are not in the plaintext %q", msg, data)
		}
		if !asPlaintext {
			if _, err := base64.StdEncoding.DecodeString(enc); err != nil {
				t.Fatalf("decrypted text that is not base64: %q", enc)
			}
		}
	})
}
