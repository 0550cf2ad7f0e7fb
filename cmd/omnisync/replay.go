package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/replay"
)

func newReplayCommand(g *globals) *cobra.Command {
	var cfg replay.Config
	var policyFile, registryURL, toOffsets, startOffsets string
	cmd := &cobra.Command{
		Use:   "replay --store DSN [--group NAME] [--policy FILE] [--to-offsets live|end] [--in-place | --no-swap] [--restart]",
		Short: "Rebuild a store from the log while the live store keeps serving, then swap it in",
		Long: `Rebuild a store from the events and messages topics, folding them with the
materializer's own code (and --policy, to change the merge policy).

By default the new state is built beside the live store — a shadow schema
("<schema>_replay") in PostgreSQL, a shadow file ("<path>.replay") in SQLite —
while the live store keeps serving the API and its consumer group keeps
folding into it. The shadow catches up with the group's offsets in the live
store (--to-offsets live) or with the log's end as of the start and at least
the group's offsets (--to-offsets end); then, holding the live store's lock
on the group's offsets (the group's members wait at their next batch;
readers go on), it folds the last few records, is verified against the log
(as omnisync verify --against-log does) and swapped in atomically:
PostgreSQL renames the schemas in one transaction, SQLite copies the shadow
into the live file in one transaction. Readers never see a partial store;
the group's members carry on from the swapped-in offsets. A shadow that does
not verify is not swapped in.

--no-swap stops once the shadow is built and verified, leaving it beside the
live store to compare with it (omnisync verify --store LIVE --store SHADOW,
the shadow being sqlite:PATH.replay, or the same PostgreSQL DSN with
search_path=SCHEMA_replay); a re-run without it resumes the shadow, catches
up and swaps it in.

Ctrl-C leaves the live store untouched and the shadow in place: a re-run
resumes it, --restart drops it and starts over.

--in-place empties the live store, resets the group's offsets to the start
of the log and refolds it, stopping nothing: readers see a partial store
until it is done, and the group's members follow the reset.

With --policy, run the group's members with the same policy after the swap:
members on the old one stop at their next batch (the store was built with
another merge policy) and write nothing.

Progress is a bar on a terminal (records/s, percent, ETA), log lines every
few seconds otherwise.`,
		Example: `  # Rebuild the SQLite store of omnisync dev beside it and swap it in
  omnisync replay --store sqlite:.omnisync/omnisync.db --group omnisync-dev-sqlite

  # Rebuild a PostgreSQL store with a new merge policy: build the shadow,
  # see which customers change, then swap it in
  omnisync replay --store postgres://omnisync:secret@db:5432/omnisync --group omnisync-pg --policy policy-v2.yaml --no-swap
  omnisync verify --store postgres://omnisync:secret@db:5432/omnisync --store 'postgres://omnisync:secret@db:5432/omnisync?search_path=public_replay'
  omnisync replay --store postgres://omnisync:secret@db:5432/omnisync --group omnisync-pg --policy policy-v2.yaml

  # Resume an interrupted replay, or throw its shadow away and start over
  omnisync replay --store sqlite:omnisync.db --group omnisync-sqlite
  omnisync replay --store sqlite:omnisync.db --group omnisync-sqlite --restart

  # Refold the store in place (readers see a partial store meanwhile)
  omnisync replay --store sqlite:omnisync.db --group omnisync-sqlite --in-place`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			switch toOffsets {
			case "live":
			case "end":
				cfg.ToEnd = true
			default:
				return fmt.Errorf("--to-offsets %q: want live or end", toOffsets)
			}
			cfg.Policy = merge.DefaultPolicy()
			if policyFile != "" {
				if cfg.Policy, err = merge.LoadPolicy(policyFile); err != nil {
					return err
				}
			}
			if startOffsets != "" {
				if err := json.Unmarshal([]byte(startOffsets), &cfg.From); err != nil {
					return fmt.Errorf("--start-offsets: want JSON such as {\"omnisync.customer.events.v1\":{\"0\":42}}: %w", err)
				}
			}
			if cfg.Serde, err = newSerde(ctx, registryURL); err != nil {
				return err
			}
			cfg.Kafka, cfg.Logger = g.kafkaConfig(log), log
			cfg.Progress, cfg.ProgressEvery = progress(log)
			log.Info("replay starting", zap.String("store", redactDSN(cfg.Store)), zap.String("group", cfg.Group),
				zap.String("policy_hash", cfg.Policy.Hash()), zap.Bool("in_place", cfg.InPlace), zap.String("to_offsets", toOffsets))
			res, err := replay.Run(ctx, cfg)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("replay interrupted; the live store is untouched (re-run to resume, or --restart): %w", err)
				}
				return err
			}
			switch {
			case cfg.InPlace:
				fmt.Fprintf(cmd.OutOrStdout(), "refolded the store in place: %d records\n", res.Records)
			case !res.Swapped:
				fmt.Fprintf(cmd.OutOrStdout(), "built the shadow, not swapped in: %d records folded; verified: %s\n", res.Records, res.Verified)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "swapped in the rebuilt store: %d records folded; verified: %s\n", res.Records, res.Verified)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Store, "store", "sqlite:.omnisync/omnisync.db", "store: sqlite:PATH, or PostgreSQL as postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=… (also postgresql://)")
	f.StringVar(&cfg.Group, "group", "omnisync-sqlite", "the store's consumer group, whose offsets the replay catches up with")
	f.StringVar(&policyFile, "policy", "", "merge policy YAML to rebuild with (default: the built-in policy)")
	f.StringVar(&registryURL, "registry", "http://127.0.0.1:8081", "schema registry URL(s), comma-separated")
	f.StringVar(&toOffsets, "to-offsets", "live", "fold up to: live (the group's offsets in the live store) or end (the log's end at the start, and at least live)")
	f.BoolVar(&cfg.InPlace, "in-place", false, "empty the live store and refold it (no shadow; readers see a partial store meanwhile)")
	f.BoolVar(&cfg.Restart, "restart", false, "drop the shadow an interrupted replay left, instead of resuming it")
	f.BoolVar(&cfg.NoSwap, "no-swap", false, "build and verify the shadow, then leave it beside the live store (compare them with omnisync verify --store LIVE --store SHADOW); a re-run without it swaps it in")
	f.StringVar(&cfg.TempDir, "temp-dir", "", "directory of verification's scratch fold (default: the system's temporary directory)")
	f.StringVar(&startOffsets, "start-offsets", "", `where the log starts for this store, as JSON {"topic":{"partition":offset}} (default: the start of the log); only for a group that began mid-log`)
	return cmd
}

// progress reports a replay's progress: a bar on a terminal, a log line
// every 5 s otherwise.
func progress(log *zap.Logger) (func(done, total int64), time.Duration) {
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("replay"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("records"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth(), progressbar.OptionThrottle(200*time.Millisecond))
		return func(done, total int64) {
			bar.ChangeMax64(max(total, 1))
			_ = bar.Set64(done)
		}, 200 * time.Millisecond
	}
	var last int64
	lastAt := time.Now()
	return func(done, total int64) {
		now := time.Now()
		rate := float64(done-last) / now.Sub(lastAt).Seconds()
		fields := []zap.Field{zap.Int64("records", done), zap.Int64("of", total), zap.Float64("records_per_s", rate)}
		if total > 0 {
			fields = append(fields, zap.Float64("percent", 100*float64(done)/float64(total)))
		}
		if rate > 0 && total > done {
			fields = append(fields, zap.Duration("eta", time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second)))
		}
		log.Info("replay progress", fields...)
		last, lastAt = done, now
	}, 5 * time.Second
}
