package wxpush

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/omnisync/omnisync/pkg/httpauth"
)

// DefaultMaxClockSkew is how far a request's timestamp query parameter may
// be from the receiver's clock unless an option says otherwise. WeChat
// re-sends an unanswered push up to three times within about 15 seconds, so
// retries are well inside it.
const DefaultMaxClockSkew = 5 * time.Minute

// Sign returns the signature WeChat puts in the signature query parameter
// of a message push (official account and mini-program alike): the
// lower-case hex SHA-1 of token, timestamp and nonce sorted byte-wise and
// concatenated. The shell equivalent is
//
//	printf '%s\n' "$token" "$timestamp" "$nonce" | LC_ALL=C sort | tr -d '\n' | sha1sum
func Sign(token, timestamp, nonce string) string {
	parts := []string{token, timestamp, nonce}
	sort.Strings(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

// VerifySignature checks r's signature, timestamp and nonce query parameters
// against token, comparing in constant time. When maxSkew is positive, a
// timestamp further than maxSkew from now is refused as well: in plain-text
// mode the signature covers only token, timestamp and nonce, not the body,
// so the window bounds how long a captured URL can be reused (a replay
// inside it carries the same source IDs and is absorbed downstream).
// Every error wraps httpauth.ErrUnauthorized; an empty token refuses
// everything.
func VerifySignature(r *http.Request, token string, now time.Time, maxSkew time.Duration) error {
	if token == "" {
		return fmt.Errorf("%w: no WeChat token configured", httpauth.ErrUnauthorized)
	}
	q := r.URL.Query()
	sig, ts, nonce := q.Get("signature"), q.Get("timestamp"), q.Get("nonce")
	switch {
	case sig == "":
		return fmt.Errorf("%w: missing signature query parameter", httpauth.ErrUnauthorized)
	case ts == "":
		return fmt.Errorf("%w: missing timestamp query parameter", httpauth.ErrUnauthorized)
	case nonce == "":
		return fmt.Errorf("%w: missing nonce query parameter", httpauth.ErrUnauthorized)
	}
	want := Sign(token, ts, nonce)
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
		return fmt.Errorf("%w: WeChat signature does not match", httpauth.ErrUnauthorized)
	}
	if maxSkew <= 0 {
		return nil
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", httpauth.ErrUnauthorized, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxSkew || d < -maxSkew {
		return fmt.Errorf("%w: timestamp %d is %s off the clock, at most %s allowed", httpauth.ErrUnauthorized, sec, d.Abs().Truncate(time.Second), maxSkew)
	}
	return nil
}
