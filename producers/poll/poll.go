// Package poll is the source behind omnisync source poll: it reads every
// record of a system without a change feed from a paginated HTTP JSON API,
// at an interval, and produces only what changed since the last pass,
// detected by each record's content hash (package hashes: kept in Kafka,
// so a restart does not send everything again). Records are converted as
// omnisync import converts a file's rows (importer.Converter: same
// mapping, same validation, dead letters for records that do not
// validate).
//
// A pass follows the pages from the URL: each page is a JSON array of
// records, or an object {"records": [...], "next": URL} whose next (a URL,
// relative to the page's, absent or empty on the last page) is the next
// page. A pass that reads every page is complete: a record produced
// before and missing from it was deleted, and is produced as a delete. A
// pass that fails part way deletes nothing.
package poll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/pkg/retry"
	"github.com/omnisync/omnisync/producers/hashes"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/producers/ingest"
)

// DefaultSource is the system name of a source without one.
const DefaultSource = "poll"

// MaxPages bounds a pass, against a next link that loops.
const MaxPages = 100_000

// pageAttempts is how many times a page is fetched before the pass fails.
const pageAttempts = 4

// Config configures a Poller.
type Config struct {
	URL      string
	Interval time.Duration // between the starts of two passes
	Mapping  *importer.Mapping
	Source   string         // the system's name: scope of crm:<source>:<id>; default DefaultSource
	Channel  events.Channel // default CRM
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token      string
	HTTPClient *http.Client // default one with a 30 s timeout
	Pipeline   *ingest.Pipeline
	Hashes     *hashes.Store // of Source
	Logger     *zap.Logger
	BatchSize  int // events produced at once; default 500
}

// Pass is what one pass did.
type Pass struct {
	Records   int  `json:"records"`   // read
	Changed   int  `json:"changed"`   // produced as upserts (new or changed)
	Deleted   int  `json:"deleted"`   // produced as deletes
	Unchanged int  `json:"unchanged"` // same hash as before
	Rejected  int  `json:"rejected"`  // in the dead-letter topic
	Complete  bool `json:"complete"`  // every page was read
}

// Poller polls one API.
type Poller struct {
	cfg  Config
	conv *importer.Converter
}

// New checks cfg.
func New(cfg Config) (*Poller, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want an http:// or https:// URL", cfg.URL)
	}
	if cfg.Source == "" {
		cfg.Source = DefaultSource
	}
	if cfg.Channel == "" {
		cfg.Channel = events.ChannelCRM
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Hashes == nil || cfg.Pipeline == nil {
		return nil, errors.New("poll: a pipeline and the source's hashes are required")
	}
	conv, err := importer.NewConverter(cfg.Pipeline, cfg.Mapping, cfg.Source, cfg.Channel)
	if err != nil {
		return nil, err
	}
	return &Poller{cfg: cfg, conv: conv}, nil
}

// Run makes a pass every interval until ctx ends (nil). A failed pass is
// logged and tried again at the next interval; only a pass whose events
// Kafka did not acknowledge is retried at once, with backoff.
func (p *Poller) Run(ctx context.Context) error {
	for {
		start := time.Now()
		pass, err := p.Pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			p.cfg.Logger.Warn("poll pass failed; trying again at the next interval", zap.Error(err), zap.Any("pass", pass))
		} else {
			p.cfg.Logger.Info("poll pass", zap.Any("pass", pass), zap.Duration("took", time.Since(start)))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(start.Add(p.cfg.Interval))):
		}
	}
}

// Pass reads every page once and produces what changed.
func (p *Poller) Pass(ctx context.Context) (Pass, error) {
	var pass Pass
	b := &batch{p: p, hashes: map[string]string{}}
	seen := map[string]bool{}
	now := time.Now()
	next := p.cfg.URL
	for page := 0; next != ""; page++ {
		if page == MaxPages {
			return pass, fmt.Errorf("more than %d pages: does the next link loop?", MaxPages)
		}
		records, nextURL, err := p.page(ctx, next)
		if err != nil {
			return pass, err
		}
		for i, raw := range records {
			pass.Records++
			cells, nested, invalid := parse(raw, p.conv.Mapping.TagSeparator)
			id := ""
			if invalid == nil {
				id = p.conv.ID(cells, true)
			}
			if id != "" && seen[id] {
				invalid = normalize.Invalid("id", "%q appears twice in this pass", id)
			}
			if id != "" {
				seen[id] = true // listed, even if refused: not deleted
			}
			var fields map[string]string
			if invalid == nil {
				fields, _, invalid = p.conv.Fields(cells, nested, true)
			}
			if invalid != nil {
				pass.Rejected++
				b.reject(raw, invalid, next, i)
				continue
			}
			hash := importer.ContentHash(fields)
			if !p.cfg.Hashes.Changed(id, hash) {
				pass.Unchanged++
				continue
			}
			ev, invalid := p.conv.Event(fields, p.conv.Absent(fields), "poll:"+hash, now)
			if invalid != nil {
				pass.Rejected++
				b.reject(raw, invalid, next, i)
				continue
			}
			pass.Changed++
			b.add(ev, id, hash)
			if b.full() {
				if err := b.flush(ctx); err != nil {
					return pass, err
				}
			}
		}
		next = nextURL
	}
	pass.Complete = true
	for _, id := range p.cfg.Hashes.Keys() {
		if seen[id] {
			continue
		}
		ev, invalid := p.conv.Delete(id, "poll-delete:"+p.cfg.Hashes.Hash(id), now)
		if invalid != nil {
			return pass, fmt.Errorf("deleting %q: %v", id, invalid)
		}
		pass.Deleted++
		b.add(ev, id, "")
		if b.full() {
			if err := b.flush(ctx); err != nil {
				return pass, err
			}
		}
	}
	return pass, b.flush(ctx)
}

