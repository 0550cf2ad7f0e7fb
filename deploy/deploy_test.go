// Package deploy holds the production shape's configuration: Prometheus
// scrape config and alert rules, the Grafana dashboard and provisioning,
// and the example environment of ../docker-compose.yml. Its tests check
// those files against each other and against the code: the compose
// services, their start order and health checks, every PromQL expression
// (parsed with Prometheus's own parser), and that every metric and label
// the alerts and the dashboard use is one omnisync registers.
// ../cmd/omnisync/compose_test.go checks every compose command against
// the real command tree.
package deploy

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"go.yaml.in/yaml/v3"

	promql "github.com/prometheus/prometheus/promql/parser"
)

// compose is the part of docker-compose.yml the tests read. Commands and
// health checks must be in exec (list) form.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       *build            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Restart     string            `yaml:"restart"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (s service) omnisync() bool { return s.Build != nil }
func (s service) oneShot() bool  { return s.Restart == "no" }

// flag returns the value of --name in the service's command.
func (s service) flag(name string) (string, bool) {
	for i, a := range s.Command {
		if a == "--"+name && i+1 < len(s.Command) {
			return s.Command[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	if err := yaml.Unmarshal(readFile(t, "../docker-compose.yml"), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

var channels = []string{"web", "app", "miniprogram", "wechat", "phone"}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	want := []string{"kafka-1", "kafka-2", "kafka-3", "topics-init", "schema-registry", "postgres",
		"materializer", "forwarder", "api", "prometheus", "grafana"}
	for _, ch := range channels {
		want = append(want, "producer-"+ch)
	}
	for _, name := range want {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		if !slices.Contains(want, name) {
			t.Errorf("service %s is not part of the production shape this test knows; add it to the test", name)
		}
	}

	// Third-party images carry a version tag; omnisync's are built here.
	pinned := regexp.MustCompile(`^[a-z0-9./-]+:v?[0-9]+(\.[0-9]+)*(-[a-z0-9.]+)?$`)
	for name, s := range c.Services {
		switch {
		case s.omnisync():
			if s.Build.Context != "." || s.Build.Dockerfile != "Dockerfile" || !strings.HasPrefix(s.Image, "omnisync:") {
				t.Errorf("%s: omnisync services build ./Dockerfile into omnisync:TAG, got %+v %q", name, s.Build, s.Image)
			}
		case !pinned.MatchString(s.Image):
			t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
		}
	}
	for _, name := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		if img := c.Services[name].Image; !strings.HasPrefix(img, "apache/kafka:") {
			t.Errorf("%s: image %s, want apache/kafka", name, img)
		}
	}
	for name, prefix := range map[string]string{"schema-registry": "confluentinc/cp-schema-registry:", "postgres": "postgres:15",
		"prometheus": "prom/prometheus:", "grafana": "grafana/grafana:"} {
		if img := c.Services[name].Image; !strings.HasPrefix(img, prefix) {
			t.Errorf("%s: image %s, want %s…", name, img, prefix)
		}
	}

	// Published ports: what the README promises, no host port twice, and
	// the infrastructure on the loopback interface only.
	wantPorts := map[string]string{
		"producer-web": "8091:8090", "producer-app": "8092:8090", "producer-miniprogram": "8093:8090",
		"producer-wechat": "8094:8090", "producer-phone": "8095:8090", "api": "8080:8080", "grafana": "3000:3000",
		"kafka-1": "127.0.0.1:19092:19092", "kafka-2": "127.0.0.1:19192:19192", "kafka-3": "127.0.0.1:19292:19292",
		"schema-registry": "127.0.0.1:8081:8081", "postgres": "127.0.0.1:5432:5432", "prometheus": "127.0.0.1:9090:9090",
	}
	seen := map[string]string{}
	for name, s := range c.Services {
		if w, ok := wantPorts[name]; ok && !slices.Contains(s.Ports, w) {
			t.Errorf("%s: ports %v, want %s", name, s.Ports, w)
		}
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			host := strings.Join(parts[:len(parts)-1], ":")
			if _, port, ok := strings.Cut(host, ":"); ok {
				host = port
			}
			if other, dup := seen[host]; dup {
				t.Errorf("host port %s published by %s and %s", host, other, name)
			}
			seen[host] = name
		}
	}
	for _, name := range []string{"kafka-1", "kafka-2", "kafka-3", "schema-registry", "postgres", "prometheus"} {
		for _, p := range c.Services[name].Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s on every interface; bind it to 127.0.0.1", name, p)
			}
		}
	}

	// Bind mounts name files that exist; named volumes are declared.
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
	}
}

