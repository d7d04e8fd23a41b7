package identity

import (
	"bytes"
	"crypto/sha512"
	"strconv"
	"strings"
)

// SafetyNumberLabel is the domain-separation prefix of the safety number
// hash (docs/PROTOCOL.md §1.4, §7).
const SafetyNumberLabel = "duet/v1/safety-number"

const (
	safetyGroups     = 12
	safetyGroupBytes = 5 // u40be
	safetyDigits     = 5
	safetyGroupMod   = 100000 // 10^safetyDigits
)

// SafetyNumber returns the number two users compare out of band to detect a
// key substitution (docs/PROTOCOL.md §1.4): 12 groups of 5 decimal digits
// separated by single spaces, e.g. "01234 56789 ... 13579" (71 characters).
// It is symmetric: SafetyNumber(a, b) == SafetyNumber(b, a).
//
// Both key sets must hold 32-byte keys (as from ParsePublicKeys or
// Identity.PublicKeys); otherwise SafetyNumber returns "", which never
// equals a real safety number.
func SafetyNumber(a, b PublicKeys) string {
	if !a.valid() || !b.valid() {
		return ""
	}
	ba, bb := a.Block(), b.Block()
	if bytes.Compare(ba, bb) > 0 {
		ba, bb = bb, ba
	}
	h := sha512.New()
	h.Write([]byte(SafetyNumberLabel))
	h.Write(ba)
	h.Write(bb)
	digest := h.Sum(nil)

	var sb strings.Builder
	sb.Grow(safetyGroups*(safetyDigits+1) - 1)
	for i := range safetyGroups {
		var v uint64
		for _, c := range digest[i*safetyGroupBytes : (i+1)*safetyGroupBytes] {
			v = v<<8 | uint64(c)
		}
		if i > 0 {
			sb.WriteByte(' ')
		}
		s := strconv.FormatUint(v%safetyGroupMod, 10)
		sb.WriteString(strings.Repeat("0", safetyDigits-len(s)))
		sb.WriteString(s)
	}
	return sb.String()
}
