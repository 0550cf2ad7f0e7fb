// Package pgcdc is the change-data-capture source behind omnisync source
// postgres: it follows one PostgreSQL table through logical replication
// (the pgoutput plugin, a replication slot and a publication of the
// table; protocol by github.com/jackc/pglogrepl) and produces each row
// change as a customer event through the ingest pipeline, as omnisync
// import does with a file's rows (importer.Converter: same mapping, same
// validation, dead letters for rows that do not validate).
//
// The first run creates the slot, exporting its snapshot, and reads the
// whole table in that snapshot (one upsert a row); then it streams every
// committed insert, update and delete after the slot's consistent point.
// The source event ID of a change is lsn:<commit LSN>:<n> (the n-th change
// of the transaction), of a snapshot row snapshot:<consistent point>:<key>,
// so a change sent twice gets the same event ID and is absorbed
// downstream. The slot's confirmed LSN moves only past transactions whose
// events (and dead letters) Kafka acknowledged: after a crash the server
// sends the unconfirmed transactions again, and nothing is lost.
//
// That the snapshot finished is recorded in the source hashes topic
// (package hashes, source "pgcdc"); a slot without that record (a crash
// during the snapshot) is dropped and the snapshot starts over.
package pgcdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/hashes"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/producers/ingest"
)

// DefaultSource is the system name of a source without one.
const DefaultSource = "postgres"

// Config configures Run.
type Config struct {
	DSN     string            // the database's connection string; its user needs the REPLICATION attribute
	Table   string            // [schema.]table
	Key     string            // the column holding the system's customer ID
	Mapping *importer.Mapping // nil: columns named as omnisync fields are those fields
	Source  string            // the system's name: scope of crm:<source>:<key>; default DefaultSource
	Channel events.Channel    // default CRM
	// Slot and Publication default to omnisync_<source>_<table>.
	Slot        string
	Publication string

	Pipeline *ingest.Pipeline // its directory ready
	Kafka    kafka.Config     // for the snapshot record (package hashes)
	Logger   *zap.Logger
	// BatchSize is the most events produced at once; default 500.
	BatchSize int
	// Linger is how long committed changes wait for more before they are
	// produced; default 50 ms.
	Linger time.Duration
}

