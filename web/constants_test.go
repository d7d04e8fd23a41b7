package web_test

import (
	"crypto/ed25519"
	"encoding/json"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// sdkConstants reads, in Chromium, every upper-case constant (number,
// string, array or plain object) the SDK's modules export, and the call
// module's internal timing table (call-config.js's T, as shipped).
const sdkConstants = `Promise.all(['duet', 'bip39', 'canonical', 'identity', 'signal', 'frame', 'client', 'calls', 'call-fsm']
  .map((n) => import('/sdk/' + n + '.js'))).then((mods) => {
  const out = {};
  ['duet', 'bip39', 'canonical', 'identity', 'signal', 'frame', 'client', 'calls', 'call-fsm'].forEach((n, i) => {
    out[n] = Object.fromEntries(Object.entries(mods[i]).filter(([k, v]) => /^[A-Z][A-Z0-9_]*$/.test(k) &&
      (typeof v === 'number' || typeof v === 'string' || Array.isArray(v) || (v !== null && Object.getPrototypeOf(v) === Object.prototype))));
  });
  return import('/sdk/call-config.js?shipped').then((c) => { out.timings = { ...c.T }; return out; });
})`

// TestConstantsMatchGo: the browser SDK's constants, read from the modules
// running in Chromium, equal the Go SDK's: its exported constants (e2ee,
// wire, identity), its unexported timings (call, client; read from the Go
// source, where they are variables only for the tests' sake), and the
// constants table of docs/PROTOCOL.md §6, every row of which is checked. A
// value changed on one side only, a new internal timing in calls.js, or a
// new row in the table fails here.
func TestConstantsMatchGo(t *testing.T) {
	srv := startServer(t, sdkMux())
	ctx := newBrowser(t)
	navigate(t, ctx, srv.URL+"/sdktest/index.html")
	js, err := evalJS[map[string]map[string]any](ctx, 20*time.Second, sdkConstants)
	if err != nil {
		t.Fatalf("reading the SDK's constants in Chromium: %v", err)
	}
	callGo := goSourceValues(t, "../call")
	clientGo := goSourceValues(t, "../client")
	doc := protocolConstants(t)

	jsv := func(mod, name string) any {
		t.Helper()
		v, ok := js[mod][name]
		if !ok {
			t.Errorf("the browser SDK's %s.js exports no %s", mod, name)
		}
		return v
	}
	// same reports a difference; from names where want comes from.
	same := func(what string, got, want any, from string) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the browser SDK has %s, %s has %s", what, show(got), from, show(want))
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) }

	// Exported Go constants.
	for _, c := range []struct {
		mod, name string
		want      any
	}{
		{"frame", "MEDIA_INFO_PREFIX", e2ee.InfoPrefix},
		{"frame", "KEY_SIZE", float64(e2ee.KeySize)},
		{"frame", "BASE_IV_SIZE", float64(e2ee.BaseIVSize)},
		{"frame", "COUNTER_SIZE", float64(e2ee.CounterSize)},
		{"frame", "TAG_SIZE", float64(e2ee.TagSize)},
		{"frame", "OVERHEAD", float64(e2ee.Overhead)},
		{"frame", "VP8_KEY_HEADER_LEN", float64(e2ee.VP8KeyHeaderLen)},
		{"frame", "VP8_DELTA_HEADER_LEN", float64(e2ee.VP8DeltaHeaderLen)},
		{"frame", "OPUS_HEADER_LEN", float64(e2ee.OpusHeaderLen)},
		{"frame", "REPLAY_WINDOW", float64(e2ee.ReplayWindow)},
		{"frame", "MAX_FRAMES_PER_KEY", float64(e2ee.MaxFramesPerKey)},
		{"frame", "MAX_BYTES_PER_KEY", float64(e2ee.MaxBytesPerKey)},
		{"frame", "REKEY_FRAMES", float64(e2ee.RekeyFrames)},
		{"frame", "REKEY_BYTES", float64(e2ee.RekeyBytes)},
		{"frame", "REKEY_GRACE_MS", ms(e2ee.RekeyGrace)},
		{"frame", "MAX_CALL_ID_LEN", float64(e2ee.MaxCallIDLen)},
		{"frame", "MAX_EPOCH", float64(wire.MaxEpoch)},
		{"signal", "CRYPTO_V2", float64(wire.CryptoV2)},
		{"signal", "SESSION_KEY_INFO", wire.SessionKeyInfo},
		{"signal", "SESSION_KEY_SIZE", float64(wire.SessionKeySize)},
		{"signal", "IV_SIZE", float64(wire.IVSize)},
		{"signal", "TAG_SIZE", float64(wire.TagSize)},
		{"signal", "NONCE_SIZE", float64(wire.NonceSize)},
		{"signal", "SIGNATURE_SIZE", float64(ed25519.SignatureSize)},
		{"signal", "EPK_SIZE", float64(wire.EPKSize)},
		{"signal", "TIMESTAMP_WINDOW_MS", ms(wire.TimestampWindow)},
		{"signal", "NONCE_WINDOW_MS", ms(wire.NonceWindow)},
		{"signal", "DEFAULT_REPLAY_CAPACITY", float64(wire.DefaultReplayCapacity)},
		{"signal", "MAX_ENVELOPE_SIZE", float64(wire.MaxEnvelopeSize)},
		{"signal", "MAX_PAYLOAD_SIZE", float64(wire.MaxPayloadSize)},
		{"signal", "MAX_ID_LEN", float64(wire.MaxIDLen)},
		{"signal", "MAX_EPOCH", float64(wire.MaxEpoch)},
		{"signal", "MAX_SDP_MLINE", float64(wire.MaxSDPMLine)},
		{"signal", "CALL_TYPES", anySlice(wire.CallTypes)},
		{"signal", "REASONS", anySlice(wire.Reasons)},
		{"canonical", "MAX_JSON_SIZE", float64(wire.MaxJSONSize)},
		{"canonical", "MAX_JSON_DEPTH", float64(wire.MaxJSONDepth)},
		{"identity", "INFO_SIGNING_KEY", identity.InfoSigningKey},
		{"identity", "INFO_AGREEMENT_KEY", identity.InfoAgreementKey},
		{"identity", "SAFETY_NUMBER_LABEL", identity.SafetyNumberLabel},
		{"identity", "PUBLIC_KEY_SIZE", float64(identity.PublicKeySize)},
		{"bip39", "DEFAULT_WORDS", float64(identity.DefaultWords)},
		{"calls", "CALL_STATES", anySlice([]duetcall.State{duetcall.StateIdle, duetcall.StateCalling, duetcall.StateRinging,
			duetcall.StateConnecting, duetcall.StateConnected, duetcall.StateHangup, duetcall.StateRejected, duetcall.StateEnded})},
	} {
		same(c.mod+".js "+c.name, jsv(c.mod, c.name), c.want, "the Go SDK")
	}

	// The Go SDK's unexported timings and strings, from its source.
	goMS := func(vals map[string]constant.Value, pkg, name string) float64 {
		t.Helper()
		v, ok := vals[name]
		if !ok || v.Kind() != constant.Int {
			t.Fatalf("%s: no integer constant or variable %s in the Go source (renamed? update this test)", pkg, name)
		}
		n, _ := constant.Int64Val(v)
		return ms(time.Duration(n))
	}
	goString := func(vals map[string]constant.Value, pkg, name string) string {
		t.Helper()
		v, ok := vals[name]
		if !ok || v.Kind() != constant.String {
			t.Fatalf("%s: no string constant %s in the Go source (renamed? update this test)", pkg, name)
		}
		return constant.StringVal(v)
	}
	timings := js["timings"]
	for _, c := range []struct {
		timing, goName, row string // row: the §6 table row, "" when it has none
	}{
		{"answer", "answerTimeout", "answer timeout"},
		{"ring", "ringTimeout", "ring timeout"},
		{"disconnected", "disconnectedTimeout", "`disconnected` state"},
		{"media", "mediaTimeout", "no inbound RTP growth"},
		{"mediaCheck", "mediaCheckInterval", ""},
		{"diag", "diagInterval", "Diag log interval"},
		{"restartWait", "restartWait", "ICE restart wait"},
		{"restartDelay", "", "ICE restart delay"},
		{"rekeyRetry", "rekeyRetry", "rekey retry"},
		{"rekeySwitch", "rekeySwitchWait", "rekey switch wait"},
		{"offerRetry", "offerRetry", "offer retry"},
		{"gum", "", "getUserMedia timeout"}, // browser only
	} {
		got, ok := timings[c.timing]
		if !ok {
			t.Errorf("calls.js's timing table has no %q", c.timing)
			continue
		}
		if c.goName != "" {
			same("calls.js timing "+c.timing+" (ms)", got, goMS(callGo, "call", c.goName), "the Go call package's "+c.goName)
		}
		if c.row != "" {
			same("calls.js timing "+c.timing+" (ms)", got, ms(doc.duration(t, c.row)), docRef)
		}
	}
	// The exported constants are the table's defaults.
	for name, timing := range map[string]string{"ANSWER_TIMEOUT_MS": "answer", "DISCONNECTED_TIMEOUT_MS": "disconnected",
		"MEDIA_TIMEOUT_MS": "media", "GUM_TIMEOUT_MS": "gum", "DIAG_INTERVAL_MS": "diag"} {
		same("calls.js "+name, jsv("calls", name), timings[timing], "its timing table ("+timing+")")
	}
	// Every internal timing is compared above: a new one must be added here.
	known := []string{"answer", "ring", "disconnected", "media", "mediaCheck", "diag", "restartWait", "restartDelay", "rekeyRetry", "rekeySwitch", "gum", "offerRetry"}
	for k := range timings {
		if !slices.Contains(known, k) {
			t.Errorf("calls.js has a timing %q this test does not compare with the Go SDK and docs/PROTOCOL.md §6: add it to TestConstantsMatchGo", k)
		}
	}

	same("client.js AUTH_TIMEOUT_MS", jsv("client", "AUTH_TIMEOUT_MS"), goMS(clientGo, "client", "authTimeout"), "the Go client package's authTimeout")
	same("client.js BACKOFF_MIN_MS", jsv("client", "BACKOFF_MIN_MS"), goMS(clientGo, "client", "backoffMin"), "the Go client package's backoffMin")
	same("client.js BACKOFF_MAX_MS", jsv("client", "BACKOFF_MAX_MS"), goMS(clientGo, "client", "backoffMax"), "the Go client package's backoffMax")
	same("client.js REGISTER_CONTEXT", jsv("client", "REGISTER_CONTEXT"), goString(clientGo, "client", "registerContext"), "the Go client package's registerContext")
	same("client.js WS_AUTH_CONTEXT", jsv("client", "WS_AUTH_CONTEXT"), goString(clientGo, "client", "wsAuthContext"), "the Go client package's wsAuthContext")

	// The rest of the §6 table (what the Go SDK has no constant for, or
	// the documented value of one compared above).
	same("signal.js TIMESTAMP_WINDOW_MS", jsv("signal", "TIMESTAMP_WINDOW_MS"), ms(doc.duration(t, "signaling timestamp window")), docRef)
	same("signal.js NONCE_WINDOW_MS", jsv("signal", "NONCE_WINDOW_MS"), ms(doc.duration(t, "signaling nonce cache")), docRef)
	same("frame.js REKEY_GRACE_MS", jsv("frame", "REKEY_GRACE_MS"), ms(doc.duration(t, "media rekey grace")), docRef)
	same("frame.js REPLAY_WINDOW", jsv("frame", "REPLAY_WINDOW"), doc.number(t, "media replay window", `^(\d+) frames$`, 1), docRef)
	lim := doc.match(t, "media key limit", `^2\^(\d+) frames or (\d+) GiB; rekey-needed at (\d+) %$`)
	same("frame.js MAX_FRAMES_PER_KEY", jsv("frame", "MAX_FRAMES_PER_KEY"), float64(int64(1)<<atoi(t, lim[1])), docRef)
	same("frame.js MAX_BYTES_PER_KEY", jsv("frame", "MAX_BYTES_PER_KEY"), float64(int64(atoi(t, lim[2]))<<30), docRef)
	pct := int64(atoi(t, lim[3]))
	same("frame.js REKEY_FRAMES", jsv("frame", "REKEY_FRAMES"), float64((int64(1)<<atoi(t, lim[1]))*pct/100), docRef)
	same("frame.js REKEY_BYTES", jsv("frame", "REKEY_BYTES"), float64((int64(atoi(t, lim[2]))<<30)*pct/100), docRef)
	vc := doc.match(t, "video capture", `^(\d+)x(\d+), (\d+) fps \(ideal\)$`)
	same("calls.js VIDEO_CONSTRAINTS", jsv("calls", "VIDEO_CONSTRAINTS"), map[string]any{
		"width": map[string]any{"ideal": float64(atoi(t, vc[1]))}, "height": map[string]any{"ideal": float64(atoi(t, vc[2]))},
		"frameRate": map[string]any{"ideal": float64(atoi(t, vc[3]))}}, docRef)
	same("calls.js MAX_VIDEO_BITRATE", jsv("calls", "MAX_VIDEO_BITRATE"), doc.number(t, "max video send bitrate", `^([\d ]+) bps$`, 1), docRef)
	same("calls.js DEGRADATION_PREFERENCE", jsv("calls", "DEGRADATION_PREFERENCE"), doc.match(t, "degradation preference", "^`([a-z-]+)`$")[1], docRef)
	same("calls.js SCREEN_DEGRADATION_PREFERENCE", jsv("calls", "SCREEN_DEGRADATION_PREFERENCE"), doc.match(t, "screen share degradation preference", "^`([a-z-]+)`$")[1], docRef)
	same("signal.js MAX_ENVELOPE_SIZE", jsv("signal", "MAX_ENVELOPE_SIZE"), doc.number(t, "relay frame limit", `^(\d+) KiB$`, 1024), docRef)
	// The call state machine's timings (PROTOCOL §10) are the §6 rows.
	fsmT := fsm.Defaults()
	for row, d := range map[string]time.Duration{"answer timeout": fsmT.Answer, "ring timeout": fsmT.Ring,
		"`disconnected` state": fsmT.Disconnected, "no inbound RTP growth": fsmT.Media,
		"ICE restart delay": fsmT.RestartDelay, "ICE restart wait": fsmT.RestartWait,
		"renegotiation answer wait": fsmT.Renegotiate, "offer retry": fsmT.OfferRetry} {
		same("the Go call/fsm timing for "+row+" (ms)", ms(d), ms(doc.duration(t, row)), docRef)
	}
	same("call-fsm.js DEFAULT_TIMINGS", jsv("call-fsm", "DEFAULT_TIMINGS"), map[string]any{
		"answer": ms(fsmT.Answer), "ring": ms(fsmT.Ring), "disconnected": ms(fsmT.Disconnected),
		"restart_delay": ms(fsmT.RestartDelay), "restart_wait": ms(fsmT.RestartWait), "media": ms(fsmT.Media),
		"renegotiate": ms(fsmT.Renegotiate), "offer_retry": ms(fsmT.OfferRetry)}, "the Go call/fsm Defaults()")
	if unused := doc.unchecked(); len(unused) > 0 {
		t.Errorf("docs/PROTOCOL.md §6 rows this test does not compare with the SDKs: %q; add them to TestConstantsMatchGo", unused)
	}

	// duet.d.ts declares literal types for some constants: they are the values.
	dts, err := os.ReadFile("sdk/duet.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	var literals int
	for _, m := range regexp.MustCompile(`(?m)^export declare const ([A-Z][A-Z0-9_]*): (\d+|'[^']*');$`).FindAllStringSubmatch(string(dts), -1) {
		literals++
		var want any = strings.Trim(m[2], "'")
		if n, err := strconv.ParseFloat(m[2], 64); err == nil {
			want = n
		}
		if got, ok := js["duet"][m[1]]; !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("duet.d.ts declares %s: %s, but duet.js exports %s", m[1], m[2], show(got))
		}
	}
	if literals < 20 {
		t.Errorf("found only %d literal-typed constants in duet.d.ts", literals)
	}
}

