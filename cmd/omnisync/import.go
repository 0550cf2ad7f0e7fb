package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/hashes"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Exit statuses of omnisync import besides 0 and 1.
const (
	exitRejected = 2 // the import finished, some rows were rejected
)

func newImportCommand(g *globals) *cobra.Command {
	var format, mappingFile, source, registryURL, asOf, summaryFormat string
	var batch int
	var batchTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import customer profiles from a CSV, JSON Lines or XML file (channel IMPORT)",
		Long: `Import customer profiles in bulk through the ingest pipeline: each row is
validated as a channel's profile update, and produced to Kafka as a
customer event of channel IMPORT, in batches acknowledged by Kafka.

Each row's id is the source's own customer ID; it becomes the verified
identity crm:<source>:<id>, so an export of a CRM imported with
--source <its system name> lands on the same customers as its live
changes on /ingest/crm. The content hash of every imported row is kept
per source and id in the compacted topic omnisync.source.hashes.v1: a row
already imported with the same content is counted as unchanged and not
produced again, so importing the same file again adds nothing. Event IDs
come from the source and the row's content, so a row produced twice (a
crash before its hash was saved) is absorbed downstream.

--mapping maps the file's columns to omnisync fields (YAML, see
docs/examples/crm-mapping.yaml); without one, columns are named as the
fields: id, occurred_at, name, phone, email, gender, birthday, vip_level,
tags, id_number, address.<part>, attributes.<key>. A CSV file has a header
line; JSON Lines has one object a line; XML has one element a row under the
root, with one child element a column. Rows without occurred_at get
--as-of (default: the file's modification time).

Every rejected row is reported with its line, field and reason (broken
UTF-8, a wrong column count, a bad phone number, a missing id, a
duplicate row…) and written to the dead-letter topic. A progress bar is
drawn on a terminal; the summary goes to standard output.

Exit status: 0 every row imported; 2 the import finished but rows were
rejected (each reported and in the dead-letter topic; the others are
imported); 1 the import stopped (a bad flag, mapping or file, or Kafka did
not acknowledge): the rows it counted are in Kafka, and running it again
is safe.`,
		Example: `  omnisync import customers.csv --format csv --mapping docs/examples/crm-mapping.yaml --source main
  omnisync import profiles.jsonl --format jsonl --source shop
  omnisync import export.xml --format xml --mapping mapping.yaml --summary json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if format == "" {
				format = strings.TrimPrefix(filepath.Ext(path), ".")
			}
			if _, ok := importer.Formats[format]; !ok {
				return fmt.Errorf("--format %q: want csv, jsonl or xml", format)
			}
			if summaryFormat != "text" && summaryFormat != "json" {
				return fmt.Errorf("--summary %q: want text or json", summaryFormat)
			}
			o := importer.Options{Format: format, Source: source, BatchSize: batch, BatchTimeout: batchTimeout}
			if mappingFile != "" {
				m, err := importer.LoadMapping(mappingFile)
				if err != nil {
					return err
				}
				o.Mapping = m
			}
			if asOf != "" {
				t, err := time.Parse(time.RFC3339, asOf)
				if err != nil {
					return fmt.Errorf("--as-of %q: want an RFC 3339 time", asOf)
				}
				o.AsOf = t
			}
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			serde, err := newSerde(ctx, registryURL)
			if err != nil {
				return err
			}
			kcfg := g.kafkaConfig(log)
			cl, err := kafka.NewClient(kcfg)
			if err != nil {
				return err
			}
			defer cl.Close()
			dir, err := ingest.NewDirectory(kcfg, serde, log.Named("identities"))
			if err != nil {
				return err
			}
			dirCtx, stopDir := context.WithCancel(ctx)
			defer stopDir()
			go func() { _ = dir.Run(dirCtx) }()
			select {
			case <-dir.Ready():
			case <-ctx.Done():
				return ctx.Err()
			}
			p := ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir, Logger: log.Named("ingest"), Instance: hostname()})
			store, err := hashes.Open(ctx, kcfg, "", "import:"+source)
			if err != nil {
				return err
			}
			defer store.Close()
			o.Hashes = store
			if isTerminal(os.Stderr) {
				bar := progressbar.NewOptions64(fi.Size(), progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowBytes(true),
					progressbar.OptionSetDescription("importing "+filepath.Base(path)), progressbar.OptionClearOnFinish())
				o.Progress = func(read int64) { _ = bar.Set64(read) }
				defer bar.Finish()
			}
			sum, err := importer.Run(ctx, p, path, o)
			printSummary(cmd.OutOrStdout(), summaryFormat, path, sum, err)
			switch {
			case err != nil:
				return err
			case sum.Rejected > 0:
				return &exitError{code: exitRejected, err: fmt.Errorf("%d of %d rows rejected", sum.Rejected, sum.Rows)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "", "file format: csv, jsonl or xml (default: the file's extension)")
	f.StringVar(&mappingFile, "mapping", "", "YAML file mapping the file's columns to omnisync fields (see docs/examples/crm-mapping.yaml)")
	f.StringVar(&source, "source", importer.DefaultSource, "name of the system the file comes from: the scope of its customer IDs (a CRM's system name in channels.crm)")
	f.StringVar(&asOf, "as-of", "", "occurred_at of rows without one, RFC 3339 (default: the file's modification time)")
	f.IntVar(&batch, "batch", 500, "rows produced per batch, each acknowledged by Kafka")
	f.DurationVar(&batchTimeout, "batch-timeout", 30*time.Second, "how long to wait for Kafka to acknowledge a batch before stopping")
	f.StringVar(&summaryFormat, "summary", "text", "summary format: text or json")
	f.StringVar(&registryURL, "registry", "http://127.0.0.1:8081", "schema registry URL(s), comma-separated")
	return cmd
}

// printSummary writes what the import did: counts and every rejected row.
func printSummary(w io.Writer, format, path string, sum importer.Summary, err error) {
	if format == "json" {
		out := struct {
			File string `json:"file"`
			importer.Summary
			Error string `json:"error,omitempty"`
		}{File: path, Summary: sum}
		if err != nil {
			out.Error = err.Error()
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return
	}
	for _, r := range sum.Rejections {
		field := ""
		if r.Field != "" {
			field = " " + r.Field + ":"
		}
		fmt.Fprintf(w, "%s:%d:%s %s (dead letter %s)\n", path, r.Line, field, r.Reason, r.DeadLetterID)
	}
	if len(sum.Unmapped) > 0 {
		fmt.Fprintf(w, "columns not imported (not in the mapping): %s\n", strings.Join(sum.Unmapped, ", "))
	}
	state := "done"
	if err != nil {
		state = "stopped: " + err.Error()
	}
	unchanged := ""
	if sum.Unchanged > 0 {
		unchanged = fmt.Sprintf(", %d unchanged", sum.Unchanged)
	}
	fmt.Fprintf(w, "%s: %d rows read, %d imported%s, %d rejected; %s\n", path, sum.Rows, sum.Imported, unchanged, sum.Rejected, state)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
