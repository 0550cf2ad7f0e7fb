package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// SignClaim returns the MAC with which a business's own backend vouches
// for what a public client says about its login: the lower-case hex
// HMAC-SHA256, keyed with the channel's identity secret, of name + ":" +
// value, where name is "user_id" or "customer_id". The shell equivalent is
//
//	printf 'user_id:%s' "$user" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1
//
// The client sends it beside the claim (user_hash, customer_hash); the
// name is part of the MAC so one claim's MAC never vouches for another.
func SignClaim(secret, name, value string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(name + ":" + value))
	return hex.EncodeToString(mac.Sum(nil))
}

// VerifyClaim reports whether mac is SignClaim(secret, name, value),
// comparing in constant time. An empty secret verifies nothing.
func VerifyClaim(secret, name, value, mac string) bool {
	if secret == "" || mac == "" {
		return false
	}
	want := SignClaim(secret, name, value)
	return hmac.Equal([]byte(want), []byte(mac))
}
