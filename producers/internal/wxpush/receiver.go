package wxpush

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/pkg/wxcrypt"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Receiver checks what a push's signature query parameter does not cover:
// it decrypts safe-mode pushes (checking msg_signature, which covers the
// ciphertext) and refuses replays (see Nonces). A channel calls Open from
// Parse, before reading the push. Safe for concurrent use.
type Receiver struct {
	token  string
	cipher *wxcrypt.Cipher // nil: plain-text mode
	keyErr error           // an unusable EncodingAESKey
	nonces *Nonces
}

// Envelope reads the Encrypt field of a safe-mode body (the XML element,
// the JSON key).
type Envelope func(body []byte) (encrypt string, err error)

// NewReceiver returns the receiver of the account cred names, with a
// replay window of window (the signature's timestamp window). With
// cred.EncodingAESKey set, only encrypted pushes are taken.
func NewReceiver(cred ingest.WeChatCredential, window time.Duration) *Receiver {
	rc := &Receiver{token: cred.Token, nonces: NewNonces(window, MaxNonces)}
	if cred.EncodingAESKey != "" {
		rc.cipher, rc.keyErr = wxcrypt.New(cred.EncodingAESKey, cred.AppID)
	}
	return rc
}

// KeyError says why every push is refused when the configured
// EncodingAESKey is unusable; nil otherwise. It wraps
// httpauth.ErrUnauthorized.
func (rc *Receiver) KeyError() error {
	if rc.keyErr != nil {
		return fmt.Errorf("%w: encoding_aes_key: %v", httpauth.ErrUnauthorized, rc.keyErr)
	}
	return nil
}

// Open returns the push to parse from a request whose signature was
// verified (Authenticate): the body itself in plain-text mode, the
// decrypted message in safe mode. Every error wraps
// httpauth.ErrUnauthorized.
//
// Without an EncodingAESKey, any push is read as plain text (compatible
// mode's plain copy; its Encrypt is ignored). With one, the request must
// carry encrypt_type=aes and msg_signature over the body's Encrypt field,
// which is decrypted; a plain-text push is refused, and so is compatible
// mode's plain copy (only the ciphertext is read).
func (rc *Receiver) Open(r *http.Request, body []byte, now time.Time, envelope Envelope) ([]byte, error) {
	var q url.Values
	if r != nil {
		q = r.URL.Query()
	}
	ts, nonce := q.Get("timestamp"), q.Get("nonce")
	if rc.cipher == nil && rc.keyErr == nil {
		if nonce == "" { // not through Authenticate, which requires one
			return body, nil
		}
		return body, rc.nonces.Check(now, ts, nonce, body)
	}
	if err := rc.KeyError(); err != nil {
		return nil, err
	}
	if !strings.EqualFold(q.Get("encrypt_type"), "aes") {
		return nil, fmt.Errorf("%w: plain-text push refused: an EncodingAESKey is configured, so pushes must be encrypted (encrypt_type=aes; safe or compatible mode)", httpauth.ErrUnauthorized)
	}
	sig := q.Get("msg_signature")
	if sig == "" {
		return nil, fmt.Errorf("%w: missing msg_signature query parameter", httpauth.ErrUnauthorized)
	}
	encrypt, err := envelope(body)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the encrypted push: %v", httpauth.ErrUnauthorized, err)
	}
	if encrypt == "" {
		return nil, fmt.Errorf("%w: the encrypted push has no Encrypt field", httpauth.ErrUnauthorized)
	}
	if !wxcrypt.VerifyMsgSignature(sig, rc.token, ts, nonce, encrypt) {
		return nil, fmt.Errorf("%w: msg_signature does not match", httpauth.ErrUnauthorized)
	}
	if err := rc.nonces.Check(now, ts, nonce, body); err != nil {
		return nil, err
	}
	msg, err := rc.cipher.Decrypt(encrypt)
	if err != nil {
		return nil, fmt.Errorf("%w: decrypting the push: %v", httpauth.ErrUnauthorized, err)
	}
	return msg, nil
}
