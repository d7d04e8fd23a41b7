package vectors

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"fmt"

	"github.com/duetcall/duet/wire"
)

// decryptPayload opens an envelope payload (base64 of iv || ct || tag) with
// the session key, independently of wire.Session, to record the signed blob.
func decryptPayload(key [wire.SessionKeySize]byte, payload string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, err
	}
	if len(raw) < wire.IVSize+16 {
		return nil, fmt.Errorf("payload too short")
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return gcm.Open(nil, raw[:wire.IVSize], raw[wire.IVSize:], nil)
}
