package client

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/duetcall/duet/identity"
)

// TestRegisterVector: Register sends exactly the request of
// testdata/vectors/relay_auth.json for the vector's challenge (a server
// implementing PROTOCOL §9.1 serves it), and the ws-auth message the client
// signs is the vector's.
func TestRegisterVector(t *testing.T) {
	data, err := os.ReadFile("../testdata/vectors/relay_auth.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Mnemonic string `json:"mnemonic"`
		Register struct {
			Challenge string `json:"challenge"`
		} `json:"register"`
		RegisterRequest map[string]string `json:"register_request"`
		WSAuth          struct {
			Challenge, Message string
		} `json:"ws_auth"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	chal, _ := hex.DecodeString(v.Register.Challenge)
	var got map[string]string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/challenge":
			json.NewEncoder(w).Encode(map[string]any{"challenge": base64.StdEncoding.EncodeToString(chal), "expires_in": 60})
		case "/api/v1/register":
			if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"alias": "u10000001", "created": true})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer ts.Close()
	id, err := identity.FromMnemonic(v.Mnemonic)
	if err != nil {
		t.Fatal(err)
	}
	alias, created, err := Register(context.Background(), ts.Client(), ts.URL, id)
	if err != nil || alias != "u10000001" || !created {
		t.Fatalf("Register = %s, %v, %v", alias, created, err)
	}
	for k, want := range v.RegisterRequest {
		if got[k] != want {
			t.Errorf("request %s = %q, want %q", k, got[k], want)
		}
	}
	if len(got) != len(v.RegisterRequest) {
		t.Errorf("request %v, want %v", got, v.RegisterRequest)
	}
	wsChal, _ := hex.DecodeString(v.WSAuth.Challenge)
	if m := hex.EncodeToString(append([]byte(wsAuthContext), wsChal...)); m != v.WSAuth.Message {
		t.Errorf("ws-auth message %s, want %s", m, v.WSAuth.Message)
	}
}
