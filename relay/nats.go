package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNATS is returned (wrapped) when the relay cannot start or reach NATS.
var ErrNATS = errors.New("relay: NATS unavailable")

// natsBackend is the relay's one code path to NATS: a nats.go connection,
// either to the embedded in-process server or to an external one.
type natsBackend struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *server.Server // nil with an external NATS
	// onSlow, once set, is told of a subscription whose routing shard was
	// full (nats.go dropped messages for it).
	onSlow atomic.Pointer[func(*nats.Subscription)]
}

// natsWriteTimeout bounds a write to NATS (see connectNATS): a publish
// blocked behind a stalled connection holds its poller up to about twice
// that (the write of the publish itself, then the flusher's that drops
// the connection).
const natsWriteTimeout = 3 * time.Second

// connectNATS starts the embedded nats-server (url == "") or dials url, and
// returns a connection with JetStream.
func connectNATS(ctx context.Context, url, dataDir string, log *slog.Logger) (*natsBackend, error) {
	b := &natsBackend{}
	opts := []nats.Option{
		nats.Name("duet-relay"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		// No buffering while reconnecting: a publish then fails at once,
		// so the sender learns "unavailable" now rather than its envelope
		// going out (or meeting "no responders") whenever NATS is back.
		nats.ReconnectBufSize(-1),
		// A write that makes no progress for natsWriteTimeout drops the
		// connection, which reconnects (publishes fail meanwhile, as
		// above). A small envelope is published on the poller's
		// goroutine, so a stalled NATS would otherwise hold every session
		// of the poller for nats.go's default of a minute, past the SDKs'
		// 10 s pong timeout.
		nats.FlusherTimeout(natsWriteTimeout),
		nats.ReconnectOnFlusherError(),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				// Counted per subscription; see router.backlogDrops.
				log.Warn("nats: routing queue full, dropping envelopes", "err", err)
				if f := b.onSlow.Load(); f != nil && sub != nil {
					(*f)(sub)
				}
				return
			}
			log.Warn("nats: async error", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if url == "" {
		ns, err := startEmbeddedNATS(ctx, dataDir, log)
		if err != nil {
			return nil, err
		}
		b.embedded = ns
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("%w: connecting to %s: %w", ErrNATS, redactURL(url), err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("%w: %w", ErrNATS, err)
	}
	b.js = js
	err = waitJetStream(ctx, log, "account info on "+redactURL(url), func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
	if err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// startEmbeddedNATS runs nats-server in this process with JetStream stored
// under dataDir/nats and no network listener.
func startEmbeddedNATS(ctx context.Context, dataDir string, log *slog.Logger) (*server.Server, error) {
	sopts := &server.Options{
		ServerName: "duet-relay-embedded",
		DontListen: true,
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "nats"),
		NoSigs:     true,
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("%w: embedded server: %w", ErrNATS, err)
	}
	ns.SetLoggerV2(natsLogger{log.With("component", "nats-server")}, false, false, false)
	ns.Start()
	timeout := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if !ns.ReadyForConnections(timeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("%w: embedded server not ready after %v (store %s)", ErrNATS, timeout, sopts.StoreDir)
	}
	return ns, nil
}

// drain drains the connection, so that what the node published reaches the
// server, then closes it (at once when ctx ends first), and stops the
// embedded server, if any. A connection that is not connected is closed.
func (b *natsBackend) drain(ctx context.Context) error {
	var err error
	closed := make(chan struct{})
	b.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if derr := b.nc.Drain(); derr == nil {
		select {
		case <-closed:
		case <-ctx.Done():
			err = fmt.Errorf("draining NATS: %w", ctx.Err())
		}
	}
	b.close()
	return err
}

// close closes the connection and stops the embedded server, if any.
func (b *natsBackend) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}

// redactURL hides credentials in a NATS URL for logs and errors.
func redactURL(u string) string {
	for i := 0; i < len(u); i++ {
		if u[i] == '@' {
			for j := 0; j+2 < i; j++ {
				if u[j:j+3] == "://" {
					return u[:j+3] + "[redacted]" + u[i:]
				}
			}
			return "[redacted]" + u[i:]
		}
	}
	return u
}

// natsLogger sends nats-server's log lines to slog: notices at debug level
// (they are chatty), warnings and errors as such.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  {}