// kafkaSHFailoverSettings returns the broker settings between the
// "failover settings" markers of scripts/kafka.sh, which the test clusters
// run with.
func kafkaSHFailoverSettings(t *testing.T) map[string]string {
	t.Helper()
	script := string(readFile(t, "../scripts/kafka.sh"))
	_, rest, ok := strings.Cut(script, "# failover settings: begin\n")
	block, _, ok2 := strings.Cut(rest, "# failover settings: end\n")
	if !ok || !ok2 {
		t.Fatal("scripts/kafka.sh has no '# failover settings: begin' ... 'end' block")
	}
	settings := map[string]string{}
	for line := range strings.Lines(block) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("scripts/kafka.sh failover settings: %q is no key=value", line)
		}
		settings[k] = v
	}
	if len(settings) == 0 {
		t.Fatal("scripts/kafka.sh's failover settings block is empty")
	}
	return settings
}

// The production brokers fail over as the tested ones do: the settings
// TestBrokerFaults (pkg/kafka) runs with are the compose brokers' too.
func TestComposeKafkaFailoverSettingsMatchKafkaSH(t *testing.T) {
	c := loadCompose(t)
	settings := kafkaSHFailoverSettings(t)
	for _, name := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		env := c.Services[name].Environment
		for k, v := range settings {
			// The apache/kafka image maps KAFKA_A_B to a.b.
			envName := "KAFKA_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
			if env[envName] != v {
				t.Errorf("%s: %s=%q, but scripts/kafka.sh sets %s=%s", name, envName, env[envName], k, v)
			}
		}
	}
}

func TestComposeKafkaCluster(t *testing.T) {
	c := loadCompose(t)
	ids := map[string]bool{}
	for _, name := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		env := c.Services[name].Environment
		ids[env["KAFKA_NODE_ID"]] = true
		for k, v := range map[string]string{
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093",
			"KAFKA_DEFAULT_REPLICATION_FACTOR":               "3",
			"KAFKA_MIN_INSYNC_REPLICAS":                      "2",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "3",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
		} {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", name, k, env[k], v)
			}
		}
		if !strings.Contains(env["KAFKA_ADVERTISED_LISTENERS"], "INTERNAL://"+name+":9092") {
			t.Errorf("%s advertises %q", name, env["KAFKA_ADVERTISED_LISTENERS"])
		}
		if env["CLUSTER_ID"] == "" || env["CLUSTER_ID"] != c.Services["kafka-1"].Environment["CLUSTER_ID"] {
			t.Errorf("%s: CLUSTER_ID %q differs from kafka-1's", name, env["CLUSTER_ID"])
		}
	}
	if len(ids) != 3 {
		t.Errorf("node IDs %v are not three distinct ones", ids)
	}
	for _, name := range []string{"topics-init", "materializer", "forwarder", "api", "producer-web"} {
		if got := c.Services[name].Environment["OMNISYNC_KAFKA_BROKERS"]; got != "kafka-1:9092,kafka-2:9092,kafka-3:9092" {
			t.Errorf("%s: OMNISYNC_KAFKA_BROKERS=%q", name, got)
		}
	}
	init := c.Services["topics-init"]
	if !slices.Equal(init.Command[:2], []string{"topics", "create"}) {
		t.Errorf("topics-init runs %v", init.Command)
	}
	if rf, _ := init.flag("replication-factor"); rf != "3" {
		t.Errorf("topics-init --replication-factor %q, want 3", rf)
	}
	if isr, _ := init.flag("min-insync-replicas"); isr != "2" {
		t.Errorf("topics-init --min-insync-replicas %q, want 2", isr)
	}
	for _, ch := range channels {
		s := c.Services["producer-"+ch]
		if got, _ := s.flag("channel"); got != ch {
			t.Errorf("producer-%s serves --channel %q", ch, got)
		}
	}
	m := c.Services["materializer"]
	if st, _ := m.flag("store"); !strings.HasPrefix(st, "postgres://") || !strings.Contains(st, "@postgres:5432/") {
		t.Errorf("materializer --store %q, want the compose PostgreSQL", st)
	}
	if !slices.Contains(m.Command, "--publish-state") {
		t.Error("the materializer does not publish state: the forwarder would get nothing")
	}
}

