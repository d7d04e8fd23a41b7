package call

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/syncbuf"
)

// logRecorder keeps what a peer logged, at debug level, as JSON lines.
type logRecorder struct {
	t   testing.TB
	buf syncbuf.Buffer
}

// logRecord is one logged record: its message and its attributes.
type logRecord struct {
	Msg   string
	Level string
	Attrs map[string]any
}

// records returns what was logged so far.
func (r *logRecorder) records() []logRecord {
	r.t.Helper()
	data := r.buf.Bytes()
	var out []logRecord
	for line := range bytes.Lines(data) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			r.t.Fatalf("log line %q: %v", line, err)
		}
		rec := logRecord{Attrs: m}
		rec.Msg, _ = m["msg"].(string)
		rec.Level, _ = m["level"].(string)
		out = append(out, rec)
	}
	return out
}

// withPrefix returns the records whose message starts with prefix.
func (r *logRecorder) withPrefix(prefix string) []logRecord {
	r.t.Helper()
	var out []logRecord
	for _, rec := range r.records() {
		if strings.HasPrefix(rec.Msg, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

// recordLogs returns a logger for a test peer that logs to t as testLogger
// does and records everything at debug level.
func recordLogs(t testing.TB, name string) (*slog.Logger, *logRecorder) {
	rec := &logRecorder{t: t}
	h := slog.NewMultiHandler(
		testLogger(t, name).Handler(),
		slog.NewJSONHandler(&rec.buf, &slog.HandlerOptions{Level: slog.LevelDebug}),
	)
	return slog.New(h), rec
}

// stepRecord returns the record of the setup step "call: <name> <n>: ...".
func stepRecord(t *testing.T, who string, rec *logRecorder, name, n string) logRecord {
	t.Helper()
	got := rec.withPrefix(fmt.Sprintf("call: %s %s: ", name, n))
	if len(got) != 1 {
		t.Fatalf("%s: %d %q %s lines, want 1", who, len(got), name, n)
	}
	return got[0]
}

// TestSetupAndDiagLogs checks the seed's troubleshooting logs of an audio
// call: the caller's STEP 1..8 (6.5 with the offer's m-lines), the callee's
// RCVD STEP and ANSWER STEP lines (3.5 with the answer's m-lines), and the
// Diag line while connected.
func TestSetupAndDiagLogs(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{diag: 100 * time.Millisecond})
	la, ra := recordLogs(t, "a")
	lb, rb := recordLogs(t, "b")
	a, b := newPeer(t, "a", withLogger(la)), newPeer(t, "b", withLogger(lb))
	connect(t, a, b, Media{Audio: true})

	for _, n := range []string{"1", "2", "3", "4", "5", "6", "6.5", "7", "8", "8.5"} {
		stepRecord(t, "a", ra, "STEP", n)
	}
	checkMLines(t, "a", stepRecord(t, "a", ra, "STEP", "6.5"))
	for _, n := range []string{"1", "2", "2.5", "3"} {
		stepRecord(t, "b", rb, "RCVD STEP", n)
	}
	checkMLines(t, "b", stepRecord(t, "b", rb, "RCVD STEP", "1"))
	for _, n := range []string{"0", "1", "2", "3", "3.5", "4", "5"} {
		stepRecord(t, "b", rb, "ANSWER STEP", n)
	}
	checkMLines(t, "b", stepRecord(t, "b", rb, "ANSWER STEP", "3.5"))
	if got := rb.withPrefix("call: STEP "); len(got) != 0 {
		t.Errorf("b (the callee) logged caller steps: %v", got)
	}
	if got := ra.withPrefix("call: ANSWER STEP "); len(got) != 0 {
		t.Errorf("a (the caller) logged answer steps: %v", got)
	}

	// Diag lines: wait until each side logged one whose bitrates and RTT
	// are known (the first line has no previous sample for the rates, and
	// the RTT comes with the first consent check or receiver report).
	for _, p := range []struct {
		name string
		rec  *logRecorder
	}{{"a", ra}, {"b", rb}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			diags := p.rec.withPrefix("call: Diag #")
			if len(diags) >= 2 && diagComplete(diags[len(diags)-1]) {
				checkDiags(t, p.name, diags)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no complete Diag line within 10s: %v", p.name, diags)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitEnd(5 * time.Second)
}

// checkMLines checks that a step's m-lines are those of an audio call: one
// audio m-line, a=sendrecv.
func checkMLines(t *testing.T, who string, r logRecord) {
	t.Helper()
	ms, _ := r.Attrs["m"].([]any)
	var lines []string
	for _, m := range ms {
		l, _ := m.(string)
		lines = append(lines, l)
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "m=audio ") || !strings.HasSuffix(lines[0], " a=sendrecv") {
		t.Errorf("%s: %q: m = %q, want one audio m-line with a=sendrecv", who, r.Msg, lines)
	}
}

// num returns a numeric attribute of a Diag record (-1 if missing).
func num(r logRecord, key string) float64 {
	if v, ok := r.Attrs[key].(float64); ok {
		return v
	}
	return -1
}

// diagComplete reports whether a Diag line has its rates and RTT.
func diagComplete(r logRecord) bool {
	rtt, _ := time.ParseDuration(fmt.Sprint(r.Attrs["rtt"]))
	return num(r, "send_kbps") > 0 && num(r, "recv_kbps") > 0 && rtt > 0
}

// checkDiags checks the Diag lines of an audio call that is connected: they
// are numbered from 1, say connected, and their counts grow.
func checkDiags(t *testing.T, who string, diags []logRecord) {
	t.Helper()
	var prev logRecord
	for i, d := range diags {
		if want := fmt.Sprintf("call: Diag #%d", i+1); d.Msg != want || d.Level != "INFO" {
			t.Errorf("%s: Diag line %d: %s %q, want INFO %q", who, i+1, d.Level, d.Msg, want)
		}
		if d.Attrs["state"] != string(StateConnected) {
			t.Errorf("%s: %q: state %v, want connected", who, d.Msg, d.Attrs["state"])
		}
		for _, k := range []string{"sent_bytes", "recv_bytes", "sent_pkts", "recv_pkts", "send_kbps", "recv_kbps", "lost", "dec_err"} {
			if num(d, k) < 0 {
				t.Errorf("%s: %q: %s = %v, want a number", who, d.Msg, k, d.Attrs[k])
			}
		}
		if i == 0 && num(d, "send_kbps") <= 0 {
			t.Errorf("%s: %q: send_kbps = %v, want the rate since the call connected", who, d.Msg, d.Attrs["send_kbps"])
		}
		for _, k := range []string{"sent_frames", "recv_frames", "rtt", "loss", "peer_loss", "pair"} {
			if _, ok := d.Attrs[k].(string); !ok {
				t.Errorf("%s: %q: %s = %v, want a string", who, d.Msg, k, d.Attrs[k])
			}
		}
		if i > 0 {
			for _, k := range []string{"sent_bytes", "recv_bytes", "sent_pkts", "recv_pkts"} {
				if num(d, k) < num(prev, k) {
					t.Errorf("%s: %s went down from %q to %q: %v -> %v", who, k, prev.Msg, d.Msg, prev.Attrs[k], d.Attrs[k])
				}
			}
		}
		prev = d
	}
	last := diags[len(diags)-1]
	for _, k := range []string{"sent_bytes", "recv_bytes", "sent_pkts", "recv_pkts"} {
		if num(last, k) <= 0 {
			t.Errorf("%s: %q: %s = %v, want > 0", who, last.Msg, k, last.Attrs[k])
		}
	}
	var sa, sv, ra, rv int
	if _, err := fmt.Sscanf(fmt.Sprint(last.Attrs["sent_frames"]), "a%d/v%d", &sa, &sv); err != nil || sa <= 0 || sv != 0 {
		t.Errorf("%s: %q: sent_frames = %v, want audio frames and no video", who, last.Msg, last.Attrs["sent_frames"])
	}
	if _, err := fmt.Sscanf(fmt.Sprint(last.Attrs["recv_frames"]), "a%d/v%d", &ra, &rv); err != nil || ra <= 0 || rv != 0 {
		t.Errorf("%s: %q: recv_frames = %v, want audio frames and no video", who, last.Msg, last.Attrs["recv_frames"])
	}
	// Loopback: host candidates on both ends, nothing lost.
	// A direct pair on loopback: host/host mostly, but a slow machine may
	// nominate the server-reflexive candidate (the same address, through
	// the STUN server) once its acceptance wait has passed.
	if p, _ := last.Attrs["pair"].(string); !directPair.MatchString(p) {
		t.Errorf("%s: %q: pair = %v, want a direct pair (host/host, or host or srflx either side)", who, last.Msg, last.Attrs["pair"])
	}
	// Loopback loses nothing by itself, but a loaded machine's socket
	// buffers may drop a few packets: only a loss rate that says the
	// figures are wrong fails (the field is the rate, 0..1). Nothing may
	// fail to decrypt.
	if loss, err := strconv.ParseFloat(fmt.Sprint(last.Attrs["loss"]), 64); err != nil || loss < 0 || loss > 0.1 || num(last, "lost") < 0 {
		t.Errorf("%s: %q: lost %v loss %v, want a rate of 0..0.1", who, last.Msg, last.Attrs["lost"], last.Attrs["loss"])
	}
	if num(last, "dec_err") != 0 {
		t.Errorf("%s: %q: dec_err %v, want none", who, last.Msg, last.Attrs["dec_err"])
	}
}

// TestDiagStopsWithTheCall: the Diag lines stop when the call leaves
// connected, which it only leaves by ending: none is logged after the
// terminal state (the teardown waits for the Diag loop before it publishes
// that state), on the side that hung up and on the other.
func TestDiagStopsWithTheCall(t *testing.T) {
	checkLeaks(t)
	const interval = 20 * time.Millisecond
	setTimings(t, timings{diag: interval})
	la, ra := recordLogs(t, "a")
	lb, rb := recordLogs(t, "b")
	a, b := newPeer(t, "a", withLogger(la)), newPeer(t, "b", withLogger(lb))
	connect(t, a, b, Media{Audio: true})
	for _, r := range []*logRecorder{ra, rb} {
		deadline := time.Now().Add(5 * time.Second)
		for len(r.withPrefix("call: Diag #")) < 2 {
			if time.Now().After(deadline) {
				t.Fatal("fewer than 2 Diag lines within 5s")
			}
			time.Sleep(interval)
		}
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitEnd(5 * time.Second)
	// A Diag loop that outlived the call would log within a few intervals.
	time.Sleep(5 * interval)
	for _, p := range []struct {
		name string
		rec  *logRecorder
	}{{"a", ra}, {"b", rb}} {
		ended := false
		for _, r := range p.rec.records() {
			switch {
			case r.Msg == "call: state" && r.Attrs["state"] == string(StateHangup):
				ended = true
			case strings.HasPrefix(r.Msg, "call: Diag #"):
				if ended {
					t.Errorf("%s: %q logged after the call ended (state %v)", p.name, r.Msg, r.Attrs["state"])
				}
				if r.Attrs["state"] != string(StateConnected) {
					t.Errorf("%s: %q with state %v, want connected", p.name, r.Msg, r.Attrs["state"])
				}
			}
		}
		if !ended {
			t.Errorf("%s: no hangup state logged", p.name)
		}
	}
}

// directPair matches the Diag pair of a path with no TURN relay.
var directPair = regexp.MustCompile(`^(host|srflx|prflx)/(host|srflx|prflx)$`)
