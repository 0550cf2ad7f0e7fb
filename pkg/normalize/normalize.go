// Package normalize checks and normalises the input fields the channel
// producers and the API take: phone numbers to E.164, e-mail addresses to
// lower case, free text and identifiers, and JSON text that encoding/json
// would alter without a word. Bad input is a *ValidationError naming the
// field and the reason.
package normalize

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// ValidationError is bad input: what field and why.
type ValidationError struct {
	Field  string // e.g. events[2].profile.phone; empty for the body as a whole
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Invalid returns a *ValidationError.
func Invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DefaultRegion is the region phone numbers without a country code are
// read in: mainland China.
const DefaultRegion = "CN"

// Phone normalises a phone number to E.164 (+8613800138000).
func Phone(field, raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", Invalid(field, "phone number is empty")
	}
	num, err := phonenumbers.Parse(s, DefaultRegion)
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", Invalid(field, "%q is not a valid phone number", raw)
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}

// Email normalises an e-mail address to lower case.
func Email(field, raw string) (string, error) {
	s := strings.TrimSpace(raw)
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || !strings.Contains(s, "@") {
		return "", Invalid(field, "%q is not a valid e-mail address", raw)
	}
	return strings.ToLower(s), nil
}

// Text checks a free-text field: valid UTF-8, no NUL, at most max runes.
// Surrounding white space is trimmed.
func Text(field, raw string, max int) (string, error) {
	if !utf8.ValidString(raw) {
		return "", Invalid(field, "not valid UTF-8")
	}
	if strings.ContainsRune(raw, 0) {
		return "", Invalid(field, "contains a NUL character")
	}
	s := strings.TrimSpace(raw)
	if n := utf8.RuneCountInString(s); n > max {
		return "", Invalid(field, "%d characters, at most %d allowed", n, max)
	}
	return s, nil
}

// ID checks an identifier: non-empty text of at most 128 characters.
func ID(field, raw string) (string, error) {
	s, err := Text(field, raw, 128)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", Invalid(field, "is required")
	}
	return s, nil
}
