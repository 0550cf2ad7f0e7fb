package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Consumer-group timing of every omnisync group member (materializer,
// forwarder). Membership is dynamic: a member that closes its client
// leaves the group at once, so the others take its partitions over in a
// rebalance; one that vanishes without leaving is evicted GroupSessionTimeout
// after its last heartbeat (6 s is the brokers' default
// group.min.session.timeout.ms). Members learn of a rebalance at their
// next heartbeat, so GroupHeartbeatInterval bounds how long they take to
// join one. GroupRebalanceTimeout is how long a rebalance waits for a
// member to finish its batch (polls block rebalancing until the batch is
// stored) before the member is dropped from the group.
const (
	GroupSessionTimeout    = 6 * time.Second
	GroupHeartbeatInterval = 500 * time.Millisecond
	GroupRebalanceTimeout  = 30 * time.Second
	// GroupLeaveTimeout bounds the wait for LeaveGroup on shutdown, so a
	// member stops even while the brokers are unreachable (the
	// coordinator then evicts it after the session timeout).
	GroupLeaveTimeout = 5 * time.Second
)

// GroupOpts are the client options of a consumer-group member: the timing
// above. The client's own request retries (joins, heartbeats, fetches)
// back off as every omnisync client's do (Config.Opts: at most 1 s), so a
// member rejoins within seconds of the brokers' return.
func GroupOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SessionTimeout(GroupSessionTimeout),
		kgo.HeartbeatInterval(GroupHeartbeatInterval),
		kgo.RebalanceTimeout(GroupRebalanceTimeout),
	}
}

// CloseMember leaves cl's group, waiting at most GroupLeaveTimeout, and
// closes cl. It allows a rebalance first: a poll with BlockRebalanceOnPoll
// may have blocked it, and leaving needs it. The error is the leave's.
func CloseMember(cl *kgo.Client) error {
	cl.AllowRebalance()
	ctx, cancel := context.WithTimeout(context.Background(), GroupLeaveTimeout)
	defer cancel()
	err := cl.LeaveGroupContext(ctx)
	cl.Close()
	return err
}
