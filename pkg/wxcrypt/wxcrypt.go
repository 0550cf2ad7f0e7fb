// Package wxcrypt is WeChat's message encryption (安全模式, "safe mode"),
// as the official account and the mini-program message pushes use it.
//
// The account's EncodingAESKey is 43 base64 characters; the AES key is
// their decoding with "=" appended, 32 bytes. A message is encrypted with
// AES-256-CBC, IV the key's first 16 bytes, over
//
//	16 random bytes | 4-byte big-endian length of msg | msg | app ID
//
// padded PKCS#7-style to a multiple of 32 bytes (WeChat's block size for
// the padding, not AES's), and sent base64-encoded as the Encrypt field.
// The push's msg_signature query parameter is MsgSignature(token,
// timestamp, nonce, Encrypt): it covers the ciphertext, so it must be
// checked before decrypting (CBC without it would be a padding oracle).
package wxcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// KeyLen is the length of an EncodingAESKey in characters.
const KeyLen = 43

// padBlock is the block size WeChat pads to; the cipher's own is 16.
const padBlock = 32

// Cipher encrypts and decrypts one account's messages. It is safe for
// concurrent use.
type Cipher struct {
	block cipher.Block
	iv    []byte
	appID string
}

// New returns the cipher of the account appID whose EncodingAESKey is
// encodingAESKey.
func New(encodingAESKey, appID string) (*Cipher, error) {
	key, err := ParseKey(encodingAESKey)
	if err != nil {
		return nil, err
	}
	if appID == "" {
		return nil, errors.New("no app ID to check the messages against")
	}
	block, err := aes.NewCipher(key) // 32 bytes: AES-256
	if err != nil {
		return nil, err
	}
	return &Cipher{block: block, iv: key[:aes.BlockSize], appID: appID}, nil
}

// ParseKey returns the AES key an EncodingAESKey stands for, or why it is
// not one.
func ParseKey(encodingAESKey string) ([]byte, error) {
	if len(encodingAESKey) != KeyLen {
		return nil, fmt.Errorf("EncodingAESKey has %d characters, want %d", len(encodingAESKey), KeyLen)
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil {
		return nil, fmt.Errorf("EncodingAESKey is not base64: %w", err)
	}
	return key, nil
}

// NewKey returns a random EncodingAESKey: 32 random bytes in base64
// without padding.
func NewKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails
	return base64.RawStdEncoding.EncodeToString(b)
}

// MsgSignature is the msg_signature of an encrypted push: the lower-case
// hex SHA-1 of token, timestamp, nonce and the Encrypt field, sorted
// byte-wise and concatenated.
func MsgSignature(token, timestamp, nonce, encrypt string) string {
	parts := []string{token, timestamp, nonce, encrypt}
	slices.Sort(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

// VerifyMsgSignature reports whether sig is MsgSignature(token, timestamp,
// nonce, encrypt), comparing in constant time and ignoring case.
func VerifyMsgSignature(sig, token, timestamp, nonce, encrypt string) bool {
	want := MsgSignature(token, timestamp, nonce, encrypt)
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) == 1
}

// Encrypt returns msg encrypted for the account, base64-encoded: the
// Encrypt field of a push.
func (c *Cipher) Encrypt(msg []byte) string {
	n := 16 + 4 + len(msg) + len(c.appID)
	pad := padBlock - n%padBlock
	plain := make([]byte, 16, n+pad)
	_, _ = rand.Read(plain) // never fails
	plain = binary.BigEndian.AppendUint32(plain, uint32(len(msg)))
	plain = append(plain, msg...)
	plain = append(plain, c.appID...)
	plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(plain, plain)
	return base64.StdEncoding.EncodeToString(plain)
}

// Decrypt returns the message encrypt (an Encrypt field) holds. It fails,
// never panics, on anything but a well-formed ciphertext for this
// account's app ID. Check the msg_signature first.
func (c *Cipher) Decrypt(encrypt string) ([]byte, error) {
	data, err := base64.StdEncoding.DecodeString(encrypt)
	if err != nil {
		return nil, fmt.Errorf("ciphertext is not base64: %w", err)
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("ciphertext of %d bytes is not whole AES blocks", len(data))
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(plain, data)
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > padBlock || pad > len(plain) || !allEqual(plain[len(plain)-pad:], byte(pad)) {
		return nil, errors.New("bad padding: wrong key, or not a WeChat ciphertext")
	}
	plain = plain[:len(plain)-pad]
	if len(plain) < 20 {
		return nil, errors.New("plaintext shorter than its 20-byte header")
	}
	size := binary.BigEndian.Uint32(plain[16:20])
	if uint64(size) > uint64(len(plain)-20) {
		return nil, fmt.Errorf("message length %d exceeds the %d bytes decrypted", size, len(plain)-20)
	}
	msg, appID := plain[20:20+size], plain[20+size:]
	if string(appID) != c.appID {
		return nil, fmt.Errorf("message is for app ID %q, not %q", truncate(appID), c.appID)
	}
	return msg, nil
}

func allEqual(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

// truncate quotes at most 64 bytes of an app ID in an error.
func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
