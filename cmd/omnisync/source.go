package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/hashes"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/pgcdc"
	"github.com/omnisync/omnisync/producers/poll"
)

func newSourceCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "source",
		Short: "Run a back-office source: change data capture from PostgreSQL, or polling an HTTP API",
		Long: `Back-office sources produce a system's customer records as events of
channel CRM (or IMPORT, --channel), through the same validation, dead-letter
topic and acknowledged produce as the channels. Each record's key is the
system's customer ID, the verified identity crm:<source>:<id>, so the
records land on the same customers as the system's changes on
/ingest/crm and its imports with the same --source.`,
		Example: `  omnisync source postgres --dsn "$CRM_DSN" --table contacts --key contact_id --mapping docs/examples/crm-table-mapping.yaml --source main
  omnisync source poll --url https://erp.example.com/api/customers --interval 5m --source erp`,
	}
	cmd.AddCommand(newSourcePostgresCommand(g), newSourcePollCommand(g))
	return cmd
}

// sourceFlags are the flags both sources share.
type sourceFlags struct {
	mapping, source, channel, registryURL string
}

func (f *sourceFlags) add(cmd *cobra.Command, defaultSource string) {
	fl := cmd.Flags()
	fl.StringVar(&f.mapping, "mapping", "", "YAML file mapping the source's columns to omnisync fields (as omnisync import's; see docs/examples/crm-mapping.yaml)")
	fl.StringVar(&f.source, "source", defaultSource, "name of the system: the scope of its customer IDs (a CRM's system name in channels.crm)")
	fl.StringVar(&f.channel, "channel", "crm", "channel of the events: crm or import")
	fl.StringVar(&f.registryURL, "registry", "http://127.0.0.1:8081", "schema registry URL(s), comma-separated")
}

func (f *sourceFlags) parse(load func(string) (*importer.Mapping, error)) (*importer.Mapping, events.Channel, error) {
	var ch events.Channel
	switch f.channel {
	case "crm":
		ch = events.ChannelCRM
	case "import":
		ch = events.ChannelImport
	default:
		return nil, "", fmt.Errorf("--channel %q: want crm or import", f.channel)
	}
	if f.mapping == "" {
		return nil, ch, nil
	}
	m, err := load(f.mapping)
	return m, ch, err
}

// pipeline connects to Kafka and the registry and returns an ingest
// pipeline whose identity directory is ready; stop releases it.
func pipeline(ctx context.Context, g *globals, registryURL string) (p *ingest.Pipeline, kcfg kafka.Config, log *zap.Logger, stop func(), err error) {
	if log, err = g.logger(); err != nil {
		return nil, kcfg, nil, nil, err
	}
	serde, err := newSerde(ctx, registryURL)
	if err != nil {
		return nil, kcfg, nil, nil, err
	}
	kcfg = g.kafkaConfig(log)
	cl, err := kafka.NewClient(kcfg)
	if err != nil {
		return nil, kcfg, nil, nil, err
	}
	dir, err := ingest.NewDirectory(kcfg, serde, log.Named("identities"))
	if err != nil {
		cl.Close()
		return nil, kcfg, nil, nil, err
	}
	dirCtx, stopDir := context.WithCancel(ctx)
	go func() { _ = dir.Run(dirCtx) }()
	stop = func() { stopDir(); cl.Close() }
	select {
	case <-dir.Ready():
	case <-ctx.Done():
		stop()
		return nil, kcfg, nil, nil, ctx.Err()
	}
	p = ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir, Logger: log.Named("ingest"), Instance: hostname()})
	return p, kcfg, log, stop, nil
}

