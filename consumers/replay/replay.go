// Package replay rebuilds a store from the log (omnisync replay).
//
// By default it builds the new state beside the live store — a shadow
// schema in PostgreSQL, a shadow file in SQLite — while the live store
// keeps serving and its consumer group keeps folding into it. The shadow
// is folded by the materializer's own code (materializer.NewReplay: every
// partition, under the live group's name, no group membership) up to the
// live group's offsets (or the log's end); then, holding the live store's
// write lock on the group's offsets, the small remainder is folded, the
// shadow verified against the log (verify.AgainstLog: exactly the state
// swapped in) and swapped in atomically (see postgres.Store.SwapIn and
// sqlite.SwapIn). The live members find the store's offsets where they
// left them, or later (their batches are compare-and-sets on offsets, see
// store.Batch.From) and carry on from the store's offsets.
//
// Interrupted (ctx ends), it leaves the live store untouched and the
// shadow in place; a re-run resumes the shadow from its own offsets, or
// with Restart drops it first.
//
// In place, it empties the live store, resets the group's offsets to the
// log's start and refolds: readers see a partial store meanwhile.
package replay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/consumers/verify"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/kafka"
)

// Config configures a replay.
type Config struct {
	Kafka kafka.Config
	Store string // sqlite:PATH, or postgres://… / postgresql://…
	Group string // the live consumer group of the store
	Serde *codec.Serde
	// Policy is the merge policy to rebuild with; default
	// merge.DefaultPolicy(). The live members must run with it after the
	// swap: with another, their next batch fails with
	// materializer.ErrPolicyChanged and writes nothing.
	Policy *merge.Policy
	// ToEnd folds up to the log's end as of the start (and at least to the
	// live group's offsets) instead of to the live group's offsets.
	ToEnd bool
	// InPlace empties the live store and refolds it; no shadow.
	InPlace bool
	// Restart drops a shadow left by an interrupted replay instead of
	// resuming it.
	Restart bool
	// NoSwap builds and verifies the shadow but leaves it beside the live
	// store (to compare the two, e.g. with verify.Stores); a re-run
	// without it resumes the shadow and swaps it in.
	NoSwap bool
	// From are the offsets the log starts at for this store, per
	// partition; default the log's start. (Tests share topics with others
	// and start their stores at the end.)
	From map[string]map[int32]int64
	// TempDir is where verification's scratch fold goes (see
	// verify.Config); default the system's temporary directory.
	TempDir string
	// Progress, when set, is called about every ProgressEvery while
	// folding with the records folded so far and the records to fold.
	Progress      func(done, total int64)
	ProgressEvery time.Duration // default 1 s
	MaxBatch      int
	Logger        *zap.Logger
}

// Result says what a replay did.
type Result struct {
	Offsets map[string]map[int32]int64 // the store's offsets after the swap (or the in-place refold)
	Records int64                      // records folded by this run (a re-run resumes)
	Swapped bool
	// Verified is verification's summary of the shadow before the swap.
	Verified string
}

// ErrVerification is returned when the shadow does not agree with the log:
// the swap is refused and the live store left untouched.
var ErrVerification = errors.New("the shadow does not agree with the log; not swapping (the shadow is kept: inspect it, or re-run with --restart)")

// target is a store a replay rebuilds: SQLite or PostgreSQL.
type target interface {
	live() store.Store
	openShadow(ctx context.Context) (store.Store, error)
	dropShadow(ctx context.Context) error
	// swapIn swaps the shadow in (see postgres.Store.SwapIn); the caller
	// then closes the shadow and drops what is left of it.
	swapIn(ctx context.Context, group string, prepare func(ctx context.Context, live map[string]map[int32]int64) error) error
	Reset(ctx context.Context, group string, from map[string]map[int32]int64) error
	Close() error
}

