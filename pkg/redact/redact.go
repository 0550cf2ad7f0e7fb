// Package redact masks personal data before it reaches a log line.
package redact

import "strings"

// Phone keeps the country code area and the last two digits:
// +8613800138000 → +86*********00.
func Phone(p string) string {
	if len(p) <= 5 {
		return strings.Repeat("*", len(p))
	}
	return p[:3] + strings.Repeat("*", len(p)-5) + p[len(p)-2:]
}

// Email keeps the first letter of the local part and the domain:
// li.na@example.com → l****@example.com.
func Email(e string) string {
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" {
		return strings.Repeat("*", len(e))
	}
	return local[:1] + "****@" + domain
}

// Identity masks an identity value of the given kind; phone numbers and
// e-mail addresses are personal data, opaque IDs are shown shortened.
func Identity(kind, value string) string {
	switch kind {
	case "phone":
		return Phone(value)
	case "email":
		return Email(value)
	}
	if len(value) > 8 {
		return value[:4] + "…" + value[len(value)-2:]
	}
	return value
}
