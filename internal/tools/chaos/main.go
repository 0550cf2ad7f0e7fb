// Command chaos runs omnisync's production shape on this machine — a
// three-broker Apache Kafka (KRaft, replication factor 3,
// min.insync.replicas 2), PostgreSQL, the web and phone producers and a
// materializer group of two members writing to PostgreSQL, each its own
// process — under an open-loop load, injects faults one at a time, and
// checks against the store that every acknowledged message is stored
// exactly once, and at the end that the store equals a clean replay of the
// log. It writes a markdown report and the same figures as JSON, and exits
// non-zero when anything acknowledged was lost or doubled, the replay
// differs, or a check could not be made.
//
//	go run ./internal/tools/chaos [--out DIR] [--quick] [--faults a,b] [--web-rate N] [--phone-rate N]
//
// scripts/chaos.sh (make chaos) builds bin/omnisync and runs it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/consumers/store/postgres"
)

type config struct {
	root, bin, out             string
	webRate, phoneRate         float64
	quick, keep                bool
	faults                     []string
	baseline, recovery, outage time.Duration
	brokerDown                 time.Duration
	memberKills, producerKills int
	killEvery                  time.Duration
	drainTimeout, retryFor     time.Duration
}

var allFaults = []string{"broker-kill", "rolling-restart", "member-restart", "materializer-kill", "producer-kill", "postgres-stop", "all-brokers-stop"}

func main() {
	var cfg config
	var faults string
	flag.StringVar(&cfg.root, "root", ".", "repository root (scripts/ and bin/omnisync)")
	flag.StringVar(&cfg.bin, "bin", "", "omnisync binary (default ROOT/bin/omnisync)")
	flag.StringVar(&cfg.out, "out", "docs", "directory for chaos-report.md and chaos-report.json")
	flag.Float64Var(&cfg.webRate, "web-rate", 100, "web requests per second (one chat message each, every tenth with a profile)")
	flag.Float64Var(&cfg.phoneRate, "phone-rate", 5, "phone requests per second (a transcript of three segments each)")
	flag.BoolVar(&cfg.quick, "quick", false, "shorter phases and outages, for development (env CHAOS_QUICK=1)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (logs, data) even when every check passes")
	flag.StringVar(&faults, "faults", strings.Join(allFaults, ","), "faults to inject, in order, comma-separated")
	flag.Parse()
	if os.Getenv("CHAOS_QUICK") == "1" {
		cfg.quick = true
	}
	cfg.faults = strings.Split(faults, ",")
	for _, f := range cfg.faults {
		if !contains(allFaults, f) {
			log.Fatalf("unknown fault %q (known: %s)", f, strings.Join(allFaults, ", "))
		}
	}
	cfg.baseline, cfg.recovery, cfg.outage, cfg.brokerDown = 10*time.Second, 30*time.Second, 30*time.Second, 20*time.Second
	cfg.memberKills, cfg.producerKills, cfg.killEvery = 5, 3, 10*time.Second
	cfg.drainTimeout, cfg.retryFor = 180*time.Second, 120*time.Second
	if cfg.quick {
		cfg.baseline, cfg.recovery, cfg.outage, cfg.brokerDown = 5*time.Second, 15*time.Second, 10*time.Second, 8*time.Second
		cfg.memberKills, cfg.producerKills, cfg.killEvery = 2, 2, 5*time.Second
	}
	var err error
	if cfg.root, err = filepath.Abs(cfg.root); err != nil {
		log.Fatal(err)
	}
	if cfg.bin == "" {
		cfg.bin = filepath.Join(cfg.root, "bin", "omnisync")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, cfg)
	stop()
	os.Exit(code)
}

// harness is one run: the services, the load and what was measured.
type harness struct {
	cfg       config
	work      string
	logw      io.Writer // the harness's own log (and stderr)
	kafkaEnv  []string
	kafkaDir  string
	brokers   []string
	pgDir     string
	pgServer  string // DSN of the maintenance database
	storeDSN  string
	group     string
	registry  string
	procs     map[string]*proc
	consumers []*proc
	kcl       *kgo.Client
	adm       *kadm.Client
	pool      *pgxpool.Pool
	load      *load
	parts     int    // partitions of the consumed topics
	checked   []bool // requests (by index) whose messages a phase checked
	report    *report
}

