package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/omnisync/omnisync/consumers/store/postgres"
)

// report is everything measured in one run; chaos-report.json is it as
// JSON, chaos-report.md the same for people.
type report struct {
	Run             string         `json:"run"`
	Started         time.Time      `json:"started"`
	Finished        time.Time      `json:"finished"`
	Quick           bool           `json:"quick"`
	Brokers         string         `json:"brokers"`
	WebRate         float64        `json:"web_rate_per_s"`
	PhoneRate       float64        `json:"phone_rate_per_s"`
	LoadStarted     time.Time      `json:"load_started"`
	LoadStopped     time.Time      `json:"load_stopped"`
	Load            loadSummary    `json:"load"`
	Phases          []*phaseReport `json:"faults"`
	Final           finalReport    `json:"final"`
	UnexpectedExits []string       `json:"unexpected_exits"`
	Errors          []string       `json:"errors"`
	WorkDir         string         `json:"work_dir,omitempty"`

	doubles map[string]bool
}

type loadSummary struct {
	Requests       map[string]int `json:"requests"` // per channel
	Attempts       int            `json:"attempts"`
	AckedRequests  int            `json:"acked_requests"`
	NeverAcked     int            `json:"never_acked_requests"`
	AckedMessages  int            `json:"acked_messages"`
	Retried        int            `json:"retried_requests"`
	DurationSecond float64        `json:"duration_s"`
}

type phaseReport struct {
	Fault           string        `json:"fault"`
	Start           time.Time     `json:"start"`
	FaultStart      time.Time     `json:"fault_start"`
	FaultEnd        time.Time     `json:"fault_end"`
	End             time.Time     `json:"end"`
	DownStart       *time.Time    `json:"all_down_start,omitempty"`
	DownEnd         *time.Time    `json:"all_down_end,omitempty"`
	Stats           windowReport  `json:"fault_window"`
	BackAt          time.Time     `json:"back"` // the faulty service serving again
	OwnedSeconds    *float64      `json:"every_partition_owned_s_after_back"`
	DrainSeconds    *float64      `json:"lag_zero_s_after_back"` // the log's end at BackAt is in the store
	CheckLagSeconds float64       `json:"check_lag_wait_s"`
	Acked           int           `json:"acked_messages"`
	Lost            []lostMessage `json:"lost"`
	Doubled         []doubled     `json:"doubled"`
	MemberStops     []*memberStop `json:"member_stops,omitempty"`
	Measures        []measure     `json:"measures,omitempty"`
	Notes           []string      `json:"notes"`
	Problems        []string      `json:"problems,omitempty"`
	mu              sync.Mutex
}

type measure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

type memberStop struct {
	Member           string    `json:"member"`
	Signal           string    `json:"signal"`
	StoppedAt        time.Time `json:"stopped_at"`
	RestartedAt      time.Time `json:"restarted_at"`
	WindowSeconds    float64   `json:"window_s"`
	TakenOverSeconds *float64  `json:"survivor_owns_every_partition_s_after_stop,omitempty"`
	OwnedSeconds     *float64  `json:"every_partition_owned_s_after_restart"`
	DrainedSeconds   *float64  `json:"backlog_drained_s_after_restart,omitempty"`
}

// windowReport describes the attempts sent inside the fault window.
type windowReport struct {
	Sent           int      `json:"sent"`
	OK             int      `json:"2xx"`
	Unavailable    int      `json:"503"`
	NoAnswer       int      `json:"no_answer"`
	Other          int      `json:"other"`
	Share2xx       float64  `json:"share_2xx_pct"`
	P50ms          float64  `json:"p50_ms_2xx"`
	P99ms          float64  `json:"p99_ms_2xx"`
	FirstOKSeconds *float64 `json:"first_2xx_s_after_fault_end"`
	// OKWhileAllDown counts 2xx answered while every broker was down: an
	// acknowledgement no broker gave. OKAfterReturn counts attempts sent
	// while all were down that got their 2xx after the brokers returned,
	// still inside their wait for Kafka.
	OKWhileAllDown   int `json:"2xx_answered_while_all_brokers_down"`
	OKAfterReturn    int `json:"sent_while_all_brokers_down_2xx_after_return"`
	SentWhileAllDown int `json:"sent_while_all_brokers_down"`
}

