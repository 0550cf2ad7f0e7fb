package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/kafka"
)

func newBrokerCommand(g *globals) *cobra.Command {
	var cfg kafka.EmbeddedConfig
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded Kafka-protocol broker (dev mode), persisted to a data directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg.Logger = log
			if cfg.DataDir != "" {
				if err := privateDataDir(cfg.DataDir); err != nil {
					return err
				}
			}
			b, err := kafka.StartEmbedded(cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			log.Info("embedded broker listening", zap.Strings("addrs", b.Addrs()), zap.String("data_dir", cfg.DataDir))
			<-cmd.Context().Done()
			log.Info("embedded broker stopping")
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.DataDir, "data-dir", ".omnisync/broker", "directory the broker persists topics, records and group offsets in")
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:9092", "address to listen on")
	cmd.Flags().BoolVar(&cfg.Fsync, "fsync", false, "fsync every produce before acknowledging it (durable against power loss; slower)")
	return cmd
}