func TestComposeHealthchecksAndStartOrder(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		if s.oneShot() {
			if s.Healthcheck != nil {
				t.Errorf("%s is a one-shot; it needs no health check", name)
			}
			continue
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || (s.Healthcheck.Test[0] != "CMD" && s.Healthcheck.Test[0] != "CMD-SHELL") {
			t.Errorf("%s runs for good but has no health check", name)
			continue
		}
		if !s.omnisync() {
			continue
		}
		// An omnisync service's check asks its own readiness endpoint.
		listen, ok := s.flag("listen")
		if !ok {
			listen, ok = s.flag("http")
		}
		_, port, err := net.SplitHostPort(listen)
		if !ok || err != nil {
			t.Errorf("%s: no --listen or --http address in %v", name, s.Command)
			continue
		}
		if want := "http://127.0.0.1:" + port + "/readyz"; !slices.Contains(s.Healthcheck.Test, want) {
			t.Errorf("%s: health check %v does not ask %s", name, s.Healthcheck.Test, want)
		}
	}

	// Conditions: a one-shot must complete, anything else be healthy.
	for name, s := range c.Services {
		for dep, d := range s.DependsOn {
			ds, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on unknown service %s", name, dep)
			case ds.oneShot() && d.Condition != "service_completed_successfully":
				t.Errorf("%s → %s: condition %q, want service_completed_successfully", name, dep, d.Condition)
			case !ds.oneShot() && d.Condition != "service_healthy":
				t.Errorf("%s → %s: condition %q, want service_healthy", name, dep, d.Condition)
			}
		}
	}

	// No cycles: a topological order exists.
	order := map[string]int{}
	for len(order) < len(c.Services) {
		progress := false
		for _, name := range slices.Sorted(maps.Keys(c.Services)) {
			if _, done := order[name]; done {
				continue
			}
			ready := true
			for dep := range c.Services[name].DependsOn {
				if _, done := order[dep]; !done {
					ready = false
				}
			}
			if ready {
				order[name] = len(order)
				progress = true
			}
		}
		if !progress {
			t.Fatalf("depends_on has a cycle among the services not yet ordered (ordered: %v)", order)
		}
	}

	after := func(a, b string) bool { // does a start only after b?
		seen := map[string]bool{}
		var walk func(string) bool
		walk = func(s string) bool {
			for dep := range c.Services[s].DependsOn {
				if dep == b || (!seen[dep] && func() bool { seen[dep] = true; return walk(dep) }()) {
					return true
				}
			}
			return false
		}
		return walk(a)
	}
	must := [][2]string{
		{"topics-init", "kafka-1"}, {"topics-init", "kafka-2"}, {"topics-init", "kafka-3"},
		{"schema-registry", "topics-init"}, // omnisync creates _schemas with its settings first
		{"materializer", "postgres"}, {"materializer", "topics-init"}, {"materializer", "schema-registry"},
		{"forwarder", "topics-init"}, {"forwarder", "schema-registry"},
		{"api", "postgres"}, {"api", "schema-registry"}, {"api", "materializer"},
		{"grafana", "prometheus"},
	}
	for _, ch := range channels {
		must = append(must, [2]string{"producer-" + ch, "topics-init"}, [2]string{"producer-" + ch, "schema-registry"})
	}
	for _, m := range must {
		if !after(m[0], m[1]) {
			t.Errorf("%s does not wait for %s", m[0], m[1])
		}
	}
}

