// Package schemas holds omnisync's Avro schemas, the single source of truth
// for every record on Kafka, and the names of the topics and registry
// subjects they live under.
//
// The current schema of each record is Current(Name); every released
// version stays in history/<name>/v<N>.avsc and is never edited, so tests
// can prove that today's code reads all of them and that every change is
// FULL compatible.
package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Topics. The log is the source of truth: the events and messages topics are
// kept forever; the state topic is compacted.
const (
	CustomerEventsTopic   = "omnisync.customer.events.v1"
	CustomerMessagesTopic = "omnisync.customer.messages.v1"
	CustomerStateTopic    = "omnisync.customer.state.v1"
	DeadLetterTopic       = "omnisync.dlq.v1"
	// IdentitiesTopic is the identity directory: identity → customer ID,
	// compacted, followed in memory by every producer.
	IdentitiesTopic = "omnisync.identities.v1"
	// SourceHashesTopic keeps, per back-office source, the content hash of
	// every record it last produced (omnisync import, omnisync source poll
	// and postgres), compacted: a record whose hash did not change is not
	// produced again.
	SourceHashesTopic = "omnisync.source.hashes.v1"
	// RegistryTopic is where the embedded schema registry persists schemas,
	// as Confluent Schema Registry does.
	RegistryTopic = "_schemas"
	// AuditTopic is the decisions on record (AuditEvent), kept forever.
	AuditTopic = "omnisync.audit.v1"
)

// Name identifies one of omnisync's record schemas.
type Name string

// The record schemas, named after their .avsc files.
const (
	CustomerEvent Name = "customer_event"
	MessageEvent  Name = "message_event"
	CustomerState Name = "customer_state"
	DeadLetter    Name = "dead_letter"
	IdentityLink  Name = "identity_link"
	AuditEvent    Name = "audit_event"
)

// All lists every record schema.
var All = []Name{CustomerEvent, MessageEvent, CustomerState, DeadLetter, IdentityLink, AuditEvent}

// Topic returns the topic that carries records of this schema.
func (n Name) Topic() string {
	switch n {
	case CustomerEvent:
		return CustomerEventsTopic
	case MessageEvent:
		return CustomerMessagesTopic
	case CustomerState:
		return CustomerStateTopic
	case DeadLetter:
		return DeadLetterTopic
	case IdentityLink:
		return IdentitiesTopic
	case AuditEvent:
		return AuditTopic
	}
	panic("schemas: unknown schema name " + string(n))
}

// Subject returns the registry subject of the schema: the TopicNameStrategy
// subject of its topic's values.
func (n Name) Subject() string { return ValueSubject(n.Topic()) }

// ValueSubject is the TopicNameStrategy subject for a topic's record values.
func ValueSubject(topic string) string { return topic + "-value" }

//go:embed *.avsc history
var files embed.FS

// Current returns the current schema text of n.
func Current(n Name) string {
	b, err := files.ReadFile(string(n) + ".avsc")
	if err != nil {
		panic("schemas: no schema file for " + string(n))
	}
	return string(b)
}

// History returns every released version of n, oldest first.
func History(n Name) ([]string, error) {
	dir := path.Join("history", string(n))
	entries, err := fs.ReadDir(files, dir)
	if err != nil {
		return nil, fmt.Errorf("reading schema history of %s: %w", n, err)
	}
	type version struct {
		n    int
		text string
	}
	var versions []version
	for _, e := range entries {
		num, ok := strings.CutPrefix(strings.TrimSuffix(e.Name(), ".avsc"), "v")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".avsc") {
			return nil, fmt.Errorf("schema history of %s: unexpected file %s (want v<N>.avsc)", n, e.Name())
		}
		b, err := files.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		versions = append(versions, version{v, string(b)})
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i].n < versions[j].n })
	out := make([]string, len(versions))
	for i, v := range versions {
		out[i] = v.text
	}
	return out, nil
}
