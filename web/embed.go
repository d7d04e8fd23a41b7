// Package web holds duet's browser SDK: plain ES modules over WebCrypto
// (web/sdk, entry point duet.js, TypeScript declarations duet.d.ts) that
// interoperate byte for byte with the Go SDK (docs/PROTOCOL.md). The files
// are embedded so that the relay can serve them at /sdk/.
//
// The package's tests run the SDK in Debian's Chromium (driven with
// chromedp) against every file of testdata/vectors.
package web

import (
	"embed"
	"io/fs"
)

//go:embed sdk
var sdkFiles embed.FS

// SDK is the browser SDK's files (duet.js, duet.d.ts and the modules it
// imports), rooted at the sdk directory: serve it with
// http.FileServerFS(web.SDK) under /sdk/.
var SDK fs.FS = mustSub(sdkFiles, "sdk")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic("web: " + err.Error()) // unreachable: dir is embedded above
	}
	return sub
}
