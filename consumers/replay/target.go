package replay

import (
	"context"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
)

// sqliteTarget builds the shadow in a file beside the store's.
type sqliteTarget struct {
	*sqlite.Store
	path string
}

func (t *sqliteTarget) live() store.Store { return t.Store }

func (t *sqliteTarget) openShadow(ctx context.Context) (store.Store, error) {
	return sqlite.OpenShadow(ctx, sqlite.ShadowPath(t.path))
}

func (t *sqliteTarget) dropShadow(context.Context) error {
	return sqlite.RemoveFiles(sqlite.ShadowPath(t.path))
}

func (t *sqliteTarget) swapIn(ctx context.Context, group string, prepare func(context.Context, map[string]map[int32]int64) error) error {
	return sqlite.SwapIn(ctx, t.path, sqlite.ShadowPath(t.path), group, prepare)
}

// postgresTarget builds the shadow in a schema beside the store's.
type postgresTarget struct {
	*postgres.Store
	dsn, shadow string
}

func (t *postgresTarget) live() store.Store { return t.Store }

func (t *postgresTarget) openShadow(ctx context.Context) (store.Store, error) {
	return postgres.OpenSchema(ctx, t.dsn, t.shadow)
}

func (t *postgresTarget) dropShadow(ctx context.Context) error { return t.DropSchema(ctx, t.shadow) }

func (t *postgresTarget) swapIn(ctx context.Context, group string, prepare func(context.Context, map[string]map[int32]int64) error) error {
	return t.SwapIn(ctx, t.shadow, group, prepare)
}
