package verify

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// CustomerHash is the canonical hash of one customer: the SHA-256 (hex) of
// its record's canonical encoding (merge.Record.MarshalJSON: fields with
// provenance, conflicts, identities, version, tombstone, last contact)
// followed by the canonical encoding of each of its messages, sorted by
// message ID. Two stores, or a store and a fold of the log, hold the same
// customer exactly when the hashes are equal.
func CustomerHash(r merge.Record, messages []events.MessageEvent) string {
	h := sha256.New()
	b, _ := r.MarshalJSON() // cannot fail
	h.Write(b)
	for _, m := range sortedByID(messages) {
		h.Write([]byte{'\n'})
		h.Write(canonicalMessage(m))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedByID(ms []events.MessageEvent) []events.MessageEvent {
	if slices.IsSortedFunc(ms, byID) {
		return ms
	}
	return slices.SortedFunc(slices.Values(ms), byID)
}

func byID(a, b events.MessageEvent) int { return cmp.Compare(a.MessageID, b.MessageID) }

// canonicalMessage is a message's canonical encoding: its JSON with times
// as UTC milliseconds (the precision of Avro and of the stores) and empty
// lists and maps as absent, so that a message read back from either store
// or decoded from Kafka encodes the same.
func canonicalMessage(m events.MessageEvent) []byte {
	m.OccurredAt, m.IngestedAt = utcMillis(m.OccurredAt), utcMillis(m.IngestedAt)
	if len(m.Attachments) == 0 {
		m.Attachments = nil
	}
	if len(m.Identities) == 0 {
		m.Identities = nil
	}
	if len(m.Tags) == 0 {
		m.Tags = nil
	}
	if len(m.Metadata) == 0 {
		m.Metadata = nil
	}
	b, _ := json.Marshal(m) // plain data: cannot fail (the stores refuse non-finite numbers)
	return b
}

func utcMillis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }
