package e2ee

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"testing"
)

// benchSizes are an Opus packet, a VP8 delta frame and a large VP8 frame.
var benchSizes = []struct {
	n     int
	first byte
	kind  FrameKind
}{
	{160, opusTOC, KindOpus},
	{1200, vp8Delta, KindVP8},
	{12000, vp8Delta, KindVP8},
}

func benchName(n int) string { return fmt.Sprintf("%dB", n) }

// resetEvery bounds the per-key usage in long benchmark runs (internal hook);
// 2^20 frames of 12 kB stay under the byte limit.
const resetEvery = 1 << 20

func BenchmarkEncrypt(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n), func(b *testing.B) {
			p := newPair(b, nil)
			frame := testFrame(s.n, s.first)
			dst := make([]byte, 0, s.n+Overhead)
			var err error
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%resetEvery == resetEvery-1 {
					p.enc.frames, p.enc.bytes = 0, 0
				}
				if dst, err = p.enc.Encrypt(dst, frame, s.kind); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n), func(b *testing.B) {
			p := newPair(b, nil)
			frames := make([][]byte, ReplayWindow)
			for i := range frames {
				frames[i] = p.encrypt(b, testFrame(s.n, s.first), s.kind)
			}
			dst := make([]byte, 0, s.n)
			var err error
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				j := i % len(frames)
				if j == 0 {
					p.dec.cur.window = replayWindow{} // replay the same frames (internal hook)
				}
				if dst, err = p.dec.Decrypt(dst, frames[j], s.kind); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncryptDecrypt(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n), func(b *testing.B) {
			p := newPair(b, nil)
			frame := testFrame(s.n, s.first)
			encBuf := make([]byte, 0, s.n+Overhead)
			decBuf := make([]byte, 0, s.n)
			var err error
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%resetEvery == resetEvery-1 {
					p.enc.frames, p.enc.bytes = 0, 0
					p.dec.cur.window = replayWindow{}
				}
				if encBuf, err = p.enc.Encrypt(encBuf, frame, s.kind); err != nil {
					b.Fatal(err)
				}
				if decBuf, err = p.dec.Decrypt(decBuf, encBuf, s.kind); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncryptParallel measures a shared Encryptor under contention, as
// when the audio and video writers of a connection encrypt at once.
func BenchmarkEncryptParallel(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n), func(b *testing.B) {
			p := newPair(b, nil)
			p.enc.lim.maxFrames, p.enc.lim.maxBytes = 1<<62, 1<<62 // internal hook: unbounded runs
			frame := testFrame(s.n, s.first)
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				dst := make([]byte, 0, s.n+Overhead)
				var err error
				for pb.Next() {
					if dst, err = p.enc.Encrypt(dst, frame, s.kind); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// bareGCM is the baseline: AES-256-GCM on the whole frame, no framing, no
// counters, no locks.
type bareGCM struct {
	aead  cipher.AEAD
	nonce [BaseIVSize]byte
}

func newBareGCM(b *testing.B) *bareGCM {
	block, err := aes.NewCipher(make([]byte, KeySize))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return &bareGCM{aead: aead}
}

func BenchmarkAESGCM(b *testing.B) {
	for _, s := range benchSizes {
		frame := testFrame(s.n, s.first)
		b.Run("Seal/"+benchName(s.n), func(b *testing.B) {
			g := newBareGCM(b)
			dst := make([]byte, 0, s.n+TagSize)
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				dst = g.aead.Seal(dst[:0], g.nonce[:], frame, nil)
			}
		})
		b.Run("Open/"+benchName(s.n), func(b *testing.B) {
			g := newBareGCM(b)
			sealed := g.aead.Seal(nil, g.nonce[:], frame, nil)
			dst := make([]byte, 0, s.n)
			var err error
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				if dst, err = g.aead.Open(dst[:0], g.nonce[:], sealed, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("SealOpen/"+benchName(s.n), func(b *testing.B) {
			g := newBareGCM(b)
			sealed := make([]byte, 0, s.n+TagSize)
			dst := make([]byte, 0, s.n)
			var err error
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				sealed = g.aead.Seal(sealed[:0], g.nonce[:], frame, nil)
				if dst, err = g.aead.Open(dst[:0], g.nonce[:], sealed, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
