package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/omnisync/omnisync/pkg/kafka"
)

func newTopicsCommand(g *globals) *cobra.Command {
	layout := kafka.DefaultLayout
	cmd := &cobra.Command{Use: "topics", Short: "Create and describe omnisync's Kafka topics"}
	flags := func(c *cobra.Command) {
		c.Flags().Int32Var(&layout.Partitions, "partitions", layout.Partitions, "partitions of the events, messages and state topics")
		c.Flags().Int16Var(&layout.ReplicationFactor, "replication-factor", layout.ReplicationFactor, "replication factor (-1: the broker's default)")
		c.Flags().IntVar(&layout.MinInsyncReplicas, "min-insync-replicas", layout.MinInsyncReplicas, "min.insync.replicas of every topic (0: the broker's default)")
	}
	admin := func(c *cobra.Command) (*kadm.Client, func(), error) {
		log, err := g.logger()
		if err != nil {
			return nil, nil, err
		}
		cl, err := kafka.NewClient(g.kafkaConfig(log))
		if err != nil {
			return nil, nil, err
		}
		adm := kadm.NewClient(cl)
		adm.SetTimeoutMillis(int32((30 * time.Second).Milliseconds()))
		return adm, cl.Close, nil
	}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create the topics that are missing; report existing ones whose settings differ",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			adm, done, err := admin(c)
			if err != nil {
				return err
			}
			defer done()
			statuses, err := kafka.Provision(c.Context(), adm, layout.Topics())
			out := c.OutOrStdout()
			differ := 0
			for _, s := range statuses {
				switch {
				case s.Created:
					fmt.Fprintf(out, "created  %s\n", s.Name)
				case len(s.Differences) == 0:
					fmt.Fprintf(out, "ok       %s\n", s.Name)
				default:
					differ++
					for _, d := range s.Differences {
						fmt.Fprintf(out, "DIFFERS  %s: %s\n", s.Name, d)
					}
				}
			}
			if err != nil {
				return err
			}
			if differ > 0 {
				return fmt.Errorf("%d topics exist with settings that differ from omnisync's; change them with kafka-configs or kadm", differ)
			}
			return nil
		},
	}
	describe := &cobra.Command{
		Use:   "describe",
		Short: "Print partitions, configs and consumer-group lag of omnisync's topics",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			adm, done, err := admin(c)
			if err != nil {
				return err
			}
			defer done()
			return kafka.Describe(c.Context(), adm, layout.Topics(), c.OutOrStdout())
		},
	}
	flags(create)
	flags(describe)
	cmd.AddCommand(create, describe)
	return cmd
}