// Secrets come from the environment, each documented in the example env
// file; compose refuses to start without the required ones.
func TestComposeSecrets(t *testing.T) {
	raw := string(readFile(t, "../docker-compose.yml"))
	example := string(readFile(t, "compose.env.example"))
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#?\s*([A-Z][A-Z0-9_]*)=`).FindAllStringSubmatch(example, -1) {
		documented[m[1]] = true
	}
	refs := regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)(:?[?-])?`).FindAllStringSubmatch(raw, -1)
	if len(refs) == 0 {
		t.Fatal("docker-compose.yml takes nothing from the environment")
	}
	for _, m := range refs {
		if !documented[m[1]] {
			t.Errorf("${%s} is not in deploy/compose.env.example", m[1])
		}
	}
	for _, name := range []string{"POSTGRES_PASSWORD", "OMNISYNC_ADMIN_TOKEN", "OMNISYNC_WEB_KEY", "OMNISYNC_APP_KEY", "OMNISYNC_PHONE_KEY",
		"OMNISYNC_WECHAT_TOKEN", "OMNISYNC_MINIPROGRAM_TOKEN", "GRAFANA_ADMIN_PASSWORD", "OMNISYNC_FORWARD_TARGET"} {
		if !strings.Contains(raw, "${"+name+":?") {
			t.Errorf("%s is not required with ${%s:?…}", name, name)
		}
	}
	secretish := regexp.MustCompile(`(PASSWORD|TOKEN|SECRET|_KEY)$`)
	for name, s := range loadCompose(t).Services {
		for k, v := range s.Environment {
			if secretish.MatchString(k) && !strings.HasPrefix(v, "${") {
				t.Errorf("%s: %s is written into the file; take it from the environment", name, k)
			}
		}
	}
	for _, line := range strings.Split(example, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && !strings.HasPrefix(k, "#") && secretish.MatchString(k) && v != "" {
			t.Errorf("compose.env.example carries a value for %s", k)
		}
	}
}

func TestDockerfile(t *testing.T) {
	df := string(readFile(t, "../Dockerfile"))
	var froms []string
	user := ""
	for _, line := range strings.Split(df, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
			user = ""
		case "USER":
			user = f[1]
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26") {
		t.Errorf("want a multi-stage build from golang:1.26, got FROM %v", froms)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless") && !strings.Contains(last, "-slim") {
		t.Errorf("runtime image %s is neither distroless nor slim", last)
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("the runtime stage runs as %q; want a non-root user", user)
	}
	if !strings.Contains(df, "./cmd/omnisync") || !regexp.MustCompile(`ENTRYPOINT \["[^"]*omnisync"\]`).MatchString(df) {
		t.Error("the image does not build ./cmd/omnisync and run it as its entrypoint")
	}
	// Health checks of omnisync services run curl inside the image.
	if !strings.Contains(df, " curl") {
		t.Error("the runtime image lacks curl, which the compose health checks use")
	}
}

// prometheusConfig is the part of prometheus.yml the tests read.
type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