func run(ctx context.Context, cfg config) int {
	work, err := os.MkdirTemp("", "omnisync-chaos-")
	if err != nil {
		log.Print(err)
		return 2
	}
	logf, err := os.Create(filepath.Join(work, "chaos.log"))
	if err != nil {
		log.Print(err)
		return 2
	}
	defer logf.Close()
	log.SetOutput(io.MultiWriter(os.Stderr, logf))
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.Printf("work directory %s", work)
	h := &harness{cfg: cfg, work: work, logw: logf, procs: map[string]*proc{}, group: "omnisync-chaos",
		report: &report{Started: time.Now().UTC(), WebRate: cfg.webRate, PhoneRate: cfg.phoneRate, Quick: cfg.quick}}
	defer h.teardown()
	runErr := h.runAll(ctx)
	if runErr != nil {
		h.report.Errors = append(h.report.Errors, runErr.Error())
		log.Printf("run failed: %v", runErr)
	}
	h.collectExits()
	h.report.Finished = time.Now().UTC()
	ok := h.report.ok()
	if !ok || cfg.keep {
		h.report.WorkDir = work
	}
	if err := h.report.write(cfg.out); err != nil {
		log.Printf("writing the report: %v", err)
		return 2
	}
	log.Printf("report: %s", filepath.Join(cfg.out, "chaos-report.md"))
	if !ok {
		log.Printf("FAILED: see the report; logs and data kept in %s", work)
		return 1
	}
	return 0
}

func (h *harness) runAll(ctx context.Context) error {
	if err := h.setup(ctx); err != nil {
		return fmt.Errorf("setting up: %w", err)
	}
	h.load.begin(ctx)
	h.report.LoadStarted = time.Now().UTC()
	for _, f := range h.cfg.faults {
		if err := h.phase(ctx, f); err != nil {
			return fmt.Errorf("fault %s: %w", f, err)
		}
	}
	return h.final(ctx)
}

