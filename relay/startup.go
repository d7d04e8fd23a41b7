package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Start-up waits for JetStream: a NATS cluster that just lost a server
// elects new leaders (the meta group's, each stream's) within seconds, and
// a request sent meanwhile may get no answer at all. Each attempt is bounded
// by startAttempt and retried with a growing pause up to startPauseMax; the
// whole wait is bounded by the context given to New.
var (
	startAttempt  = 3 * time.Second
	startPauseMin = 250 * time.Millisecond
	startPauseMax = 2 * time.Second
	startLogEvery = 5 * time.Second
)

// waitJetStream runs step until it succeeds, fails for good, or ctx ends.
// what names what it waits for, for the log and the final error.
func waitJetStream(ctx context.Context, log *slog.Logger, what string, step func(ctx context.Context) error) error {
	start := time.Now()
	pause := startPauseMin
	var lastLog time.Time
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, startAttempt)
		err := step(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("nats: JetStream answered; starting", "step", what, "waited", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: no answer from JetStream %s within %v (is a majority of the NATS cluster up, with JetStream enabled?): %w",
				ErrNATS, what, time.Since(start).Round(time.Second), err)
		}
		if time.Since(lastLog) >= startLogEvery {
			lastLog = time.Now()
			log.Info("nats: waiting for JetStream (a cluster electing its leaders, or a server still starting); retrying",
				"step", what, "attempt", attempt, "waited", time.Since(start).Round(time.Millisecond), "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, startPauseMax)
	}
}

// permanent reports errors that waiting does not cure: replicas a single
// server cannot have, an invalid bucket configuration, a closed connection.
// Anything else may be a cluster still electing or placing (JetStream even
// answers "no suitable peers for placement, peer offline" with a 400 while
// a restarted peer rejoins), so it is retried until New's context ends.
func permanent(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeReplicasNotSupported, errCodeStreamInvalidConfig:
			return true
		}
	}
	return errors.Is(err, nats.ErrConnectionClosed)
}

// errCodeReplicasNotSupported: "replicas > 1 not supported in non-clustered
// mode" (JSStreamReplicasNotSupportedErr).
const errCodeReplicasNotSupported = 10074

// errCodeStreamInvalidConfig: JSStreamInvalidConfigF.
const errCodeStreamInvalidConfig = 10052
