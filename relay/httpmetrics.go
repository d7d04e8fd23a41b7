package relay

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcall/duet/wire"
)

// httpCounter counts the HTTP API's answers in
// duet_relay_http_requests_total{route, status}: route is one of a fixed set
// (challenge, register, keys, ice_config, other), status the HTTP status, so
// registrations, key lookups and every 4xx and 5xx show by endpoint.
type httpCounter struct {
	vec *prometheus.CounterVec
}

func newHTTPCounter(reg prometheus.Registerer) (*httpCounter, error) {
	c := &httpCounter{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_relay_http_requests_total",
		Help: "HTTP API requests answered, by route (challenge, register, keys, ice_config, other) and HTTP status.",
	}, []string{"route", "status"})}
	if err := reg.Register(c.vec); err != nil {
		return nil, err
	}
	return c, nil
}

// wrap counts the answers h gives under route.
func (c *httpCounter) wrap(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		c.vec.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
	})
}

// statusWriter records the status a handler writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logCall logs, at info, a call-control envelope a session sent: its type,
// recipient and call_id, never its payload. ICE candidates and rekeys are
// too many per call to log at info. log gives the logger only when a line
// is written (a session's adds its alias: an allocation per envelope
// otherwise).
func logCall(log func() *slog.Logger, env *wire.Envelope) {
	switch env.Type {
	case wire.TypeCallICE, wire.TypeCallRekey:
		return
	}
	log().Info("relay: call", "type", string(env.Type), "to", string(env.To), "call_id", env.CallID)
}
