package relay

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/syncbuf"
)

// logLines decodes the JSON log lines written so far.
func logLines(t *testing.T, b *syncbuf.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func findLog(lines []map[string]any, msg string, attrs map[string]string) map[string]any {
	for _, l := range lines {
		if l["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range attrs {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			return l
		}
	}
	return nil
}

// TestInfoLogsSessionsAndCalls: at info the relay logs each session's start
// and end and each call-control envelope (type, recipient, call_id), never
// a payload.
func TestInfoLogsSessionsAndCalls(t *testing.T) {
	var buf syncbuf.Buffer
	r := startRelay(t, Options{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	offer := ca.env(b.alias, "o1")
	ca.send(offer)
	cb.expectEnvelope(offer)
	ice := ca.env(b.alias, "i1")
	ice.Type = "call_ice"
	ca.send(ice)
	cb.expectEnvelope(ice)
	ca.conn.CloseNow()
	eventually(t, 5*time.Second, "the session-closed line", func() bool {
		return findLog(logLines(t, &buf), "relay: session closed", map[string]string{"alias": string(a.alias)}) != nil
	})
	lines := logLines(t, &buf)
	for _, who := range []string{string(a.alias), string(b.alias)} {
		if l := findLog(lines, "relay: session ready", map[string]string{"alias": who}); l == nil || l["level"] != "INFO" {
			t.Errorf("no INFO session-ready line for %s", who)
		}
	}
	if l := findLog(lines, "relay: call", map[string]string{"alias": string(a.alias), "type": "call_offer", "to": string(b.alias), "call_id": offer.CallID}); l == nil {
		t.Errorf("no call line for the offer:\n%s", buf.String())
	}
	if findLog(lines, "relay: call", map[string]string{"type": "call_ice"}) != nil {
		t.Error("an ICE candidate was logged at info")
	}
	if strings.Contains(buf.String(), offer.Payload) || strings.Contains(buf.String(), "payload") {
		t.Errorf("a payload reached the log:\n%s", buf.String())
	}
}

// TestHTTPMetrics: every HTTP API answer is counted by route and status.
func TestHTTPMetrics(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	u := r.newUser(t) // a challenge and a registration
	c := r.connect(t, u.id, u.alias)
	if code := r.do(t, http.MethodGet, "/api/v1/keys/"+string(u.alias), c.token, nil, nil); code != 200 {
		t.Fatalf("lookup = %d", code)
	}
	if code := r.do(t, http.MethodGet, "/api/v1/keys/u99999999", c.token, nil, nil); code != 404 {
		t.Fatalf("lookup of an unknown alias = %d", code)
	}
	if code := r.do(t, http.MethodGet, "/api/v1/keys/bogus", c.token, nil, nil); code != 400 {
		t.Fatalf("lookup of a bad alias = %d", code)
	}
	if code := r.do(t, http.MethodGet, "/api/v1/keys/u99999999", "", nil, nil); code != 401 {
		t.Fatalf("lookup without a token = %d", code)
	}
	if code := r.do(t, http.MethodGet, "/api/v1/nothing", "", nil, nil); code != 404 {
		t.Fatalf("unknown endpoint = %d", code)
	}
	for name, want := range map[string]float64{
		`duet_relay_http_requests_total{route="challenge",status="200"}`: 1,
		`duet_relay_http_requests_total{route="register",status="200"}`:  1,
		`duet_relay_http_requests_total{route="keys",status="200"}`:      1,
		`duet_relay_http_requests_total{route="keys",status="404"}`:      1,
		`duet_relay_http_requests_total{route="keys",status="400"}`:      1,
		`duet_relay_http_requests_total{route="keys",status="401"}`:      1,
		`duet_relay_http_requests_total{route="other",status="404"}`:     1,
		`duet_relay_registrations_total{result="created"}`:               1,
	} {
		if got := r.metric(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