type finalReport struct {
	EndOffsets    int64                `json:"records_in_log"`
	Acked         int                  `json:"acked_messages"`
	Lost          []lostMessage        `json:"lost"`
	Doubled       []doubled            `json:"doubled"`
	ReplaySeconds float64              `json:"replay_s"`
	Compared      bool                 `json:"compared"`
	LiveHash      string               `json:"live_hash"`
	ReplayHash    string               `json:"replay_hash"`
	LiveTables    []postgres.TableHash `json:"live_tables"`
	ReplayTables  []postgres.TableHash `json:"replay_tables"`
	Problems      []string             `json:"problems,omitempty"`
}

func (r *report) seenDouble(token string) bool {
	if r.doubles == nil {
		r.doubles = map[string]bool{}
	}
	seen := r.doubles[token]
	r.doubles[token] = true
	return seen
}

// failures lists why the run failed; none means it passed.
func (r *report) failures() []string {
	out := append([]string(nil), r.Errors...)
	for _, p := range r.Phases {
		if len(p.Lost) > 0 {
			out = append(out, fmt.Sprintf("%s: %d acknowledged messages lost", p.Fault, len(p.Lost)))
		}
		if len(p.Doubled) > 0 {
			out = append(out, fmt.Sprintf("%s: %d inputs stored more than once", p.Fault, len(p.Doubled)))
		}
		if p.Stats.OKWhileAllDown > 0 {
			out = append(out, fmt.Sprintf("%s: %d requests were answered 2xx while every broker was down", p.Fault, p.Stats.OKWhileAllDown))
		}
		out = append(out, p.Problems...)
	}
	for _, t := range r.targets() {
		if !t.met {
			out = append(out, fmt.Sprintf("target missed: %s (%s)", t.name, t.measured))
		}
	}
	f := r.Final
	if len(f.Lost) > 0 {
		out = append(out, fmt.Sprintf("final: %d acknowledged messages lost", len(f.Lost)))
	}
	if len(f.Doubled) > 0 {
		out = append(out, fmt.Sprintf("final: %d inputs stored more than once", len(f.Doubled)))
	}
	if !f.Compared && len(r.Errors) == 0 {
		out = append(out, "final: the replay comparison was not made")
	}
	if f.Compared && f.LiveHash != f.ReplayHash {
		out = append(out, "final: the store differs from a clean replay of the log")
	}
	return out
}

func (r *report) ok() bool { return len(r.failures()) == 0 }

func (r *report) summarizeLoad(reqs []request) {
	s := loadSummary{Requests: map[string]int{}}
	for _, q := range reqs {
		s.Requests[q.Channel]++
		s.Attempts += len(q.Attempts)
		if len(q.Attempts) > 1 {
			s.Retried++
		}
		if q.acked() {
			s.AckedRequests++
			s.AckedMessages += len(q.IDs)
		} else {
			s.NeverAcked++
		}
	}
	s.DurationSecond = r.LoadStopped.Sub(r.LoadStarted).Seconds()
	r.Load = s
}