func (c *Config) defaults() error {
	if c.Source == "" {
		c.Source = DefaultSource
	}
	if _, err := normalize.ID("source", c.Source); err != nil {
		return err
	}
	if c.Table == "" || c.Key == "" {
		return errors.New("postgres source: the table and its key column are required")
	}
	if c.Channel == "" {
		c.Channel = events.ChannelCRM
	}
	if c.Slot == "" {
		c.Slot = SlotName(c.Source, c.Table)
	}
	if c.Publication == "" {
		c.Publication = c.Slot
	}
	if !validSlot.MatchString(c.Slot) {
		return fmt.Errorf("slot %q: want lower-case letters, digits and _ (at most 63)", c.Slot)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.Linger <= 0 {
		c.Linger = 50 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return nil
}

var validSlot = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// SlotName is the default slot (and publication) of a source's table.
func SlotName(source, table string) string {
	s := strings.ToLower("omnisync_" + source + "_" + table)
	s = regexp.MustCompile(`[^a-z0-9_]`).ReplaceAllString(s, "_")
	return s[:min(len(s), 63)]
}

// table is what Run learns of the table at its start.
type table struct {
	oid     uint32
	name    string // quoted, schema-qualified
	columns []string
	types   map[string]uint32
}

// Run follows the table until ctx ends (nil) or something fails.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	t, err := describe(ctx, conn, cfg.Table, cfg.Key)
	if err != nil {
		return err
	}
	m, err := importer.ForKey(cfg.Mapping, t.columns, cfg.Key)
	if err != nil {
		return err
	}
	conv, err := importer.NewConverter(cfg.Pipeline, m, cfg.Source, cfg.Channel)
	if err != nil {
		return err
	}
	if err := publish(ctx, conn, cfg.Publication, t); err != nil {
		return err
	}
	marks, err := hashes.Open(ctx, cfg.Kafka, "", "pgcdc")
	if err != nil {
		return err
	}
	defer marks.Close()

	rcfg, err := pgconn.ParseConfig(cfg.DSN)
	if err != nil {
		return err
	}
	rcfg.RuntimeParams["replication"] = "database"
	rconn, err := pgconn.ConnectConfig(ctx, rcfg)
	if err != nil {
		return fmt.Errorf("opening a replication connection (does the user have the REPLICATION attribute, and wal_level = logical?): %w", err)
	}
	defer rconn.Close(context.Background())
	sys, err := pglogrepl.IdentifySystem(ctx, rconn)
	if err != nil {
		return fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	markKey := sys.SystemID + "/" + sys.DBName + "/" + cfg.Slot
	s := &stream{cfg: cfg, conv: conv, t: t, rconn: rconn, typeMap: pgtype.NewMap(), rels: map[uint32]*pglogrepl.RelationMessage{}}

	exists, err := waitInactive(ctx, conn, cfg.Slot)
	if err != nil {
		return err
	}
	if exists && !marks.Has(markKey) {
		cfg.Logger.Warn("slot exists but its snapshot never finished: dropping it and starting over", zap.String("slot", cfg.Slot))
		if err := pglogrepl.DropReplicationSlot(ctx, rconn, cfg.Slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return fmt.Errorf("dropping slot %s: %w", cfg.Slot, err)
		}
		exists = false
	}
	start := pglogrepl.LSN(0) // the slot's confirmed LSN
	if !exists {
		if marks.Has(markKey) { // of an earlier slot of that name: this one's snapshot has not been read
			if err := marks.Save(ctx, map[string]string{markKey: ""}); err != nil {
				return err
			}
		}
		slot, err := pglogrepl.CreateReplicationSlot(ctx, rconn, cfg.Slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
		if err != nil {
			return fmt.Errorf("creating slot %s: %w", cfg.Slot, err)
		}
		if start, err = pglogrepl.ParseLSN(slot.ConsistentPoint); err != nil {
			return err
		}
		cfg.Logger.Info("slot created; reading the table's snapshot", zap.String("slot", cfg.Slot), zap.Stringer("lsn", start))
		if err := s.snapshot(ctx, conn, slot.SnapshotName, start); err != nil {
			return err
		}
		if err := marks.Save(ctx, map[string]string{markKey: start.String()}); err != nil {
			return err
		}
	}
	err = pglogrepl.StartReplication(ctx, rconn, cfg.Slot, start, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication, PluginArgs: []string{"proto_version '1'", "publication_names '" + cfg.Publication + "'"}})
	if err != nil {
		return fmt.Errorf("starting replication from slot %s: %w", cfg.Slot, err)
	}
	cfg.Logger.Info("streaming changes", zap.String("slot", cfg.Slot), zap.String("table", t.name))
	return s.run(ctx)
}

// waitInactive reports whether the slot exists, once no other connection
// reads it: after a crash the server may not have noticed for a moment
// that the last reader is gone.
func waitInactive(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var exists, active bool
		err := conn.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, slot).Scan(&exists, &active)
		if err != nil || !active {
			return exists, err
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("slot %s is being read by another connection (another omnisync source postgres?)", slot)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// DropSlot drops the source's slot and publication (an operator's clean
// up: a slot nobody reads keeps the server's WAL forever).
func DropSlot(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, cfg.Slot); err != nil {
		return fmt.Errorf("dropping slot %s (is a source still reading it?): %w", cfg.Slot, err)
	}
	_, err = conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{cfg.Publication}.Sanitize())
	return err
}

// describe finds the table, its columns and types, and checks that deletes
// will carry the key column (it is in the replica identity).
func describe(ctx context.Context, conn *pgx.Conn, name, key string) (*table, error) {
	t := &table{types: map[string]uint32{}}
	var nsp, rel string
	var ident byte
	err := conn.QueryRow(ctx, `SELECT c.oid, n.nspname, c.relname, c.relreplident::"char" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`, name).
		Scan(&t.oid, &nsp, &rel, &ident)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("table %q: no such table", name)
	}
	if err != nil {
		return nil, fmt.Errorf("table %q: %w", name, err)
	}
	t.name = pgx.Identifier{nsp, rel}.Sanitize()
	rows, err := conn.Query(ctx, `SELECT attname, atttypid FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, t.oid)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var col string
		var typ uint32
		if err := rows.Scan(&col, &typ); err != nil {
			return nil, err
		}
		t.columns = append(t.columns, col)
		t.types[col] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if _, ok := t.types[key]; !ok {
		return nil, fmt.Errorf("table %s has no column %q (--key): its columns are %q", t.name, key, t.columns)
	}
	if ident == 'f' {
		return t, nil
	}
	var inIdentity bool
	err = conn.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1 AND a.attname = $2 AND (($3 = 'd' AND i.indisprimary) OR ($3 = 'i' AND i.indisreplident))`, t.oid, key, string(ident)).Scan(&inIdentity)
	if err != nil {
		return nil, err
	}
	if !inIdentity {
		return nil, fmt.Errorf("table %s: column %q is not in its replica identity, so a delete would not say which row went: make it the primary key, or ALTER TABLE %s REPLICA IDENTITY FULL", t.name, key, t.name)
	}
	return t, nil
}

