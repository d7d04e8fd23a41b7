package relay

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Revision-checked writes to the directory's buckets (compare and swap).
//
// A conflict is not always another writer's: on a replicated stream,
// nats-server (2.15.2) refuses a revision-checked write to a key while the
// previous write to that key is still being applied on the stream leader,
// and it acknowledges a write before it is done applying it. A write that
// follows an acknowledged one on the same key at once (a challenge's
// purge after its creation, a count's update after the last) can so be
// refused although the revision it names is the key's latest, with the
// error a stale revision gets ("wrong last sequence", 10164). On 3-node
// R3 clusters under the race detector and a CPU hog, 12 in 3 000 purges
// right after their create were refused so. Callers read the key again
// and retry after casBackoff: a key that still holds what they read was
// not written by anyone else.

// casBackoffMax bounds the wait between two attempts (see casBackoff).
const casBackoffMax = 50 * time.Millisecond

// casConflict reports whether err is a revision-checked write's conflict.
// nats.go's Create, finding the key deleted, writes over the marker itself
// and returns that write's conflict as the bare API error ("wrong last
// sequence", 10164 on a replicated stream), matched neither by
// ErrKeyExists nor by ErrKeyRevisionMismatch.
func casConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// casBackoff waits before the next attempt after attempt conflicts: a
// random part of casBackoffMax, growing from 1 ms, unless ctx ends first
// (false).
func casBackoff(ctx context.Context, attempt int) bool {
	limit := min(time.Millisecond<<min(attempt, 16), casBackoffMax)
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
