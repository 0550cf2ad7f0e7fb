package wxcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testKey   = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" // 43 characters, as WeChat's console makes them
	testAppID = "wx8f3a2b1c4d5e6f70"
)

func newCipher(t testing.TB) *Cipher {
	t.Helper()
	c, err := New(testKey, testAppID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawEncrypt encrypts plain as it is (a multiple of 16 bytes), for
// ciphertexts Encrypt would never make.
func rawEncrypt(t testing.TB, plain []byte) string {
	t.Helper()
	key, err := ParseKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out)
}

// framed is WeChat's plaintext for msg and appID, padded with pad bytes
// of value padValue.
func framed(msg, appID string, pad int, padValue byte) []byte {
	b := bytes.Repeat([]byte{'r'}, 16)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, msg...)
	b = append(b, appID...)
	return append(b, bytes.Repeat([]byte{padValue}, pad)...)
}

// framedBadPad is "hi" framed with a last byte naming the padding length
// but other bytes before it.
func framedBadPad() []byte {
	b := framed("hi", testAppID, 0, 0)
	pad := 32 - len(b)%32
	b = append(b, bytes.Repeat([]byte{5}, pad-1)...)
	return append(b, byte(pad))
}

func TestRoundTrip(t *testing.T) {
	c := newCipher(t)
	for _, msg := range []string{"", "a", "<xml><Content><![CDATA[你好]]></Content></xml>", strings.Repeat("x", 4096),
		strings.Repeat("y", 64-20-len(testAppID))} { // the last fills two blocks exactly: a whole block of padding
		enc := c.Encrypt([]byte(msg))
		raw, _ := base64.StdEncoding.DecodeString(enc)
		if len(raw)%32 != 0 {
			t.Errorf("ciphertext of %d bytes is not padded to 32", len(raw))
		}
		got, err := c.Decrypt(enc)
		if err != nil || string(got) != msg {
			t.Errorf("Decrypt(Encrypt(%.20q)) = %.20q, %v", msg, got, err)
		}
		if enc == c.Encrypt([]byte(msg)) {
			t.Error("two encryptions of one message are equal: the random prefix is missing")
		}
	}
}

func TestNewKey(t *testing.T) {
	k := NewKey()
	if len(k) != KeyLen || k == NewKey() {
		t.Fatalf("NewKey() = %q", k)
	}
	if _, err := New(k, testAppID); err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	for _, k := range []string{"", "short", testKey + "H", testKey[:42] + "!", strings.Repeat("=", 43)} {
		if _, err := New(k, testAppID); err == nil {
			t.Errorf("New(%q) accepted", k)
		}
	}
	if _, err := New(testKey, ""); err == nil {
		t.Error("New without an app ID accepted")
	}
}

func TestDecryptRefuses(t *testing.T) {
	c := newCipher(t)
	good := c.Encrypt([]byte("hello"))
	raw, _ := base64.StdEncoding.DecodeString(good)
	flipped := bytes.Clone(raw)
	flipped[len(flipped)-1] ^= 1 // the last block: garbles the padding
	other, err := New(testKey, "wx-someone-else")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := New(strings.Repeat("A", 43), testAppID)
	tests := []struct{ name, enc, wantIn string }{
		{"not base64", "***", "base64"},
		{"empty", "", "whole AES blocks"},
		{"not whole blocks", base64.StdEncoding.EncodeToString(raw[:len(raw)-1]), "whole AES blocks"},
		{"tampered last block", base64.StdEncoding.EncodeToString(flipped), "padding"},
		{"another key", otherKey.Encrypt([]byte("hello")), "padding"},
		{"another app ID", other.Encrypt([]byte("hello")), `app ID "wx-someone-else"`},
		{"padding value 0", rawEncrypt(t, framed("hi", testAppID, 32-(20+2+len(testAppID))%32, 0)), "padding"},
		{"padding value 33", rawEncrypt(t, append(framed("hi", testAppID, 32-(20+2+len(testAppID))%32, 30), bytes.Repeat([]byte{33}, 32)...)), "padding"},
		{"padding bytes differ", rawEncrypt(t, framedBadPad()), "padding"},
		{"shorter than the header", rawEncrypt(t, bytes.Repeat([]byte{16}, 16)), "header"},
		{"length beyond the data", rawEncrypt(t, append(append(bytes.Repeat([]byte{'r'}, 16), 0xff, 0xff, 0xff, 0xff), bytes.Repeat([]byte{12}, 12)...)), "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := c.Decrypt(tc.enc)
			if err == nil {
				t.Fatalf("decrypted to %q", msg)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not contain %q", err, tc.wantIn)
			}
		})
	}
}

