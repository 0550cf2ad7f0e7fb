package ingest

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/ksuid"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/identity"
)

// EventID derives an event or message ID from everything that identifies
// the input, so a retried delivery produces the same event and is absorbed
// downstream, while two different inputs never share an ID: a ksuid whose
// time is occurredAt and whose payload is a hash of the channel, the sender
// (see SenderKey) and the ID the source gave it. Without a source ID it is
// a fresh random ksuid.
func EventID(ch events.Channel, sender, sourceID string, occurredAt time.Time) string {
	if sourceID == "" {
		id, err := ksuid.NewRandomWithTime(occurredAt)
		if err != nil {
			return ksuid.New().String()
		}
		return id.String()
	}
	h := sha256.New()
	for _, part := range []string{string(ch), sender, sourceID} {
		// Length-prefixed, so no two different triples hash the same bytes.
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write([]byte(part))
	}
	id, err := ksuid.FromParts(ksuidTime(occurredAt), h.Sum(nil)[:16])
	if err != nil {
		panic("ingest: ksuid payload must be 16 bytes") // programmer error
	}
	return id.String()
}

// SenderKey names who sent an event, for EventID: the customer ID the
// payload names and every identity the event carries with its trust, as a
// set. A client's event ID is unique only for its sender (two web visitors
// may both send "m-1"), so the sender is part of the event ID. Each part is
// Go-quoted, so the key is unambiguous whatever bytes the values hold.
func SenderKey(customerID string, ids []events.Identity) string {
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		trust := "u"
		if id.Verified {
			trust = "v"
		}
		keys = append(keys, strconv.Quote(id.Kind)+strconv.Quote(id.Scope)+strconv.Quote(id.Value)+trust)
	}
	slices.Sort(keys)
	return strconv.Quote(customerID) + strings.Join(slices.Compact(keys), "")
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
func IdentityKey(id events.Identity) string { return identity.Key(id) }

// identityRank orders identity kinds by how surely they name one person:
// the customer ID comes from the first kind found in the directory, and a
// new ID is derived from the best identity seen.
var identityRank = map[string]int{
	"crm": 0, "app_user": 1, "wechat_unionid": 2, "phone": 3, "email": 4, "id_number": 5,
	"wechat_openid": 6, "miniprogram_openid": 7, "device": 8, "web_visitor": 9,
}

// sessionKinds are the anonymous identities of a public client's session,
// never verified: with no verified identity, an event belongs to the
// anonymous customer derived from its session identity.
var sessionKinds = map[string]bool{"device": true, "web_visitor": true}

func rank(kind string) int {
	if r, ok := identityRank[kind]; ok {
		return r
	}
	return len(identityRank)
}
