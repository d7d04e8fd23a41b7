package e2ee_test

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"github.com/duetcall/duet/e2ee"
)

// Both parties derive the call's keys from their ephemeral X25519 keys (epk
// in call_offer and call_answer); what the caller sends, the callee decrypts.
func Example() {
	callerID, _, _ := ed25519.GenerateKey(rand.Reader)
	calleeID, _, _ := ed25519.GenerateKey(rand.Reader)
	callerEph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	calleeEph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	const callID = "c_7f3a9e"

	callerSend, _, err := e2ee.DeriveKeys(callerEph, calleeEph.PublicKey().Bytes(), callID, callerID, calleeID, 0)
	if err != nil {
		panic(err)
	}
	_, calleeRecv, err := e2ee.DeriveKeys(calleeEph, callerEph.PublicKey().Bytes(), callID, calleeID, callerID, 0)
	if err != nil {
		panic(err)
	}

	enc, _ := e2ee.NewEncryptor(callerSend, &e2ee.EncryptorOptions{
		OnRekeyNeeded: func(epoch uint32) { /* send call_rekey for epoch+1 */ },
	})
	dec, _ := e2ee.NewDecryptor(calleeRecv, nil)

	opus := []byte{0xfc, 'h', 'e', 'l', 'l', 'o'}
	wire, _ := enc.Encrypt(nil, opus, e2ee.KindOpus)
	ctr, _ := e2ee.FrameCounter(wire, e2ee.KindOpus)
	fmt.Printf("%d bytes on the wire, TOC %#x in the clear, counter %v\n", len(wire), wire[0], ctr)

	frame, err := dec.Decrypt(nil, wire, e2ee.KindOpus)
	fmt.Printf("%q %v\n", frame[1:], err)

	_, err = dec.Decrypt(nil, wire, e2ee.KindOpus)
	fmt.Println(err)
	// Output:
	// 30 bytes on the wire, TOC 0xfc in the clear, counter 0:0
	// "hello" <nil>
	// e2ee: replayed frame: counter 0:0, highest seq 0
}
