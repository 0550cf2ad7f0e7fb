package hashes_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/hashes"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// What a store saves comes back when the source's store is opened again
// (a restart), a tombstone removes a key, and another source's store
// sees none of it.
func TestSavedHashesComeBack(t *testing.T) {
	k := testenv.RealKafka(t)
	ctx := context.Background()
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.DefaultLayout.Topics()); err != nil {
		t.Fatal(err)
	}
	source := testenv.UniqueName(t, "h")
	open := func(source string) *hashes.Store {
		t.Helper()
		s, err := hashes.Open(ctx, k.Config(), "", source)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	s := open(source)
	if s.Len() != 0 || !s.Changed("a", "1") {
		t.Fatalf("a new source's store: %d keys, a changed %v", s.Len(), s.Changed("a", "1"))
	}
	if err := s.Save(ctx, map[string]string{"a": "1", "b": "2", "c": "3"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, map[string]string{"b": "", "c": "4"}); err != nil {
		t.Fatal(err)
	}
	again := open(source)
	if got := again.Keys(); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("reopened: keys %v, want [a c] (b deleted)", got)
	}
	if again.Changed("a", "1") || !again.Changed("c", "3") || again.Hash("c") != "4" || again.Has("b") {
		t.Fatalf("reopened: a changed %v, c changed %v, c = %q, has b %v", again.Changed("a", "1"), again.Changed("c", "3"), again.Hash("c"), again.Has("b"))
	}
	if other := open(source + "-other"); other.Len() != 0 {
		t.Fatalf("another source's store holds %v", other.Keys())
	}
	if _, err := hashes.Open(ctx, k.Config(), "", "bad\x00source"); err == nil {
		t.Fatal("a source name with NUL: no error")
	}
}