func TestMsgSignature(t *testing.T) {
	// Computed independently:
	//   printf '%s\n' token 1409304348 xxxxxx ENCRYPTED | LC_ALL=C sort | tr -d '\n' | sha1sum
	// sorted: "1409304348", "ENCRYPTED", "token", "xxxxxx".
	if got, want := MsgSignature("token", "1409304348", "xxxxxx", "ENCRYPTED"), "66f5d9c40b307ac7477ba2d28805152ea7435d88"; got != want {
		t.Fatalf("MsgSignature = %s, want %s", got, want)
	}
	sig := MsgSignature("token", "1409304348", "xxxxxx", "ENCRYPTED")
	if !VerifyMsgSignature(strings.ToUpper(sig), "token", "1409304348", "xxxxxx", "ENCRYPTED") {
		t.Error("an upper-case signature is refused")
	}
	if VerifyMsgSignature(sig, "token", "1409304348", "xxxxxx", "ENCRYPTEd") {
		t.Error("a signature of another ciphertext is accepted")
	}
}

// pyWeChat is WeChat's message encryption written independently with
// Python's cryptography package: encrypt MSG or decrypt CIPHERTEXT for
// KEY and APPID, and the msg_signature of four strings.
const pyWeChat = `
import base64, hashlib, os, struct, sys
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

op = sys.argv[1]
if op == "sign":
    sys.stdout.write(hashlib.sha1("".join(sorted(sys.argv[2:6])).encode()).hexdigest())
    sys.exit()
key, appid, data = sys.argv[2], sys.argv[3], sys.stdin.buffer.read()
k = base64.b64decode(key + "=")
aes = Cipher(algorithms.AES(k), modes.CBC(k[:16]))
if op == "encrypt":
    plain = os.urandom(16) + struct.pack(">I", len(data)) + data + appid.encode()
    p = padding.PKCS7(256).padder()
    e = aes.encryptor()
    sys.stdout.write(base64.b64encode(e.update(p.update(plain) + p.finalize()) + e.finalize()).decode())
else:
    d = aes.decryptor()
    u = padding.PKCS7(256).unpadder()
    plain = u.update(d.update(base64.b64decode(data)) + d.finalize()) + u.finalize()
    n = struct.unpack(">I", plain[16:20])[0]
    if plain[20 + n:].decode() != appid:
        sys.exit("wrong app ID")
    sys.stdout.buffer.write(plain[20:20 + n])
`

func python(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("SKIPPED — NOT TESTED: python3 is not installed; the cross-check against Python's cryptography did not run")
	}
	if err := exec.Command(py, "-c", "import cryptography.hazmat.primitives.ciphers").Run(); err != nil {
		t.Skip("SKIPPED — NOT TESTED: Python's cryptography package is missing (pip install cryptography, or apt-get install python3-cryptography); the cross-check did not run")
	}
	script := filepath.Join(t.TempDir(), "wechat_crypt.py")
	if err := os.WriteFile(script, []byte(pyWeChat), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{script}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// TestAgainstPython checks the Go side against an independent
// implementation both ways, with a key from NewKey (it may hold + and /)
// and one as WeChat's console makes them.
func TestAgainstPython(t *testing.T) {
	msg := []byte(`<xml><ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName><Content><![CDATA[你好，我的订单还没发货 😀]]></Content></xml>`)
	for _, key := range []string{testKey, NewKey()} {
		c, err := New(key, testAppID)
		if err != nil {
			t.Fatal(err)
		}
		enc := python(t, msg, "encrypt", key, testAppID)
		got, err := c.Decrypt(string(enc))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("key %s: Go decrypting Python's ciphertext: %q, %v", key, got, err)
		}
		back := python(t, []byte(c.Encrypt(msg)), "decrypt", key, testAppID)
		if !bytes.Equal(back, msg) {
			t.Fatalf("key %s: Python decrypting Go's ciphertext: %q", key, back)
		}
	}
	encrypt := newCipher(t).Encrypt(msg)
	sig := python(t, nil, "sign", "token", "1409304348", "xxxxxx", encrypt)
	if got := MsgSignature("token", "1409304348", "xxxxxx", encrypt); got != string(sig) {
		t.Errorf("MsgSignature = %s, Python says %s", got, sig)
	}
}