const docRef = "docs/PROTOCOL.md §6"

// show prints a JSON value as the SDKs write it (integers without exponent).
func show(v any) string {
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func anySlice[T ~string](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("docs/PROTOCOL.md §6: %q is not a number", s)
	}
	return n
}

// goSourceValues evaluates the package-level constants and variables of the
// Go package in dir (its non-test files) whose values are constant
// expressions of literals, time units and each other: how the call and
// client packages define their unexported timings.
func goSourceValues(t testing.TB, dir string) map[string]constant.Value {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	exprs := map[string]ast.Expr{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parsing %s: %v", f, err)
		}
		for _, d := range file.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || (g.Tok != token.CONST && g.Tok != token.VAR) {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				if len(vs.Values) != len(vs.Names) {
					continue // iota lists and multi-value calls: not timings
				}
				for i, n := range vs.Names {
					exprs[n.Name] = vs.Values[i]
				}
			}
		}
	}
	units := map[string]time.Duration{"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond,
		"Millisecond": time.Millisecond, "Second": time.Second, "Minute": time.Minute, "Hour": time.Hour}
	var eval func(e ast.Expr, depth int) (constant.Value, bool)
	eval = func(e ast.Expr, depth int) (constant.Value, bool) {
		if depth > 10 {
			return nil, false
		}
		switch e := e.(type) {
		case *ast.BasicLit:
			v := constant.MakeFromLiteral(e.Value, e.Kind, 0)
			return v, v.Kind() != constant.Unknown
		case *ast.ParenExpr:
			return eval(e.X, depth+1)
		case *ast.Ident:
			if x, ok := exprs[e.Name]; ok {
				return eval(x, depth+1)
			}
		case *ast.SelectorExpr:
			if p, ok := e.X.(*ast.Ident); ok && p.Name == "time" {
				if u, ok := units[e.Sel.Name]; ok {
					return constant.MakeInt64(int64(u)), true
				}
			}
		case *ast.BinaryExpr:
			x, ok1 := eval(e.X, depth+1)
			y, ok2 := eval(e.Y, depth+1)
			if !ok1 || !ok2 {
				return nil, false
			}
			switch e.Op {
			case token.SHL, token.SHR:
				n, ok := constant.Uint64Val(y)
				if !ok {
					return nil, false
				}
				return constant.Shift(x, e.Op, uint(n)), true
			case token.ADD, token.SUB, token.MUL:
				return constant.BinaryOp(x, e.Op, y), true
			case token.QUO:
				return constant.BinaryOp(x, token.QUO_ASSIGN, y), true // integer division
			}
		}
		return nil, false
	}
	out := map[string]constant.Value{}
	for name, e := range exprs {
		if v, ok := eval(e, 0); ok {
			out[name] = v
		}
	}
	return out
}

