package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/omnisync/omnisync/api"
)

// Exit statuses of the conflicts commands beside 0 (done) and 1 (any other
// error).
const (
	exitNotFound        = 3 // the API answered 404: no such conflict
	exitAlreadyResolved = 4 // the API answered 409: the conflict is already resolved
	exitUnavailable     = 5 // the API answered 503: nothing was done, retry
)

// apiError is an error answer of the HTTP API.
type apiError struct {
	status int
	body   api.Error
}

func (e *apiError) Error() string {
	return fmt.Sprintf("API answered %d %s: %s", e.status, e.body.Error, e.body.Reason)
}

// exitError is an error that sets the process's exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode returns the exit status for err.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ae *apiError
	if errors.As(err, &ae) {
		switch ae.status {
		case http.StatusNotFound:
			return exitNotFound
		case http.StatusConflict:
			return exitAlreadyResolved
		case http.StatusServiceUnavailable:
			return exitUnavailable
		}
	}
	return 1
}

// apiClient talks to the agents' API with the admin token.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// do sends a request to path with body (JSON, nil for none) and decodes a
// 2xx answer into v; another answer is an *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, body, v any) error {
	for _, env := range []string{"OMNISYNC_TOKEN", "OMNISYNC_ADMIN_TOKEN"} {
		if c.token == "" {
			c.token = os.Getenv(env)
		}
	}
	if c.token == "" {
		return errors.New("no token: pass --token, or set OMNISYNC_TOKEN (your API token) or OMNISYNC_ADMIN_TOKEN")
	}
	var in io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		in = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.base, "/")+path, in)
	if err != nil {
		return fmt.Errorf("--api %s: %w", c.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &apiError{status: resp.StatusCode}
		if json.Unmarshal(b, &ae.body) != nil || ae.body.Error == "" {
			ae.body = api.Error{Error: http.StatusText(resp.StatusCode), Reason: strings.TrimSpace(string(b))}
		}
		return ae
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: the answer is not the API's JSON: %w", method, path, err)
	}
	return nil
}

