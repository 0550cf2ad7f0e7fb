package devregistry

import (
	"fmt"
	"strings"

	"github.com/omnisync/omnisync/pkg/avro"
)

// Compatibility levels, named as Confluent Schema Registry names them.
const (
	levelNone               = "NONE"
	levelBackward           = "BACKWARD"
	levelBackwardTransitive = "BACKWARD_TRANSITIVE"
	levelForward            = "FORWARD"
	levelForwardTransitive  = "FORWARD_TRANSITIVE"
	levelFull               = "FULL"
	levelFullTransitive     = "FULL_TRANSITIVE"
)

// parseLevel returns the level named by s, in any case, and whether s names one.
func parseLevel(s string) (string, bool) {
	switch u := strings.ToUpper(s); u {
	case levelNone, levelBackward, levelBackwardTransitive, levelForward,
		levelForwardTransitive, levelFull, levelFullTransitive:
		return u, true
	}
	return "", false
}

// priorSchema is a live version of a subject that a new schema is checked against.
type priorSchema struct {
	version int
	text    string
}

// incompatibilities returns why candidate breaks level against prior, the
// live versions of a subject oldest first, or nil when it does not. The
// non-transitive levels check the latest version only.
func incompatibilities(level, candidate string, prior []priorSchema) []string {
	if level == levelNone || len(prior) == 0 {
		return nil
	}
	if !strings.HasSuffix(level, "_TRANSITIVE") {
		prior = prior[len(prior)-1:]
	}
	backward, forward := level, level
	switch {
	case strings.HasPrefix(level, levelFull):
		backward, forward = level+" (backward)", level+" (forward)"
	case strings.HasPrefix(level, levelForward):
		backward = ""
	default:
		forward = ""
	}
	var msgs []string
	for i := len(prior) - 1; i >= 0; i-- {
		p := prior[i]
		if backward != "" {
			if err := avro.CanRead(candidate, p.text); err != nil {
				msgs = append(msgs, fmt.Sprintf("%s: the new schema cannot read data written with version %d: %v", backward, p.version, err))
			}
		}
		if forward != "" {
			if err := avro.CanRead(p.text, candidate); err != nil {
				msgs = append(msgs, fmt.Sprintf("%s: version %d cannot read data written with the new schema: %v", forward, p.version, err))
			}
		}
	}
	return msgs
}
