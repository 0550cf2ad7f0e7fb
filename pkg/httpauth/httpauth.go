// Package httpauth is what the API and the channel producers share to
// refuse a request's credentials: the ErrUnauthorized every refusal wraps
// (a bearer key, a WeChat signature, a replayed nonce; answered 401) and
// the check of a bearer key.
package httpauth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrUnauthorized is wrapped by every refusal of a request's credentials.
var ErrUnauthorized = errors.New("unauthorized")

// CheckBearer checks the request's "Authorization: Bearer <key>" header
// against key in constant time. An empty key refuses everything.
func CheckBearer(r *http.Request, key string) error {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return fmt.Errorf("%w: missing bearer key", ErrUnauthorized)
	}
	if key == "" || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
		return fmt.Errorf("%w: wrong bearer key", ErrUnauthorized)
	}
	return nil
}