// page fetches one page, retrying network errors and 5xx a few times.
func (p *Poller) page(ctx context.Context, pageURL string) ([]json.RawMessage, string, error) {
	var body []byte
	attempts := 0
	err := retry.Do(ctx, p.cfg.Logger, "fetching "+pageURL, func() error {
		if attempts++; attempts > pageAttempts {
			return retry.Permanent(fmt.Errorf("%s: gave up after %d attempts", pageURL, pageAttempts))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, pageURL, nil)
		if err != nil {
			return retry.Permanent(err)
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "omnisync-poll")
		if p.cfg.Token != "" {
			req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
		}
		resp, err := p.cfg.HTTPClient.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", pageURL, err)
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return fmt.Errorf("%s answered %d", pageURL, resp.StatusCode)
		}
		if resp.StatusCode != http.StatusOK {
			return retry.Permanent(fmt.Errorf("%s answered %d: %s", pageURL, resp.StatusCode, bytes.TrimSpace(body[:min(len(body), 200)])))
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var records []json.RawMessage
		if err := json.Unmarshal(body, &records); err != nil {
			return nil, "", fmt.Errorf("%s: not a JSON array of records: %w", pageURL, err)
		}
		return records, "", nil
	}
	var pg struct {
		Records []json.RawMessage `json:"records"`
		Next    string            `json:"next"`
	}
	if err := json.Unmarshal(body, &pg); err != nil || pg.Records == nil {
		return nil, "", fmt.Errorf(`%s: want a JSON array of records or {"records": [...], "next": URL}`, pageURL)
	}
	if pg.Next == "" {
		return pg.Records, "", nil
	}
	base, _ := url.Parse(pageURL)
	ref, err := url.Parse(pg.Next)
	if err != nil {
		return nil, "", fmt.Errorf("%s: next %q: %w", pageURL, pg.Next, err)
	}
	return pg.Records, base.ResolveReference(ref).String(), nil
}

// parse reads a record's members as cells (importer.Cells).
func parse(raw json.RawMessage, sep string) (map[string]string, []string, *normalize.ValidationError) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, nil, normalize.Invalid("", "a record is not a JSON object")
	}
	cells, nested := importer.Cells(obj, sep)
	return cells, nested, nil
}

// batch is the events (and dead letters) of a pass not yet produced, and
// the hashes to save once Kafka acknowledged them.
type batch struct {
	p       *Poller
	events  []*events.CustomerEvent
	letters []events.DeadLetter
	hashes  map[string]string
}

func (b *batch) add(ev *events.CustomerEvent, id, hash string) {
	b.events = append(b.events, ev)
	b.hashes[id] = hash
}

func (b *batch) reject(raw json.RawMessage, invalid *normalize.ValidationError, page string, i int) {
	dl := events.DeadLetter{Stage: "ingest", Component: "producer/poll", Reason: invalid.Reason, ContentType: "application/json",
		Payload: raw, Headers: map[string]string{"page": page, "index": strconv.Itoa(i), "source": b.p.cfg.Source}}
	if invalid.Field != "" {
		dl.Field = &invalid.Field
	}
	b.letters = append(b.letters, dl)
}

func (b *batch) full() bool { return len(b.events)+len(b.letters) >= b.p.cfg.BatchSize }

// flush produces the batch, retrying until Kafka acknowledges it or ctx
// ends, then saves its hashes.
func (b *batch) flush(ctx context.Context) error {
	err := retry.Do(ctx, b.p.cfg.Logger, "producing a poll batch", func() error {
		if len(b.letters) > 0 {
			if _, err := b.p.cfg.Pipeline.DeadLetters(ctx, "poll", b.letters); err != nil {
				return err
			}
			b.letters = nil
		}
		if len(b.events) > 0 {
			err := b.p.cfg.Pipeline.Produce(ctx, b.p.cfg.Channel, &ingest.Batch{Customers: b.events})
			var invalid *normalize.ValidationError
			if errors.As(err, &invalid) {
				return retry.Permanent(err)
			}
			if err != nil {
				return err
			}
			b.events = nil
		}
		if err := b.p.cfg.Hashes.Save(ctx, b.hashes); err != nil {
			return err
		}
		b.hashes = map[string]string{}
		return nil
	})
	return err
}
