package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/consumers/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "store.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestBase(t *testing.T) {
	storetest.RunBase(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "store.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
