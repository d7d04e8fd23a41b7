package web_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/vectors"
	"github.com/duetcall/duet/web"
)

// check is one result reported by sdktest/vectors.js.
type check struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

type runResult struct {
	Checks []check `json:"checks"`
	Passed int     `json:"passed"`
	Failed int     `json:"failed"`
}

// TestVectorsInChromium runs the browser SDK against every file of
// testdata/vectors in real Chromium and asserts each check it reports, plus
// that every check the vector files call for was reported.
func TestVectorsInChromium(t *testing.T) {
	want := expectedChecks(t)
	srv := startServer(t, sdkMux())
	ctx := newBrowser(t)
	console, stop := captureConsole(ctx, "chromium: ")
	navigate(t, ctx, srv.URL+"/sdktest/index.html")

	res, err := evalJS[runResult](ctx, 40*time.Second, `import('/sdktest/vectors.js').then(m => m.run('/vectors/'))`)
	_, summary := console.waitFor("duet vectors:", 5*time.Second)
	stop()
	for _, line := range console.Lines() {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("running sdktest/vectors.js in Chromium: %v", err)
	}
	if !summary {
		t.Error("Chromium never printed the vector summary line")
	}

	got := map[string]check{}
	for _, c := range res.Checks {
		if _, dup := got[c.Name]; dup {
			t.Errorf("check %q reported twice", c.Name)
		}
		got[c.Name] = c
	}
	for _, name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("Chromium never reported the check %q", name)
		}
	}
	// Every vector file was verified: the list in vectors.js's run() (and
	// expectedChecks) is by name, so a new file would otherwise go unchecked.
	files, err := os.ReadDir("../testdata/vectors")
	if err != nil {
		t.Fatalf("listing the vectors: %v", err)
	}
	var nfiles int
	for _, f := range files {
		if f.IsDir() || !strings.HasSuffix(f.Name(), ".json") {
			continue
		}
		nfiles++
		var ran int
		for _, c := range res.Checks {
			if rest, ok := strings.CutPrefix(c.Name, f.Name()+"/"); ok && rest != "load" && rest != "setup" {
				ran++
			}
		}
		if ran == 0 {
			t.Errorf("testdata/vectors/%s was not verified in Chromium: no check named %s/...; load and check it in sdktest/vectors.js run() and list its checks in expectedChecks", f.Name(), f.Name())
		}
	}
	if nfiles == 0 {
		t.Error("testdata/vectors holds no .json file")
	}
	for _, c := range res.Checks {
		t.Run(c.Name, func(t *testing.T) {
			if !c.OK {
				t.Fatalf("failed in Chromium: %s", c.Error)
			}
		})
	}
	if res.Passed != len(res.Checks) || res.Failed != 0 {
		t.Errorf("%d of %d checks passed in Chromium", res.Passed, len(res.Checks))
	}
}

