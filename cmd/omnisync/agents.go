package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/omnisync/omnisync/api"
)

func newAgentsCommand() *cobra.Command {
	c := &apiClient{http: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "Manage the agents' accounts through the API: add, list, disable, passwd",
		Long: `Manage accounts through the agents' HTTP API (admin role; see
api/openapi.yaml). Roles: viewer (reads), agent (also resolves conflicts),
admin (also accounts, tokens and the audit trail). Every change is published
to the audit topic before it takes effect.

add prints the new account's API token once: the API keeps only its hash.
Scripts send it as Authorization: Bearer (omnisync conflicts reads it from
OMNISYNC_TOKEN); people sign in to the console with a password.

The admin token comes from --token, OMNISYNC_TOKEN or OMNISYNC_ADMIN_TOKEN.`,
		Example: `  export OMNISYNC_ADMIN_TOKEN=$(jq -r .admin_token .omnisync/credentials.json)
  omnisync agents add ana.li --role admin --password-stdin <<<'correct horse battery'
  omnisync agents add emma.clarke --role agent
  omnisync agents list
  omnisync agents passwd emma.clarke
  omnisync agents disable emma.clarke`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&c.base, "api", "http://127.0.0.1:8080", "base URL of the API (omnisync api or omnisync dev)")
	f.StringVar(&c.token, "token", "", "an admin's API token (default: env OMNISYNC_TOKEN, else OMNISYNC_ADMIN_TOKEN)")
	cmd.AddCommand(newAgentsAddCommand(c), newAgentsListCommand(c), newAgentsDisableCommand(c), newAgentsPasswdCommand(c))
	return cmd
}

// readPassword reads a password from stdin: one line when it is not a
// terminal (--password-stdin), else typed twice without echo.
func readPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !fromStdin {
		fmt.Fprint(cmd.ErrOrStderr(), "password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprint(cmd.ErrOrStderr(), "\nagain: ")
		if err != nil {
			return "", err
		}
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", fmt.Errorf("the passwords differ")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func newAgentsAddCommand(c *apiClient) *cobra.Command {
	var role string
	var withPassword bool
	cmd := &cobra.Command{
		Use:   "add NAME --role viewer|agent|admin",
		Short: "Add an account and print its API token (shown once)",
		Long: `Add an account through POST /api/v1/agents and print its first API token,
which is shown only this once. With --password-stdin, the first line of
stdin becomes the account's console password (12 characters or more).`,
		Example: `  omnisync agents add emma.clarke --role agent
  omnisync agents add ana.li --role admin --password-stdin <<<'correct horse battery'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.NewAgent{Name: args[0], Role: role}
			if withPassword {
				p, err := readPassword(cmd, true)
				if err != nil {
					return err
				}
				req.Password = p
			}
			var out api.AgentCreated
			if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/agents", req, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "account %s (%s) added; its API token, shown only now:\n", out.Name, out.Role)
			fmt.Fprintln(cmd.OutOrStdout(), out.Token)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "viewer, agent or admin")
	cmd.Flags().BoolVar(&withPassword, "password-stdin", false, "read a console password from the first line of stdin")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func newAgentsListCommand(c *apiClient) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the accounts",
		Example: "  omnisync agents list\n  omnisync agents list --json | jq -r '.items[] | select(.disabled | not) | .name'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p api.Page[api.Agent]
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/agents", nil, &p); err != nil {
				return err
			}
			if asJSON {
				return writeIndented(cmd.OutOrStdout(), p)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tPASSWORD\tCREATED")
			for _, a := range p.Items {
				state := "enabled"
				if a.Disabled {
					state = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", a.Name, a.Role, state, a.HasPassword, a.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's answer as JSON")
	return cmd
}

func newAgentsDisableCommand(c *apiClient) *cobra.Command {
	return &cobra.Command{
		Use:   "disable NAME",
		Short: "Disable an account: its tokens and sessions are refused from the next request",
		Long: `Disable an account through DELETE /api/v1/agents/{name}. Its API tokens and
browser sessions are refused (401) from the next request on; the account
and its name stay, on record.`,
		Example: "  omnisync agents disable emma.clarke",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var a api.Agent
			if err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/agents/"+url.PathEscape(args[0]), nil, &a); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "account %s disabled\n", a.Name)
			return nil
		},
	}
}

func newAgentsPasswdCommand(c *apiClient) *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Set an account's console password",
		Long: `Set an account's console password through PUT /api/v1/agents/{name}/password:
typed twice on a terminal, or the first line of stdin with --password-stdin.
At least 12 characters; stored as a bcrypt hash.`,
		Example: "  omnisync agents passwd emma.clarke\n  omnisync agents passwd emma.clarke --password-stdin < secret.txt",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := readPassword(cmd, fromStdin)
			if err != nil {
				return err
			}
			var a api.Agent
			if err := c.do(cmd.Context(), http.MethodPut, "/api/v1/agents/"+url.PathEscape(args[0])+"/password", api.Password{Password: p}, &a); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "password of %s set\n", a.Name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of stdin")
	return cmd
}
