package wire_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"

	"github.com/duetcall/duet/wire"
)

// keys derives demo keys from a one-byte seed; real keys come from identity.
func keys(seed byte) (ed25519.PrivateKey, *ecdh.PrivateKey) {
	s := bytes.Repeat([]byte{seed}, 32)
	x, err := ecdh.X25519().NewPrivateKey(s)
	if err != nil {
		panic(err)
	}
	return ed25519.NewKeyFromSeed(s), x
}

func Example() {
	aliceSign, aliceX := keys(1)
	bobSign, bobX := keys(2)
	alicePub := aliceSign.Public().(ed25519.PublicKey)
	bobPub := bobSign.Public().(ed25519.PublicKey)

	// Each side derives the same session key from its own X25519 key and the
	// peer's pinned public keys.
	key, err := wire.SessionKey(aliceX, alicePub, bobPub, bobX.PublicKey().Bytes())
	if err != nil {
		panic(err)
	}
	bobKey, _ := wire.SessionKey(bobX, bobPub, alicePub, aliceX.PublicKey().Bytes())
	alice, _ := wire.NewSession(wire.SessionConfig{SigningKey: aliceSign, PeerSigningKey: bobPub, Key: key})
	bob, _ := wire.NewSession(wire.SessionConfig{SigningKey: bobSign, PeerSigningKey: alicePub, Key: bobKey})

	epk := make([]byte, wire.EPKSize) // the caller's ephemeral X25519 public key
	env, err := alice.Seal(wire.Message{
		Type: wire.TypeCallOffer, From: "u11111111", To: "u22222222", CallID: "call-1",
		Body: wire.OfferPayload{SDP: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", EPK: epk},
	})
	if err != nil {
		panic(err)
	}
	frame, _ := env.Encode() // what the relay forwards

	// Bob's side.
	got, err := wire.DecodeEnvelope(frame)
	if err != nil {
		panic(err)
	}
	msg, err := bob.Open(got)
	if err != nil {
		fmt.Println("dropped:", wire.DropReason(err))
		return
	}
	offer := msg.Body.(wire.OfferPayload)
	fmt.Println(msg.Type, msg.From, "->", msg.To, "video:", wire.IsVideoOffer(offer.SDP))

	_, err = bob.Open(got) // the same frame again
	fmt.Println("replayed:", wire.DropReason(err))
	// Output:
	// call_offer u11111111 -> u22222222 video: true
	// replayed: replay
}

func ExampleCanonicalize() {
	out, err := wire.Canonicalize([]byte(`{ "b": [1, {"y": null, "x": true}], "a": "\u00e9\n" }`))
	fmt.Println(string(out), err)
	_, err = wire.Canonicalize([]byte(`{"a": 1.5}`))
	fmt.Println(err)
	// Output:
	// {"a":"é\n","b":[1,{"x":true,"y":null}]} <nil>
	// wire: invalid JSON for canonicalization: number with a fraction (only integers are allowed) at byte 7
}

func ExampleNormalizeICE() {
	p, err := wire.NormalizeICE([]byte(`{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}`))
	if err != nil {
		panic(err)
	}
	out, _ := wire.CanonicalMarshal(p)
	fmt.Println(string(out))
	// Output:
	// {"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdp_mid":"0","sdp_mline":0}
}