func newConflictsCommand() *cobra.Command {
	c := &apiClient{http: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{
		Use:   "conflicts",
		Short: "The review queue from the command line: list, show and resolve conflicts through the API",
		Long: `List, show and resolve the conflicts awaiting review, through the agents'
HTTP API (see api/openapi.yaml): the same queue, filters and paging as
GET /api/v1/conflicts, and resolve publishes a RESOLVE event exactly as the
console does (the store is never written directly).

The token comes from --token, OMNISYNC_TOKEN (an agent's API token; see
omnisync agents) or OMNISYNC_ADMIN_TOKEN. For an API
served over HTTPS with a self-signed certificate, trust it through
SSL_CERT_FILE.

Exit status: 0 done; 3 no such conflict (404); 4 the conflict is already
resolved (409); 5 the store or Kafka did not answer, nothing was done,
retry (503); 1 any other error.`,
		Example: `  export OMNISYNC_ADMIN_TOKEN=$(jq -r .admin_token .omnisync/credentials.json)
  omnisync conflicts list
  omnisync conflicts show 659ef6372b4d58e8bbaeca03f10a001e
  omnisync conflicts resolve 659ef6372b4d58e8bbaeca03f10a001e --take-candidate`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&c.base, "api", "http://127.0.0.1:8080", "base URL of the API (omnisync api or omnisync dev)")
	f.StringVar(&c.token, "token", "", "API token (default: env OMNISYNC_TOKEN, else OMNISYNC_ADMIN_TOKEN)")
	cmd.AddCommand(newConflictsListCommand(c), newConflictsShowCommand(c), newConflictsResolveCommand(c))
	return cmd
}

func newConflictsListCommand(c *apiClient) *cobra.Command {
	var status, cursor string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List conflicts, oldest first, a page at a time",
		Long: `List conflicts oldest first, in (detected_at, id) order, as GET /api/v1/conflicts
does: --status open (the default), kept_current, took_candidate, set_value
or all; --limit items (1 to 500, default 50) from --cursor. When more pages
follow, the cursor of the next one is printed on stderr.`,
		Example: `  omnisync conflicts list
  omnisync conflicts list --status all --limit 100
  omnisync conflicts list --status took_candidate --cursor WzE3OTUzMTc2MDAwMDAsImN1c18yOGRt…
  omnisync conflicts list --json | jq -r '.items[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"status": {status}, "limit": {strconv.Itoa(limit)}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var p api.Page[api.Conflict]
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/conflicts?"+q.Encode(), nil, &p); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeIndented(out, p)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tDETECTED\tCUSTOMER\tNAME\tFIELD\tCURRENT\tCANDIDATE\tFROM")
			for _, it := range p.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.ID, it.Status, it.DetectedAt.Format(time.RFC3339),
					it.CustomerID, orDash(it.CustomerName), it.Field, short(it.Current), short(it.Candidate), it.CandidateChannel)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(p.Items) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no %s conflicts\n", status)
			}
			if p.NextCursor != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more: --cursor %s\n", p.NextCursor)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "open", "open, kept_current, took_candidate, set_value or all")
	f.IntVar(&limit, "limit", api.DefaultLimit, "conflicts per page, 1 to 500")
	f.StringVar(&cursor, "cursor", "", "start after the page that printed this cursor")
	f.BoolVar(&asJSON, "json", false, "print the API's page as JSON")
	return cmd
}

func newConflictsShowCommand(c *apiClient) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one conflict: the current value and the candidate, with where each came from",
		Long: `Show one conflict, open or resolved: the field, its current value with the
channel, source, time and event that wrote it (from the customer's record),
the candidate value with its event, channel and source, and the status.`,
		Example: `  omnisync conflicts show 659ef6372b4d58e8bbaeca03f10a001e
  omnisync conflicts show 659ef6372b4d58e8bbaeca03f10a001e --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var cf api.Conflict
			if err := c.do(ctx, http.MethodGet, "/api/v1/conflicts/"+url.PathEscape(args[0]), nil, &cf); err != nil {
				return err
			}
			var cust api.Customer
			if err := c.do(ctx, http.MethodGet, "/api/v1/customers/"+url.PathEscape(cf.CustomerID), nil, &cust); err != nil {
				return fmt.Errorf("customer %s of conflict %s: %w", cf.CustomerID, cf.ID, err)
			}
			field, written := cust.Fields[cf.Field]
			out := cmd.OutOrStdout()
			if asJSON {
				v := struct {
					api.Conflict
					CurrentField *api.Field `json:"current_field"`
				}{Conflict: cf}
				if written {
					v.CurrentField = &field
				}
				return writeIndented(out, v)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "conflict\t%s\n", cf.ID)
			fmt.Fprintf(tw, "status\t%s\n", cf.Status)
			fmt.Fprintf(tw, "customer\t%s (%s)\n", cf.CustomerID, orDash(cf.CustomerName))
			fmt.Fprintf(tw, "field\t%s\n", cf.Field)
			fmt.Fprintf(tw, "detected\t%s\n", cf.DetectedAt.Format(time.RFC3339Nano))
			fmt.Fprintf(tw, "current when detected\t%s\n", cf.Current)
			if written {
				fmt.Fprintf(tw, "field now\t%s\tfrom %s %s at %s, event %s\n", field.Value, field.Channel, field.Source,
					field.OccurredAt.Format(time.RFC3339Nano), field.EventID)
			}
			fmt.Fprintf(tw, "candidate\t%s\tfrom %s %s, event %s\n", cf.Candidate, cf.CandidateChannel, cf.CandidateSource, cf.CandidateEventID)
			if cf.ResolvedBy != nil && cf.ResolvedAt != nil {
				fmt.Fprintf(tw, "resolved\tby %s at %s\n", *cf.ResolvedBy, cf.ResolvedAt.Format(time.RFC3339Nano))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the conflict, and the field's current register as current_field, as JSON")
	return cmd
}

func newConflictsResolveCommand(c *apiClient) *cobra.Command {
	var keep, take, asJSON bool
	var setValue, by string
	cmd := &cobra.Command{
		Use:   "resolve ID (--keep-current | --take-candidate | --set-value JSON)",
		Short: "Resolve an open conflict: publish a RESOLVE event through the API",
		Long: `Resolve an open conflict through POST /api/v1/conflicts/{id}/resolve: the API
publishes a RESOLVE event to Kafka and answers once Kafka acknowledged it;
the conflict closes when the materializer applies the event, a moment later.

--keep-current keeps the field's value, --take-candidate writes the
candidate, --set-value writes a value of your own, given as JSON: a string
in quotes (a bare word is taken as a string too), an array of strings for
tags, a number for vip_level. The resolver on record is the token's
account; --by, when given, must name it (the API refuses another name).
A merge suggestion (field merge, the candidate names the other customer
and the evidence) is confirmed with --take-candidate, which also requests
the merge, and rejected with --keep-current.`,
		Example: `  omnisync conflicts resolve 659ef6372b4d58e8bbaeca03f10a001e --take-candidate
  omnisync conflicts resolve 659ef6372b4d58e8bbaeca03f10a001e --keep-current --by emma.clarke
  omnisync conflicts resolve 659ef6372b4d58e8bbaeca03f10a001e --set-value '"+8613800138001"'
  omnisync conflicts resolve 1f0c… --set-value '["vip","wholesale"]'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.ResolveRequest{ResolvedBy: by}
			switch {
			case keep:
				req.Choice = "keep_current"
			case take:
				req.Choice = "take_candidate"
			default:
				v := valueText(setValue)
				req.Choice, req.Value = "set_value", &v
			}
			var ok api.ResolveAccepted
			if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/conflicts/"+url.PathEscape(args[0])+"/resolve", req, &ok); err != nil {
				return err
			}
			if asJSON {
				return writeIndented(cmd.OutOrStdout(), ok)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "conflict %s of customer %s: %s published as event %s; it closes when the materializer applies it\n",
				ok.ConflictID, ok.CustomerID, req.Choice, ok.EventID)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&keep, "keep-current", false, "keep the field's current value")
	f.BoolVar(&take, "take-candidate", false, "write the candidate value")
	f.StringVar(&setValue, "set-value", "", "write this value (JSON)")
	f.StringVar(&by, "by", "", "the agent who decides: optional, must be the token's account")
	f.BoolVar(&asJSON, "json", false, "print the API's answer as JSON")
	cmd.MarkFlagsOneRequired("keep-current", "take-candidate", "set-value")
	cmd.MarkFlagsMutuallyExclusive("keep-current", "take-candidate", "set-value")
	return cmd
}

// valueText turns a --set-value argument into the field's text form the
// API takes: a JSON string is unquoted, any other text passes as it is (a
// JSON array for tags, a number for vip_level, or a bare word).
func valueText(arg string) string {
	var s string
	if json.Unmarshal([]byte(arg), &s) == nil {
		return s
	}
	return arg
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// short returns a JSON value for a table cell: at most 40 characters.
func short(v json.RawMessage) string {
	s := string(v)
	if r := []rune(s); len(r) > 40 {
		return string(r[:39]) + "…"
	}
	return s
}
