package main

import (
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/omnisync/omnisync/producers"
)

// Every omnisync command in docker-compose.yml names a real subcommand
// with flags that exist and values they accept; deploy/deploy_test.go
// checks the rest of the production shape.
func TestComposeCommandsParse(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Build   any      `yaml:"build"`
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	// Compose fills ${VAR…} from the environment; any value will do here.
	vars := regexp.MustCompile(`\$\{[^}]*\}`)
	checked := 0
	for name, s := range c.Services {
		if s.Build == nil {
			continue // not the omnisync image
		}
		if len(s.Command) == 0 {
			t.Errorf("%s: no command", name)
			continue
		}
		args := make([]string, len(s.Command))
		for i, a := range s.Command {
			args[i] = vars.ReplaceAllString(a, "x")
		}
		root := newRootCommand()
		cmd, rest, err := root.Find(args)
		if err != nil || cmd == root {
			t.Errorf("%s: %v is no omnisync subcommand (%v)", name, s.Command, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%s: %v: %v", name, s.Command, err)
			continue
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%s: %v: %v", name, s.Command, err)
		}
		if err := cmd.ValidateRequiredFlags(); err != nil {
			t.Errorf("%s: %v: %v", name, s.Command, err)
		}
		checkValues(t, name, cmd)
		checked++
	}
	if checked < 9 {
		t.Errorf("only %d omnisync services found in docker-compose.yml", checked)
	}
}

// checkValues checks flag values the parser takes as plain strings.
func checkValues(t *testing.T, service string, cmd *cobra.Command) {
	t.Helper()
	get := func(name string) string {
		f := cmd.Flags().Lookup(name)
		if f == nil || !f.Changed {
			return ""
		}
		return f.Value.String()
	}
	for _, name := range []string{"listen", "http"} {
		if v := get(name); v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				t.Errorf("%s: --%s %q: %v", service, name, v, err)
			}
		}
	}
	if v := get("channel"); v != "" && !slices.Contains(producers.Names(), v) {
		t.Errorf("%s: --channel %q is not one of %v", service, v, producers.Names())
	}
	if v := get("store"); v != "" && !strings.HasPrefix(v, "postgres://") {
		t.Errorf("%s: --store %q: the production shape stores in PostgreSQL", service, v)
	}
	if v := get("registry"); v != "" && v != "http://schema-registry:8081" {
		t.Errorf("%s: --registry %q, want the compose registry", service, v)
	}
}
