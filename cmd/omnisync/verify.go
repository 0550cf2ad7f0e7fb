package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/verify"
)

// Exit statuses of verify: 0 when the sides agree (after --repair: agree
// now), exitDiffer when they differ, exitVerifyFailed when verify could
// not run (bad flags, Kafka, registry or store unreachable).
const (
	exitDiffer       = 1
	exitVerifyFailed = 2
)

// failed marks err as verify's operational failure.
func failed(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{exitVerifyFailed, err}
}

func newVerifyCommand(g *globals) *cobra.Command {
	var stores []string
	var againstLog, repair bool
	var group, policyFile, registryURL, startOffsets string
	cmd := &cobra.Command{
		Use:   "verify --store DSN (--against-log [--repair] | --store DSN2)",
		Short: "Compare a store with the log (or with another store) customer by customer, and repair it",
		Long: `Compare a store with a fresh fold of the log, or with a second store,
customer by customer: each customer's record (fields with provenance,
conflicts, identities, version, tombstone) and its messages by ID.

With --against-log, the events and messages topics are folded, one
partition at a time, up to the offsets the store holds for --group, as the
materializer folds them, the two topics interleaved by record timestamp,
into a scratch SQLite file (the log is not held in memory). The group's
materializers may run meanwhile; a customer they change during the
comparison may be reported as differing.

Prints "N customers agree, M differ" and one line per differing customer
naming what differs. --repair re-materializes exactly those customers from
the log, then verifies again: the fold catches up with the store, then in
one transaction holding the lock on the group's offsets (the members wait
at their next batch) it folds the last records up to those offsets and
replaces the customers with the log's version of them (the group's offsets
are not touched). Nothing the members applied meanwhile is lost.

Exit status: 0 when the sides agree (with --repair: once repaired), 1 when
they differ, 2 when verify could not run.`,
		Example: `  # Is the SQLite store what the log says?
  omnisync verify --store sqlite:.omnisync/omnisync.db --group omnisync-dev-sqlite --against-log

  # Repair the customers that differ, then check again
  omnisync verify --store postgres://omnisync:secret@db:5432/omnisync --group omnisync-pg --against-log --repair

  # Do two stores fed by the same log agree?
  omnisync verify --store sqlite:a.db --store postgres://omnisync:secret@db:5432/omnisync`,
		Args: func(cmd *cobra.Command, args []string) error { return failed(cobra.NoArgs(cmd, args)) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := runVerify(cmd, g, verifyFlags{stores, againstLog, repair, group, policyFile, registryURL, startOffsets})
			return failed(err)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return failed(err) })
	f := cmd.Flags()
	f.StringArrayVar(&stores, "store", nil, "store: sqlite:PATH or postgres://…; give it twice to compare two stores")
	f.BoolVar(&againstLog, "against-log", false, "compare the store with a fold of the log up to its offsets for --group")
	f.BoolVar(&repair, "repair", false, "with --against-log: rewrite the customers that differ from the log")
	f.StringVar(&group, "group", "omnisync-sqlite", "the consumer group that fills the store (as given to consume)")
	f.StringVar(&policyFile, "policy", "", "merge policy YAML (default: the built-in policy)")
	f.StringVar(&registryURL, "registry", "http://127.0.0.1:8081", "schema registry URL(s), comma-separated")
	f.StringVar(&startOffsets, "start-offsets", "", `where the fold starts, as JSON {"topic":{"partition":offset}} (default: the start of the log); only for a group that began mid-log`)
	return cmd
}

type verifyFlags struct {
	stores              []string
	againstLog, repair  bool
	group, policyFile   string
	registryURL, starts string
}

func runVerify(cmd *cobra.Command, g *globals, fl verifyFlags) error {
	switch {
	case len(fl.stores) == 0:
		return errors.New("--store is required")
	case len(fl.stores) > 2:
		return errors.New("--store is given more than twice")
	case fl.againstLog && len(fl.stores) == 2:
		return errors.New("--against-log compares one store with the log; give one --store")
	case !fl.againstLog && len(fl.stores) == 1:
		return errors.New("give --against-log or a second --store to compare with")
	case fl.repair && !fl.againstLog:
		return errors.New("--repair needs --against-log: only the log says what a customer should be")
	}
	ctx := cmd.Context()
	log, err := g.logger()
	if err != nil {
		return err
	}
	var opened []store.Store
	defer func() {
		for _, st := range opened {
			st.Close()
		}
	}()
	for _, url := range fl.stores {
		st, err := openStore(ctx, url)
		if err != nil {
			return err
		}
		opened = append(opened, st)
	}
	scanner := func(st store.Store) (store.Scanner, error) {
		sc, ok := st.(store.Scanner)
		if !ok {
			return nil, fmt.Errorf("store %T cannot be scanned", st)
		}
		return sc, nil
	}
	out := cmd.OutOrStdout()

	if !fl.againstLog {
		a, err := scanner(opened[0])
		if err != nil {
			return err
		}
		b, err := scanner(opened[1])
		if err != nil {
			return err
		}
		rep, err := verify.Stores(ctx, a, b)
		if err != nil {
			return err
		}
		return printReport(out, rep)
	}

	cfg := verify.Config{Kafka: g.kafkaConfig(log), Group: fl.group, Policy: merge.DefaultPolicy(), Logger: log.Named("verify")}
	if fl.policyFile != "" {
		if cfg.Policy, err = merge.LoadPolicy(fl.policyFile); err != nil {
			return err
		}
	}
	if fl.starts != "" {
		if err := json.Unmarshal([]byte(fl.starts), &cfg.From); err != nil {
			return fmt.Errorf("--start-offsets: want JSON such as {\"omnisync.customer.events.v1\":{\"0\":42}}: %w", err)
		}
	}
	if cfg.Serde, err = newSerde(ctx, fl.registryURL); err != nil {
		return err
	}
	st, ok := opened[0].(verify.Store)
	if !ok {
		return fmt.Errorf("store %T cannot be verified", opened[0])
	}
	cfg.Repair = fl.repair
	rep, err := verify.AgainstLog(ctx, cfg, st)
	if err != nil {
		return err
	}
	if err := printReport(out, rep); err == nil || !fl.repair {
		return err
	}
	fmt.Fprintf(out, "repaired %d customers from the log; verifying again\n", rep.Repaired)
	cfg.Repair = false
	if rep, err = verify.AgainstLog(ctx, cfg, st); err != nil {
		return err
	}
	return printReport(out, rep)
}

// printReport prints the summary and the differing customers; it returns
// an exitDiffer error when there are any.
func printReport(w io.Writer, rep *verify.Report) error {
	fmt.Fprintln(w, rep.Summary())
	for _, d := range rep.Differ {
		fmt.Fprintln(w, d)
	}
	if rep.OK() {
		return nil
	}
	return &exitError{exitDiffer, fmt.Errorf("%d customers differ", len(rep.Differ))}
}
