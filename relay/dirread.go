package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readPolicy says which replica of a bucket answers the directory's reads.
//
// A KV Get in nats.go is a "direct get", answered by any replica (NATS
// prefers the one on the node the relay is connected to); a replica that
// has not applied the latest writes yet answers with old data. A relay that
// registered an identity on one node and authenticated it on another saw
// 2-10 % of fresh identities fail (bad_challenge, unknown alias, 404): issue
// 13, TestReadYourWrites. The stream leader has every acknowledged write.
type readPolicy int

const (
	// readLeader asks the stream leader ($JS.API.STREAM.MSG.GET): every
	// acknowledged write is seen. The default.
	readLeader readPolicy = iota
	// readFallback asks any replica and the leader only when the replica
	// has no such key: a new key is seen, an updated one may be stale.
	readFallback
	// readDirect asks any replica only (before issue 13; for comparison).
	readDirect
)

func (p readPolicy) String() string {
	switch p {
	case readLeader:
		return "leader"
	case readFallback:
		return "fallback"
	default:
		return "direct"
	}
}

// dirTimeout bounds one directory request whose context has no deadline.
const dirTimeout = 5 * time.Second

// kvEntry is a directory value and its revision.
type kvEntry struct {
	value []byte
	rev   uint64
}

// kvBucket is one KV bucket of the directory.
type kvBucket struct {
	name string
	kv   jetstream.KeyValue
}

// get reads key with the directory's read policy; fresh forces a leader
// read (after a revision conflict the replica may still be behind). It
// returns jetstream.ErrKeyNotFound for a missing, deleted or purged key;
// for a deleted or purged one read from the leader, the entry has the
// marker's revision (0 otherwise).
func (d *directory) get(ctx context.Context, b *kvBucket, key string, fresh bool) (kvEntry, error) {
	if fresh || d.reads == readLeader {
		return d.leaderGet(ctx, b, key)
	}
	e, err := b.kv.Get(ctx, key)
	if err == nil {
		d.m.dirOp("read", "ok")
		return kvEntry{value: e.Value(), rev: e.Revision()}, nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		d.m.dirOp("read", errorKind(err))
		return kvEntry{}, err
	}
	d.m.dirOp("read", "not_found")
	if d.reads == readDirect {
		return kvEntry{}, err
	}
	return d.leaderGet(ctx, b, key)
}

// JetStream API details of a leader read.
const (
	apiMsgGet         = "$JS.API.STREAM.MSG.GET.KV_" // + bucket
	errCodeMsgMissing = 10037                        // JSNoMessageFoundErr
)

// leaderGet reads the last message of key from the stream leader.
func (d *directory) leaderGet(ctx context.Context, b *kvBucket, key string) (kvEntry, error) {
	e, err := d.leaderGetRaw(ctx, b, key)
	switch {
	case err == nil:
		d.m.dirOp("leader_read", "ok")
	case errors.Is(err, jetstream.ErrKeyNotFound):
		d.m.dirOp("leader_read", "not_found")
	default:
		d.m.dirOp("leader_read", errorKind(err))
	}
	return e, err
}

func (d *directory) leaderGetRaw(ctx context.Context, b *kvBucket, key string) (kvEntry, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dirTimeout)
		defer cancel()
	}
	req, _ := json.Marshal(struct {
		LastBySubj string `json:"last_by_subj"`
	}{"$KV." + b.name + "." + key})
	msg, err := d.nc.RequestWithContext(ctx, apiMsgGet+b.name, req)
	if err != nil {
		return kvEntry{}, err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Hdrs []byte `json:"hdrs"`
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return kvEntry{}, fmt.Errorf("reading %s/%s from the stream leader: %w", b.name, key, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == errCodeMsgMissing {
			return kvEntry{}, jetstream.ErrKeyNotFound
		}
		return kvEntry{}, &leaderError{code: resp.Error.Code, desc: resp.Error.Description}
	}
	if resp.Message == nil {
		return kvEntry{}, fmt.Errorf("reading %s/%s from the stream leader: empty answer", b.name, key)
	}
	if len(resp.Message.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs)
		if err != nil {
			return kvEntry{}, fmt.Errorf("reading %s/%s from the stream leader: %w", b.name, key, err)
		}
		// A delete or purge marker, or a TTL's removal marker, ends the key;
		// its revision is kept, so that a revision-checked write can
		// replace it (nats.go's Create would look for the marker again
		// with a replica read, which may be behind).
		if h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != "" {
			return kvEntry{rev: resp.Message.Seq}, jetstream.ErrKeyNotFound
		}
	}
	return kvEntry{value: resp.Message.Data, rev: resp.Message.Seq}, nil
}

// leaderError is a JetStream API error answered to a leader read.
type leaderError struct {
	code int
	desc string
}

func (e *leaderError) Error() string {
	return fmt.Sprintf("JetStream: %s (%d)", e.desc, e.code)
}

// errorKind names a directory failure for the metrics: timeout,
// disconnected (this node's NATS connection is down), unavailable (NATS or
// JetStream answered that it cannot serve: no responders, no leader, no
// quorum) or error.
func errorKind(err error) string {
	var apiErr *jetstream.APIError
	var lerr *leaderError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "timeout"
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected):
		return "disconnected"
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return "unavailable"
	case errors.As(err, &apiErr) && apiErr.Code == 503, errors.As(err, &lerr) && lerr.code == 503:
		return "unavailable"
	}
	return "error"
}