// readVector decodes one file of testdata/vectors.
func readVector(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile("../testdata/vectors/" + name)
	if err != nil {
		t.Fatalf("reading the vectors: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
}

// expectedChecks lists the checks sdktest/vectors.js must report: one set
// per case of every vector file (derived from the files, so a new case
// cannot go unverified), then the SDK behaviour checks.
func expectedChecks(t *testing.T) []string {
	var want []string
	add := func(format string, args ...any) { want = append(want, fmt.Sprintf(format, args...)) }

	var id vectors.IdentityFile
	readVector(t, "identity.json", &id)
	for i := range id.Identities {
		for _, a := range []string{"bip39_seed", "ed25519_seed", "x25519_private", "pkcs8_ed25519", "pkcs8_x25519",
			"ed25519_public from PKCS8", "x25519_public from PKCS8", "deriveIdentity public keys", "entropy round trip"} {
			add("identity.json/identities[%d]/%s", i, a)
		}
	}
	add("identity.json/safety_number")
	add("identity.json/safety_number symmetric")
	for i, m := range id.InvalidMnemonics {
		add("identity.json/invalid_mnemonics[%d] (%s)", i, m.Why)
	}
	for _, c := range id.Normalisation {
		add("identity.json/normalisation/%s", c.Name)
	}
	for _, k := range id.InvalidPublicKeys {
		add("identity.json/invalid_public_keys/%s", k.Name)
	}

	var sk vectors.SessionKeyFile
	readVector(t, "session_key.json", &sk)
	for _, a := range []string{"x25519_shared", "transcript", "session_key (a)", "session_key (b)"} {
		add("session_key.json/%s", a)
	}

	var cj vectors.CanonicalFile
	readVector(t, "canonical_json.json", &cj)
	for _, c := range cj.Cases {
		add("canonical_json.json/%s", c.Name)
	}

	var env vectors.EnvelopeFile
	readVector(t, "envelopes.json", &env)
	add("envelopes.json/session_key")
	for _, c := range env.Cases {
		for _, a := range []string{"signed_blob", "open", "replay refused", "reseal"} {
			add("envelopes.json/%s/%s", c.Name, a)
		}
	}

	var fr vectors.FrameFile
	readVector(t, "frames.json", &fr)
	add("frames.json/caller_to_callee keys")
	add("frames.json/callee_to_caller keys")
	for _, f := range fr.Frames {
		for _, a := range []string{"decrypt", "replay refused", "reencrypt", "worker decrypt"} {
			add("frames.json/%s/%s", f.Name, a)
		}
	}
	for i, r := range fr.Rekeys {
		add("frames.json/rekeys[%d] keys", i)
		for _, f := range r.Frames {
			add("frames.json/%s/decrypt", f.Name)
			add("frames.json/%s/reencrypt", f.Name)
		}
	}

	var ee vectors.EnvelopeErrorFile
	readVector(t, "envelope_errors.json", &ee)
	for _, c := range ee.Cases {
		add("envelope_errors.json/%s", c.Name)
	}

	var fs vectors.FrameSequenceFile
	readVector(t, "frame_sequences.json", &fs)
	add("frame_sequences.json/limits")
	for _, s := range fs.Sequences {
		add("frame_sequences.json/%s", s.Name)
	}
	for _, c := range fs.EncryptLimits {
		add("frame_sequences.json/encrypt_limits/%s", c.Name)
	}

	add("relay_auth.json/keys")
	add("relay_auth.json/register")
	add("relay_auth.json/ws_auth")

	return append(want,
		"envelopes/crypto_v 1 refused",
		"envelopes/short payload refused",
		"envelopes/tampered payload refused",
		"envelopes/wrong signer refused",
		"envelopes/stale refused",
		"envelopes/future refused",
		"envelopes/route mismatch refused",
		"envelopes/failed open does not burn the nonce",
		"envelopes/decodeEnvelope is strict",
		"envelopes/dropReason labels",
		"signal/seal and open call_offer",
		"signal/seal and open call_answer",
		"signal/seal and open call_ice",
		"signal/seal and open call_ice (end of candidates)",
		"signal/seal and open call_reject",
		"signal/seal and open call_hangup",
		"signal/seal and open call_rekey",
		"signal/seal refuses invalid messages",
		"signal/ICE normalisation",
		"signal/isVideoOffer",
		"signal/nonce cache is bounded",
		"frames/tampered frame refused",
		"frames/short frame refused",
		"frames/replay window",
		"frames/rekey-needed at 80% and refusal at 100% (frames)",
		"frames/rekey-needed at 80% and refusal at 100% (bytes)",
		"frames/rekey grace",
		"frames/deriveMediaKeys refuses bad input",
		"frames/round trip with generated ephemeral keys",
		"bip39/word list sha256",
		"bip39/generate 12 and 24 words",
		"bip39/normalisation",
		"identity/checkPublicKeys",
		"identity/IndexedDB save and load",
		"client/PinStore in IndexedDB",
		"canonical/JS values",
	)
}

// TestWordListMatchesIdentity checks that sdk/wordlist.js holds exactly the
// Go SDK's identity/english.txt.
func TestWordListMatchesIdentity(t *testing.T) {
	txt, err := os.ReadFile("../identity/english.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(string(txt))
	js, err := fs.ReadFile(web.SDK, "wordlist.js")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^\s*'([a-z ]+)'`).FindAllStringSubmatch(string(js), -1) {
		got = append(got, strings.Fields(m[1])...)
	}
	if len(want) != 2048 || !slices.Equal(got, want) {
		t.Fatalf("sdk/wordlist.js has %d words and differs from identity/english.txt (%d words); regenerate it from that file", len(got), len(want))
	}
}

// TestSDKFiles checks the embedded SDK: every relative import of every
// module resolves to an embedded file, every name duet.js exports is
// declared in duet.d.ts, and every value duet.d.ts declares (function,
// class, const, ...; types and interfaces need none) is exported by
// duet.js.
func TestSDKFiles(t *testing.T) {
	importRe := regexp.MustCompile(`(?m)(?:^import|^export)[^;]*?from\s+'\./([^']+)'`)
	entries, err := fs.ReadDir(web.SDK, ".")
	if err != nil {
		t.Fatal(err)
	}
	var modules int
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".js") {
			continue
		}
		modules++
		src, err := fs.ReadFile(web.SDK, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range importRe.FindAllStringSubmatch(string(src), -1) {
			if _, err := fs.Stat(web.SDK, m[1]); err != nil {
				t.Errorf("%s imports ./%s, which is not embedded: %v", e.Name(), m[1], err)
			}
		}
	}
	if modules < 8 {
		t.Errorf("only %d modules embedded", modules)
	}

	entry, err := fs.ReadFile(web.SDK, "duet.js")
	if err != nil {
		t.Fatal(err)
	}
	dts, err := fs.ReadFile(web.SDK, "duet.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`export \{([^}]*)\} from`).FindAllStringSubmatch(string(entry), -1) {
		for _, n := range strings.Split(m[1], ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	if len(names) < 50 {
		t.Fatalf("found only %d exports in duet.js", len(names))
	}
	for _, n := range names {
		decl := regexp.MustCompile(`(?m)^export (?:declare )?(?:function|class|const|let|type|interface) ` + regexp.QuoteMeta(n) + `\b`)
		if !decl.Match(dts) {
			t.Errorf("duet.js exports %s, but duet.d.ts does not declare it", n)
		}
	}
	exported := map[string]bool{}
	for _, n := range names {
		exported[n] = true
	}
	valueRe := regexp.MustCompile(`(?m)^export (?:declare )?(?:abstract )?(?:function|class|const|let|var|enum|namespace) ([A-Za-z_$][\w$]*)`)
	values := valueRe.FindAllSubmatch(dts, -1)
	if len(values) < 50 {
		t.Fatalf("found only %d value declarations in duet.d.ts", len(values))
	}
	for _, m := range values {
		if n := string(m[1]); !exported[n] {
			t.Errorf("duet.d.ts declares %s, but duet.js does not export it: export it from duet.js or drop the declaration", n)
		}
	}
	// A value declared in another form (export default, export { x }) would
	// escape the check above.
	for _, line := range regexp.MustCompile(`(?m)^export .*$`).FindAll(dts, -1) {
		if !valueRe.Match(line) && !regexp.MustCompile(`^export (?:declare )?(?:type|interface) `).Match(line) {
			t.Errorf("duet.d.ts: %q is a form of export this test does not check; use export declare function/class/const", line)
		}
	}
}
