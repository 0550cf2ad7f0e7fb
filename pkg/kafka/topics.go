package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/omnisync/omnisync/pkg/retry"
	"github.com/omnisync/omnisync/schemas"
)

// Layout sizes omnisync's topics.
type Layout struct {
	Partitions        int32 // of the events, messages and state topics; default 12
	ReplicationFactor int16 // -1: the broker's default.replication.factor
	MinInsyncReplicas int   // 0: the broker's default
}

// DefaultLayout is 12 partitions with the broker's replication defaults.
var DefaultLayout = Layout{Partitions: 12, ReplicationFactor: -1}

// TopicSpec is a topic omnisync needs, with the settings it must have.
type TopicSpec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]string
}

// Topics returns the specs of every topic omnisync uses. The events and
// messages topics and the dead letters are kept forever (the log is the
// source of truth; nothing is lost); the state and identity topics and
// _schemas are compacted.
func (l Layout) Topics() []TopicSpec {
	if l.Partitions <= 0 {
		l.Partitions = DefaultLayout.Partitions
	}
	if l.ReplicationFactor == 0 {
		l.ReplicationFactor = -1
	}
	base := map[string]string{}
	if l.MinInsyncReplicas > 0 {
		base["min.insync.replicas"] = strconv.Itoa(l.MinInsyncReplicas)
	}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	forever := []string{"cleanup.policy", "delete", "retention.ms", "-1", "retention.bytes", "-1"}
	return []TopicSpec{
		{schemas.CustomerEventsTopic, l.Partitions, l.ReplicationFactor, with(forever...)},
		{schemas.CustomerMessagesTopic, l.Partitions, l.ReplicationFactor, with(forever...)},
		{schemas.CustomerStateTopic, l.Partitions, l.ReplicationFactor, with("cleanup.policy", "compact")},
		{schemas.DeadLetterTopic, min(l.Partitions, 3), l.ReplicationFactor, with(forever...)},
		{schemas.IdentitiesTopic, l.Partitions, l.ReplicationFactor, with("cleanup.policy", "compact")},
		{schemas.SourceHashesTopic, min(l.Partitions, 3), l.ReplicationFactor, with("cleanup.policy", "compact")},
		{schemas.RegistryTopic, 1, l.ReplicationFactor, with("cleanup.policy", "compact")},
		{schemas.AuditTopic, 1, l.ReplicationFactor, with(forever...)}, // one partition: one order of decisions
	}
}

// TopicStatus is what Provision found or did for one topic.
type TopicStatus struct {
	Name    string
	Created bool
	// Differences lists how an existing topic differs from its spec; the
	// topic is left as it is for an operator to decide.
	Differences []string
}

// Provision creates the topics that do not exist and reports how existing
// ones differ from their specs. Running it twice is harmless.
func Provision(ctx context.Context, adm *kadm.Client, specs []TopicSpec) ([]TopicStatus, error) {
	out := make([]TopicStatus, 0, len(specs))
	for _, spec := range specs {
		configs := make(map[string]*string, len(spec.Configs))
		for k, v := range spec.Configs {
			configs[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopics(ctx, spec.Partitions, spec.ReplicationFactor, configs, spec.Name)
		if err != nil {
			return out, fmt.Errorf("creating topic %s: %w", spec.Name, err)
		}
		r := resp[spec.Name]
		switch {
		case r.Err == nil:
			out = append(out, TopicStatus{Name: spec.Name, Created: true})
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			diffs, err := compare(ctx, adm, spec)
			if err != nil {
				return out, err
			}
			out = append(out, TopicStatus{Name: spec.Name, Differences: diffs})
		default:
			return out, fmt.Errorf("creating topic %s: %w (%s)", spec.Name, r.Err, r.ErrMessage)
		}
	}
	return out, nil
}

func compare(ctx context.Context, adm *kadm.Client, spec TopicSpec) ([]string, error) {
	// A topic created a moment ago (by another provisioner, say) exists
	// before every broker's metadata shows it: ask again for a while.
	var d kadm.TopicDetail
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := retry.Do(waitCtx, nil, "describing topic "+spec.Name, func() error {
		details, err := adm.ListTopics(ctx, spec.Name)
		if err != nil {
			return retry.Permanent(fmt.Errorf("describing topic %s: %w", spec.Name, err))
		}
		d = details[spec.Name]
		if errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return d.Err // not in this broker's metadata yet
		}
		return nil // any other error is reported below
	})
	switch {
	case retry.IsPermanent(err):
		return nil, errors.Unwrap(err)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	if d.Err != nil {
		return nil, fmt.Errorf("describing topic %s: %w", spec.Name, d.Err)
	}
	var diffs []string
	if got := int32(len(d.Partitions)); got != spec.Partitions {
		diffs = append(diffs, fmt.Sprintf("partitions: %d, want %d", got, spec.Partitions))
	}
	if rf := int16(d.Partitions.NumReplicas()); spec.ReplicationFactor > 0 && rf != spec.ReplicationFactor {
		diffs = append(diffs, fmt.Sprintf("replication factor: %d, want %d", rf, spec.ReplicationFactor))
	}
	current, err := topicConfigs(ctx, adm, spec.Name)
	if err != nil {
		return nil, err
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Configs)) {
		if got, want := current[k], spec.Configs[k]; got != want {
			diffs = append(diffs, fmt.Sprintf("%s: %q, want %q", k, got, want))
		}
	}
	return diffs, nil
}

func topicConfigs(ctx context.Context, adm *kadm.Client, topic string) (map[string]string, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("describing configs of %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return nil, fmt.Errorf("describing configs of %s: %w", topic, err)
	}
	out := make(map[string]string, len(rc.Configs))
	for _, c := range rc.Configs {
		if c.Value != nil {
			out[c.Key] = *c.Value
		}
	}
	return out, nil
}

// Describe writes, for each topic, its partitions, replication and the
// configs omnisync cares about, then every consumer group's lag on them.
func Describe(ctx context.Context, adm *kadm.Client, specs []TopicSpec, w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICAS\tCONFIGS\tEND OFFSETS (SUM)")
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return fmt.Errorf("listing end offsets: %w", err)
	}
	for _, s := range specs {
		d, ok := details[s.Name]
		if !ok || d.Err != nil {
			fmt.Fprintf(tw, "%s\tmissing\t\t\t\n", s.Name)
			continue
		}
		cfg, err := topicConfigs(ctx, adm, s.Name)
		if err != nil {
			return err
		}
		var shown string
		for _, k := range slices.Sorted(maps.Keys(s.Configs)) {
			shown += fmt.Sprintf("%s=%s ", k, cfg[k])
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) {
			if o.Topic == s.Name && o.Err == nil {
				sum += o.Offset
			}
		})
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\n", s.Name, len(d.Partitions), d.Partitions.NumReplicas(), shown, sum)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("listing consumer groups: %w", err)
	}
	lags, err := adm.Lag(ctx, groups.Groups()...)
	if err != nil {
		return fmt.Errorf("computing consumer group lag: %w", err)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS\tTOPIC\tLAG")
	for _, g := range slices.Sorted(maps.Keys(lags)) {
		l := lags[g]
		if err := l.Error(); err != nil {
			fmt.Fprintf(tw, "%s\terror: %v\t\t\t\n", g, err)
			continue
		}
		byTopic := l.Lag.TotalByTopic()
		topics := slices.Sorted(maps.Keys(byTopic))
		if len(topics) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t-\t-\n", g, l.State, len(l.Members))
		}
		for _, t := range topics {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\n", g, l.State, len(l.Members), t, byTopic[t].Lag)
		}
	}
	return tw.Flush()
}
