package web_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/duetcall/duet/web"
)

// TestSDKTypesContentType: the SDK's type declarations are served as
// TypeScript, whatever the system's MIME table says about .ts.
func TestSDKTypesContentType(t *testing.T) {
	ts := httptest.NewServer(web.Handler(http.NotFoundHandler()))
	defer ts.Close()
	for path, want := range map[string]string{
		"/sdk/duet.d.ts": "application/typescript; charset=utf-8",
		"/sdk/duet.js":   "text/javascript; charset=utf-8",
	} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != want {
			t.Errorf("%s: %d, Content-Type %q, want %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
	}
}