// windowStats counts the attempts sent in the fault window
// [FaultStart, FaultEnd) by outcome.
func windowStats(reqs []request, ph *phaseReport) windowReport {
	var w windowReport
	var lat []float64
	for _, q := range reqs {
		for _, a := range q.Attempts {
			if ph.DownStart != nil {
				down := func(t time.Time) bool { return !t.Before(*ph.DownStart) && t.Before(*ph.DownEnd) }
				if down(a.Sent) {
					w.SentWhileAllDown++
				}
				switch {
				case a.Code/100 == 2 && down(a.Done):
					w.OKWhileAllDown++
				case a.Code/100 == 2 && down(a.Sent):
					w.OKAfterReturn++
				}
			}
			if a.Code/100 == 2 && !a.Sent.Before(ph.FaultEnd) {
				if d := a.Done.Sub(ph.FaultEnd).Seconds(); w.FirstOKSeconds == nil || d < *w.FirstOKSeconds {
					w.FirstOKSeconds = ptr(d)
				}
			}
			if a.Sent.Before(ph.FaultStart) || !a.Sent.Before(ph.FaultEnd) {
				continue
			}
			w.Sent++
			switch {
			case a.Code/100 == 2:
				w.OK++
				lat = append(lat, float64(a.Done.Sub(a.Sent).Microseconds())/1000)
			case a.Code == 503:
				w.Unavailable++
			case a.Code == 0:
				w.NoAnswer++
			default:
				w.Other++
			}
		}
	}
	if w.Sent > 0 {
		w.Share2xx = 100 * float64(w.OK) / float64(w.Sent)
	}
	sort.Float64s(lat)
	w.P50ms, w.P99ms = quantile(lat, 0.50), quantile(lat, 0.99)
	return w
}

// quantile returns the q-quantile of sorted values by the nearest-rank
// method.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "chaos-report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chaos-report.md"), []byte(r.markdown()), 0o644)
}

var faultTitles = map[string]string{
	"broker-kill":       "1. kill -9 one broker, restart it",
	"rolling-restart":   "2. rolling restart of the three brokers (SIGTERM)",
	"member-restart":    "3. rolling restart of the materializer members (SIGTERM)",
	"materializer-kill": "4. kill -9 a materializer member, repeatedly",
	"producer-kill":     "5. kill -9 a producer with requests in flight",
	"postgres-stop":     "6. PostgreSQL stopped, then started",
	"all-brokers-stop":  "7. every broker stopped, then the cluster started",
}

// promise is one recovery target checked against a run.
type promise struct {
	name, measured string
	met            bool
}

// targets checks the recovery promises of the faults that ran: a broker's
// death invisible to clients, partitions owned again within 5 s of a
// member's SIGTERM and of the brokers' return, and the store caught up
// within 10 s of PostgreSQL's return.
func (r *report) targets() []promise {
	var out []promise
	within := func(name string, v *float64, limit float64) {
		t := promise{name: name, measured: "not measured"}
		if v != nil {
			t.measured, t.met = fmt.Sprintf("%.1f s", *v), *v <= limit
		}
		out = append(out, t)
	}
	for _, ph := range r.Phases {
		switch ph.Fault {
		case "broker-kill":
			out = append(out, promise{name: "2xx share through one broker's kill -9 ≥ 99.9 %",
				measured: fmt.Sprintf("%.2f %% of %d", ph.Stats.Share2xx, ph.Stats.Sent), met: ph.Stats.Sent > 0 && ph.Stats.Share2xx >= 99.9})
		case "member-restart":
			for _, k := range ph.MemberStops {
				within(fmt.Sprintf("survivor owns every partition ≤ 5 s after SIGTERM of %s", k.Member), k.TakenOverSeconds, 5)
				within(fmt.Sprintf("every partition owned ≤ 5 s after %s restarted", k.Member), k.OwnedSeconds, 5)
			}
		case "all-brokers-stop":
			within("every partition owned ≤ 5 s after the brokers' return", ph.OwnedSeconds, 5)
		case "postgres-stop":
			within("lag zero ≤ 10 s after PostgreSQL's return", ph.DrainSeconds, 10)
		}
	}
	return out
}