// setup starts Kafka, PostgreSQL, the registry, the producers and the
// materializer members, and creates the topics and the store.
func (h *harness) setup(ctx context.Context) error {
	scripts := filepath.Join(h.cfg.root, "scripts")
	if _, err := os.Stat(h.cfg.bin); err != nil {
		return fmt.Errorf("omnisync binary: %w (make build)", err)
	}
	// Kafka: three nodes on a free base port.
	base, err := kafkaBasePort(3)
	if err != nil {
		return err
	}
	h.kafkaEnv = []string{"KAFKA_PORT=" + strconv.Itoa(base)}
	h.kafkaDir = filepath.Join(h.work, "kafka")
	log.Printf("starting a three-node Kafka on 127.0.0.1:%d-%d (controllers %d-%d)", base, base+2, base+100, base+102)
	out, err := h.kafka(ctx, "up", "--nodes", "3")
	if err != nil {
		return err
	}
	h.brokers = strings.Split(strings.TrimPrefix(strings.TrimSpace(lastLines(out, 1)), "OMNISYNC_TEST_KAFKA="), ",")
	h.report.Brokers = strings.Join(h.brokers, ",")

	// PostgreSQL on a port in the same clear range.
	h.pgDir = filepath.Join(h.work, "pg")
	pgPort, err := freePortIn(28000, 29000)
	if err != nil {
		return err
	}
	out, err = script(ctx, h.logw, nil, filepath.Join(scripts, "postgres.sh"), "up", "--dir", h.pgDir, "--port", strconv.Itoa(pgPort))
	if err != nil {
		return err
	}
	h.pgServer = strings.TrimPrefix(strings.TrimSpace(lastLines(out, 1)), "OMNISYNC_TEST_POSTGRES=")
	if h.storeDSN, err = h.createDatabase(ctx, "chaos"); err != nil {
		return err
	}
	log.Printf("PostgreSQL store %s", h.storeDSN)

	env := []string{"OMNISYNC_KAFKA_BROKERS=" + strings.Join(h.brokers, ","), "OMNISYNC_WEB_KEY=chaos-web-key", "OMNISYNC_PHONE_KEY=chaos-phone-key"}
	topics := []string{h.cfg.bin, "topics", "create", "--partitions", "12", "--replication-factor", "3", "--min-insync-replicas", "2", "--log-level", "warn"}
	if _, err := command(ctx, h.logw, env, topics...); err != nil {
		return err
	}
	regAddr, err := freeAddr()
	if err != nil {
		return err
	}
	h.registry = "http://" + regAddr
	if err := h.startProc(ctx, "registry", regAddr, false, env, "registry", "--listen", regAddr); err != nil {
		return err
	}
	var targets [2]*target
	for i, ch := range []string{"web", "phone"} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		// The load comes from one address but stands for many clients:
		// no per-client limits.
		if err := h.startProc(ctx, "produce-"+ch, addr, true, env, "produce", "--channel", ch, "--listen", addr, "--registry", h.registry,
			"--rate-limit", "-1", "--max-in-flight", "-1"); err != nil {
			return err
		}
		targets[i] = &target{url: "http://" + addr + "/ingest/" + ch, key: "chaos-" + ch + "-key"}
	}
	for i := 1; i <= 2; i++ {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("consume-%d", i)
		if err := h.startProc(ctx, name, addr, true, env, "consume", "--group", h.group, "--store", h.storeDSN,
			"--registry", h.registry, "--listen", addr); err != nil {
			return err
		}
		h.consumers = append(h.consumers, h.procs[name])
	}
	if h.kcl, err = kgo.NewClient(kgo.SeedBrokers(h.brokers...)); err != nil {
		return err
	}
	h.adm = kadm.NewClient(h.kcl)
	if h.pool, err = pgxpool.New(ctx, h.storeDSN); err != nil {
		return err
	}
	ends, err := endOffsets(ctx, h.adm, 60*time.Second)
	if err != nil {
		return err
	}
	for _, ps := range ends {
		h.parts += len(ps)
	}
	// Both members own their share before the load starts.
	if _, err := waitOwned(ctx, h.adm, h.group, 2, nil, h.parts, 120*time.Second); err != nil {
		return fmt.Errorf("the materializer group before the load: %w", err)
	}
	run := make([]byte, 3)
	_, _ = rand.Read(run)
	h.load = newLoad(hex.EncodeToString(run), targets[0], targets[1], h.cfg.webRate, h.cfg.phoneRate)
	h.load.retryFor = h.cfg.retryFor
	h.report.Run = h.load.run
	log.Printf("setup done: %d partitions in the consumed topics; load %g web/s + %g phone/s, run id %s", h.parts, h.cfg.webRate, h.cfg.phoneRate, h.load.run)
	return nil
}

func (h *harness) startProc(ctx context.Context, name, addr string, ready bool, env []string, args ...string) error {
	p := &proc{name: name, addr: addr, ready: ready, env: env, logPath: filepath.Join(h.work, name+".log"),
		args: append(append([]string{h.cfg.bin}, args...), "--log-level", "info")}
	h.procs[name] = p
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(ctx, 90*time.Second)
}

// restart starts a process the harness killed and waits until it is ready.
func (h *harness) restart(ctx context.Context, p *proc) error {
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(ctx, 90*time.Second)
}

func (h *harness) kafka(ctx context.Context, args ...string) (string, error) {
	return script(ctx, h.logw, h.kafkaEnv, filepath.Join(h.cfg.root, "scripts", "kafka.sh"), append(args, "--dir", h.kafkaDir)...)
}

func (h *harness) postgres(ctx context.Context, args ...string) error {
	_, err := script(ctx, h.logw, nil, filepath.Join(h.cfg.root, "scripts", "postgres.sh"), append(args, "--dir", h.pgDir)...)
	return err
}

// createDatabase creates a database on the server and returns its DSN.
func (h *harness) createDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, h.pgServer)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return strings.Replace(h.pgServer, "/omnisync?", "/"+name+"?", 1), nil
}

