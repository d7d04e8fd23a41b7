package media

import (
	"embed"
	"sync"
)

// Fixtures holds the media files made by scripts/make-fixtures.sh, embedded
// so a duet binary can send media with no file at hand:
//
//	fixtures/video.ivf  3 s, 1280x720, 30 fps VP8 test pattern at about
//	                    1.5 Mbps, a key frame every 30 frames (90 frames)
//	fixtures/audio.ogg  3 s of a 440 Hz mono Opus tone, 20 ms packets
//
//go:embed fixtures/video.ivf fixtures/audio.ogg
var Fixtures embed.FS

// VideoFixture returns the embedded IVF file. The slice is shared: do not
// modify it.
func VideoFixture() []byte { return videoFixture() }

var videoFixture = sync.OnceValue(func() []byte { return mustFixture("fixtures/video.ivf") })

// AudioFixture returns the embedded Ogg Opus file. The slice is shared: do
// not modify it.
func AudioFixture() []byte { return audioFixture() }

var audioFixture = sync.OnceValue(func() []byte { return mustFixture("fixtures/audio.ogg") })

func mustFixture(name string) []byte {
	b, err := Fixtures.ReadFile(name)
	if err != nil {
		panic("media: embedded fixture missing: " + name) // a build error, not a runtime one
	}
	return b
}
