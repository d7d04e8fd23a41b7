package turnserver

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Allocation quotas (Config.MaxAllocationsPerUser, Config.MaxAllocations).
// A call needs one allocation per peer that relays; a user's devices and
// ICE restarts need a few more.
const (
	DefaultMaxAllocationsPerUser = 16
	DefaultMaxAllocations        = 4096
)

// tarpitAfter is how many Allocates in a row a user has refused for a
// quota (486) before its further Allocates are dropped unanswered while
// the quota still refuses them (see quota.tarpit).
const tarpitAfter = 8

// tarpitUsersMax bounds the users whose refusals are remembered.
const tarpitUsersMax = 4096

// quota counts the live allocations per user (the alias of the REST
// credential) and in all, for pion/turn's QuotaHandler: an Allocate past
// either limit is answered 486 (Allocation Quota Reached).
//
// It also tarpits: once a user has had tarpitAfter Allocates in a row
// refused, its next ones are dropped before pion/turn sees them (see
// tarpit), as long as the quota would refuse them too.
type quota struct {
	perUser, total int
	refused        *prometheus.CounterVec // reason: user, total
	dropped        prometheus.Counter

	mu       sync.Mutex
	byUser   map[string]int
	all      int
	refusals map[string]int              // user -> Allocates refused since its last allocation
	holders  map[netip.AddrPort]struct{} // client addresses that hold an allocation
}

func newQuota(perUser, total int) *quota {
	if perUser <= 0 {
		perUser = DefaultMaxAllocationsPerUser
	}
	if total <= 0 {
		total = DefaultMaxAllocations
	}
	q := &quota{perUser: perUser, total: total, byUser: make(map[string]int),
		refusals: make(map[string]int), holders: make(map[netip.AddrPort]struct{}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_turn_quota_refused_total",
			Help: "TURN allocations refused by a quota, by which (user: the credential's alias has its maximum; total: the server has).",
		}, []string{"quota"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_turn_quota_dropped_total",
			Help: "TURN Allocate requests dropped unanswered: their user was refused for a quota many times in a row and still would be.",
		}),
	}
	q.refused.WithLabelValues("user")
	q.refused.WithLabelValues("total")
	return q
}

// allow is the QuotaHandler. Allocations are counted when created, so that
// a refused or failed Allocate costs nothing; Allocates handled at the same
// moment (several sockets, TCP) may overshoot a quota by a few.
func (q *quota) allow(user, _ string, _ net.Addr) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.all >= q.total:
		q.refused.WithLabelValues("total").Inc()
	case q.byUser[user] >= q.perUser:
		q.refused.WithLabelValues("user").Inc()
	default:
		return true
	}
	if len(q.refusals) >= tarpitUsersMax {
		clear(q.refusals)
	}
	q.refusals[user]++
	return false
}

// full reports whether an Allocate of user would be refused now; q.mu held.
func (q *quota) full(user string) bool {
	return q.all >= q.total || q.byUser[user] >= q.perUser
}

func (q *quota) created(user string, src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.byUser[user]++
	q.all++
	delete(q.refusals, user)
	if ap, ok := addrPort(src); ok {
		q.holders[ap] = struct{}{}
	}
}

func (q *quota) deleted(user string, src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := q.byUser[user]; n > 1 {
		q.byUser[user] = n - 1
	} else {
		delete(q.byUser, user)
	}
	if q.all > 0 {
		q.all--
	}
	if ap, ok := addrPort(src); ok {
		delete(q.holders, ap)
	}
}

// tarpit reports whether datagram b, received from src on a UDP listener,
// is to be dropped unanswered: an Allocate request whose user has had
// tarpitAfter Allocates in a row refused for a quota and would be refused
// again now, from an address that holds no allocation (one that does may
// be retransmitting the Allocate that created it, which pion answers from
// its cache). Such a request would cost pion/turn a full round (parse,
// MESSAGE-INTEGRITY, a 486 answer and its send) only to be refused;
// unanswered, a client retransmits it with backoff and then gives up, so a
// client that loops on a refused quota slows down instead of spinning.
// Everything else (other requests, indications, ChannelData: the media
// path) is passed after a two-byte look.
func (q *quota) tarpit(b []byte, src net.Addr) bool {
	// A STUN Allocate request (type 0x0003) with the magic cookie; its
	// attributes as long as its header says.
	const headerSize = 20
	if len(b) < headerSize || b[0] != 0 || b[1] != 3 ||
		binary.BigEndian.Uint32(b[4:8]) != 0x2112A442 ||
		int(binary.BigEndian.Uint16(b[2:4])) != len(b)-headerSize {
		return false
	}
	user, ok := restUser(b[headerSize:])
	if !ok {
		return false
	}
	ap, ok := addrPort(src)
	if !ok {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.refusals[string(user)] < tarpitAfter || !q.full(string(user)) {
		return false
	}
	if _, holds := q.holders[ap]; holds {
		return false
	}
	q.dropped.Inc()
	return true
}

// restUser finds the USERNAME attribute among STUN attributes and returns
// the user of its REST form "<expiry>:<user>" (what the auth handler
// returns as the user ID).
func restUser(attrs []byte) ([]byte, bool) {
	const attrUsername = 0x0006
	for len(attrs) >= 4 {
		typ, n := binary.BigEndian.Uint16(attrs[0:2]), int(binary.BigEndian.Uint16(attrs[2:4]))
		if 4+n > len(attrs) {
			return nil, false
		}
		if typ == attrUsername {
			_, user, found := bytes.Cut(attrs[4:4+n], []byte{':'})
			return user, found && len(user) > 0
		}
		padded := 4 + (n+3)&^3
		if padded > len(attrs) {
			return nil, false
		}
		attrs = attrs[padded:]
	}
	return nil, false
}

// addrPort is a client's address, IPv4 unmapped.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return unmapped(a.AddrPort()), true
	case *net.TCPAddr:
		return unmapped(a.AddrPort()), true
	}
	return netip.AddrPort{}, false
}