// Every long-running omnisync service is scraped on its listen port, and
// the alert rules compose mounts are loaded.
func TestPrometheusScrapesEveryService(t *testing.T) {
	var cfg prometheusConfig
	if err := yaml.Unmarshal(readFile(t, "prometheus/prometheus.yml"), &cfg); err != nil {
		t.Fatal(err)
	}
	c := loadCompose(t)
	mounts := map[string]string{}
	for _, v := range c.Services["prometheus"].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			mounts[parts[1]] = parts[0]
		}
	}
	if len(cfg.RuleFiles) != 1 || mounts[cfg.RuleFiles[0]] != "./deploy/prometheus/alerts.yml" {
		t.Errorf("rule_files %v: want the mounted ./deploy/prometheus/alerts.yml (mounts %v)", cfg.RuleFiles, mounts)
	}
	if mounts["/etc/prometheus/prometheus.yml"] != "./deploy/prometheus/prometheus.yml" {
		t.Errorf("prometheus.yml is not mounted: %v", mounts)
	}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				scraped[tg] = true
			}
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				scraped[n+":"+strconv.Itoa(d.Port)] = true
			}
		}
	}
	for name, s := range c.Services {
		if !s.omnisync() || s.oneShot() {
			continue
		}
		listen, ok := s.flag("listen")
		if !ok {
			listen, _ = s.flag("http")
		}
		_, port, _ := net.SplitHostPort(listen)
		if !scraped[name+":"+port] {
			t.Errorf("%s (listening on %s) is not scraped; scraped: %v", name, listen, slices.Sorted(maps.Keys(scraped)))
		}
	}
}

type rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// comparison is a `lhs OP number` found in an expression.
type comparison struct {
	op        string
	threshold float64
	lhs       promql.Expr
}

func comparisons(e promql.Expr) []comparison {
	var out []comparison
	promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
		if b, ok := n.(*promql.BinaryExpr); ok && b.Op.IsComparisonOperator() {
			if num, ok := unparen(b.RHS).(*promql.NumberLiteral); ok {
				out = append(out, comparison{op: b.Op.String(), threshold: num.Val, lhs: b.LHS})
			}
		}
		return nil
	})
	return out
}

func unparen(e promql.Expr) promql.Expr {
	for {
		p, ok := e.(*promql.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

func mentions(e promql.Expr, s string) bool { return strings.Contains(e.String(), s) }

func TestAlertRules(t *testing.T) {
	var r rules
	if err := yaml.Unmarshal(readFile(t, "prometheus/alerts.yml"), &r); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]promql.Expr{}
	fors := map[string]string{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			e, err := promql.ParseExpr(rule.Expr)
			if err != nil {
				t.Errorf("%s: %v", rule.Alert, err)
				continue
			}
			if _, dup := alerts[rule.Alert]; dup || rule.Alert == "" {
				t.Errorf("alert name %q empty or repeated", rule.Alert)
			}
			alerts[rule.Alert], fors[rule.Alert] = e, rule.For
			if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" {
				t.Errorf("%s: needs a severity label and a summary", rule.Alert)
			}
			// Annotations are Go templates with Prometheus's functions.
			for k, text := range rule.Annotations {
				funcs := template.FuncMap{}
				for _, f := range []string{"humanize", "humanizeDuration", "humanizePercentage", "humanize1024", "humanizeTimestamp", "title", "toUpper", "toLower"} {
					funcs[f] = func(v any) string { return fmt.Sprint(v) }
				}
				if _, err := template.New(k).Funcs(funcs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + text); err != nil {
					t.Errorf("%s annotation %s: %v", rule.Alert, k, err)
				}
			}
		}
	}

	// The four the production shape needs, each with its threshold.
	find := func(want func(e promql.Expr, cs []comparison) bool) string {
		for name, e := range alerts {
			if want(e, comparisons(e)) {
				return name
			}
		}
		return ""
	}
	latency := find(func(e promql.Expr, cs []comparison) bool {
		return slices.ContainsFunc(cs, func(c comparison) bool {
			return c.op == ">" && c.threshold == 0.2 && mentions(c.lhs, "histogram_quantile(0.99") && mentions(c.lhs, "omnisync_end_to_end_latency_seconds_bucket")
		})
	})
	if latency == "" || fors[latency] != "5m" {
		t.Errorf("no alert on end-to-end latency p99 > 200 ms for 5m (found %q, for %q)", latency, fors[latency])
	}
	deadShare := find(func(e promql.Expr, cs []comparison) bool {
		return slices.ContainsFunc(cs, func(c comparison) bool {
			b, ok := unparen(c.lhs).(*promql.BinaryExpr)
			return c.op == ">" && c.threshold == 0.001 && ok && b.Op.String() == "/" &&
				mentions(b.LHS, "omnisync_materializer_dead_letters_total") && mentions(b.RHS, "omnisync_materializer_events_total")
		})
	})
	if deadShare == "" {
		t.Error("no alert on dead letters / events applied > 0.1%")
	}
	lag := find(func(e promql.Expr, cs []comparison) bool {
		level := slices.ContainsFunc(cs, func(c comparison) bool {
			return c.op == ">" && c.threshold > 0 && mentions(c.lhs, "omnisync_materializer_lag_records") && !mentions(c.lhs, "delta(") && !mentions(c.lhs, "deriv(")
		})
		growth := slices.ContainsFunc(cs, func(c comparison) bool {
			return c.op == ">" && c.threshold == 0 && (mentions(c.lhs, "delta(omnisync_materializer_lag_records[") || mentions(c.lhs, "deriv(omnisync_materializer_lag_records["))
		})
		return level && growth
	})
	if lag == "" {
		t.Error("no alert on consumer lag above a threshold and growing")
	}
	unavailable := find(func(e promql.Expr, cs []comparison) bool {
		return slices.ContainsFunc(cs, func(c comparison) bool {
			return c.op == ">" && c.threshold == 0 && mentions(c.lhs, `omnisync_ingest_requests_total{code="503"}`)
		})
	})
	if unavailable == "" {
		t.Error("no alert on a producer answering 503")
	}

	checkMetrics(t, "alerts.yml", alerts)
}

