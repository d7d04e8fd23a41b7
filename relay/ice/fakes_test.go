package ice

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/duetcall/duet/internal/syncbuf"
)

// fakeClock is an injectable clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 23, 19, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeProvider is an httptest server implementing one provider's documented
// contract: it refuses requests with the wrong method, path, auth or body
// exactly as the real service would (4xx), and answers with the documented
// status and JSON shape. mode switches its behaviour.
type fakeProvider struct {
	*httptest.Server
	t        *testing.T
	requests atomic.Int64

	mu      sync.Mutex
	mode    string        // "", "legacy" (Cloudflare one-object shape), "500", "huge", "garbage", "empty"
	gotTTL  int64         // last requested ttl
	entered chan struct{} // receives when a request arrives, if set
	release chan struct{} // requests wait on it, if set
	created time.Time     // Twilio date_created
	clock   *fakeClock
}

func (f *fakeProvider) setMode(m string) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

func (f *fakeProvider) state() (mode string, entered, release chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode, f.entered, f.release
}

// common handles the behaviour shared by all fakes; it reports whether the
// request was answered already.
func (f *fakeProvider) common(w http.ResponseWriter) bool {
	f.requests.Add(1)
	mode, entered, release := f.state()
	if entered != nil {
		entered <- struct{}{}
	}
	if release != nil {
		<-release
	}
	switch mode {
	case "500":
		http.Error(w, `{"errors":[{"code":10000,"message":"internal"}]}`, http.StatusInternalServerError)
		return true
	case "huge":
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"iceServers":[{"urls":["`+strings.Repeat("a", maxUpstreamBody)+`"]}]}`)
		return true
	case "garbage":
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `<html>`)
		return true
	}
	return false
}

const (
	cfKeyID     = "0123456789abcdef0123456789abcdef"
	cfToken     = "cf-api-token-SECRET"
	cfTURNUser  = "cf-turn-user"
	cfTURNCred  = "cf-turn-cred-SECRET"
	twSID       = "AC0123456789abcdef0123456789abcdef"
	twToken     = "tw-auth-token-SECRET"
	twTURNCred  = "tw-turn-cred-SECRET"
	meteredKey  = "metered-api-key-SECRET"
	meteredCred = "metered-turn-cred-SECRET"
	coturnKey   = "coturn-static-secret-SECRET"
)

// newCloudflare fakes POST /v1/turn/keys/{id}/credentials/generate-ice-servers.
func newCloudflare(t *testing.T) *fakeProvider {
	f := &fakeProvider{t: t}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path != "/v1/turn/keys/"+cfKeyID+"/credentials/generate-ice-servers" {
			http.Error(w, `{"errors":[{"message":"not found"}]}`, http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+cfToken {
			http.Error(w, `{"errors":[{"message":"Authentication error"}]}`, http.StatusUnauthorized)
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			http.Error(w, "content type", http.StatusBadRequest)
			return
		}
		var body struct {
			TTL *int64 `json:"ttl"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.TTL == nil || *body.TTL <= 0 || *body.TTL > 172800 {
			http.Error(w, `{"errors":[{"message":"bad ttl"}]}`, http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.gotTTL = *body.TTL
		f.mu.Unlock()
		if f.common(w) {
			return
		}
		mode, _, _ := f.state()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		if mode == "legacy" {
			fmt.Fprintf(w, `{"iceServers":{"urls":["stun:stun.cloudflare.com:3478","turn:turn.cloudflare.com:3478?transport=udp",
				"turn:turn.cloudflare.com:53?transport=udp","turns:turn.cloudflare.com:443?transport=tcp"],
				"username":%q,"credential":%q}}`, cfTURNUser, cfTURNCred)
			return
		}
		if mode == "stun-only" {
			io.WriteString(w, `{"iceServers":[{"urls":["stun:stun.cloudflare.com:3478"]},
				{"urls":["turn:turn.cloudflare.com:3478?transport=udp"]}]}`)
			return
		}
		fmt.Fprintf(w, `{"iceServers":[
			{"urls":["stun:stun.cloudflare.com:3478","stun:stun.cloudflare.com:53"]},
			{"urls":["turn:turn.cloudflare.com:3478?transport=udp","turn:turn.cloudflare.com:3478?transport=tcp",
			         "turns:turn.cloudflare.com:5349?transport=tcp","turn:turn.cloudflare.com:53?transport=udp",
			         "turns:turn.cloudflare.com:443?transport=tcp"],
			 "username":%q,"credential":%q,"credentialType":"password"}],
			"someFutureField":{"x":1}}`, cfTURNUser, cfTURNCred)
	}))
	t.Cleanup(f.Close)
	return f
}

