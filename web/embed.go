// Package web holds duet's browser SDK and demo app. The SDK (web/sdk,
// entry point duet.js, TypeScript declarations duet.d.ts) is plain ES modules
// over WebCrypto that interoperate byte for byte with the Go SDK
// (docs/PROTOCOL.md), including the call module (calls.js, with its media
// E2EE worker e2ee-worker.js); web/sdk/package.json makes it the npm
// package @duetcall/duet. The demo app (web/app) is an installable PWA
// on that SDK. Both are embedded, and [Handler] serves them in front of the
// relay as `duet relay` does: the SDK at /sdk/, the app at /.
//
// The package's tests run the SDK in Debian's Chromium (driven with
// chromedp) against every file of testdata/vectors, and place real calls
// through an in-process relay: browser to browser, and browser to and from
// the Go SDK.
package web

import (
	"embed"
	"io/fs"
)

//go:embed sdk
var sdkFiles embed.FS

//go:embed app
var appFiles embed.FS

// SDK is the browser SDK's files (duet.js, duet.d.ts, package.json and the
// modules it imports), rooted at the sdk directory: serve it with
// http.FileServerFS(web.SDK) under /sdk/.
var SDK fs.FS = mustSub(sdkFiles, "sdk")

// App is the demo app's files (index.html, app.js, style.css, the web app
// manifest, the service worker and icons), rooted at the app directory. It
// loads the SDK from /sdk/ and talks to the relay at its own origin, so
// serve it at / of the relay's address (cmd/duet does).
var App fs.FS = mustSub(appFiles, "app")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic("web: " + err.Error()) // unreachable: dir is embedded above
	}
	return sub
}