type dashboard struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
}

func TestDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(readFile(t, "grafana/dashboards/omnisync.json"), &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(readFile(t, "grafana/provisioning/datasources/prometheus.yml"), &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("datasource provisioning: %+v", ds)
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(readFile(t, "grafana/provisioning/dashboards/omnisync.yml"), &prov); err != nil {
		t.Fatal(err)
	}
	if g := loadCompose(t).Services["grafana"]; len(prov.Providers) != 1 ||
		!slices.Contains(g.Volumes, "./deploy/grafana/dashboards:"+prov.Providers[0].Options.Path+":ro") {
		t.Errorf("the dashboard provider reads %+v, which compose does not mount (%v)", prov, g.Volumes)
	}

	if d.UID == "" || d.Title == "" {
		t.Error("dashboard without uid or title")
	}
	exprs := map[string]promql.Expr{}
	ids := map[int]bool{}
	var all []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeated", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != ds.Datasources[0].UID {
			t.Errorf("panel %q does not use the provisioned datasource %s", p.Title, ds.Datasources[0].UID)
		}
		if len(p.Targets) == 0 || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q has no query or no size", p.Title)
		}
		for _, tg := range p.Targets {
			// Grafana's interval variables are durations to the parser.
			q := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h").Replace(tg.Expr)
			e, err := promql.ParseExpr(q)
			if err != nil {
				t.Errorf("panel %q query %s: %v", p.Title, tg.RefID, err)
				continue
			}
			exprs[p.Title+"/"+tg.RefID] = e
			all = append(all, e.String())
		}
	}
	text := strings.Join(all, "\n")
	for what, want := range map[string][]string{
		"ingest rate per channel":      {"sum by (channel) (rate(omnisync_ingest_events_total["},
		"success rate per channel":     {`omnisync_ingest_requests_total{code=~"2.."}`},
		"503s":                         {`omnisync_ingest_requests_total{code="503"}`},
		"end-to-end latency p50/95/99": {"histogram_quantile(0.5, sum by (le) (rate(omnisync_end_to_end_latency_seconds_bucket", "histogram_quantile(0.95,", "histogram_quantile(0.99,"},
		"consumer lag per partition":   {"by (group, topic, partition) (omnisync_materializer_lag_records)"},
		"dead letters":                 {"omnisync_materializer_dead_letters_total", "omnisync_forwarder_dead_letters_total"},
		"conflicts opened/resolved":    {"sum by (action) (increase(omnisync_materializer_conflicts_total["},
		"forwarder deliveries":         {"omnisync_forwarder_deliveries_total"},
	} {
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("dashboard lacks %s: no query contains %s", what, w)
			}
		}
	}
	checkMetrics(t, "the dashboard", exprs)
}