// newTwilio fakes POST /2010-04-01/Accounts/{sid}/Tokens.json.
func newTwilio(t *testing.T, clock *fakeClock) *fakeProvider {
	f := &fakeProvider{t: t, clock: clock}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path != "/2010-04-01/Accounts/"+twSID+"/Tokens.json" {
			http.Error(w, `{"code":20404,"message":"not found","status":404}`, http.StatusNotFound)
			return
		}
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(twSID+":"+twToken))
		if r.Header.Get("Authorization") != want {
			http.Error(w, `{"code":20003,"message":"Authenticate","status":401}`, http.StatusUnauthorized)
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
			http.Error(w, "content type", http.StatusBadRequest)
			return
		}
		if err := r.ParseForm(); err != nil || len(r.PostForm) != 1 {
			http.Error(w, "form", http.StatusBadRequest)
			return
		}
		ttl, err := strconv.ParseInt(r.PostForm.Get("Ttl"), 10, 64)
		if err != nil || ttl <= 0 || ttl > 86400 {
			http.Error(w, `{"code":20001,"message":"Ttl","status":400}`, http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.gotTTL = ttl
		created := f.created
		f.mu.Unlock()
		if created.IsZero() {
			created = clock.Now()
		}
		if f.common(w) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		stun := "stun:global.stun.twilio.com:3478"
		turnUDP := "turn:global.turn.twilio.com:3478?transport=udp"
		turnTCP := "turn:global.turn.twilio.com:443?transport=tcp"
		fmt.Fprintf(w, `{"account_sid":%q,"date_created":%q,"date_updated":%q,"ttl":"%d",
			"ice_servers":[
				{"url":%q,"urls":%q},
				{"url":%q,"urls":%q,"username":"tw-user","credential":%q},
				{"url":%q,"urls":%q,"username":"tw-user","credential":%q}],
			"password":%q,"username":"tw-user"}`,
			twSID, created.Format(time.RFC1123Z), created.Format(time.RFC1123Z), ttl,
			stun, stun, turnUDP, turnUDP, twTURNCred, turnTCP, turnTCP, twTURNCred, twTURNCred)
	}))
	t.Cleanup(f.Close)
	return f
}

// newMetered fakes GET /api/v1/turn/credentials?apiKey=.
func newMetered(t *testing.T) *fakeProvider {
	f := &fakeProvider{t: t}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path != "/api/v1/turn/credentials" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if r.URL.Query().Get("apiKey") != meteredKey {
			http.Error(w, `{"error":"Invalid API Key"}`, http.StatusUnauthorized)
			return
		}
		if f.common(w) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `[
			{"urls":"stun:stun.relay.metered.ca:80"},
			{"urls":"turn:global.relay.metered.ca:80","username":"m-user","credential":%q},
			{"urls":"turn:global.relay.metered.ca:80?transport=tcp","username":"m-user","credential":%q},
			{"urls":"turn:global.relay.metered.ca:443","username":"m-user","credential":%q},
			{"urls":"turns:global.relay.metered.ca:443?transport=tcp","username":"m-user","credential":%q}]`,
			meteredCred, meteredCred, meteredCred, meteredCred)
	}))
	t.Cleanup(f.Close)
	return f
}

// logBuffer collects every log line at debug level.
type logBuffer struct{ syncbuf.Buffer }

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&b.Buffer, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
}

// count reads duet_ice_config_requests_total{provider,outcome}.
func count(t *testing.T, r *Resolver, provider, outcome string) float64 {
	t.Helper()
	var m dto.Metric
	if err := r.requests.WithLabelValues(provider, outcome).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// upstreamCalls counts observations of duet_ice_upstream_request_duration_seconds.
func upstreamCalls(t *testing.T, r *Resolver, provider, result string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := r.upstream.WithLabelValues(provider, result).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