// docTable is the constants table of docs/PROTOCOL.md §6: label → value,
// and which rows a test looked up.
type docTable struct {
	rows map[string]string
	used map[string]bool
}

func protocolConstants(t *testing.T) *docTable {
	t.Helper()
	src, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(src), "\n## 6. Constants\n")
	if !ok {
		t.Fatal("docs/PROTOCOL.md has no \"## 6. Constants\" section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	d := &docTable{rows: map[string]string{}, used: map[string]bool{}}
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 2 || !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		k, v := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
		if k == "constant" || strings.Trim(k, "-") == "" {
			continue
		}
		d.rows[k] = v
	}
	if len(d.rows) < 15 {
		t.Fatalf("docs/PROTOCOL.md §6: found only %d rows in the constants table", len(d.rows))
	}
	return d
}

// value returns the value of the one row whose label starts with prefix.
func (d *docTable) value(t *testing.T, prefix string) string {
	t.Helper()
	var found []string
	for k := range d.rows {
		if strings.HasPrefix(k, prefix) {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		t.Fatalf("docs/PROTOCOL.md §6: %d rows start with %q (%q); want exactly one", len(found), prefix, found)
	}
	d.used[found[0]] = true
	return d.rows[found[0]]
}

func (d *docTable) match(t *testing.T, prefix, re string) []string {
	t.Helper()
	v := d.value(t, prefix)
	m := regexp.MustCompile(re).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("docs/PROTOCOL.md §6: row %q has value %q, which this test reads as %s", prefix, v, re)
	}
	return m
}

// duration reads a value like "15 s", "5 min" or "20 s (answer timeout + 5 s)".
func (d *docTable) duration(t *testing.T, prefix string) time.Duration {
	t.Helper()
	m := d.match(t, prefix, `^(\d+) (ms|s|min)\b`)
	unit := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "min": time.Minute}[m[2]]
	return time.Duration(atoi(t, m[1])) * unit
}

func (d *docTable) number(t *testing.T, prefix, re string, scale float64) float64 {
	t.Helper()
	return float64(atoi(t, d.match(t, prefix, re)[1])) * scale
}

func (d *docTable) unchecked() []string {
	var out []string
	for k := range d.rows {
		if !d.used[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