// teardown stops every process and service, whatever happened; it keeps the
// work directory when the report names it.
func (h *harness) teardown() {
	if h.load != nil {
		h.load.end(time.Second)
	}
	if h.kcl != nil {
		h.kcl.Close()
	}
	if h.pool != nil {
		h.pool.Close()
	}
	for _, p := range h.procs {
		p.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if h.kafkaDir != "" {
		if _, err := h.kafka(ctx, "down"); err != nil {
			log.Printf("stopping Kafka: %v", err)
		}
	}
	if h.pgDir != "" {
		if h.report.WorkDir != "" {
			_ = h.postgres(ctx, "stop")
		} else {
			_ = h.postgres(ctx, "down")
		}
	}
	if h.report.WorkDir == "" {
		os.RemoveAll(h.work)
	}
}

func (h *harness) collectExits() {
	for name, p := range h.procs {
		for _, e := range p.unexpectedExits() {
			h.report.UnexpectedExits = append(h.report.UnexpectedExits, name+" "+e)
		}
	}
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// final stops the load, waits until the live group has folded the whole
// log, checks every acknowledged message once more, and folds the log again
// into a fresh database with a new group to compare canonical hashes.
func (h *harness) final(ctx context.Context) error {
	log.Printf("stopping the load; waiting for requests in flight and their retries")
	if !h.load.end(h.cfg.retryFor + 30*time.Second) {
		return errors.New("requests still in flight long after the load stopped")
	}
	h.report.LoadStopped = time.Now().UTC()
	reqs := h.load.snapshot()
	h.report.summarizeLoad(reqs)
	ends, err := endOffsets(ctx, h.adm, 60*time.Second)
	if err != nil {
		return err
	}
	f := &h.report.Final
	f.EndOffsets = behind(ends, offsets{})
	if _, err := waitDrained(ctx, h.pool, h.group, ends, h.cfg.drainTimeout); err != nil {
		f.Problems = append(f.Problems, err.Error())
		return err
	}
	acked, lost, err := checkAcked(ctx, h.pool, ackedOnly(reqs))
	if err != nil {
		return err
	}
	doubles, err := findDoubles(ctx, h.pool)
	if err != nil {
		return err
	}
	f.Acked, f.Lost, f.Doubled = acked, lost, doubles
	log.Printf("final check: %d acknowledged messages, %d lost, %d doubled", acked, len(lost), len(doubles))

	// The replay: a new group from the beginning into a fresh database.
	replayDSN, err := h.createDatabase(ctx, "chaos_replay")
	if err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	replayGroup := h.group + "-replay-" + h.load.run
	env := []string{"OMNISYNC_KAFKA_BROKERS=" + strings.Join(h.brokers, ",")}
	start := time.Now()
	if err := h.startProc(ctx, "consume-replay", addr, true, env, "consume", "--group", replayGroup, "--store", replayDSN,
		"--registry", h.registry, "--listen", addr); err != nil {
		return err
	}
	replayPool, err := pgxpool.New(ctx, replayDSN)
	if err != nil {
		return err
	}
	defer replayPool.Close()
	if _, err := waitDrained(ctx, replayPool, replayGroup, ends, h.cfg.drainTimeout+5*time.Minute); err != nil {
		return fmt.Errorf("the replay: %w", err)
	}
	f.ReplaySeconds = time.Since(start).Seconds()
	h.procs["consume-replay"].stop()
	// Nothing may have moved since: the load is off.
	if again, err := endOffsets(ctx, h.adm, 30*time.Second); err != nil || behind(again, ends) != 0 {
		return fmt.Errorf("the log grew during the replay comparison (%v)", err)
	}
	live, err := postgres.Open(ctx, h.storeDSN)
	if err != nil {
		return err
	}
	defer live.Close()
	replay, err := postgres.Open(ctx, replayDSN)
	if err != nil {
		return err
	}
	defer replay.Close()
	if f.LiveHash, f.LiveTables, err = live.CanonicalHash(ctx); err != nil {
		return err
	}
	if f.ReplayHash, f.ReplayTables, err = replay.CanonicalHash(ctx); err != nil {
		return err
	}
	f.Compared = true
	log.Printf("canonical hashes: live %s, replay %s", f.LiveHash, f.ReplayHash)
	return nil
}

func ackedOnly(reqs []request) []request {
	var out []request
	for _, r := range reqs {
		if r.acked() {
			out = append(out, r)
		}
	}
	return out
}