func newSourcePostgresCommand(g *globals) *cobra.Command {
	var f sourceFlags
	var dsn, table, key, slot, publication string
	var dropSlot bool
	cmd := &cobra.Command{
		Use:   "postgres",
		Short: "Change data capture from a PostgreSQL table (logical replication)",
		Long: `Follow one PostgreSQL table through logical replication (pgoutput) and
produce each row change as a customer event: an insert or update as an
upsert of the row's mapped columns (a NULL clears the field), a delete as
a delete of the customer whose ID is in --key.

The first run creates a replication slot and a publication of the table
(both named omnisync_<source>_<table> unless --slot/--publication say),
reads the whole table in the slot's snapshot, then streams the changes
committed after it. The slot's confirmed LSN moves only past transactions
whose events Kafka acknowledged, so a restart (or a crash) resumes where
the last run stopped, losing nothing; a change sent again has the same
event ID (its commit LSN and place in the transaction) and is absorbed.

The server needs wal_level = logical; the user needs the REPLICATION
attribute (or to be a superuser) and, on the first run, the right to
create a publication of the table. The key column must be in the table's
replica identity (its primary key, or REPLICA IDENTITY FULL). A slot keeps
the server's WAL until it is read: when a source is retired, drop its slot
with --drop-slot (or SELECT pg_drop_replication_slot('<slot>')).`,
		Example: `  omnisync source postgres --dsn 'postgres://repl@crm-db:5432/crm' --table public.contacts --key contact_id --source main
  omnisync source postgres --dsn "$CRM_DSN" --table contacts --key contact_id --mapping docs/examples/crm-table-mapping.yaml --source main
  omnisync source postgres --dsn "$CRM_DSN" --table contacts --key contact_id --source main --drop-slot   # retire: drop slot and publication`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dsn == "" || table == "" || key == "" {
				return fmt.Errorf("--dsn, --table and --key are required")
			}
			m, ch, err := f.parse(importer.LoadTableMapping)
			if err != nil {
				return err
			}
			cfg := pgcdc.Config{DSN: dsn, Table: table, Key: key, Mapping: m, Source: f.source, Channel: ch, Slot: slot, Publication: publication}
			ctx := cmd.Context()
			if dropSlot {
				if err := pgcdc.DropSlot(ctx, cfg); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "dropped the slot and the publication")
				return nil
			}
			p, kcfg, log, stop, err := pipeline(ctx, g, f.registryURL)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Pipeline, cfg.Kafka, cfg.Logger = p, kcfg, log.Named("postgres")
			return pgcdc.Run(ctx, cfg)
		},
	}
	f.add(cmd, pgcdc.DefaultSource)
	fl := cmd.Flags()
	fl.StringVar(&dsn, "dsn", os.Getenv("OMNISYNC_SOURCE_DSN"), "PostgreSQL connection string of the system's database (default $OMNISYNC_SOURCE_DSN)")
	fl.StringVar(&table, "table", "", "the table to follow, [schema.]table")
	fl.StringVar(&key, "key", "", "the column holding the system's customer ID (in the replica identity)")
	fl.StringVar(&slot, "slot", "", "replication slot (default omnisync_<source>_<table>)")
	fl.StringVar(&publication, "publication", "", "publication (default: the slot's name)")
	fl.BoolVar(&dropSlot, "drop-slot", false, "drop the slot and the publication, and exit")
	return cmd
}

func newSourcePollCommand(g *globals) *cobra.Command {
	var f sourceFlags
	var pollURL, token string
	var interval time.Duration
	var once bool
	cmd := &cobra.Command{
		Use:   "poll",
		Short: "Poll a paginated HTTP JSON API and produce the records that changed",
		Long: `Read every record of a system without a change feed from --url, every
--interval, and produce only the records that changed since the last pass:
each record's content hash is kept per source in the compacted topic
omnisync.source.hashes.v1, so a restart does not send everything again.

A page is a JSON array of records, or {"records": [...], "next": URL} with
next (absolute, or relative to the page) absent or empty on the last page.
Each record is a JSON object whose members are mapped as omnisync import
maps columns (--mapping; without one, members named as omnisync fields);
id is the system's customer ID. A pass that reads every page is complete:
a record produced before and missing from it is produced as a delete. A
record that does not validate is sent to the dead-letter topic.`,
		Example: `  omnisync source poll --url https://erp.example.com/api/customers --interval 5m --source erp
  omnisync source poll --url http://127.0.0.1:9000/customers?page=1 --mapping erp-mapping.yaml --source erp --token "$ERP_TOKEN"
  omnisync source poll --url http://127.0.0.1:9000/customers --source erp --once   # one pass, its counts as JSON`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pollURL == "" {
				return fmt.Errorf("--url is required")
			}
			m, ch, err := f.parse(importer.LoadMapping)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			p, kcfg, log, stop, err := pipeline(ctx, g, f.registryURL)
			if err != nil {
				return err
			}
			defer stop()
			store, err := hashes.Open(ctx, kcfg, "", "poll:"+f.source)
			if err != nil {
				return err
			}
			defer store.Close()
			if token == "" {
				token = os.Getenv("OMNISYNC_POLL_TOKEN")
			}
			pl, err := poll.New(poll.Config{URL: pollURL, Interval: interval, Mapping: m, Source: f.source, Channel: ch, Token: token,
				Pipeline: p, Hashes: store, Logger: log.Named("poll")})
			if err != nil {
				return err
			}
			if !once {
				return pl.Run(ctx)
			}
			pass, err := pl.Pass(ctx)
			enc := json.NewEncoder(cmd.OutOrStdout())
			_ = enc.Encode(pass)
			return err
		},
	}
	f.add(cmd, poll.DefaultSource)
	fl := cmd.Flags()
	fl.StringVar(&pollURL, "url", "", "URL of the API's first page")
	fl.DurationVar(&interval, "interval", time.Minute, "time between the starts of two passes")
	fl.StringVar(&token, "token", "", "bearer token for the API (default $OMNISYNC_POLL_TOKEN)")
	fl.BoolVar(&once, "once", false, "make one pass, print its counts as JSON and exit")
	return cmd
}
