package ingest

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
	"time"

	"github.com/segmentio/ksuid"

	"github.com/omnisync/omnisync/pkg/events"
)

// EventID derives an event or message ID from the ID the source gave it, so
// a retried delivery produces the same event and is absorbed downstream:
// a ksuid whose time is occurredAt and whose payload is a hash of channel
// and source ID. Without a source ID it is a fresh random ksuid.
func EventID(ch events.Channel, sourceID string, occurredAt time.Time) string {
	if sourceID == "" {
		id, err := ksuid.NewRandomWithTime(occurredAt)
		if err != nil {
			return ksuid.New().String()
		}
		return id.String()
	}
	sum := sha256.Sum256([]byte(string(ch) + "\x00" + sourceID))
	id, err := ksuid.FromParts(ksuidTime(occurredAt), sum[:16])
	if err != nil {
		panic("ingest: ksuid payload must be 16 bytes") // programmer error
	}
	return id.String()
}

// ksuidTime clamps t into the range a ksuid can carry.
func ksuidTime(t time.Time) time.Time {
	lo := time.Unix(1400000000, 0) // ksuid epoch
	hi := lo.Add(time.Duration(1<<32-1) * time.Second)
	switch {
	case t.Before(lo):
		return lo
	case t.After(hi):
		return hi
	}
	return t
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// CustomerIDFor derives the customer ID of an identity seen for the first
// time, so two producer instances never mint different IDs for it.
func CustomerIDFor(id events.Identity) string {
	sum := sha256.Sum256([]byte(IdentityKey(id)))
	return "cus_" + idEncoding.EncodeToString(sum[:13])
}

// IdentityKey is an identity's key in the identity directory:
// kind:scope:value, e.g. wechat_openid:wx8f3a:o6_bm… or phone::+86138….
func IdentityKey(id events.Identity) string {
	return strings.Join([]string{id.Kind, id.Scope, id.Value}, ":")
}

// identityRank orders identity kinds by how surely they name one person:
// the customer ID comes from the first kind found in the directory, and a
// new ID is derived from the best identity seen.
var identityRank = map[string]int{
	"crm": 0, "app_user": 1, "wechat_unionid": 2, "phone": 3, "email": 4,
	"wechat_openid": 5, "miniprogram_openid": 6, "device": 7, "web_visitor": 8,
}

func rank(kind string) int {
	if r, ok := identityRank[kind]; ok {
		return r
	}
	return len(identityRank)
}