// publish creates the publication of the table unless it exists, and
// checks that an existing one publishes the table.
func publish(ctx context.Context, conn *pgx.Conn, pub string, t *table) error {
	var exists, publishes bool
	err := conn.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(pr.prrelid = $2 OR p.puballtables), false)
		FROM pg_publication p LEFT JOIN pg_publication_rel pr ON pr.prpubid = p.oid WHERE p.pubname = $1`, pub, t.oid).Scan(&exists, &publishes)
	if err != nil {
		return err
	}
	switch {
	case exists && !publishes:
		return fmt.Errorf("publication %s does not publish table %s: ALTER PUBLICATION %s ADD TABLE %s, or name another with --publication", pub, t.name, pub, t.name)
	case exists:
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{pub}.Sanitize()+" FOR TABLE "+t.name); err != nil {
		return fmt.Errorf("creating publication %s (or have the table's owner create it: CREATE PUBLICATION %s FOR TABLE %s): %w", pub, pub, t.name, err)
	}
	return nil
}

// stream is the replication under way.
type stream struct {
	cfg     Config
	conv    *importer.Converter
	t       *table
	rconn   *pgconn.PgConn
	typeMap *pgtype.Map
	rels    map[uint32]*pglogrepl.RelationMessage

	events    []*events.CustomerEvent
	letters   []events.DeadLetter
	inTxn     bool
	txnLSN    pglogrepl.LSN // the open transaction's commit LSN
	txnTime   time.Time
	ordinal   int
	committed pglogrepl.LSN // end of the last transaction read whole
	acked     pglogrepl.LSN // end of the last transaction whose events Kafka acknowledged
	confirmed pglogrepl.LSN // what the slot was told
	produced  int
}

// snapshot produces every row of the table as of the slot's exported
// snapshot.
func (s *stream) snapshot(ctx context.Context, conn *pgx.Conn, name string, at pglogrepl.LSN) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+name+"'"); err != nil {
		return fmt.Errorf("using the slot's snapshot: %w", err)
	}
	cols := make([]string, len(s.t.columns))
	for i, c := range s.t.columns {
		cols[i] = pgx.Identifier{c}.Sanitize() + "::text"
	}
	rows, err := tx.Query(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+s.t.name, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return err
	}
	defer rows.Close()
	now := time.Now()
	n := 0
	for rows.Next() {
		vals := make([]*string, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		cells := map[string]string{}
		for i, v := range vals {
			if v != nil {
				if err := s.cell(cells, s.t.columns[i], s.t.types[s.t.columns[i]], []byte(*v)); err != nil {
					return err
				}
			}
		}
		s.upsert(cells, nil, "snapshot:"+at.String()+":"+cells[s.cfg.Key], now, "snapshot")
		n++
		if len(s.events)+len(s.letters) >= s.cfg.BatchSize {
			if err := s.flush(ctx); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := s.flush(ctx); err != nil {
		return err
	}
	s.cfg.Logger.Info("snapshot read", zap.Int("rows", n))
	return tx.Commit(ctx)
}

// upsert converts a row into an event that clears the fields of its NULL
// columns (not those of unchanged ones), or into a dead letter.
func (s *stream) upsert(cells map[string]string, unchanged []string, sourceID string, at time.Time, lsn string) {
	fields, _, invalid := s.conv.Fields(cells, nil, false)
	var ev *events.CustomerEvent
	if invalid == nil {
		clear := slices.DeleteFunc(s.conv.Absent(fields), func(f string) bool {
			return slices.ContainsFunc(unchanged, func(col string) bool {
				m := s.conv.Mapping.Columns[col]
				return m == f || f == "address" && strings.HasPrefix(m, "address.")
			})
		})
		ev, invalid = s.conv.Event(fields, clear, sourceID, at)
	}
	if invalid != nil {
		s.deadLetter(cells, invalid, lsn)
		return
	}
	s.events = append(s.events, ev)
}

func (s *stream) deadLetter(cells map[string]string, invalid *normalize.ValidationError, lsn string) {
	payload, _ := json.Marshal(cells)
	dl := events.DeadLetter{Stage: "ingest", Component: "producer/postgres", Reason: invalid.Reason, ContentType: "application/json",
		Payload: payload, Headers: map[string]string{"table": s.t.name, "lsn": lsn, "source": s.cfg.Source}}
	if invalid.Field != "" {
		dl.Field = &invalid.Field
	}
	s.cfg.Logger.Warn("row refused: sent to the dead-letter topic", zap.String("lsn", lsn), zap.String("field", invalid.Field), zap.String("reason", invalid.Reason))
	s.letters = append(s.letters, dl)
}

// cell adds a column's text value to cells; an array (tags) is joined by
// the mapping's tag separator.
func (s *stream) cell(cells map[string]string, col string, oid uint32, data []byte) error {
	if typ, ok := s.typeMap.TypeForOID(oid); ok {
		if _, isArray := typ.Codec.(*pgtype.ArrayCodec); isArray {
			var parts []string
			if err := s.typeMap.Scan(oid, pgtype.TextFormatCode, data, &parts); err != nil {
				return fmt.Errorf("column %s: %w", col, err)
			}
			cells[col] = strings.Join(parts, s.conv.Mapping.TagSeparator)
			return nil
		}
	}
	cells[col] = string(data)
	return nil
}

// tuple turns a replicated row into cells, and names its unchanged
// columns (TOASTed values an update did not touch, which PostgreSQL does
// not send: their fields keep their values).
func (s *stream) tuple(rel *pglogrepl.RelationMessage, tup *pglogrepl.TupleData) (map[string]string, []string, error) {
	cells := map[string]string{}
	var unchanged []string
	if tup == nil {
		return cells, nil, nil
	}
	for i, c := range tup.Columns {
		if i >= len(rel.Columns) {
			continue
		}
		switch c.DataType {
		case pglogrepl.TupleDataTypeText:
			if err := s.cell(cells, rel.Columns[i].Name, rel.Columns[i].DataType, c.Data); err != nil {
				return nil, nil, err
			}
		case pglogrepl.TupleDataTypeToast:
			unchanged = append(unchanged, rel.Columns[i].Name)
		}
	}
	return cells, unchanged, nil
}

const statusInterval = 10 * time.Second

// run reads the replication stream until ctx ends.
func (s *stream) run(ctx context.Context) error {
	nextStatus := time.Now().Add(statusInterval)
	var flushAt time.Time // when committed changes are produced, if any wait
	for {
		if time.Now().After(nextStatus) {
			if err := s.status(); err != nil {
				return err
			}
			nextStatus = time.Now().Add(statusInterval)
		}
		if !flushAt.IsZero() && !time.Now().Before(flushAt) {
			if err := s.flush(ctx); err != nil {
				return s.stopped(ctx, err)
			}
			flushAt = time.Time{}
		}
		deadline := nextStatus
		if !flushAt.IsZero() && flushAt.Before(deadline) {
			deadline = flushAt
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		raw, err := s.rconn.ReceiveMessage(rctx)
		cancel()
		if ctx.Err() != nil {
			return s.stopped(ctx, nil)
		}
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("replication: %w", err)
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication: %s", msg.Message)
		case *pgproto3.CopyData:
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				k, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return err
				}
				if !s.inTxn && len(s.events) == 0 && len(s.letters) == 0 && k.ServerWALEnd > s.committed {
					s.committed, s.acked = k.ServerWALEnd, k.ServerWALEnd // nothing of ours before it is unread or unacknowledged
				}
				if k.ReplyRequested {
					nextStatus = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return err
				}
				committed, err := s.handle(x.WALData)
				if err != nil {
					return err
				}
				if len(s.events)+len(s.letters) >= s.cfg.BatchSize {
					if err := s.flush(ctx); err != nil {
						return s.stopped(ctx, err)
					}
					flushAt = time.Time{}
				} else if committed && flushAt.IsZero() {
					flushAt = time.Now().Add(s.cfg.Linger)
				}
			}
		}
	}
}

// stopped produces what was read whole before returning err (nil: ctx
// ended), so that a clean stop confirms all it read.
func (s *stream) stopped(ctx context.Context, err error) error {
	if err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if !s.inTxn {
		if err := s.flush(fctx); err != nil {
			return err
		}
	}
	s.cfg.Logger.Info("stopped", zap.Int("events", s.produced), zap.Stringer("confirmed_lsn", s.confirmed))
	return nil
}

// handle applies one pgoutput message; committed says a transaction ended.
func (s *stream) handle(data []byte) (committed bool, err error) {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return false, fmt.Errorf("parsing a replication message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		s.rels[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		s.inTxn, s.txnLSN, s.txnTime, s.ordinal = true, m.FinalLSN, m.CommitTime, 0
	case *pglogrepl.CommitMessage:
		s.inTxn, s.committed = false, m.TransactionEndLSN
		return true, nil
	case *pglogrepl.InsertMessage:
		return false, s.change(m.RelationID, nil, m.Tuple, false)
	case *pglogrepl.UpdateMessage:
		return false, s.change(m.RelationID, m.OldTuple, m.NewTuple, false)
	case *pglogrepl.DeleteMessage:
		return false, s.change(m.RelationID, m.OldTuple, nil, true)
	case *pglogrepl.TruncateMessage:
		s.cfg.Logger.Warn("the table was truncated: its customers are not deleted (a truncate names no rows)", zap.Stringer("lsn", s.txnLSN))
	}
	return false, nil
}

// change turns a row change into events: an upsert of the new row, a
// delete of the old key (a delete, or an update that changed the key).
func (s *stream) change(relID uint32, old, new *pglogrepl.TupleData, del bool) error {
	rel, ok := s.rels[relID]
	if !ok {
		return fmt.Errorf("replication: a change of relation %d before its description", relID)
	}
	if rel.RelationID != s.t.oid {
		return nil
	}
	lsn := s.txnLSN.String()
	next := func() string {
		s.ordinal++
		return "lsn:" + lsn + ":" + strconv.Itoa(s.ordinal)
	}
	oldCells, _, err := s.tuple(rel, old)
	if err != nil {
		return err
	}
	newCells, unchanged, err := s.tuple(rel, new)
	if err != nil {
		return err
	}
	oldKey, hasOld := oldCells[s.cfg.Key]
	if del || (hasOld && oldKey != newCells[s.cfg.Key]) {
		id := strings.TrimSpace(oldKey)
		ev, invalid := s.conv.Delete(id, next(), s.txnTime)
		if invalid != nil {
			s.deadLetter(oldCells, invalid, lsn)
		} else {
			s.events = append(s.events, ev)
		}
	}
	if !del {
		s.upsert(newCells, unchanged, next(), s.txnTime, lsn)
	}
	return nil
}

// flush produces the pending dead letters and events, then confirms the
// transactions read whole.
func (s *stream) flush(ctx context.Context) error {
	committed := s.committed
	if len(s.letters) > 0 {
		if _, err := s.cfg.Pipeline.DeadLetters(ctx, "postgres", s.letters); err != nil {
			return fmt.Errorf("Kafka did not take %d dead letters: %w", len(s.letters), err)
		}
		s.letters = nil
	}
	if n := len(s.events); n > 0 {
		if err := s.cfg.Pipeline.Produce(ctx, s.cfg.Channel, &ingest.Batch{Customers: s.events}); err != nil {
			return fmt.Errorf("Kafka did not take %d events: %w", n, err)
		}
		s.events = nil
		s.produced += n
	}
	s.acked = committed
	return s.status()
}

// status tells the server what it may forget: every transaction whose
// events Kafka acknowledged.
func (s *stream) status() error {
	if s.acked == 0 || s.acked < s.confirmed { // 0: not streaming yet (the snapshot)
		return nil
	}
	if err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.rconn, pglogrepl.StandbyStatusUpdate{WALWritePosition: s.acked}); err != nil {
		return fmt.Errorf("confirming LSN %s: %w", s.acked, err)
	}
	s.confirmed = s.acked
	return nil
}