func secs(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f", *p)
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	verdict := "PASS"
	if !r.ok() {
		verdict = "FAIL"
	}
	p("# Chaos report — %s\n\n", verdict)
	p("Written by `make chaos` (`internal/tools/chaos`), run `%s`, %s to %s (%.1f min) on %d CPUs.",
		r.Run, r.Started.Format("2006-01-02 15:04:05 UTC"), r.Finished.Format("15:04:05 UTC"), r.Finished.Sub(r.Started).Minutes(), runtime.NumCPU())
	if r.Quick {
		p(" **Quick mode**: shortened phases.")
	}
	p("\n\n## Setup and load\n\n")
	p("- Three-node Apache Kafka in KRaft mode (`scripts/kafka.sh up --nodes 3`, %s), replication factor 3, `min.insync.replicas=2`, 12 partitions per topic; PostgreSQL 15 (`scripts/postgres.sh`).\n", r.Brokers)
	p("- Separate processes: the schema registry, `omnisync produce --channel web`, `omnisync produce --channel phone`, and two `omnisync consume` members of one group writing to PostgreSQL.\n")
	p("- Open-loop load: %g web requests/s (one chat message each with a unique client event ID, visitor and token; every tenth with a profile) and %g phone requests/s (a call transcript of three segments, each with a unique token), each sent on schedule in its own goroutine with a 15 s client timeout. A request answered 503 or not at all is sent again with the same body a second later, for up to 2 min; acknowledged IDs come only from 2xx answers.\n",
		r.WebRate, r.PhoneRate)
	l := r.Load
	p("- The load ran %.0f s: %d web + %d phone requests, %d attempts (%d requests retried); %d requests acknowledged (%d messages), %d never acknowledged.\n\n",
		l.DurationSecond, l.Requests["web"], l.Requests["phone"], l.Attempts, l.Retried, l.AckedRequests, l.AckedMessages, l.NeverAcked)

	p("## Faults\n\n")
	p("Each fault ran under the load after a baseline, was undone, and was followed by a recovery phase; then the harness waited until the group's offsets in the store reached the log's end and looked up every message acknowledged since the previous check by its returned ID (*acknowledged*, *lost*); *doubled* counts tokens stored under more than one message ID, over the whole store. The *fault window* runs from the fault's start to the moment the harness undid it (restart issued); its figures count attempts by the time they were sent.\n\n")
	p("| fault | window s | sent | 2xx | 503 | no answer | other | 2xx share | p50 / p99 ms (2xx) | acknowledged | lost | doubled |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, ph := range r.Phases {
		w := ph.Stats
		p("| %s | %.1f | %d | %d | %d | %d | %d | %.2f %% | %.0f / %.0f | %d | %d | %d |\n",
			faultTitles[ph.Fault], ph.FaultEnd.Sub(ph.FaultStart).Seconds(), w.Sent, w.OK, w.Unavailable, w.NoAnswer, w.Other, w.Share2xx,
			w.P50ms, w.P99ms, ph.Acked, len(ph.Lost), len(ph.Doubled))
	}
	p("\n### Recovery\n\n")
	p("*Fault end*: the harness undoes the fault (issues the restart). *Back*: the faulty service serves again (the broker or cluster answers, PostgreSQL accepts connections, the restarted process is ready). *Every partition owned*: the group is stable with both members and every partition of the consumed topics assigned. *Lag zero*: the store's offsets reach the log's end as it was when the service was back.\n\n")
	p("| fault | back, s after fault end | first 2xx, s after fault end | every partition owned, s after back | lag zero, s after back |\n|---|---|---|---|---|\n")
	for _, ph := range r.Phases {
		var back *float64
		if !ph.BackAt.IsZero() {
			back = ptr(ph.BackAt.Sub(ph.FaultEnd).Seconds())
		}
		p("| %s | %s | %s | %s | %s |\n", faultTitles[ph.Fault], secs(back), secs(ph.Stats.FirstOKSeconds), secs(ph.OwnedSeconds), secs(ph.DrainSeconds))
	}
	p("\n### Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range r.targets() {
		p("| %s | %s | %s |\n", t.name, t.measured, yesNo(t.met))
	}
	p("\n")
	for _, ph := range r.Phases {
		p("### %s\n\n", faultTitles[ph.Fault])
		for _, n := range ph.Notes {
			p("- %s\n", n)
		}
		for _, m := range ph.Measures {
			p("- %s: %.1f\n", m.Name, m.Value)
		}
		if ph.DownStart != nil {
			p("- Attempts sent while every broker was down: %d; 2xx answered while every broker was down: **%d**; %d of the attempts sent then got their 2xx after the brokers returned, inside their wait for Kafka.\n",
				ph.Stats.SentWhileAllDown, ph.Stats.OKWhileAllDown, ph.Stats.OKAfterReturn)
		}
		p("- Check after the recovery: the store caught up with the log's end in %.1f s.\n", ph.CheckLagSeconds)
		if len(ph.MemberStops) > 0 {
			p("\n| # | member | stopped with | survivor owns every partition, s after the stop | every partition owned by both members, s after the restart | backlog at the restart in the store, s after the restart |\n|---|---|---|---|---|---|\n")
			for i, k := range ph.MemberStops {
				within := func(v *float64) string {
					if v != nil {
						return secs(v)
					}
					return fmt.Sprintf("not within %.0f s", k.WindowSeconds)
				}
				takenOver := "—"
				if k.Signal == "SIGTERM" {
					takenOver = within(k.TakenOverSeconds)
				}
				drained := "—"
				if k.Signal == "SIGKILL" {
					drained = within(k.DrainedSeconds)
				}
				p("| %d | %s | %s | %s | %s | %s |\n", i+1, k.Member, k.Signal, takenOver, within(k.OwnedSeconds), drained)
			}
		}
		for _, pr := range ph.Problems {
			p("- **Problem:** %s\n", pr)
		}
		writeLost(&b, ph.Lost, ph.Doubled)
		p("\n")
	}

	f := r.Final
	p("## Final check and replay comparison\n\n")
	p("After the load stopped and every retry ended, the live group caught up with the log (%d records in the events and messages topics); %d acknowledged messages were looked up: **%d lost, %d doubled**.\n\n",
		f.EndOffsets, f.Acked, len(f.Lost), len(f.Doubled))
	writeLost(&b, f.Lost, f.Doubled)
	if f.Compared {
		p("A new consumer group folded the whole log from the beginning into a fresh PostgreSQL database in %.1f s. Canonical hashes (`postgres.Store.CanonicalHash`: each table's rows in key order, md5 per table, SHA-256 over the tables; consumer offsets and store metadata excluded):\n\n", f.ReplaySeconds)
		p("| table | rows (live) | md5 (live) | rows (replay) | md5 (replay) | equal |\n|---|---|---|---|---|---|\n")
		for i, t := range f.LiveTables {
			rt := postgres.TableHash{}
			if i < len(f.ReplayTables) {
				rt = f.ReplayTables[i]
			}
			p("| %s | %d | `%s` | %d | `%s` | %s |\n", t.Table, t.Rows, t.MD5, rt.Rows, rt.MD5, yesNo(t == rt))
		}
		p("\nStore `%s`, replay `%s`: **%s**.\n\n", f.LiveHash, f.ReplayHash, map[bool]string{true: "equal", false: "DIFFERENT"}[f.LiveHash == f.ReplayHash])
	} else {
		p("The replay comparison was not made.\n\n")
	}
	if len(r.UnexpectedExits) > 0 {
		p("## Unexpected process exits (restarted by the harness)\n\n")
		for _, e := range r.UnexpectedExits {
			p("- %s\n", e)
		}
		p("\n")
	}
	p("## Result: %s\n\n", verdict)
	for _, e := range r.failures() {
		p("- %s\n", e)
	}
	if r.WorkDir != "" {
		p("\nLogs and data kept in `%s`.\n", r.WorkDir)
	}
	return b.String()
}

func writeLost(b *strings.Builder, lost []lostMessage, doubles []doubled) {
	for i, l := range lost {
		if i == 50 {
			fmt.Fprintf(b, "- … %d more in chaos-report.json\n", len(lost)-50)
			break
		}
		fmt.Fprintf(b, "- LOST %s request %d token `%s` message `%s`: %s (first sent %s, 2xx at %s after %d attempts)\n",
			l.Channel, l.Request, l.Token, l.MessageID, l.Problem, l.FirstSent.Format("15:04:05.000"), l.AckedAt.Format("15:04:05.000"), l.Attempts)
	}
	for i, d := range doubles {
		if i == 50 {
			fmt.Fprintf(b, "- … %d more in chaos-report.json\n", len(doubles)-50)
			break
		}
		fmt.Fprintf(b, "- DOUBLED token `%s` stored as %s\n", d.Token, strings.Join(d.IDs, ", "))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}