// Run replays as cfg says.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Group == "" {
		return nil, errors.New("replay: no consumer group: name the store's live group")
	}
	if cfg.InPlace && cfg.NoSwap {
		return nil, errors.New("replay: in place there is no shadow to leave unswapped (--in-place with --no-swap)")
	}
	if cfg.Policy == nil {
		cfg.Policy = merge.DefaultPolicy()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	t, err := openTarget(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	if cfg.InPlace {
		return inPlace(ctx, cfg, t)
	}
	return shadow(ctx, cfg, t)
}

func shadow(ctx context.Context, cfg Config, t target) (*Result, error) {
	log := cfg.Logger
	if cfg.Restart {
		if err := t.dropShadow(ctx); err != nil {
			return nil, err
		}
	}
	sh, err := t.openShadow(ctx)
	if err != nil {
		return nil, err
	}
	shadowOpen := true
	defer func() {
		if shadowOpen {
			sh.Close()
		}
	}()
	r, err := materializer.NewReplay(ctx, cfg.materializer(sh), cfg.From)
	if errors.Is(err, materializer.ErrPolicyChanged) {
		return nil, fmt.Errorf("%w: the shadow left by an earlier replay was built with another policy; re-run with --restart", err)
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var end map[string]map[int32]int64
	if cfg.ToEnd {
		if end, err = materializer.LogOffsets(ctx, cfg.Kafka, true); err != nil {
			return nil, err
		}
	}
	goal := func(live map[string]map[int32]int64) map[string]map[int32]int64 {
		return later(live, end)
	}
	res := &Result{}
	started, _ := r.Position() // where this run starts: a re-run resumes
	stop := cfg.report(r, func() map[string]map[int32]int64 {
		live, err := t.live().Offsets(ctx, cfg.Group)
		if err != nil {
			return nil
		}
		return goal(live)
	})
	defer stop()

	// Catch up with the live group, which moves on meanwhile, until what
	// is left to fold under the lock is small, or no longer shrinks (the
	// live group folds as fast as the shadow: the lock stops it).
	for before := int64(math.MaxInt64); ; {
		live, err := t.live().Offsets(ctx, cfg.Group)
		if err != nil {
			return nil, fmt.Errorf("reading the live store's offsets: %w", err)
		}
		next, _ := r.Position()
		left := remaining(next, goal(live))
		log.Info("catching up with the live group", zap.Int64("records_left", left))
		if left <= catchUpSlack || left >= before {
			break
		}
		before = left
		if err := r.CatchUp(ctx, goal(live)); err != nil {
			return nil, err
		}
	}

	// check verifies the shadow, folded to next, against the log.
	check := func(ctx context.Context, next map[string]map[int32]int64) error {
		log.Info("verifying the shadow against the log", zap.Any("offsets", next))
		rep, err := verify.AgainstLog(ctx, verify.Config{Kafka: cfg.Kafka, Serde: cfg.Serde, Group: cfg.Group, From: cfg.From,
			Policy: cfg.Policy, TempDir: cfg.TempDir, MaxBatch: cfg.MaxBatch, Logger: log.Named("verify")}, sh.(verify.Store))
		if err != nil {
			return fmt.Errorf("verifying the shadow: %w", err)
		}
		if !rep.OK() {
			for i, d := range rep.Differ {
				if i == 10 {
					break
				}
				log.Error("the shadow differs from the log", zap.Stringer("customer", d))
			}
			return fmt.Errorf("%w: %s", ErrVerification, rep.Summary())
		}
		res.Verified = rep.Summary()
		return nil
	}
	if cfg.NoSwap {
		live, err := t.live().Offsets(ctx, cfg.Group)
		if err != nil {
			return nil, fmt.Errorf("reading the live store's offsets: %w", err)
		}
		if err := r.CatchUp(ctx, goal(live)); err != nil {
			return nil, err
		}
		next, _ := r.Position()
		if err := check(ctx, next); err != nil {
			return nil, err
		}
		res.Offsets, res.Records = next, folded(next, started)
		log.Info("the shadow is built and verified; not swapping it in (re-run without --no-swap to)", zap.Int64("records", res.Records))
		return res, nil
	}

	err = t.swapIn(ctx, cfg.Group, func(ctx context.Context, live map[string]map[int32]int64) error {
		if err := r.CatchUp(ctx, goal(live)); err != nil {
			return err
		}
		next, _ := r.Position()
		res.Offsets = next
		if err := check(ctx, next); err != nil {
			return err
		}
		log.Info("swapping the shadow in", zap.Any("offsets", next))
		return nil
	})
	if err != nil {
		return nil, err
	}
	shadowOpen = false
	if err := errors.Join(sh.Close(), t.dropShadow(ctx)); err != nil {
		log.Warn("clearing the shadow after the swap", zap.Error(err))
	}
	res.Swapped = true
	res.Records = folded(res.Offsets, started)
	log.Info("replay swapped in", zap.Int64("records", res.Records), zap.Any("offsets", res.Offsets))
	return res, nil
}

// catchUpSlack is how many records may be left to fold while holding the
// live store's lock.
const catchUpSlack = 500

func inPlace(ctx context.Context, cfg Config, t target) (*Result, error) {
	live, err := t.live().Offsets(ctx, cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("reading the store's offsets: %w", err)
	}
	goal := live
	if cfg.ToEnd {
		end, err := materializer.LogOffsets(ctx, cfg.Kafka, true)
		if err != nil {
			return nil, err
		}
		goal = later(live, end)
	}
	from, err := materializer.LogOffsets(ctx, cfg.Kafka, false)
	if err != nil {
		return nil, err
	}
	from = later(from, cfg.From)
	cfg.Logger.Warn("emptying the store and refolding it in place; readers see a partial store until it is done", zap.Any("from", from))
	if err := t.Reset(ctx, cfg.Group, from); err != nil {
		return nil, err
	}
	r, err := materializer.NewReplay(ctx, cfg.materializer(t.live()), from)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	stop := cfg.report(r, func() map[string]map[int32]int64 { return goal })
	defer stop()
	if err := r.CatchUp(ctx, goal); err != nil {
		return nil, err
	}
	next, start := r.Position()
	return &Result{Offsets: next, Records: folded(next, start)}, nil
}

func (cfg Config) materializer(st store.Store) materializer.Config {
	return materializer.Config{Kafka: cfg.Kafka, Group: cfg.Group, Store: st, Serde: cfg.Serde, Policy: cfg.Policy,
		MaxBatch: cfg.MaxBatch, Logger: cfg.Logger.Named("replay")}
}

// report calls cfg.Progress every cfg.ProgressEvery until the returned
// stop is called.
func (cfg Config) report(r *materializer.Materializer, goal func() map[string]map[int32]int64) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(cfg.ProgressEvery)
		defer tick.Stop()
		target := goal()
		for {
			next, start := r.Position()
			if g := goal(); g != nil {
				target = g
			}
			cfg.Progress(folded(next, start), folded(later(target, next), start))
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// later returns, per partition of a or b, the later offset.
func later(a, b map[string]map[int32]int64) map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	for _, m := range []map[string]map[int32]int64{a, b} {
		for topic, parts := range m {
			if out[topic] == nil {
				out[topic] = map[int32]int64{}
			}
			for p, o := range parts {
				if cur, ok := out[topic][p]; !ok || o > cur {
					out[topic][p] = o
				}
			}
		}
	}
	return out
}

// remaining counts the records between next and goal.
func remaining(next, goal map[string]map[int32]int64) (n int64) {
	for topic, parts := range goal {
		for p, g := range parts {
			if at, ok := next[topic][p]; ok && g > at {
				n += g - at
			}
		}
	}
	return n
}

// folded counts the records between start and next.
func folded(next, start map[string]map[int32]int64) int64 { return remaining(start, next) }

func openTarget(ctx context.Context, dsn string) (target, error) {
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		return &sqliteTarget{Store: st, path: path}, nil
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		schema, err := st.Schema(ctx)
		if err != nil {
			st.Close()
			return nil, err
		}
		return &postgresTarget{Store: st, dsn: dsn, shadow: postgres.ShadowSchema(schema)}, nil
	}
	return nil, errors.New("store: want sqlite:PATH, postgres://… or postgresql://…")
}
