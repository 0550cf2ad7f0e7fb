package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/omnisync/omnisync/consumers/export"
	"github.com/omnisync/omnisync/consumers/store"
)

func newExportCommand() *cobra.Command {
	var dsn, format, out string
	var withMessages bool
	cmd := &cobra.Command{
		Use:   "export --store DSN --format csv|jsonl|xml|avro [--out FILE] [--with-messages]",
		Short: "Export the merged customer profiles of a store as CSV, JSON Lines, XML or Avro",
		Long: `Export every customer of a store that is neither deleted nor merged into
another (the survivor carries the merged profile), one row a customer in
customer-ID order. Rows are written as the store is read: memory holds
one customer at a time (csv reads the store twice, first for its header).

Formats:
  csv    id, occurred_at (the customer's last update) and one column a
         profile value: name, phone, email, gender, birthday, vip_level,
         tags (joined by ;), id_number, address.<part>, attributes.<key>.
  jsonl  the same members (tags an array), plus "provenance": field →
         channel, source, event_id and occurred_at of the write that set it,
         and with --with-messages "messages": the customer's messages in the
         Avro JSON encoding of the MessageEvent schema.
  xml    <customers><customer> with one child element a csv column, and
         with --with-messages <messages><message>, each message's text the
         Avro JSON encoding of MessageEvent (its metadata keys are free
         text, not XML names).
  avro   an Avro object container file (deflate) of CustomerState records,
         the state topic's schema embedded: fields with provenance,
         identities, conflicts, version; with --with-messages, of
         CustomerExport records {state, messages: [MessageEvent]}.

csv, jsonl and xml files are read back by omnisync import without a
mapping. The import gives the customers new IDs (each holding the verified
identity crm:<source>:<exported id>) and new provenance (channel IMPORT);
what it reproduces is every profile value. Cleared fields are left out, and
a tag holding ";" stops a csv, jsonl or xml export (the import would split
it); the import ignores provenance and messages. csv refuses
--with-messages. The messages of a customer merged into another stay
under its ID in the store and are left out with it (the summary counts
them).

Without --out the file goes to standard output; with it, it is written
next to FILE and renamed into place once complete. The summary goes to
standard error. Exit status: 0 done, 1 failed (bad flags, store, or data
the format cannot carry), with no --out file left behind.`,
		Example: `  # Profiles as CSV, then import them into another deployment
  omnisync export --store sqlite:.omnisync/omnisync.db --format csv --out customers.csv
  omnisync import customers.csv --source old-deployment

  # Profiles with provenance and messages, one customer a line
  omnisync export --store postgres://omnisync:secret@db:5432/omnisync --format jsonl --with-messages --out customers.jsonl

  # CustomerState records for Avro tools (schema embedded)
  omnisync export --store sqlite:omnisync.db --out customers.avro
  python3 -c 'import avro.datafile, avro.io, sys; print(sum(1 for _ in avro.datafile.DataFileReader(open(sys.argv[1], "rb"), avro.io.DatumReader())))' customers.avro`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dsn == "" {
				return errors.New("--store is required: sqlite:PATH or postgres://…")
			}
			if format == "" && out != "" {
				format = strings.TrimPrefix(filepath.Ext(out), ".")
			}
			o := export.Options{Format: format, WithMessages: withMessages}
			if format == "" {
				return errors.New("--format is required when --out has no csv, jsonl, xml or avro extension")
			}
			if err := o.Check(); err != nil {
				return err
			}
			if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
				if _, err := os.Stat(path); err != nil {
					return fmt.Errorf("--store: %w", err) // opening would create an empty store
				}
			}
			ctx := cmd.Context()
			st, err := openStore(ctx, dsn)
			if err != nil {
				return err
			}
			defer st.Close()
			sc, ok := st.(store.Scanner)
			if !ok {
				return fmt.Errorf("store %T cannot be scanned", st)
			}
			var w io.Writer = cmd.OutOrStdout()
			var tmp *os.File
			if out != "" {
				if tmp, err = os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*"); err != nil {
					return err
				}
				defer os.Remove(tmp.Name()) // after the rename: nothing to remove
				defer tmp.Close()
				w = tmp
			}
			sum, err := export.Write(ctx, sc, w, o)
			if err == nil && tmp != nil {
				if err = tmp.Close(); err == nil {
					err = os.Rename(tmp.Name(), out)
				}
			}
			if err != nil {
				return fmt.Errorf("export stopped: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d customers, %d messages; left out %d deleted, %d merged into another (with %d messages)\n",
				sum.Customers, sum.Messages, sum.Deleted, sum.Merged, sum.MergedMessages)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dsn, "store", "", "store to export: sqlite:PATH or postgres://…")
	f.StringVar(&format, "format", "", "csv, jsonl, xml or avro (default: --out's extension)")
	f.StringVarP(&out, "out", "o", "", "file to write (default: standard output)")
	f.BoolVar(&withMessages, "with-messages", false, "nest each customer's messages in its row (jsonl, xml, avro)")
	return cmd
}