// checkMetrics fails for every metric, or label of one, that exprs use and
// omnisync's code does not register.
func checkMetrics(t *testing.T, where string, exprs map[string]promql.Expr) {
	t.Helper()
	known := registeredMetrics(t)
	// Prometheus adds these to every series it scrapes (service: our target label).
	scrape := []string{"job", "instance", "service"}
	for name, e := range exprs {
		promql.Inspect(e, func(n promql.Node, path []promql.Node) error {
			switch n := n.(type) {
			case *promql.VectorSelector:
				labels, ok := known[n.Name]
				if !ok {
					t.Errorf("%s, %s: metric %s is not registered anywhere in the code", where, name, n.Name)
					return nil
				}
				for _, m := range n.LabelMatchers {
					if m.Name != "__name__" && !slices.Contains(labels, m.Name) && !slices.Contains(scrape, m.Name) {
						t.Errorf("%s, %s: %s has no label %q (it has %v)", where, name, n.Name, m.Name, labels)
					}
				}
			case *promql.AggregateExpr:
				var inner []string
				promql.Inspect(n.Expr, func(m promql.Node, _ []promql.Node) error {
					if vs, ok := m.(*promql.VectorSelector); ok {
						inner = append(inner, vs.Name)
					}
					return nil
				})
				for _, l := range n.Grouping {
					for _, metric := range inner {
						if labels, ok := known[metric]; ok && !slices.Contains(labels, l) && !slices.Contains(scrape, l) {
							t.Errorf("%s, %s: grouping by %q, which %s does not have (it has %v)", where, name, l, metric, labels)
						}
					}
				}
			}
			return nil
		})
	}
}

// registeredMetrics finds every metric the code registers through
// prometheus.New*Vec / New* with a literal Name (and label list), walking
// the Go sources of the module; histograms give _bucket (with le), _sum
// and _count.
func registeredMetrics(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{"up": {"job", "instance"}}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".." || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" || !strings.HasPrefix(sel.Sel.Name, "New") {
				return true
			}
			name := literalField(call.Args[0], "Name")
			if name == "" {
				return true
			}
			var labels []string
			if len(call.Args) > 1 {
				if lit, ok := call.Args[1].(*ast.CompositeLit); ok {
					for _, e := range lit.Elts {
						if b, ok := e.(*ast.BasicLit); ok {
							s, _ := strconv.Unquote(b.Value)
							labels = append(labels, s)
						}
					}
				}
			}
			out[name] = labels
			if strings.Contains(sel.Sel.Name, "Histogram") {
				out[name+"_bucket"] = append(slices.Clone(labels), "le")
				out[name+"_sum"] = labels
				out[name+"_count"] = labels
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d registered metrics in the code: %v", len(out), out)
	}
	return out
}

// literalField returns the string literal of field key in a composite
// literal such as prometheus.CounterOpts{Name: "…"}.
func literalField(e ast.Expr, key string) string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return ""
	}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if k, ok := kv.Key.(*ast.Ident); ok && k.Name == key {
			if b, ok := kv.Value.(*ast.BasicLit); ok {
				s, _ := strconv.Unquote(b.Value)
				return s
			}
		}
	}
	return ""
}
