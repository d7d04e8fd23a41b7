package call

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs routes pion's logs into the module's logger at debug level (all
// of pion's levels but trace, which is dropped): the module reports what
// matters to the application itself (state changes, failures, Diag), and
// pion's own warnings and errors are details for troubleshooting.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ l *slog.Logger }

func (p pionLogger) logf(level, format string, args ...any) {
	if !p.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	p.l.Debug(fmt.Sprintf(format, args...), "pion_level", level)
}

func (pionLogger) Trace(string)                        {}
func (pionLogger) Tracef(string, ...any)               {}
func (p pionLogger) Debug(msg string)                  { p.logf("debug", "%s", msg) }
func (p pionLogger) Debugf(format string, args ...any) { p.logf("debug", format, args...) }
func (p pionLogger) Info(msg string)                   { p.logf("info", "%s", msg) }
func (p pionLogger) Infof(format string, args ...any)  { p.logf("info", format, args...) }
func (p pionLogger) Warn(msg string)                   { p.logf("warn", "%s", msg) }
func (p pionLogger) Warnf(format string, args ...any)  { p.logf("warn", format, args...) }
func (p pionLogger) Error(msg string)                  { p.logf("error", "%s", msg) }
func (p pionLogger) Errorf(format string, args ...any) { p.logf("error", format, args...) }
