package ingest_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
)

// input is what identifies an event for EventID: channel, named customer,
// the set of identities with their trust, the source's own ID.
type input struct {
	channel    events.Channel
	customerID string
	identities []events.Identity
	sourceID   string
}

// canonical is the input as a comparable value: identities as a sorted set.
func (in input) canonical() string {
	ids := make([]string, 0, len(in.identities))
	for _, id := range in.identities {
		ids = append(ids, fmt.Sprintf("%q %q %q %t", id.Kind, id.Scope, id.Value, id.Verified))
	}
	slices.Sort(ids)
	return fmt.Sprintf("%q %q %q %q", in.channel, in.customerID, slices.Compact(ids), in.sourceID)
}

// Strings from a tiny alphabet holding the separators a naive key would
// use, so that different inputs often concatenate to the same bytes.
func randomString(r *rand.Rand) string {
	const alphabet = "ab:\n\"\\ "
	var b strings.Builder
	for range r.IntN(4) {
		b.WriteByte(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

func randomInput(r *rand.Rand) input {
	in := input{
		channel:    []events.Channel{events.ChannelWeb, events.ChannelApp, events.ChannelPhone}[r.IntN(3)],
		customerID: randomString(r),
		sourceID:   "s" + randomString(r), // events without a source ID get random IDs
	}
	for range r.IntN(3) {
		in.identities = append(in.identities, events.Identity{
			Kind: []string{"web_visitor", "phone", "app_user", "a:b"}[r.IntN(4)], Scope: randomString(r), Value: randomString(r), Verified: r.IntN(2) == 0,
		})
	}
	return in
}

func (in input) eventID(at time.Time) string {
	return ingest.EventID(in.channel, ingest.SenderKey(in.customerID, in.identities), in.sourceID, at)
}

// Distinct inputs get distinct event IDs; the same input, re-sent with its
// identities in another order or repeated, gets the same ID.
func TestEventIDIsAFunctionOfEverythingThatIdentifiesTheInput(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	seen := map[string]string{} // event ID → canonical input
	distinct := 0
	for range 50_000 {
		in := randomInput(r)
		id := in.eventID(at)
		c := in.canonical()
		if prev, ok := seen[id]; ok && prev != c {
			t.Fatalf("inputs %s and %s share the event ID %s", prev, c, id)
		} else if !ok {
			seen[id] = c
			distinct++
		}

		resent := in
		resent.identities = slices.Clone(in.identities)
		r.Shuffle(len(resent.identities), func(i, j int) {
			resent.identities[i], resent.identities[j] = resent.identities[j], resent.identities[i]
		})
		if len(in.identities) > 0 {
			resent.identities = append(resent.identities, in.identities[0])
		}
		if got := resent.eventID(at.Add(999 * time.Millisecond)); got != id {
			t.Fatalf("a re-send of %s got ID %s, first %s", c, got, id)
		}
	}
	if distinct < 5_000 {
		t.Fatalf("only %d distinct inputs generated; the generator is too narrow to test anything", distinct)
	}
	t.Logf("%d distinct inputs, no two sharing an ID", distinct)
}

// The sender is part of the ID: the naive key of earlier versions (channel
// and source ID only) gave two visitors' "m-1" one ID.
func TestEventIDSeparatesSenders(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	a := ingest.EventID(events.ChannelWeb, ingest.SenderKey("", []events.Identity{{Kind: "web_visitor", Value: "v-a"}}), "m-1", at)
	b := ingest.EventID(events.ChannelWeb, ingest.SenderKey("", []events.Identity{{Kind: "web_visitor", Value: "v-b"}}), "m-1", at)
	if a == b {
		t.Fatal("two visitors' m-1 share an event ID")
	}
	// Kind, scope and value boundaries cannot be shifted into each other.
	x := ingest.SenderKey("", []events.Identity{{Kind: "a", Scope: "b:c", Value: "d"}})
	y := ingest.SenderKey("", []events.Identity{{Kind: "a", Scope: "b", Value: "c:d"}})
	if x == y {
		t.Fatalf("sender keys collide: %q", x)
	}
}
